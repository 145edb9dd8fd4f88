# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""The pipelines of SFAR and ALT, which a saved folder registers in its `config.json` (`custom_pipelines`, written by
`ClipVideoPreTrainedModel.save_pretrained`), so that `pipeline(task, model=<folder or repo id>,
trust_remote_code=True)` builds them from the folder's own code:

- `"video-classification"`: transformers' video classification, scoring with the function the model was trained for
  (softmax over the classes, or every class's sigmoid for a multi-label model, `config.problem_type`) unless
  `function_to_apply` says otherwise.
- `"zero-shot-video-classification"`: any candidate labels, with the texts the model's family reads (SFAR's
  sub-texts, ALT's entity corpus), encoded once by the frozen text tower and kept for the calls that follow; scores
  as above, sorted, with SFAR's frame weights or ALT's grounded entities on request.

This file is shipped to the Hub as remote code: it imports only torch, transformers and its sibling
`label_set_texts.py` (which reads sub-text datasets and entity corpora, importing `datasets` only then).
"""

from __future__ import annotations

import collections.abc
import shlex
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers.feature_extraction_utils import BatchFeature
from transformers.pipelines import VideoClassificationPipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from .label_set_texts import entity_texts, load_subtexts

__all__ = ["ClipVideoClassificationPipeline", "ZeroShotVideoClassificationPipeline", "default_function_to_apply"]

# The output fields each request adds to the result, and what they are called in messages.
FRAME_WEIGHTS = ("coarse_frame_weights", "fine_frame_weights")
GROUNDING = ("entity_indices", "patch_to_token")
# What a model without sub-texts is told to run to generate them (docs/subtexts.md).
SUBTEXT_GENERATOR = ["python", "datasets_scripts/generate_subtexts.py"]
GENERATOR_LLM = "meta-llama/Llama-2-7b-chat-hf"


def default_function_to_apply(config: Any) -> str:
    """The scores of the objective the model was trained with: every class's sigmoid for a multi-label model, the
    softmax over the classes otherwise."""
    return "sigmoid" if getattr(config, "problem_type", None) == "multi_label_classification" else "softmax"


def _scores(logits: torch.Tensor, function_to_apply: str) -> torch.Tensor:
    """`(C,)` logits -> scores, in float32."""
    logits = logits.float()
    if function_to_apply == "softmax":
        return logits.softmax(-1)
    if function_to_apply == "sigmoid":
        return logits.sigmoid()
    return logits


class ClipVideoClassificationPipeline(VideoClassificationPipeline):
    """
    transformers' `VideoClassificationPipeline` for SFAR and ALT: `function_to_apply` defaults to the model's own
    objective (`default_function_to_apply`: sigmoid scores for a multi-label model, softmax ones otherwise) instead of
    always the softmax; given, it wins. Videos are decoded by the model's video processor (PyAV).
    """

    def _sanitize_parameters(self, top_k=None, num_frames=None, frame_sampling_rate=None, function_to_apply=None):
        preprocess, forward, postprocess = super()._sanitize_parameters(
            top_k, num_frames, frame_sampling_rate, function_to_apply
        )
        if function_to_apply is None:  # chosen by `postprocess` from the model, so that one given at init stays
            postprocess.pop("function_to_apply", None)
        return preprocess, forward, postprocess

    def postprocess(self, model_outputs, top_k: int = 5, function_to_apply: str | None = None):
        function_to_apply = function_to_apply or default_function_to_apply(self.model.config)
        return super().postprocess(model_outputs, top_k=top_k, function_to_apply=function_to_apply)

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """transformers' iterator over many videos, batching `batch_size` of them by concatenating their
        `pixel_values` (transformers' collate, `pad_collate_fn`, wants an image processor or a tokenizer, and fails on
        `pixel_values` without the padding value of an image processor)."""
        if batch_size == 1:
            return super().get_iterator(
                inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params
            )
        if isinstance(inputs, collections.abc.Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:  # an iterable is read by one worker at most, as transformers does
            dataset, num_workers = PipelineIterator(inputs, self.preprocess, preprocess_params), min(num_workers, 1)
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=_concatenate)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)


def _concatenate(items: list[BatchFeature]) -> BatchFeature:
    """Videos preprocessed one by one (each `(1, T, 3, H, W)`) -> one batch `(B, T, 3, H, W)`."""
    return BatchFeature({key: torch.cat([item[key] for item in items]) for key in items[0]})


class ZeroShotVideoClassificationPipeline(ClipVideoClassificationPipeline):
    """
    Zero-shot video classification: which of `candidate_labels` a video shows, for a model trained on other classes.

    ```python
    >>> from transformers import pipeline

    >>> classifier = pipeline("zero-shot-video-classification", model="org/sfar-vitb16-k400", trust_remote_code=True)
    >>> classifier("clip.mp4", candidate_labels=["surfing", "skateboarding"], subtexts="org/sfar-subtexts-ucf101")
    [{'score': 0.93, 'label': 'surfing'}, {'score': 0.07, 'label': 'skateboarding'}]
    ```

    The label set is encoded once by the model's frozen text tower (`build_label_set`, then `inference_label_set`)
    and kept: calls with the same labels, texts and template run only the video side. A list of videos is one call;
    `batch_size` batches them through the model. The model's stored label set is not changed.

    The family's texts (the model's `texts_argument`):

    - SFAR: `subtexts`, a dict label -> N sub-texts, or a sub-text dataset (folder or Hub id, its `subtexts`
      configuration; or a JSON file). The variants that read no sub-texts (fusion `"mean"`: the CLIP, temporal and
      ActionCLIP presets) take the labels alone; for the others, a label without sub-texts is an error that gives
      the command generating them.
    - ALT: `entities`, an entity corpus (a list of texts, or a corpus folder or Hub id); by default the model's own.
    """

    _load_tokenizer = True

    def __init__(self, *args, **kwargs):
        self._cached_label_set: tuple[tuple, Any] | None = None  # (key, label set): the last one encoded
        self._read_sources: dict[tuple[str, str], Any] = {}  # texts read from a dataset, by kind and source
        super().__init__(*args, **kwargs)
        if not hasattr(self.model.base_model, "build_label_set"):
            raise ValueError(f"{type(self.model).__name__} is not an SFAR or ALT model: it cannot encode labels")
        if self.tokenizer is None:
            raise ValueError("zero-shot classification encodes the candidate labels: pass the model's `tokenizer`")

    def __call__(self, inputs: str | list[str], candidate_labels: list[str] | None = None, **kwargs):
        """
        Classify video(s) among `candidate_labels`.

        Args:
            inputs (`str` or `list[str]`): a video file, or a list of them (one result per video).
            candidate_labels (`list[str]`): the class names (at least one; made readable as the model's own were:
                `ApplyEyeMakeup` -> "Apply Eye Makeup").
            subtexts (SFAR), entities (ALT): the family's texts, see the class docstring.
            hypothesis_template (`str`, *optional*): a prompt with a `{}` slot for the class name, in place of the
                model's own class prompt(s) (SFAR's `prompt_template` and prompt ensemble, ALT's ensemble).
            top_k (`int`, *optional*): the number of labels returned (default: all).
            function_to_apply (`str`, *optional*): "softmax", "sigmoid" or "none" (default: the model's objective,
                sigmoid for a multi-label model).
            return_frame_weights (`bool`, *optional*): SFAR: every label's coarse and fine frame weights (Eq. 7, 9),
                T numbers each summing to 1, as `coarse_frame_weights` and `fine_frame_weights`.
            return_entities (`bool`, *optional*): ALT: the entities the video's regions were aligned with and the
                share of the frames' patches each holds, largest first, as `entities` (the alignment belongs to the
                video: every label carries the same list).
            num_frames (`int`, *optional*): frames sampled per video (default: the model config's `num_frames`).

        Returns:
            A list of `{"label", "score", ...}` dictionaries, highest score first; for a list of videos, one such list
            per video.
        """
        if candidate_labels is None and "label_set" not in self._forward_params:
            raise ValueError("give `candidate_labels`: the class names to classify the video(s) among")
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self,
        candidate_labels: list[str] | None = None,
        subtexts: Any = None,
        entities: Any = None,
        hypothesis_template: str | None = None,
        return_frame_weights: bool | None = None,
        return_entities: bool | None = None,
        top_k: int | None = None,
        function_to_apply: str | None = None,
        num_frames: int | None = None,
        frame_sampling_rate: int | None = None,
    ):
        preprocess, forward, postprocess = super()._sanitize_parameters(
            top_k, num_frames, frame_sampling_rate, function_to_apply
        )
        if candidate_labels is None:
            texts = {"subtexts": subtexts, "entities": entities, "hypothesis_template": hypothesis_template}
            given = [name for name, value in texts.items() if value is not None]
            if given:
                raise ValueError(f"{', '.join(given)} come with the `candidate_labels` they describe")
        else:
            labels, texts, label_set = self._label_set(candidate_labels, subtexts, entities, hypothesis_template)
            forward["label_set"] = label_set
            postprocess["labels"] = labels
            if self.model.base_model.texts_argument == "entities":  # the texts `entity_indices` point into
                postprocess["entity_names"] = texts if texts is not None else self.model.base_model.default_texts()
        requests = {"return_frame_weights": (return_frame_weights, FRAME_WEIGHTS),
                    "return_entities": (return_entities, GROUNDING)}  # fmt: skip
        for name, (asked, fields) in requests.items():
            if asked is None:
                continue
            if asked:
                self._check_output_fields(name, fields)
            postprocess[name] = bool(asked)
            kept = [field for field in forward.get("keep", ()) if field not in fields]
            forward["keep"] = tuple(kept) + (fields if asked else ())
        return preprocess, forward, postprocess

    def _check_output_fields(self, request: str, fields: tuple[str, ...]) -> None:
        """Refuse `request` (`return_frame_weights`, ...) for a model whose output has none of `fields`."""
        output_class = getattr(self.model, "output_class", None)
        have = set(getattr(output_class, "__dataclass_fields__", {}))
        if not have.issuperset(fields):
            offers = [name for name, wanted in (("return_frame_weights", FRAME_WEIGHTS), ("return_entities", GROUNDING))
                      if have.issuperset(wanted)]  # fmt: skip
            raise ValueError(
                f"{request}: {type(self.model).__name__} returns no {' or '.join(fields)}"
                + (f" (it offers {', '.join(offers)})" if offers else "")
            )

    # -- the label set ---------------------------------------------------------------------------------------------

    def _label_set(
        self, candidate_labels: list[str], subtexts: Any, entities: Any, hypothesis_template: str | None
    ) -> tuple[list[str], Any, Any]:
        """The labels, the family's texts for them, and their encoded label set (the cached one when the same)."""
        if isinstance(candidate_labels, str) or not isinstance(candidate_labels, (list, tuple)):
            raise ValueError(f"candidate_labels must be a list of class names, got {candidate_labels!r}")
        labels = [str(label) for label in candidate_labels]
        model = self.model.base_model
        given = {"subtexts": subtexts, "entities": entities}
        other = [name for name, value in given.items() if value is not None and name != model.texts_argument]
        if other:
            raise ValueError(f"{type(model).__name__} reads {model.texts_argument}, not {other[0]}")
        read = {"subtexts": self._subtexts_for, "entities": self._entities_from}[model.texts_argument]
        texts = read(labels, given[model.texts_argument])
        key = (tuple(labels), _frozen(texts), hypothesis_template, self.model.dtype, str(self.model.device))
        if self._cached_label_set is None or self._cached_label_set[0] != key:
            with torch.no_grad(), self.device_placement():
                label_set = model.build_label_set(labels, self.tokenizer, texts, hypothesis_template)
                self._cached_label_set = (key, model.inference_label_set(label_set))
        return labels, texts, self._cached_label_set[1]

    def _read(self, kind: str, source: Any, reader) -> Any:
        """Texts read from a dataset (or file) by `reader`, once per source."""
        key = (kind, str(source))
        if key not in self._read_sources:
            self._read_sources[key] = reader(source)
        return self._read_sources[key]

    def _subtexts_for(self, labels: list[str], source: Any) -> dict[str, list[str]] | None:
        """SFAR: the sub-texts of `labels` from a dict or a sub-text dataset; None for a variant that reads none."""
        config = self.model.config
        if not config.uses_subtexts:
            return None  # mean pooling reads the labels alone
        mapping = None
        if source is not None:
            mapping = source if isinstance(source, dict) else self._read("subtexts", source, load_subtexts)
        missing = [label for label in labels if mapping is None or label not in mapping]
        if missing:
            raise ValueError(self._missing_subtexts_message(labels, missing, source))
        return {label: list(mapping[label]) for label in labels}

    def _missing_subtexts_message(self, labels: list[str], missing: list[str], source: Any) -> str:
        """Which labels lack sub-texts, and the command line that generates them."""
        config = self.model.config
        count = config.num_subtexts
        shown = ", ".join(repr(label) for label in missing[:10]) + (" ..." if len(missing) > 10 else "")
        where = "none were given" if source is None else f"not in {source if isinstance(source, str) else 'the dict'}"
        command = [*SUBTEXT_GENERATOR, "--classes", "classes.txt", "--model", GENERATOR_LLM, "--output", "subtexts/new"]
        if getattr(config, "converted_from", None):  # TPP selection scores with the model's own CLIP text tower
            command += ["--clip", config.converted_from]
        if count != 4:
            command += ["--num_subtexts", str(count)]
        if config.prompt_template != type(config)().prompt_template:
            command += ["--prompt_template", config.prompt_template]
        listing = " ".join(shlex.quote(label) for label in missing)
        return (
            f"SFAR's fusion {config.fusion!r} reads {count} sub-texts per class, and {len(missing)} of the "
            f"{len(labels)} candidate labels lack them ({where}): {shown}. Give them with `subtexts=`: a dict "
            f"label -> {count} texts, or a sub-text dataset (folder or Hub id). To generate them with an LLM "
            "(datasets_scripts/ of the SFAR-HF repository, docs/subtexts.md):\n"
            f"  printf '%s\\n' {listing} > classes.txt\n"
            f"  {shlex.join(command)}\n"
            "then pass subtexts='subtexts/new'. Models with mean pooling (the CLIP, temporal and ActionCLIP "
            "variants) take the labels alone."
        )

    def _entities_from(self, labels: list[str], source: Any) -> list[str] | None:
        """ALT: an entity corpus from a list of texts or a corpus (folder or Hub id); None: the model's own."""
        if source is None:
            return None
        if not self.model.config.use_entity_corpus:
            raise ValueError("this ALT model has no entity corpus (learnable queries): it takes no entities")
        if isinstance(source, (list, tuple)):
            return [str(text) for text in source]
        return self._read("entities", source, entity_texts)

    # -- the video side ----------------------------------------------------------------------------------------------

    def _forward(self, model_inputs, label_set: Any = None, keep: tuple[str, ...] = ()):
        if label_set is None:
            raise ValueError("give `candidate_labels`: the class names to classify the video(s) among")
        outputs = self.model(**model_inputs, label_set=label_set)
        result = {"logits": outputs.logits}  # every value (B, ...): the pipeline splits batches along the first axis
        for name in keep:
            result[name] = getattr(outputs, name)
        if keep and all(result[name] is None for name in keep):
            raise ValueError(
                f"the model computed no {' or '.join(keep)} (SFAR with mean pooling weights no frames; ALT without a "
                "corpus aligns no entities)"
            )
        return result

    def postprocess(
        self,
        model_outputs,
        labels: list[str] | None = None,
        top_k: int | None = None,
        function_to_apply: str | None = None,
        return_frame_weights: bool = False,
        return_entities: bool = False,
        entity_names: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        scores = _scores(model_outputs["logits"][0], function_to_apply or default_function_to_apply(self.model.config))
        order = sorted(range(len(labels)), key=lambda c: -float(scores[c]))[:top_k]  # ties keep the labels' order
        shared = {}
        if return_entities and model_outputs.get("entity_indices") is not None:
            shared["entities"] = grounded_entities(
                model_outputs["patch_to_token"][0], model_outputs["entity_indices"][0], entity_names
            )
        results = []
        for c in order:
            result = {"score": float(scores[c]), "label": labels[c]}
            if return_frame_weights:
                for name in FRAME_WEIGHTS:
                    if model_outputs.get(name) is not None:
                        result[name] = model_outputs[name][0, c].float().tolist()  # (T,)
            results.append({**result, **shared})
        return results


def grounded_entities(
    patch_to_token: torch.Tensor, entity_indices: torch.Tensor, entity_names: list[str]
) -> list[dict[str, Any]]:
    """
    What ALT grounded in one video: every entity some patch of its frames was aligned with (through the merged token
    that holds the patch), with the share of all the frames' patches it holds, largest share first.

    Args:
        patch_to_token: `(T, P + 1)`, the token each patch was merged into (the class token first, left out here).
        entity_indices: `(T, G)`, the entity each token was aligned with (into `entity_names`).
    """
    patches = entity_indices.long().gather(1, patch_to_token[:, 1:].long())  # (T, P): the entity of every patch
    counts = torch.bincount(patches.flatten(), minlength=len(entity_names))  # (K,)
    total = patches.numel()
    present = counts.nonzero().flatten().tolist()
    present.sort(key=lambda j: (-int(counts[j]), j))
    return [{"entity": entity_names[j], "share": int(counts[j]) / total} for j in present]


def _frozen(texts: Any) -> Any:
    """A hashable copy of a label set's texts (a dict of lists, a list, or None), for the label-set cache's key."""
    if isinstance(texts, dict):
        return tuple((label, tuple(values)) for label, values in texts.items())
    return None if texts is None else tuple(texts)
