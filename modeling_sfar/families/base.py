"""What the library needs to know of a model family, in one small record each (`SfarFamily`, `AltFamily`): its classes,
how it is built (from CLIP or a checkpoint), where its label set's texts come from, its card, its command-line
arguments and recipe, and its picture. Training, evaluation, the Hub code and the demo look a family up by
`config.model_type` or by `--model_type` and call these; none of them asks which family it holds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..remote_code.processing_sfar import SfarProcessor

__all__ = ["ModelFamily"]


class ModelFamily:
    """
    A model family. A subclass sets the class attributes and implements the methods that raise
    `NotImplementedError`; an instance is a singleton registered in `modeling_sfar.families.FAMILIES`.
    """

    # `--model_type` on the command line, the configuration's `model_type`, and the name in messages and cards
    name: ClassVar[str]
    model_type: ClassVar[str]
    title: ClassVar[str]
    config_class: ClassVar[type]
    model_class: ClassVar[type]  # the `...ForVideoClassification` class
    # The family's own command-line flags of a training run (a dataclass for `HfArgumentParser`), those of an
    # evaluation (zero-shot texts), and the training defaults the family's paper sets (its recipe).
    arguments: ClassVar[type]
    evaluation_arguments: ClassVar[type]
    recipe: ClassVar[dict[str, Any]] = {}
    # The model card template (a name in `hub_cards`), and the card tag
    card_template: ClassVar[str]
    # The attention implementation that runs bfloat16 inference fastest on a CPU (None: transformers' default)
    bfloat16_attention: ClassVar[str | None] = None
    # What the label set's texts are called in messages ("sub-texts", "entities")
    texts_name: ClassVar[str]

    # -- a training run ------------------------------------------------------------------------------------------

    def check_arguments(self, args: Any, model_args: Any) -> None:
        """Refuse a combination of the family's flags that cannot run, naming the flags (before anything loads)."""

    def check_dataset(self, multi_label: bool, dataset: str) -> None:
        """Refuse a dataset the family cannot train on (e.g. multi-label data for a softmax-only model), named."""

    def training_texts(self, args: Any, model_args: Any, labels: list[str], what: str) -> Any:
        """The texts of the training label set (`labels`, the classes of `what`) from the family's flags."""
        raise NotImplementedError

    def build(
        self, model_args: Any, args: Any, labels: list[str], texts: Any, multi_label: bool
    ) -> tuple[torch.nn.Module, SfarProcessor]:
        """The model to train and its processor: converted from CLIP (`model_args.base`) or loaded from a checkpoint
        of the family (`model_args.model`), with the label set (`labels`, `texts`) stored."""
        raise NotImplementedError

    def module_learning_rates(self, args: Any, training_args: Any, few_shot: int) -> dict[str, float]:
        """Learning rates of modules of the family's own, by the prefix of their names under the base model."""
        return {}

    def describe(self, model: torch.nn.Module, args: Any) -> str:
        """A few words for the run's log: what is trained."""
        return self.title

    def card_datasets(self, args: Any) -> list[str]:
        """Hub datasets besides the video dataset that the model card lists (its label set's texts)."""
        return []

    # -- any model of the family -------------------------------------------------------------------------------

    def load(self, source: str, revision: str | None = None, **kwargs) -> tuple[torch.nn.Module, SfarProcessor]:
        """A saved model of the family (folder or Hub id, safetensors weights only) and its processor."""
        model = self.model_class.from_pretrained(source, revision=revision, use_safetensors=True, **kwargs)
        return model, SfarProcessor.from_pretrained(source, revision=revision)

    def zero_shot_texts(
        self, model: torch.nn.Module, labels: list[str], source: str | None, what: str, flag: str
    ) -> Any:
        """The texts of a new label set (`labels`, the classes of `what`) for a trained model, read from `source`
        (the value of the family's flag `flag`); None: the model's default (its `default_texts`)."""
        raise NotImplementedError

    def card_fields(self, config: dict[str, Any]) -> dict[str, Any]:
        """The family's fields of its model card template, from a saved `config.json`."""
        return {}

    def picture(self, model: torch.nn.Module, output: Any, frames: torch.Tensor, label: str, top: int) -> Any:
        """What the model looked at in one video (`output` of its forward on it, `frames` (T, 3, H, W) in [0, 1],
        class `top` named `label`), as a PIL image, and a list of (name, share) pairs to print (may be empty)."""
        raise NotImplementedError
