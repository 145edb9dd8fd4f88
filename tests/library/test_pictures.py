"""What ALT grounded, drawn: every patch's entity (through its merged token) against a loop, the legend's shares,
and the picture of the frames with the regions tinted by entity (`modeling_sfar.demo.plots`, which the Space copies)."""

from __future__ import annotations

import pytest
import torch

from modeling_sfar.demo.plots import denormalize, entity_region_picture, patch_entities, region_legend, tint_regions
from tests.conftest import ENTITIES


def test_patch_entities_follow_each_patch_to_its_token():
    gen = torch.Generator().manual_seed(0)
    frames, patches, tokens, entities = 3, 16, 7, 5
    patch_to_token = torch.randint(0, tokens, (frames, patches + 1), generator=gen)
    patch_to_token[:, 0] = 0  # the class token stays the class token
    entity_indices = torch.randint(0, entities, (frames, tokens), generator=gen)
    expected = torch.tensor(
        [[int(entity_indices[t, int(patch_to_token[t, 1 + p])]) for p in range(patches)] for t in range(frames)]
    )
    assert torch.equal(patch_entities(patch_to_token, entity_indices), expected)
    with pytest.raises(ValueError, match="outside the frame's 7 tokens"):
        patch_entities(torch.full((frames, patches + 1), 7), entity_indices)
    with pytest.raises(ValueError, match=r"\(T, P \+ 1\) and entity_indices \(T, N\)"):
        patch_entities(patch_to_token[:2], entity_indices)


def test_region_legend_gives_each_shown_entity_its_share_largest_first():
    patches = torch.tensor([[2, 2, 0, 5], [5, 2, 0, 0]])
    assert region_legend(patches) == [(0, 3 / 8), (2, 3 / 8), (5, 2 / 8)]


def test_tint_regions_mixes_each_patch_with_its_colour_and_outlines_where_the_label_changes():
    frame = torch.full((3, 8, 8), 0.2)  # 2 x 2 patches of 4 x 4 pixels
    regions = torch.tensor([[1, 1], [2, 3]])  # the top row is one label (one entity, or one merged token)
    tint = torch.tensor([[[1.0, 0, 0], [1.0, 0, 0]], [[0, 1.0, 0], [0, 0, 1.0]]])
    image = tint_regions(frame, regions, tint)
    assert image.shape == (8, 8, 3)
    torch.testing.assert_close(image[0, 0], torch.tensor([0.6, 0.1, 0.1]))  # inside the red region
    torch.testing.assert_close(image[7, 0], torch.tensor([0.1, 0.6, 0.1]))  # bottom left, green
    torch.testing.assert_close(image[7, 7], torch.tensor([0.1, 0.1, 0.6]))  # bottom right, blue
    assert (image[3, :] == 1).all()  # the edge between the top region and the two below it
    assert (image[4:, 3] == 1).all() and not (image[:3, 3] == 1).any()  # no edge inside the top row's one label
    untinted = tint_regions(frame, regions)
    torch.testing.assert_close(untinted[0, 0], torch.full((3,), 0.2))


def test_the_picture_of_a_real_alt_output(alt_converted, video_path):  # noqa: F811
    model, processor = alt_converted
    inputs = processor(videos=video_path)
    with torch.no_grad():
        out = model.eval()(**inputs)
    frames = denormalize(inputs["pixel_values"][0], processor.video_processor)  # (4, 3, 32, 32)
    picture = entity_region_picture(frames, out.patch_to_token[0], out.entity_indices[0], ENTITIES, "jump")
    assert picture.size[0] >= 600 and picture.size[1] > 200
    plain = entity_region_picture(frames, out.patch_to_token[0], None, None, "jump")  # ALT without a corpus
    assert plain.size[0] >= 600
    with pytest.raises(ValueError, match="entity index beyond the 2 entity texts"):
        entity_region_picture(frames, out.patch_to_token[0], torch.full_like(out.entity_indices[0], 3), ENTITIES[:2],
                              "jump")  # fmt: skip
    with pytest.raises(ValueError, match="does not fit 4 frames of 32x32 pixels"):
        entity_region_picture(frames, out.patch_to_token[0, :, :10], out.entity_indices[0], ENTITIES, "jump")
