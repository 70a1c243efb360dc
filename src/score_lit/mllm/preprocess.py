"""Qwen2/2.5-VL video preprocessing in plain torch: uint8 frames -> pixel_values_videos + video_grid_thw.

transformers' Qwen2VLVideoProcessor needs torchvision, which this stack leaves out (the CPU-compatible
build does not exist for our torch pin), so the processor's steps are re-implemented here:

1. smart resize (Qwen's rule, `smart_resize`): H, W rounded to multiples of patch * merge within
   [min_pixels, max_pixels], aspect ratio kept. When a resize is needed we use torch's bicubic with
   antialias and re-quantise to uint8 levels (the stock processors resize uint8 images and return
   uint8); when the frames are already aligned, nothing is resampled. Deviation: the stock processors
   resample with PIL / torchvision bicubic, whose kernels differ slightly from torch's at the last
   bit of a pixel; on aligned frames the output is identical.
2. rescale by 1/255, normalise with the processor's mean / std (OpenAI CLIP's for Qwen).
3. pad F to a multiple of temporal_patch_size by repeating the last frame (as the stock processor).
4. patchify: [gt, tps, C, gh/m, m, p, gw/m, m, p] -> permute (0,3,6,4,7,2,1,5,8) -> flatten, so the rows
   come in (t, merged row, merged col, m, m) order: every m*m consecutive rows are one merged token,
   and merged tokens are raster order per temporal unit (what VisualTokens expects).

Shared by every family: `stack_frames` (a batch's frames as one tensor) and `read_normalisation` (a checkpoint's
mean / std).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def stack_frames(frames: Tensor | list | tuple) -> Tensor:
    """A batch's frames as one [B, F, 3, H, W] tensor (a list of equal-shaped [F, 3, H, W] is stacked)."""
    if isinstance(frames, (list, tuple)):
        shapes = {tuple(f.shape) for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"all videos of a batch must have one shape [F, 3, H, W]; got {sorted(shapes)}")
        frames = torch.stack(list(frames))
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise ValueError(
            f"VideoBatch.frames must be [B, F, 3, H, W] (one shape for the whole batch); got {tuple(frames.shape)}"
        )
    return frames


def read_normalisation(path: str | None, files: tuple[str, ...], default: tuple[tuple, tuple]) -> tuple[tuple, tuple]:
    """(mean, std) from the first of `files` in the checkpoint directory `path` that exists, else `default`."""
    mean, std = default
    if path is None or not Path(path).is_dir():
        return mean, std
    for name in files:
        if (pp := Path(path) / name).is_file():
            pcfg = json.loads(pp.read_text())
            return tuple(pcfg.get("image_mean", mean)), tuple(pcfg.get("image_std", std))
    return mean, std


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen's rule (same as transformers' qwen2_vl smart_resize): multiples of `factor`, pixels in range."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"aspect ratio {max(height, width) / min(height, width):.0f} > 200 is not supported by Qwen-VL"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_frames(frames: Tensor, height: int, width: int) -> Tensor:
    """[..., 3, H, W] uint8 -> [..., 3, height, width] float on uint8 levels; no resampling if already that size."""
    if frames.shape[-2:] == (height, width):
        return frames.float()
    lead = frames.shape[:-3]
    x = frames.reshape(-1, *frames.shape[-3:]).float()
    x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    x = x.clamp_(0, 255).round_()
    return x.reshape(*lead, *x.shape[-3:])


def patchify(
    video: Tensor, patch_size: int, merge_size: int, temporal_patch_size: int
) -> tuple[Tensor, tuple[int, int, int]]:
    """[B, F, C, H, W] float (F a multiple of tps) -> ([B*gt*gh*gw, C*tps*p*p], (gt, gh, gw)) in patch units."""
    b, f, c, h, w = video.shape
    p, m, tps = patch_size, merge_size, temporal_patch_size
    if f % tps or h % (p * m) or w % (p * m):
        raise ValueError(f"patchify needs F % {tps} == 0 and H, W multiples of {p * m}; got F={f}, H={h}, W={w}")
    gt, gh, gw = f // tps, h // p, w // p
    x = video.reshape(b, gt, tps, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)  # [B, gt, gh/m, gw/m, m, m, C, tps, p, p]
    return x.reshape(b * gt * gh * gw, c * tps * p * p), (gt, gh, gw)


@dataclass(frozen=True)
class VideoPreprocessor:
    """The processor's numbers; `__call__` maps a batch of equally shaped videos to the vision tower's input."""

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 16 * 16
    max_pixels: int = 448 * 448
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return smart_resize(height, width, self.patch_size * self.merge_size, self.min_pixels, self.max_pixels)

    def __call__(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """frames [B, F, 3, H, W] (or [F, 3, H, W]) uint8 -> (pixel_values_videos [B*gt*gh*gw, 3*tps*p*p] float32,
        video_grid_thw [B, 3] long, in patch units: gt = ceil(F / tps), gh = H'/p, gw = W'/p)."""
        if frames.ndim == 4:
            frames = frames.unsqueeze(0)
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B, F, 3, H, W] (or [F, 3, H, W]) RGB; got shape {tuple(frames.shape)}")
        if frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 in 0..255; got {frames.dtype}")
        b, f, _, h, w = frames.shape
        x = resize_frames(frames, *self.target_size(h, w))  # [B, F, 3, H', W'] float
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        x = (x * (1.0 / 255.0) - mean) / std
        if pad := -f % self.temporal_patch_size:
            x = torch.cat([x, x[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        pixels, grid = patchify(x, self.patch_size, self.merge_size, self.temporal_patch_size)
        grid_thw = torch.tensor([grid] * b, dtype=torch.long, device=x.device)
        return pixels, grid_thw
