"""ALT's training augmentation after X-CLIP: Mixup, CutMix and label smoothing as soft targets (`MixingCollator`),
the losses on soft targets (ALT's Eq. 10, SFAR's Eq. 12-14), ALT's recipe and its few-shot decoder learning rate,
each against a direct reference written here; and one ALT training step through the Trainer with them on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import TrainingArguments

from modeling_sfar import AltForVideoClassification, convert_clip_to_alt
from modeling_sfar.families.alt import ALT, ALT_FEW_SHOT_DECODER_SCALE, ALT_RECIPE
from modeling_sfar.remote_code.modeling_alt import alt_loss
from modeling_sfar.remote_code.modeling_sfar import sfar_loss
from modeling_sfar.training.arguments import parse_training_args
from modeling_sfar.training.augmentation import MixingCollator, draw_mix, mix_batch, smooth_targets
from modeling_sfar.training.run import training_collator
from modeling_sfar.training.trainer import VideoClassifierTrainer, parameter_groups
from tests.conftest import LABELS


def test_label_smoothing_against_a_loop():
    labels = torch.tensor([2, 0, 4, 2])
    got = smooth_targets(labels, 5, 0.1)
    for b in range(4):
        for c in range(5):
            expected = (0.9 + 0.1 / 5) if c == labels[b] else 0.1 / 5
            assert math.isclose(got[b, c].item(), expected, rel_tol=1e-6), (b, c)
    torch.testing.assert_close(got.sum(-1), torch.ones(4))
    assert torch.equal(smooth_targets(labels, 5), F.one_hot(labels, 5).float())
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        smooth_targets(labels, 5, 1.0)


def test_cross_entropy_on_smoothed_targets_is_x_clips_label_smoothing_loss():
    """X-CLIP without Mixup uses timm's LabelSmoothingCrossEntropy: (1 - s) NLL + s * mean over classes of -log p."""
    torch.manual_seed(0)
    logits, labels, s = torch.randn(6, 7), torch.tensor([0, 3, 6, 1, 1, 2]), 0.1
    log_p = logits.log_softmax(-1)
    expected = ((1 - s) * -log_p[torch.arange(6), labels] + s * -log_p.mean(-1)).mean()
    torch.testing.assert_close(alt_loss(logits, smooth_targets(labels, 7, s)), expected)


def reference_draw(seed: int, batch: int, height: int, width: int, mixup: float, cutmix: float, switch: float):
    """The draws in the documented order, from a fresh generator: (kind, lam, permutation, box or None)."""
    rng = np.random.default_rng(seed)
    cut = rng.random() < switch
    lam = rng.beta(cutmix if cut else mixup, cutmix if cut else mixup)
    permutation = rng.permutation(batch)
    if not cut:
        return "mixup", lam, permutation, None
    side_h, side_w = int(height * math.sqrt(1 - lam)), int(width * math.sqrt(1 - lam))
    cy, cx = rng.integers(height), rng.integers(width)
    box = (
        max(cy - side_h // 2, 0),
        min(cy + side_h // 2, height),
        max(cx - side_w // 2, 0),
        min(cx + side_w // 2, width),
    )
    lam = 1 - (box[1] - box[0]) * (box[3] - box[2]) / (height * width)
    return "cutmix", lam, permutation, box


@pytest.mark.parametrize("seed", range(6))
def test_mixup_and_cutmix_of_a_batch_against_a_direct_reference(seed):
    batch, frames, height, width, classes = 5, 3, 12, 10, 4
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, frames, 3, height, width, generator=gen)
    targets = smooth_targets(torch.randint(0, classes, (batch,), generator=gen), classes, 0.1)
    draw = draw_mix(batch, height, width, 0.8, 1.0, 0.5, np.random.default_rng(seed))
    kind, lam, permutation, box = reference_draw(seed, batch, height, width, 0.8, 1.0, 0.5)
    assert (draw.kind, draw.box) == (kind, box) and draw.permutation.tolist() == permutation.tolist()
    assert math.isclose(draw.lam, lam, rel_tol=1e-12)
    before = pixels.clone()
    mixed, mixed_targets = mix_batch(pixels, targets, draw)
    assert torch.equal(pixels, before)  # the inputs are left as they were
    for b in range(batch):
        partner = permutation[b]
        torch.testing.assert_close(mixed_targets[b], lam * targets[b] + (1 - lam) * targets[partner])
        for t in range(frames):
            for y in range(height):
                for x in range(width):
                    if kind == "mixup":
                        expected = lam * pixels[b, t, :, y, x] + (1 - lam) * pixels[partner, t, :, y, x]
                    else:
                        inside = box[0] <= y < box[1] and box[2] <= x < box[3]
                        expected = pixels[partner if inside else b, t, :, y, x]
                    torch.testing.assert_close(mixed[b, t, :, y, x], expected)
    torch.testing.assert_close(mixed_targets.sum(-1), torch.ones(batch))


def test_both_kinds_are_drawn_and_one_alone_is_always_that_one():
    kinds = {draw_mix(4, 8, 8, 0.8, 1.0, 0.5, np.random.default_rng(s)).kind for s in range(20)}
    assert kinds == {"mixup", "cutmix"}
    assert {draw_mix(4, 8, 8, 0.8, 0.0, 0.5, np.random.default_rng(s)).kind for s in range(5)} == {"mixup"}
    assert {draw_mix(4, 8, 8, 0.0, 1.0, 0.5, np.random.default_rng(s)).kind for s in range(5)} == {"cutmix"}


def test_the_collator_mixes_with_a_seed_drawn_from_torch():
    rows = [{"pixel_values": torch.randn(2, 3, 8, 8), "labels": torch.tensor(c)} for c in (0, 2, 1, 2)]
    collator = MixingCollator(3, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, label_smoothing=0.1)
    torch.manual_seed(7)
    batch = collator(rows)
    torch.manual_seed(7)
    seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
    draw = draw_mix(4, 8, 8, 0.8, 1.0, 0.5, np.random.default_rng(seed))
    targets = smooth_targets(torch.tensor([0, 2, 1, 2]), 3, 0.1)
    expected = mix_batch(torch.stack([r["pixel_values"] for r in rows]), targets, draw)
    assert torch.equal(batch["pixel_values"], expected[0]) and torch.equal(batch["labels"], expected[1])
    # label smoothing alone: no mixing, no draw from torch's generator
    plain = MixingCollator(3, label_smoothing=0.1)
    state = torch.random.get_rng_state()
    out = plain(rows)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(out["pixel_values"], torch.stack([r["pixel_values"] for r in rows]))
    with pytest.raises(ValueError, match="single-label"):
        plain([{"pixel_values": torch.zeros(2, 3, 8, 8), "labels": torch.tensor([1.0, 0.0, 1.0])}])
    with pytest.raises(ValueError, match="mixup_alpha must be >= 0"):
        MixingCollator(3, mixup_alpha=-1)


def test_alt_loss_on_soft_targets_against_a_loop():
    torch.manual_seed(1)
    logits = torch.randn(3, 5)
    targets = torch.rand(3, 5)
    targets = targets / targets.sum(-1, keepdim=True)
    expected = 0.0
    for b in range(3):
        norm = math.log(sum(math.exp(v) for v in logits[b].tolist()))
        expected += -sum(targets[b, c].item() * (logits[b, c].item() - norm) for c in range(5)) / 3
    assert math.isclose(alt_loss(logits, targets).item(), expected, rel_tol=1e-5)
    labels = torch.tensor([4, 0, 4])
    torch.testing.assert_close(alt_loss(logits, F.one_hot(labels, 5).float()), alt_loss(logits, labels))
    with pytest.raises(ValueError, match="distributions"):
        alt_loss(logits, torch.full((3, 5), 0.5))
    with pytest.raises(ValueError, match="logits' shape"):
        alt_loss(logits, torch.full((3, 4), 0.25))


def test_sfar_loss_on_soft_targets_is_eq_12_to_14_on_one_hot_and_a_loop_on_soft():
    torch.manual_seed(2)
    logits = torch.randn(6, 4)
    labels = torch.tensor([1, 1, 3, 0, 1, 3])  # shared classes: Eq. 12's k_b has several videos
    torch.testing.assert_close(sfar_loss(logits, F.one_hot(labels, 4).float(), 0.7), sfar_loss(logits, labels, 0.7))
    targets = smooth_targets(labels, 4, 0.2)
    t2v = v2t = 0.0
    for b in range(6):
        for c in range(4):
            over_videos = logits[b, c] - torch.logsumexp(logits[:, c], 0)
            over_classes = logits[b, c] - torch.logsumexp(logits[b], 0)
            t2v -= targets[b, c].item() * over_videos.item() / 6
            v2t -= targets[b, c].item() * over_classes.item() / 6
    assert math.isclose(sfar_loss(logits, targets, 0.7).item(), t2v + 0.7 * v2t, rel_tol=1e-5)


def test_alt_recipe_has_x_clips_augmentation_and_sfar_has_none(tmp_path):
    common = ["--dataset", "d", "--output_dir", str(tmp_path)]
    alt = parse_training_args([*common, "--model_type", "alt"]).training
    assert (alt.mixup_alpha, alt.cutmix_alpha, alt.mixup_switch_prob, alt.label_smoothing_factor) == (
        0.8,
        1.0,
        0.5,
        0.1,
    )
    assert {"mixup_alpha", "cutmix_alpha", "mixup_switch_prob", "label_smoothing_factor"} <= set(ALT_RECIPE)
    sfar = parse_training_args(common).training
    assert (sfar.mixup_alpha, sfar.cutmix_alpha, sfar.label_smoothing_factor) == (0.0, 0.0, 0.0)
    off = parse_training_args([*common, "--model_type", "alt", "--mixup_alpha", "0", "--cutmix_alpha", "0"]).training
    assert (off.mixup_alpha, off.cutmix_alpha, off.label_smoothing_factor) == (0.0, 0.0, 0.1)
    assert ALT_FEW_SHOT_DECODER_SCALE == 10


def test_the_run_builds_the_collator_and_few_shot_alt_scales_the_decoder_rate(tmp_path):
    common = ["--dataset", "d", "--output_dir", str(tmp_path)]

    def parsed(*flags):
        run = parse_training_args([*common, *flags])
        return run.family_args, run.training

    alt, args = parsed("--model_type", "alt", "--few_shot", "2")
    collator = training_collator(args, 7, False, "d")
    assert (collator.num_classes, collator.mixup_alpha, collator.cutmix_alpha) == (7, 0.8, 1.0)
    assert (collator.switch_prob, collator.label_smoothing) == (0.5, 0.1)
    # section 3.4: the decoder's rate x 10 in few-shot
    assert ALT.module_learning_rates(alt, args, few_shot=2) == {"decoder.": pytest.approx(10 * 8e-5)}
    alt, args = parsed("--model_type", "alt", "--few_shot", "2", "--learning_rate", "1e-4",
                       "--decoder_learning_rate", "3e-4")  # fmt: skip
    assert ALT.module_learning_rates(alt, args, few_shot=2) == {"decoder.": 3e-4}  # given: kept
    alt, args = parsed("--model_type", "alt")
    assert ALT.module_learning_rates(alt, args, few_shot=0) == {}  # fully supervised: the new modules' rate
    _, args = parsed()
    assert training_collator(args, 7, True, "d") is None  # SFAR: off by default
    _, args = parsed("--label_smoothing_factor", "0.1")
    assert training_collator(args, 7, False, "d").label_smoothing == 0.1  # SFAR can use it
    with pytest.raises(ValueError, match="--label_smoothing_factor: soft targets for single-label"):
        training_collator(args, 7, True, "d")
    with pytest.raises(ValueError, match="--decoder_learning_rate: ALT's"):
        parsed("--decoder_learning_rate", "1e-3")
    _, args = parsed("--mixup_switch_prob", "2", "--mixup_alpha", "1")
    with pytest.raises(ValueError, match="--mixup_switch_prob must lie in"):
        training_collator(args, 7, False, "d")


@pytest.fixture(scope="module")
def tiny_alt(tiny_clip_dir):
    torch.manual_seed(0)
    model, _ = convert_clip_to_alt(tiny_clip_dir, LABELS, None, num_frames=2, use_entity_corpus=False,
                                   token_merging_r=2, num_decoder_layers=1)  # fmt: skip
    return model


def test_the_decoder_group_takes_its_own_learning_rate(tiny_alt):
    groups = parameter_groups(tiny_alt, 8e-5, 8e-6, 0.001, module_learning_rates={"decoder.": 8e-4})
    by_rate = {}
    for group in groups:
        by_rate.setdefault(group["lr"], set()).update(id(p) for p in group["params"])
    assert by_rate[8e-4] == {id(p) for p in tiny_alt.alt.decoder.parameters()}
    assert {id(p) for p in tiny_alt.alt.vision_model.parameters() if p.requires_grad} <= by_rate[8e-6]
    # without it, the decoder is one of the new modules, as before
    assert {g["lr"] for g in parameter_groups(tiny_alt, 8e-5, 8e-6, 0.001)} == {8e-5, 8e-6}


def test_one_alt_training_step_with_mixup_cutmix_and_smoothing(tiny_alt, tmp_path):
    model = AltForVideoClassification(tiny_alt.config)
    model.load_state_dict(tiny_alt.state_dict())
    size = model.config.vision_config.image_size
    gen = torch.Generator().manual_seed(0)
    rows = Dataset.from_dict({"label": [0, 1, 2, 1]}).with_format("torch")
    pixels = torch.randn(4, 2, 3, size, size, generator=gen)
    rows.set_transform(lambda batch: {"pixel_values": [pixels[i] for i in batch["label"]], "labels": batch["label"]})
    seen = []

    class Recording(MixingCollator):
        def __call__(self, features):
            out = super().__call__(features)
            seen.append(out["labels"])
            return out

    collator = Recording(len(LABELS), mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, label_smoothing=0.1)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, learning_rate=1e-3,
                             label_smoothing_factor=0.1, report_to="none", save_strategy="no", use_cpu=True,
                             remove_unused_columns=False, seed=0)  # fmt: skip
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    trainer = VideoClassifierTrainer(model=model, args=args, train_dataset=rows, vision_learning_rate=1e-3,
                                     module_learning_rates={"decoder.": 1e-2}, train_collator=collator)  # fmt: skip
    result = trainer.train()
    assert math.isfinite(result.training_loss) and len(seen) == 1
    soft = seen[0]
    assert soft.shape == (4, len(LABELS)) and soft.is_floating_point() and (soft > 0).all()  # smoothed everywhere
    changed = {name for name, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[name])}
    assert any(name.startswith("alt.decoder.") for name in changed)
    assert any(name.startswith("alt.vision_model.") for name in changed)
    # evaluation keeps the default collator: hard labels, no mixing
    predicted = trainer.predict(rows)
    assert len(seen) == 1 and predicted.label_ids.tolist() == [0, 1, 2, 1]


def test_label_smoothing_without_the_collator_is_refused(tiny_alt, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), label_smoothing_factor=0.1, report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="soft targets to the model's own loss"):
        VideoClassifierTrainer(model=tiny_alt, args=args)


def test_sfar_trains_on_soft_targets_and_actionclip_refuses_them():
    from tests.conftest import tiny_classifier

    model = tiny_classifier().train()
    pixels = torch.randn(4, 5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 2])
    draw = draw_mix(4, 16, 16, 0.8, 1.0, 0.5, np.random.default_rng(3))
    mixed, targets = mix_batch(pixels, smooth_targets(labels, 3, 0.1), draw)
    out = model(pixel_values=mixed, labels=targets)
    out.loss.backward()
    torch.testing.assert_close(out.loss, sfar_loss(out.logits, targets, model.config.loss_lambda))
    assert model.sfar.vision_model.encoder.layers[0].self_attn.q_proj.weight.grad is not None
    with pytest.raises(ValueError, match="distributions over the classes"):
        model(pixel_values=pixels, labels=torch.full((4, 3), 0.5))
    actionclip = tiny_classifier("actionclip").train()
    with pytest.raises(ValueError, match="ActionCLIP's loss takes class indices"):
        actionclip(pixel_values=pixels, labels=targets)
