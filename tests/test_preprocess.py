"""Torch preprocessing vs transformers' own Qwen2-VL image processor (the PIL one runs without torchvision)
and vs an independent slow loop for the video-specific parts (distinct frames in a temporal patch, padding)."""

import pytest
import torch
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from score_lit.mllm.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, VideoPreprocessor, resize_frames, smart_resize

P, M, TPS = 8, 2, 2
PRE = VideoPreprocessor(patch_size=P, merge_size=M, temporal_patch_size=TPS, min_pixels=16 * 16, max_pixels=64 * 64)


@pytest.fixture(scope="module")
def hf():
    return Qwen2VLImageProcessorPil(
        patch_size=P, merge_size=M, temporal_patch_size=TPS, min_pixels=16 * 16, max_pixels=64 * 64
    )


def _rand(*shape, seed=0):
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_smart_resize_matches_transformers():
    for h, w in [(32, 32), (37, 50), (100, 20), (15, 15), (480, 640), (33, 200)]:
        for lo, hi in [(16 * 16, 64 * 64), (256, 448 * 448), (56 * 56, 28 * 28 * 1280)]:
            assert smart_resize(h, w, 16, lo, hi) == hf_smart_resize(h, w, 16, lo, hi), (h, w, lo, hi)


def test_static_video_matches_transformers_image_processor(hf):
    # Aligned frames, each temporal unit a still (a, a, b, b): the stock image processor repeats an image
    # over the temporal patch, so our video output must equal its outputs for a then b, concatenated.
    a, b = _rand(3, 32, 48, seed=1), _rand(3, 32, 48, seed=2)
    pixels, grid = PRE(torch.stack([a, a, b, b]))
    ref = [hf(images=[x.numpy()], return_tensors="pt") for x in (a, b)]
    assert grid.tolist() == [[2, 4, 6]] and ref[0]["image_grid_thw"].tolist() == [[1, 4, 6]]
    expected = torch.cat([r["pixel_values"] for r in ref])
    assert pixels.shape == expected.shape == (2 * 4 * 6, 3 * TPS * P * P)
    assert (pixels - expected).abs().max() < 1e-6


def _slow_reference(frames: torch.Tensor) -> torch.Tensor:
    """Loop over every patch in Qwen's order: t, merged row, merged col, sub-row, sub-col; row = [C, tps, p, p]."""
    x = (frames.float() / 255 - torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)) / torch.tensor(OPENAI_CLIP_STD).view(
        3, 1, 1
    )
    if len(x) % TPS:
        x = torch.cat([x, x[-1:].repeat(TPS - len(x) % TPS, 1, 1, 1)])
    gt, gh, gw = len(x) // TPS, x.shape[-2] // P, x.shape[-1] // P
    rows = []
    for t in range(gt):
        for bh in range(gh // M):
            for bw in range(gw // M):
                for i in range(M):
                    for j in range(M):
                        r, c = (bh * M + i) * P, (bw * M + j) * P
                        patch = x[t * TPS : (t + 1) * TPS, :, r : r + P, c : c + P]  # [tps, C, p, p]
                        rows.append(patch.permute(1, 0, 2, 3).reshape(-1))
    return torch.stack(rows)


@pytest.mark.parametrize("num_frames", [4, 3])  # 3: padded to 4 by repeating the last frame
def test_patchify_matches_slow_loop_with_distinct_frames(num_frames):
    frames = _rand(num_frames, 3, 32, 32, seed=3)
    pixels, grid = PRE(frames)
    assert grid.tolist() == [[2, 4, 4]]
    assert torch.allclose(pixels, _slow_reference(frames), atol=1e-6, rtol=0)


def test_batch_equals_per_video_concatenation():
    frames = _rand(2, 4, 3, 32, 32, seed=4)
    pixels, grid = PRE(frames)
    singles = [PRE(f)[0] for f in frames]
    assert grid.tolist() == [[2, 4, 4]] * 2
    assert torch.equal(pixels, torch.cat(singles))


def test_resize_close_to_transformers_on_smooth_image(hf):
    # 37x50 -> 32x48 (smart resize). torch's bicubic-antialias kernel differs from PIL's at the pixel
    # level, so compare on a smooth image: within ~3 grey levels after normalisation.
    yy, xx = torch.meshgrid(torch.arange(37.0), torch.arange(50.0), indexing="ij")
    img = torch.stack(
        [127 + 100 * torch.sin(xx / 6), 127 + 100 * torch.cos(yy / 5), 127 + 80 * torch.sin((xx + yy) / 9)]
    )
    img = img.round().to(torch.uint8)
    pixels, grid = PRE(img[None].expand(2, -1, -1, -1).contiguous())
    ref = hf(images=[img.numpy()], return_tensors="pt")
    assert grid.tolist() == [[1, 4, 6]] == ref["image_grid_thw"].tolist()
    assert (pixels - ref["pixel_values"]).abs().max() < 0.05


def test_aligned_frames_are_not_resampled():
    frames = _rand(2, 3, 32, 48, seed=5)
    assert torch.equal(resize_frames(frames, 32, 48), frames.float())


def test_rejects_float_frames():
    with pytest.raises(ValueError, match="uint8"):
        PRE(torch.zeros(2, 3, 32, 32))
