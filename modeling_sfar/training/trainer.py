"""The Trainer of a training run: SFAR's two learning rates (the CLIP vision tower's and the new modules'), a
family's further rate (ALT's video decoder), a training-only collator, and the epoch the video transform draws from."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import TrainerCallback

from ..data.transform import VideoTransform
from ..evaluation.predict import VideoEvaluationTrainer

__all__ = ["EpochCallback", "parameter_groups", "VideoClassifierTrainer"]


class EpochCallback(TrainerCallback):
    """Tells a training `VideoTransform` the epoch that starts, so that its draws depend on it."""

    def __init__(self, transform: VideoTransform):
        self.transform = transform

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.transform.epoch = int(state.epoch or 0)


# Parameter names under the base model (`sfar.`, `alt.`): the CLIP vision tower and its projection, and what takes no
# weight decay besides biases and norms.
VISION_PREFIXES = ("vision_model.", "visual_projection.")
NO_DECAY = ("logit_scale", "logit_bias", "position_embedding")


def parameter_groups(
    model: torch.nn.Module,
    learning_rate: float,
    vision_learning_rate: float,
    weight_decay: float,
    module_learning_rates: dict[str, float] | None = None,
) -> list[dict]:
    """
    AdamW groups of docs/method.md section 7: the CLIP vision tower at `vision_learning_rate`, the new modules at
    `learning_rate`; no weight decay on biases, norms, embeddings of positions, the logit scale and bias. A family may
    give modules a rate of their own, by the prefix of their names under the base model (`module_learning_rates`,
    ALT's video decoder: `{"decoder.": rate}`). Groups come new modules first, then those modules, then the tower.
    """
    rates = {"new": learning_rate, **(module_learning_rates or {}), "vision": vision_learning_rate}
    base = getattr(getattr(model, "module", model), "base_model_prefix", "")
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        local = name.removeprefix("module.").removeprefix(f"{base}.")
        part = "vision" if local.startswith(VISION_PREFIXES) else "new"
        for prefix in module_learning_rates or {}:
            if local.startswith(prefix):
                part = prefix
        decay = param.ndim >= 2 and not any(key in local for key in NO_DECAY) and "norm" not in local
        groups.setdefault((part, decay), []).append(param)
    order = list(rates)
    return [
        {"params": params, "lr": rates[part], "weight_decay": weight_decay if decay else 0.0}
        for (part, decay), params in sorted(groups.items(), key=lambda item: (order.index(item[0][0]), item[0][1]))
    ]


class VideoClassifierTrainer(VideoEvaluationTrainer):
    """
    The Trainer of a run: the two learning rates of `parameter_groups` (vision tower vs new modules) and a family's
    module rates (`module_learning_rates`), an optional training-only collator (`train_collator`, e.g.
    [`MixingCollator`]; evaluation and prediction keep the default collator), and multi-view prediction
    ([`VideoEvaluationTrainer`]). The Trainer's own label smoother is never used: it would replace the model's loss
    (SFAR's Eq. 12-14) by a plain cross-entropy; label smoothing goes through `train_collator`'s soft targets instead.
    """

    def __init__(
        self,
        *args,
        vision_learning_rate: float = 5e-6,
        module_learning_rates: dict[str, float] | None = None,
        train_collator: Callable | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.vision_learning_rate = vision_learning_rate
        self.module_learning_rates = dict(module_learning_rates or {})
        self.train_collator = train_collator
        smoothing = self.args.label_smoothing_factor
        if smoothing and getattr(train_collator, "label_smoothing", None) != smoothing:
            raise ValueError(
                f"label_smoothing_factor {smoothing} is applied through soft targets to the model's own loss: pass "
                "MixingCollator(num_classes, label_smoothing=...) with the same value as train_collator "
                "(run_training does)"
            )
        self.label_smoother = None  # the collator's soft targets smooth the labels; the model computes the loss

    def get_train_dataloader(self):
        if self.train_collator is None:
            return super().get_train_dataloader()
        default, self.data_collator = self.data_collator, self.train_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = default

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """
        transformers 5 writes a model's weights and config on global process 0 only (the model's
        `should_save_on_this_rank`), even under `--save_on_each_node`, which asks the first process of every machine
        to save: on machines without a shared disk, no machine but the first could resume. The processes of a
        data-parallel run each hold the whole model, so under `--save_on_each_node` every saving process writes it.
        """
        model = self.model
        if not self.args.save_on_each_node or getattr(model.config, "distributed_config", None) is not None:
            return super()._save(output_dir, state_dict)
        # every process calls save_pretrained (with is_main_process=True); the first of each machine writes
        model.should_save_on_this_rank = lambda is_main_process: is_main_process and self.args.should_save
        try:
            super()._save(output_dir, state_dict)
        finally:
            del model.should_save_on_this_rank

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            groups = parameter_groups(
                self.model if model is None else model,
                self.args.learning_rate,
                self.vision_learning_rate,
                self.args.weight_decay,
                module_learning_rates=self.module_learning_rates,
            )
            self.optimizer = torch.optim.AdamW(
                groups, betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon
            )
        return self.optimizer
