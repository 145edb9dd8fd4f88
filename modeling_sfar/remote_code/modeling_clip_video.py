# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""What both video classifiers of this package (SFAR, ALT) build on: CLIP's towers with a frozen text encoder, the
label set as a value or as a cache saved with the weights, saving with the shipped files, the checks of training
targets, averaging over test views, and the gather of a loss over the global batch.

Shape letters, one table for every file of the package:

    B  videos of a batch                       V  views of a video (temporal clips x spatial crops)
    T  frames of a video (SFAR's paper: L)     F  frames folded into the batch (B * T images)
    C  classes of a label set                  N  sub-texts of a class (SFAR)
    K  entities of a corpus (ALT)              R  prompt templates of an ensemble
    L  token positions of a text               W  word positions of a class prompt
    S  word positions of a sub-text            P  patches of a frame (P + 1 tokens with the class token)
    G  tokens of a frame in the vision tower (the class token first; P + 1 before merging, fewer after)
    D  joint text-video width (CLIP's projection)
    E  a tower's hidden width                  h, hd  attention heads and the width of one head
    q, k  queries and keys of one attention (local to it)

This file is shipped to the Hub as remote code: it imports only torch, transformers and its sibling configuration.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, create_bidirectional_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.clip.modeling_clip import CLIPTextModel, CLIPVisionModel, eager_attention_forward
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple

from .configuration_clip_video import ClipVideoConfig, clean_clip_text

__all__ = [
    "SHARED_SHIPPED_FILES",
    "SHIPPED_PIPELINES",
    "ClipVideoAttention",
    "family_auto_map",
    "ClipVideoClassifierMixin",
    "ClipVideoLabelSet",
    "ClipVideoLabelSetCache",
    "ClipVideoPreTrainedModel",
    "ClipVideoModel",
    "average_over_views",
    "check_class_indices",
    "check_soft_targets",
    "gather_with_grad",
]


# The remote-code files every family's saved folder ships (this base, the processors, the decoder, token merging,
# the pipelines and the reader of their texts); a family adds its own configuration and model files.
SHARED_SHIPPED_FILES = (
    "configuration_clip_video.py",
    "modeling_clip_video.py",
    "token_merging.py",
    "processing_sfar.py",
    "video_processing_sfar.py",
    "video_decoding.py",
    "pipeline_clip_video.py",
    "label_set_texts.py",
)
# The pipelines every saved folder registers (`config.custom_pipelines`, read by transformers' `pipeline()` with
# `trust_remote_code=True`): the video classification of the model's own labels, scored as the model was trained,
# and zero-shot classification among any labels.
SHIPPED_PIPELINES = {
    task: {"impl": f"pipeline_clip_video.{name}", "pt": ["AutoModelForVideoClassification"], "type": "video"}
    for task, name in (
        ("video-classification", "ClipVideoClassificationPipeline"),
        ("zero-shot-video-classification", "ZeroShotVideoClassificationPipeline"),
    )
}


def family_auto_map(family: str, prefix: str) -> dict[str, str]:
    """Every auto class a saved folder of a family answers to: its configuration and models (in
    `configuration_{family}.py` and `modeling_{family}.py`, classes `{prefix}Config`, `{prefix}Model`,
    `{prefix}ForVideoClassification`) and the shared processors."""
    return {
        "AutoConfig": f"configuration_{family}.{prefix}Config",
        "AutoModel": f"modeling_{family}.{prefix}Model",
        "AutoModelForVideoClassification": f"modeling_{family}.{prefix}ForVideoClassification",
        "AutoProcessor": "processing_sfar.SfarProcessor",
        "AutoVideoProcessor": "video_processing_sfar.SfarVideoProcessor",
    }


@dataclass
class ClipVideoLabelSet(ModelOutput):
    """
    A label set encoded by the frozen text tower. A family's label set ([`SfarLabelSet`], [`AltLabelSet`]) adds what
    its video side reads.

    Args:
        text_embeds (`torch.FloatTensor` of shape `(C, D)`):
            The normalised class embeddings (the normalised mean over a prompt ensemble when there is one).
    """

    text_embeds: torch.FloatTensor | None = None

    @property
    def num_classes(self) -> int:
        return self.text_embeds.shape[0]


class ClipVideoAttention(nn.Module):
    """
    Multi-head attention in the joint space (width D, D/64 heads), optionally with a key padding mask: SFAR's
    cross-attention of Eq. 4-6 (the words of a class prompt attend to the words of its sub-texts) and ALT's decoder
    attentions (queries attend to queries, and to frames).

    Dispatched like CLIP's attention: `config._attn_implementation` picks the function from transformers'
    `ALL_ATTENTION_FUNCTIONS` ("sdpa", "eager", "sfar_sdpa", ...), and the mask is built in the form that
    function expects. Width D (`config.projection_dim`), D/64 heads.
    """

    def __init__(self, config: ClipVideoConfig):
        super().__init__()
        self.config = config
        self.embed_dim = config.projection_dim
        self.num_heads = config.joint_num_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.scale = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        """query (..., q, D), key_value (..., k, D), key_padding_mask (..., k), True for real keys -> (..., q, D)."""
        *batch, num_queries, width = query.shape
        num_keys = key_value.shape[-2]
        query, key_value = query.reshape(-1, num_queries, width), key_value.reshape(-1, num_keys, width)  # (b, ., D)
        queries = self.q_proj(query).view(len(query), num_queries, -1, self.head_dim).transpose(1, 2)  # (b, h, q, hd)
        keys = self.k_proj(key_value).view(len(query), num_keys, -1, self.head_dim).transpose(1, 2)  # (b, h, k, hd)
        values = self.v_proj(key_value).view(len(query), num_keys, -1, self.head_dim).transpose(1, 2)

        implementation = self.config._attn_implementation
        mask = None
        if key_padding_mask is not None:
            if implementation not in ALL_MASK_ATTENTION_FUNCTIONS:
                raise ValueError(
                    f"attn_implementation {implementation!r} has no mask function registered with transformers' "
                    "AttentionMaskInterface; the cross-attention of the coarse branch needs its key padding mask"
                )
            # (b, 1, q, k) in the form of the implementation (boolean for SDPA, additive for eager), or None when no
            # key is padding
            mask = create_bidirectional_mask(
                config=self.config,
                inputs_embeds=query,
                attention_mask=key_padding_mask.reshape(-1, num_keys),
                encoder_hidden_states=key_value,
            )
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        out, _ = attention_interface(
            self, queries, keys, values, mask, scaling=self.scale, dropout=0.0, **kwargs
        )  # (b, q, h, hd)
        return self.out_proj(out.reshape(*batch, num_queries, width))



class ClipVideoLabelSetCache(nn.Module):
    """
    The stored label set of a model: buffers saved with the weights (`has_text_features` says whether one is stored);
    calling the module returns them as the family's label set.

    A module of its own, so that big-model loading places it like any module: `device_map` gives it a device, and an
    offloaded module's tensors are loaded when the module is called (accelerate's hooks), which reading another
    module's buffers would bypass. A family names its label-set class and the buffers that are fields of it.
    """

    label_set_class: type[ClipVideoLabelSet] = ClipVideoLabelSet
    # How to give a label set instead, for the error raised when none is stored.
    how_to_give = "pass one to the forward or store one with `set_label_set`"

    def field_names(self) -> list[str]:
        """The buffers read into the label set (every field of `label_set_class`)."""
        return [field.name for field in fields(self.label_set_class)]

    def saved_buffer_names(self) -> list[str]:
        """The label-set buffers that are saved with the weights (the persistent ones that hold a tensor)."""
        return [
            name
            for name, buffer in self._buffers.items()
            if buffer is not None and name not in self._non_persistent_buffers_set
        ]

    def align_buffers(self, alignment: int = 64) -> None:
        """
        Copy every CPU buffer that does not start at a multiple of `alignment` bytes (a tensor read in place from
        a memory-mapped safetensors file starts wherever the file puts it) to memory of its own, which torch aligns.

        CPU matrix kernels round differently on differently aligned inputs, so constants read in place would give
        logits that differ in the last bits from those of the same constants computed in memory.
        """
        for name, buffer in self._buffers.items():
            if buffer is not None and buffer.device.type == "cpu" and buffer.data_ptr() % alignment:
                self._buffers[name] = buffer.clone()

    def forward(self) -> ClipVideoLabelSet:
        """
        Raises:
            ValueError: no label set is stored (a model built from a configuration, or a checkpoint without one) or
                its tensors were never loaded (the meta device).
        """
        if self.text_embeds.is_meta:
            raise ValueError(
                "the stored label set was not loaded (its tensors are on the meta device): load the model with "
                f"`from_pretrained`, or {self.how_to_give}"
            )
        if not torch.compiler.is_compiling() and not bool(self.has_text_features):
            # checked in eager runs; a data-dependent branch would break a compiled graph
            raise ValueError(f"the model has no label set: {self.how_to_give}")
        return self.label_set_class(**{name: self._buffers.get(name) for name in self.field_names()})


class ClipVideoPreTrainedModel(PreTrainedModel):
    """
    The shared `PreTrainedModel` behaviour of the families: safetensors-only saving with every auto class in
    `config.json` and the remote-code files beside it, CLIP's towers initialised as transformers initialises them,
    and the stored label set emptied where a checkpoint lacks it.
    """

    config_class = ClipVideoConfig
    config: ClipVideoConfig
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    # The forward takes no loss kwargs: the Trainer must not rescale the loss by the number of items.
    accepts_loss_kwargs = False
    # Every auto class a saved folder answers to (`register_for_auto_class` keeps one class per model class, so the
    # whole map is written at saving), and the remote-code files a saved folder ships.
    shipped_auto_map: dict[str, str] = {}
    shipped_files: tuple[str, ...] = ()

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """Save weights (safetensors), `config.json` with the full `auto_map` and the shipped pipelines
        (`custom_pipelines`), and the remote-code files."""
        if kwargs.pop("safe_serialization", True) is False:
            raise ValueError(f"{type(self).__name__} saves safetensors weights only")
        self.config.auto_map = dict(self.shipped_auto_map)
        self.config.custom_pipelines = {task: dict(info) for task, info in SHIPPED_PIPELINES.items()}
        self._prepare_to_save()
        super().save_pretrained(save_directory, *args, **kwargs)
        here = os.path.dirname(os.path.abspath(__file__))
        for name in self.shipped_files:
            source = os.path.join(here, name)
            if os.path.isfile(source):
                shutil.copyfile(source, os.path.join(save_directory, name))

    def _prepare_to_save(self) -> None:
        """Bring what is saved up to date before the config and weights are written (a family's hook)."""

    def get_input_embeddings(self) -> nn.Module:
        """The vision tower's patch embedding: the layer that turns frames into tokens (as VideoMAE returns its)."""
        return self.base_model.vision_model.get_input_embeddings()

    def initialize_weights(self) -> None:
        """
        transformers' `initialize_weights` (children before parents, a sub-model by its own `_init_weights`), except
        that modules of transformers' own classes (CLIP's towers and the CLIP layers the families reuse) are
        initialised as transformers' code: the shortcut for custom code, which skips a module whose own tensors are
        all initialised, would skip CLIP's attention and MLP modules (they own no tensor themselves, so the test is
        vacuous) and leave their projections at the library's default instead of CLIP's width-scaled values when the
        weights are missing from a checkpoint.
        """
        custom = self.is_custom_code()

        def apply(module: nn.Module, initialize: Callable) -> None:
            for child in module.children():
                apply(child, child._initialize_weights if isinstance(child, PreTrainedModel) else initialize)
            initialize(module, custom and not type(module).__module__.startswith("transformers."))

        apply(self, self._initialize_weights)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """
        The library's initialisation first (normal(0, `initializer_range`) linear and embedding weights, zero biases,
        unit norms), then what both families share: CLIP's projection and logit-scale values, and an empty label-set
        cache where its tensors were not loaded. transformers calls this module by module, skipping a module whose own
        tensors were all loaded, so each rule is keyed on the module that owns the tensor.
        """
        super()._init_weights(module)
        if isinstance(module, ClipVideoModel):
            init.normal_(module.text_projection.weight, std=module.config.text_config.hidden_size**-0.5)
            init.normal_(module.visual_projection.weight, std=module.config.vision_config.hidden_size**-0.5)
            init.constant_(module.logit_scale, module.config.logit_scale_init_value)
            if getattr(module, "logit_bias", None) is not None:
                init.constant_(module.logit_bias, -10.0)
        if isinstance(module, ClipVideoLabelSetCache):
            # A label-set tensor that was not loaded (a new model, or a checkpoint without it) empties the whole
            # cache: the forward then refuses to classify without a label set, instead of reading zeros.
            missing = [
                name
                for name in module.saved_buffer_names()
                if not getattr(getattr(module, name), "_is_hf_initialized", False)
            ]
            for name in missing:
                init.zeros_(getattr(module, name))
            if missing:
                module.has_text_features.zero_()


class ClipVideoModel(ClipVideoPreTrainedModel):
    """
    CLIP's two towers and projections, the frozen text encoder, and the label set: given to the forward (token ids,
    or encoded as the family's label set, `label_set`) or stored (`set_label_set`, saved with the weights).

    A family's model derives from its own `PreTrainedModel` first (its `config_class` must win), then this class;
    it builds the towers with
    `_build_clip_towers`, then its own modules, then its `label_set_cache` last (the order of the checkpoint's keys
    and of the random initialisation), and implements `check_label_set`, `tokenize_label_set`, `encode_label_set`,
    `store_label_set` and `_check_label_set_fields` (and may implement `default_texts` and `inference_label_set`).
    `build_label_set` turns labels and texts into a label set through them, for every family alike.
    """

    label_set_class: type[ClipVideoLabelSet] = ClipVideoLabelSet
    # The family's token inputs of a label set besides the class prompts' (`input_ids`, `attention_mask`): keyword
    # arguments of `forward`, passed to `encode_label_set` (SFAR's sub-texts and prompt ensemble, ALT's entities).
    label_set_inputs: tuple[str, ...] = ()
    # The name of the family's texts of a label set (the argument of `set_label_set` after the tokenizer, and of the
    # zero-shot pipeline): SFAR's "subtexts", ALT's "entities".
    texts_argument: str = "texts"

    def _build_clip_towers(self, config: ClipVideoConfig) -> None:
        """CLIP's text and vision towers, their projections into the joint space and the logit scale."""
        width = config.projection_dim
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.text_projection = nn.Linear(config.text_config.hidden_size, width, bias=False)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, width, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))

    def _freeze_text_encoder(self) -> None:
        """The text tower and its projection are frozen: a label set is encoded once, never trained through."""
        self.text_model.requires_grad_(False)
        self.text_projection.requires_grad_(False)

    # -- the text side -----------------------------------------------------------------------------------------------

    def encode_texts(
        self, input_ids: torch.Tensor, batch_size: int = 256, words: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        The frozen text tower on (n, L) right-padded token ids: the projected end tokens (n, D) and, with `words`,
        every position projected (n, L, D).

        No padding mask is passed: the tower is causal, so no real token attends to the padding after it (CLIP's own
        training setting).
        """
        device = self.text_projection.weight.device
        embeds, all_words = [], []
        with torch.no_grad():
            for start in range(0, len(input_ids), batch_size):
                out = self.text_model(input_ids=input_ids[start : start + batch_size].to(device))
                embeds.append(self.text_projection(out.pooler_output))  # (b, D)
                if words:
                    all_words.append(self.text_projection(out.last_hidden_state))  # (b, L, D)
        return torch.cat(embeds), torch.cat(all_words) if words else None

    def _tokenize(
        self, tokenizer: Any, texts: list[str], padding: str = "longest"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask (n, L) of `texts`, cleaned as CLIP cleans text (`clean_clip_text`) and
        truncated to the text tower's context."""
        context = self.config.text_config.max_position_embeddings
        texts = [clean_clip_text(text) for text in texts]
        tokens = tokenizer(texts, padding=padding, truncation=True, max_length=context, return_tensors="pt")
        return tokens["input_ids"], tokens["attention_mask"]

    # -- the label set -----------------------------------------------------------------------------------------------

    def check_labels(self, labels: list[str]) -> list[str]:
        """The labels as strings, in order. Raises `ValueError` for an empty label set or duplicate labels."""
        labels = [str(label) for label in labels]
        if not labels:
            raise ValueError("the label set is empty")
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate labels: {sorted({label for label in labels if labels.count(label) > 1})}")
        return labels

    def default_texts(self) -> Any:
        """The family's texts that a new label set takes when none are given: None (SFAR's sub-texts belong to their
        classes); ALT reuses its stored entity corpus, as its paper reuses its corpus for new classes."""
        return None

    @torch.no_grad()
    def build_label_set(
        self,
        labels: list[str],
        tokenizer: Any,
        texts: Any = None,
        prompt_template: str | None = None,
        batch_size: int = 256,
    ) -> ClipVideoLabelSet:
        """
        A label set as a value: `labels` with the family's texts, checked, tokenized and encoded once by the frozen
        text tower. `set_label_set` stores it; `forward(label_set=...)` and the zero-shot pipeline take it, leaving
        the stored label set as it is.

        Args:
            labels: class names, in class-index order.
            tokenizer: the CLIP tokenizer of the text tower.
            texts: the family's texts (`texts_argument`: SFAR's sub-texts, label -> N texts; ALT's entity corpus, a
                list of texts); None: `default_texts()`.
            prompt_template: one template with a `{}` slot for the class name, in place of the configured class
                prompt (SFAR's `prompt_template` and prompt ensemble, ALT's ensemble); None: the configured ones.
            batch_size: texts per text-tower call.

        Raises:
            ValueError: a template without exactly one `{}`, or a label set the family refuses (`check_label_set`:
                empty, duplicate labels, texts missing or malformed, named).
        """
        if prompt_template is not None and (not isinstance(prompt_template, str) or prompt_template.count("{}") != 1):
            raise ValueError(f"the prompt template {prompt_template!r} must contain exactly one '{{}}'")
        texts = self.default_texts() if texts is None else texts
        tokens = self.tokenize_label_set(labels, tokenizer, texts, prompt_template)
        return self.encode_label_set(**tokens, batch_size=batch_size)

    def inference_label_set(self, label_set: ClipVideoLabelSet) -> ClipVideoLabelSet:
        """`label_set` in the form a forward without gradients reads fastest (a family's hook: SFAR computes the
        constants its frame weights read from the label set once); here, the label set as it is."""
        return label_set

    def _set_label_set(self, labels: list[str], tokenizer: Any, texts: Any, batch_size: int) -> None:
        """Build a label set (`build_label_set`; `texts`: the family's, e.g. sub-texts) and store it."""
        labels, texts = self.check_label_set(labels, self.default_texts() if texts is None else texts)
        self.store_label_set(self.build_label_set(labels, tokenizer, texts, batch_size=batch_size), labels, texts)

    def _labels_for(self, labels: list[str] | None, num_classes: int) -> list[str]:
        """The class names of a label set of `num_classes` classes about to be stored: `labels`, or when None the
        config's names if they fit, else `LABEL_i`. Raises `ValueError` for a count that does not fit."""
        if labels is None:
            labels = list((self.config.id2label or {}).values())
            labels = labels if len(labels) == num_classes else [f"LABEL_{i}" for i in range(num_classes)]
        if len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for a label set of {num_classes} classes")
        return list(labels)

    def _write_labels(self, labels: list[str]) -> None:
        """The class names of the stored label set, in class-index order, as `config.id2label` and `label2id`."""
        self.config.id2label = dict(enumerate(labels))
        self.config.label2id = {label: i for i, label in enumerate(labels)}

    def stored_label_set(self) -> ClipVideoLabelSet:
        """The stored label set (views of the buffers of `label_set_cache`); see [`ClipVideoLabelSetCache.forward`]."""
        return self.label_set_cache()

    def _resolve_label_set(
        self, label_set: ClipVideoLabelSet | dict | None, input_ids: torch.Tensor | None, **token_inputs
    ) -> ClipVideoLabelSet | None:
        """The label set a forward is given, encoded (from token ids) and checked; None for the stored one."""
        if label_set is not None and input_ids is not None:
            raise ValueError("give the label set once: either `label_set` or `input_ids`, not both")
        if input_ids is not None:
            label_set = self.encode_label_set(input_ids, **token_inputs)
        elif any(value is not None for name, value in token_inputs.items() if name.endswith("input_ids")):
            names = " and ".join(f"`{name}`" for name in self.label_set_inputs if name.endswith("input_ids"))
            raise ValueError(f"{names} come with the class prompts' `input_ids`")
        if label_set is None:
            return None
        if isinstance(label_set, dict) and not isinstance(label_set, self.label_set_class):
            label_set = self.label_set_class(**label_set)
        self._check_label_set_fields(label_set)
        return label_set

    # -- the video side ----------------------------------------------------------------------------------------------

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        label_set: ClipVideoLabelSet | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, T, 3, H, W)`):
                Normalised frames. Several views of a video (multi-view testing) are folded into the batch and their
                logits averaged with `average_over_views`.
            input_ids, attention_mask (`torch.LongTensor`, *optional*):
                The label set's class prompts (see the family's `tokenize_label_set`), encoded by the frozen text
                tower for this call, with the family's further token inputs (`label_set_inputs`) as keyword
                arguments.
            label_set (the family's label set, *optional*):
                An encoded label set (the family's `encode_label_set`), instead of token ids. The Trainer is told that
                only `labels` holds labels (`label_names=["labels"]`), as it would otherwise take every forward
                argument whose name contains "label" for one.

            Without a label set the stored one is used (see the family's `set_label_set`). `output_hidden_states` and
            `output_attentions` return the vision tower's (and SFAR's temporal module's).
        """
        token_inputs = {name: kwargs.pop(name) for name in self.label_set_inputs if name in kwargs}
        output_hidden_states, output_attentions = self._check_forward_kwargs(kwargs)
        label_set = self._resolve_label_set(label_set, input_ids, attention_mask=attention_mask, **token_inputs)
        if label_set is None:
            self.stored_label_set()  # fail before the vision tower runs when none is stored
        self._check_pixel_values(pixel_values)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("output_hidden_states", "output_attentions")}
        return self._forward_video(pixel_values, label_set, output_hidden_states, output_attentions, **kwargs)

    def _check_forward_kwargs(self, kwargs: dict) -> tuple[Any, Any]:
        """Refuse unknown keyword arguments; return `output_hidden_states` and `output_attentions` (the config's
        when not given)."""
        unknown = sorted(set(kwargs) - set(TransformersKwargs.__annotations__))
        if unknown:
            raise TypeError(f"{type(self).__name__}.forward() got unexpected keyword arguments {unknown}")
        hidden = kwargs.get("output_hidden_states")
        attentions = kwargs.get("output_attentions")
        hidden = self.config.output_hidden_states if hidden is None else hidden
        attentions = self.config.output_attentions if attentions is None else attentions
        return hidden, attentions

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if pixel_values.ndim != 5:
            hint = " (several views of a video: see `average_over_views`)" if pixel_values.ndim == 6 else ""
            raise ValueError(f"pixel_values must be (B, T, 3, H, W), got {tuple(pixel_values.shape)}{hint}")

    def _logits(self, similarity: torch.Tensor) -> torch.Tensor:
        """(B, C) cosine similarities -> logits: `logit_scale.exp()` times them, plus `logit_bias` when there is one."""
        logits = self.logit_scale.exp() * similarity
        bias = getattr(self, "logit_bias", None)  # a multi-label model's (SFAR); softmax objectives have none
        return logits if bias is None else logits + bias


class ClipVideoClassifierMixin:
    """
    A family's `...ForVideoClassification`: its base model (`base_model_class`, under `base_model_prefix`) with the
    family's training loss (`loss`), for `AutoModelForVideoClassification` and the `video-classification` pipeline.
    Listed first among the family class's bases, so that its `forward` is the one called; the family's
    `PreTrainedModel` gives the configuration class.
    """

    base_model_class: type
    output_class: type[ModelOutput]

    def __init__(self, config: ClipVideoConfig):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_model_class(config))
        self.post_init()

    def set_label_set(self, labels: list[str], tokenizer: Any, texts: Any = None, batch_size: int = 256) -> None:
        """Store a new label set in the base model: see its `set_label_set` (SFAR's sub-texts, ALT's entities)."""
        self.base_model.set_label_set(labels, tokenizer, texts, batch_size)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        label_set: ClipVideoLabelSet | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, T, 3, H, W)`):
                Normalised frames; see the base model's `forward`.
            labels (`torch.LongTensor` of shape `(B,)`, or `torch.FloatTensor` of shape `(B, C)`, *optional*):
                Ground-truth classes (or soft targets, or a multi-label model's targets); see the family's loss.
            input_ids, attention_mask (`torch.LongTensor`, *optional*), label_set (*optional*):
                The label set, given: the class prompts' token ids or an encoded label set. The family's further
                token ids (SFAR's `subtext_input_ids`, `ensemble_input_ids`; ALT's `entity_input_ids`) and their
                masks are keyword arguments of the base model's `forward`, passed on. Without a label set the stored
                one is used.

        Returns:
            The family's classifier output: the loss (given `labels`), then the fields of the base model's output.
        """
        output = self.base_model(
            pixel_values, input_ids=input_ids, attention_mask=attention_mask, label_set=label_set, return_dict=True,
            **kwargs,
        )  # fmt: skip
        loss = None if labels is None else self.loss(output.logits, labels)
        return self.output_class(loss=loss, **output)


# ----------------------------------------------------------------------------------------------------------------
# Targets, views and the global batch (pure functions)
# ----------------------------------------------------------------------------------------------------------------


def check_soft_targets(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Soft targets (Mixup, CutMix, label smoothing) are `(B, C)` distributions over the classes, or `ValueError`."""
    if labels.shape != logits.shape:
        raise ValueError(f"soft targets must have the logits' shape {tuple(logits.shape)}, got {tuple(labels.shape)}")
    if (labels < 0).any() or not torch.allclose(labels.sum(-1), labels.new_ones(()), atol=1e-3):
        raise ValueError("soft targets must be distributions over the classes (>= 0, each row summing to 1)")


def check_class_indices(labels: torch.Tensor, num_classes: int, what: str = "single-label training") -> None:
    """Class indices are `(B,)` integers in [0, C), or `ValueError` naming what was given."""
    if labels.ndim != 1:
        raise ValueError(
            f"{what} needs labels of shape (B,) (class indices) or (B, C) (soft targets), got {tuple(labels.shape)}"
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got values {labels.unique().tolist()}")


def average_over_views(logits: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """
    Multi-view testing: `(B, V, C)` logits of V views of each video -> `(B, C)` logits of the average of what the
    model's loss treats as probabilities: the softmax over classes (single-label; the result is the log of the mean
    probabilities, so a softmax of it gives them back), or every class's sigmoid (multi-label; the result is the
    logit of the mean probabilities, so a sigmoid gives them back). Computed in float32.
    """
    if logits.ndim != 3:
        raise ValueError(f"expected logits (B, V, C) of V views per video, got {tuple(logits.shape)}")
    logits = logits.float()
    if multi_label:
        probs = logits.sigmoid().mean(1)  # (B, C)
        tiny = torch.finfo(probs.dtype).tiny
        return probs.clamp_min(tiny).log() - (1 - probs).clamp_min(tiny).log()
    probs = logits.softmax(-1).mean(1)  # (B, C)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sends every process the summed gradient of its own slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.batch_size = tensor.shape[0]
        return gather(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process computed the global loss: sum their gradients
        start = dist.get_rank() * ctx.batch_size
        return grad[start : start + ctx.batch_size]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor over all processes along dim 0, keeping the autograd graph to every copy."""
    return _GatherWithGrad.apply(tensor)


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor over all processes along dim 0 (no gradient)."""
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def is_distributed_training(module: nn.Module) -> bool:
    """Whether `module` trains in a data-parallel run of more than one process (its loss then spans all of them)."""
    return (
        module.training
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )

