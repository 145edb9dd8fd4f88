"""transformers' own common model and configuration tests (`ModelTesterMixin`, `ConfigTester`), run against every model
family (SFAR and ALT) by one tester whose family supplies its configuration, label-set inputs and output checks.

The tests are those of the transformers release we pin (5.19.0), from its sdist on PyPI: `make setup` fetches it into
`.cache/transformers-5.19.0/tests` (git-ignored; nothing of it is copied into this repository). The sdist ships the
top-level common test modules but not the three helper packages they import (`exporters`, `generation`, `utils`); the
stand-ins below provide the three names, empty: the models neither generate text nor are tested for `torch.export`
here, and `config_common_kwargs` is read only for configs without sub-configs (ours have two).

The tester follows transformers' VideoMAE and X-CLIP model tests: a tiny configuration (hidden 32, 2 layers, 16-pixel
frames), and, as X-CLIP takes `input_ids`, the label set's text as forward inputs (class prompts and SFAR's sub-texts
or ALT's entities), so a model built from a configuration runs. ALT merges one token per block (r = 1 of the 5-token
frames), so its later hidden states are shorter than its first. Every skipped common test carries its reason in
`SKIPPED` below. The suite's own generator is not seeded: every run draws new inputs, as transformers' CI does.
"""

from __future__ import annotations

import math
import os
import sys
import types
import unittest
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers.models.auto.modeling_auto import MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES, MODEL_MAPPING_NAMES

from modeling_sfar import (
    AltConfig,
    AltForVideoClassification,
    AltModel,
    SfarConfig,
    SfarForVideoClassification,
    SfarModel,
)

TRANSFORMERS_TESTS = Path(
    os.environ.get("SFAR_TRANSFORMERS_TESTS", Path(__file__).parents[2] / ".cache" / "transformers-5.19.0" / "tests")
)
PACKAGE = "transformers_common_tests"


def _import_common_tests():
    """Import the fetched `test_modeling_common` and `test_configuration_common` as modules of a package."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(TRANSFORMERS_TESTS)]
        sys.modules[PACKAGE] = package
        # The helper packages absent from the sdist: the names the common modules import, with nothing in them.
        stand_ins = {
            "exporters.test_export": {"ExportTesterMixin": type("ExportTesterMixin", (), {})},
            "generation.test_utils": {"GenerationTesterMixin": type("GenerationTesterMixin", (), {})},
            "utils.test_configuration_utils": {"config_common_kwargs": {}},
        }
        for name, attributes in stand_ins.items():
            parent = PACKAGE
            for part in name.split("."):
                full = f"{parent}.{part}"
                module = sys.modules.setdefault(full, types.ModuleType(full))
                module.__path__ = []
                parent = full
            vars(sys.modules[full]).update(attributes)
    from transformers_common_tests import test_configuration_common, test_modeling_common

    return test_modeling_common, test_configuration_common


if not (TRANSFORMERS_TESTS / "test_modeling_common.py").is_file():
    if os.environ.get("CI"):
        raise RuntimeError(f"transformers' common tests are missing from {TRANSFORMERS_TESTS}: run `make setup`")
    pytest.skip(
        f"transformers' common tests are not fetched ({TRANSFORMERS_TESTS}): run `make setup`", allow_module_level=True
    )

parameterized = pytest.importorskip(
    "parameterized", reason="transformers' common tests need `parameterized` (pip install -e .[test])"
).parameterized
test_modeling_common, test_configuration_common = _import_common_tests()
ModelTesterMixin = test_modeling_common.ModelTesterMixin
floats_tensor, ids_tensor = test_modeling_common.floats_tensor, test_modeling_common.ids_tensor
ConfigTester = test_configuration_common.ConfigTester


class ClipVideoModelTester:
    """Builds a tiny configuration of one family and its inputs: frames, and the label set's texts as token ids."""

    num_hidden_states_types = 1  # the vision tower's hidden states and attentions

    def __init__(
        self,
        parent,
        batch_size: int = 2,
        num_frames: int = 4,
        image_size: int = 16,
        patch_size: int = 8,
        num_channels: int = 3,
        hidden_size: int = 32,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 2,
        intermediate_size: int = 37,
        projection_dim: int = 16,
        num_labels: int = 3,
        text_length: int = 5,
        vocab_size: int = 99,
        is_training: bool = True,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.projection_dim = projection_dim
        self.num_labels = num_labels
        self.text_length = text_length
        self.vocab_size = vocab_size
        self.is_training = is_training
        # The vision tower's sequence: the patches and the class token. Its hidden states and attentions are the
        # model's `hidden_states` and `attentions`, with the frames folded into the batch.
        self.seq_length = (image_size // patch_size) ** 2 + 1
        self.text_config = {
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        }
        self.vision_config = {
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "image_size": image_size,
            "patch_size": patch_size,
            "num_channels": num_channels,
        }

    def config_fields(self) -> dict:
        """What every family's configuration takes from the tester."""
        return {
            "text_config": self.text_config,
            "vision_config": self.vision_config,
            "projection_dim": self.projection_dim,
            "num_frames": self.num_frames,
            "id2label": {i: f"class {i}" for i in range(self.num_labels)},
        }

    def texts(self, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids `(*shape, L)` starting with BOS and ending in EOS, right-padded, and their mask."""
        ids = ids_tensor([*shape, self.text_length], self.vocab_size - 2) + 2  # no BOS/EOS inside
        ids[..., 0] = 0
        lengths = torch.randint(3, self.text_length + 1, shape)
        positions = torch.arange(self.text_length)
        ids[positions == (lengths - 1).unsqueeze(-1)] = 1  # EOS last
        mask = (positions < lengths.unsqueeze(-1)).long()
        return ids.masked_fill(mask == 0, 1), mask

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor(
            [self.batch_size, self.num_frames, self.num_channels, self.image_size, self.image_size]
        )
        labels = ids_tensor([self.batch_size], self.num_labels)
        return self.get_config(), pixel_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values, **self.text_inputs()}

    def create_and_check_model(self, config, pixel_values, labels):
        model = self.base_model_class(config).eval()
        with torch.no_grad():
            out = model(pixel_values, **self.text_inputs())
        self.parent.assertEqual(out.logits.shape, (self.batch_size, self.num_labels))
        self.check_outputs(out)

    def create_and_check_for_video_classification(self, config, pixel_values, labels):
        model = self.classifier_class(config).train()
        out = model(pixel_values, labels=labels, **self.text_inputs())
        self.parent.assertEqual(out.logits.shape, (self.batch_size, self.num_labels))
        self.parent.assertTrue(torch.isfinite(out.loss))


class SfarModelTester(ClipVideoModelTester):
    """SFAR: a temporal module (its hidden states and attentions come back too) and N sub-texts per class."""

    base_model_class, classifier_class = SfarModel, SfarForVideoClassification
    num_hidden_states_types = 2
    num_temporal_layers, num_subtexts = 2, 2

    def get_config(self) -> SfarConfig:
        return SfarConfig(
            **self.config_fields(), num_temporal_layers=self.num_temporal_layers, num_subtexts=self.num_subtexts
        )

    def text_inputs(self) -> dict[str, torch.Tensor]:
        """Token ids of the C class prompts (C, L) and the N sub-texts of each class (C, N, L)."""
        input_ids, attention_mask = self.texts(self.num_labels)
        subtext_input_ids, subtext_attention_mask = self.texts(self.num_labels, self.num_subtexts)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "subtext_input_ids": subtext_input_ids,
            "subtext_attention_mask": subtext_attention_mask,
        }

    def check_outputs(self, out) -> None:
        self.parent.assertEqual(out.video_embeds.shape, (self.batch_size, self.num_labels, self.projection_dim))


class AltModelTester(ClipVideoModelTester):
    """ALT: token merging (r = 1), a decoder of 2 blocks, and K entities."""

    base_model_class, classifier_class = AltModel, AltForVideoClassification
    num_entities, token_merging_r, num_decoder_layers = 5, 1, 2

    def get_config(self) -> AltConfig:
        return AltConfig(
            **self.config_fields(), token_merging_r=self.token_merging_r, num_decoder_layers=self.num_decoder_layers
        )

    def text_inputs(self) -> dict[str, torch.Tensor]:
        """Token ids of the C class prompts (C, L) and the K entities (K, L)."""
        input_ids, attention_mask = self.texts(self.num_labels)
        entity_input_ids, entity_attention_mask = self.texts(self.num_entities)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "entity_input_ids": entity_input_ids,
            "entity_attention_mask": entity_attention_mask,
        }

    def check_outputs(self, out) -> None:
        tokens = self.seq_length - self.num_hidden_layers * self.token_merging_r
        self.parent.assertEqual(out.video_embeds.shape, (self.batch_size, self.projection_dim))
        self.parent.assertEqual(out.entity_indices.shape, (self.batch_size, self.num_frames, tokens))


# The common tests that do not apply to these models, with the reason (as transformers' own model tests give theirs).
SKIPPED = {
    "test_torch_save_load": (
        "transformers 5.19's test compares tensors with `(a - b).abs().max()` and XOR, which fails on boolean buffers "
        "(the label set's masks and its flag) and empty ones (a model built without entities has K = 0); the same "
        "torch.save / torch.load round trip is tested for every family in "
        "tests/contract/test_model_contract.py::test_torch_save_load_round_trip"
    ),
    "test_resize_tokens_embeddings": "a video classifier has no input token embeddings to resize",
    "test_resize_embeddings_untied": "a video classifier has no input token embeddings to resize",
    "test_inputs_embeds": "the models take frames, not token embeddings",
    "test_inputs_embeds_matches_input_ids": "the models take frames, not token embeddings",
    "test_tie_model_weights": "the models tie no weights",
}


# The absolute tolerances of transformers 5.19's eager-vs-SDPA test (`_test_eager_matches_sdpa_inference`), by
# (device, SDPA kernels enabled, dtype).
SDPA_ATOLS = {
    (device, kernels, dtype): value
    for device in ("cpu", "cuda")
    for kernels in (True, False)
    for dtype, value in ((torch.float32, 1e-6), (torch.float16, 5e-3), (torch.bfloat16, 1e-2))
}


def _skip(reason: str):
    def test(self):
        self.skipTest(reason)

    return test


def model_test(tester: type[ClipVideoModelTester], config_class: type, additional_inputs: list[str]) -> type:
    """The `ModelTesterMixin` test case of one family: its two model classes, its tester and its inputs."""
    model_type = config_class.model_type
    classes = (tester.base_model_class, tester.classifier_class)

    class ModelTest(ModelTesterMixin, unittest.TestCase):
        all_model_classes = classes
        test_resize_embeddings = False  # no token embeddings at the input (a video model)
        test_torch_exportable = False  # the export tests are not in the sdist (see the module docstring)
        # The text tower is frozen by design (docs/method.md): it encodes the label set without gradients, so its
        # parameters get none even when a test makes them trainable. Every other parameter's gradient is compared.
        test_all_params_have_gradient = False
        # The eager-vs-SDPA test passes the main input and these, each extended to its batch of 7 along the first
        # axis: 7 class prompts with their texts; its dummy `attention_mask` (7, seq_length) then masks the prompts.
        additional_model_inputs = additional_inputs

        def setUp(self):
            self.model_tester = tester(self)
            self.config_tester = ConfigTester(self, config_class=config_class, has_text_modality=False)
            # The common tests find a model's task by its class name in transformers' own auto-class tables, where a
            # model of the library is listed; ours register with the auto classes at import instead. List them here.
            for table, model_class in ((MODEL_MAPPING_NAMES, classes[0]),
                                       (MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES, classes[1])):  # fmt: skip
                if model_type not in table:
                    table[model_type] = model_class.__name__
                    self.addCleanup(table.pop, model_type)

        def test_config(self):
            self.config_tester.run_common_tests()

        def test_model(self):
            self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

        def test_for_video_classification(self):
            self.model_tester.create_and_check_for_video_classification(*self.model_tester.prepare_config_and_inputs())

        @parameterized.expand(test_modeling_common.TEST_EAGER_MATCHES_SDPA_INFERENCE_PARAMETERIZATION)
        def test_eager_matches_sdpa_inference(
            self, name, dtype, padding_side, use_attention_mask, output_attentions, enable_kernels
        ):
            """The common test, with its tolerances applied to the cosine similarities that the logits scale: the
            logits are `exp(logit_scale)` (14.3 at initialisation, CLIP's) times a cosine similarity, so a float16
            rounding of the embeddings (1 ULP, about 1e-3 relative) is a logit difference of about 0.01 near zero,
            above the suite's absolute 5e-3. transformers writes this test as a function so that a model can pass
            its own tolerances; here they are the suite's own times the logit scale (docs/transformers_contract.md
            has the measurements: one or two eager layers' float16 rounding of the attention probabilities, not an
            operator of the models)."""
            scale = math.exp(self.model_tester.get_config().logit_scale_init_value)
            atols = {key: value * scale if key[2] == torch.float16 else value for key, value in SDPA_ATOLS.items()}
            test_modeling_common._test_eager_matches_sdpa_inference(
                self, name, dtype, padding_side, use_attention_mask, output_attentions, enable_kernels, atols=atols
            )

        def test_model_get_set_embeddings(self):
            """Replaces the common test, which expects token embeddings (`nn.Embedding`): as VideoMAE's, the input
            embedding of a video model is its patch embedding, and there is no output embedding."""
            config, _ = self.model_tester.prepare_config_and_inputs_for_common()
            for model_class in self.all_model_classes:
                model = model_class(config)
                embedding = model.get_input_embeddings()
                self.assertIsInstance(embedding, nn.Conv2d)
                self.assertIs(embedding, model.base_model.vision_model.embeddings.patch_embedding)
                self.assertIsNone(model.get_output_embeddings())

        for _name, _reason in SKIPPED.items():
            locals()[_name] = _skip(_reason)
        del _name, _reason

    ModelTest.__name__ = ModelTest.__qualname__ = f"{config_class.__name__.removesuffix('Config')}ModelTest"
    ModelTest.__doc__ = f"`ModelTesterMixin` over `{classes[0].__name__}` and `{classes[1].__name__}`."
    return ModelTest


SfarModelTest = model_test(SfarModelTester, SfarConfig, ["input_ids", "subtext_input_ids", "subtext_attention_mask"])
AltModelTest = model_test(AltModelTester, AltConfig, ["input_ids", "entity_input_ids", "entity_attention_mask"])
