"""Synthetic video QA from real still images, deterministic per (seed, split, index).

Families (each chosen so that a token selector has to find the part of the video that carries the
answer; the answer is always the digit's own token):
`flash`: one static scene; a digit is visible in exactly one temporal unit (2 frames);
"which digit appeared ?". A pure surprise rule (largest ||dX||) solves it.
`distracted`: one static scene; the digit appears at some unit and stays (or sits still from the
first frame), while other cells cut to unrelated texture at every unit, carrying no digit;
"which digit appeared ?". The largest change is the wrong thing to keep: a selector must also read
content (the x half of the state).
`stitched` (stage 1 of the curriculum, docs/METHOD.md "Curriculum"): several still scenes, each held for
a run of identical frames, hard cuts between them; exactly one run shows a handwritten digit pasted
on one merged-token cell; "which digit was shown ?" -> the digit. A static run is redundant, the cut
that brings the digit is news: this is what stage 1 teaches.

Every sample records which frames and which cell carry the answer (`evidence`), so tests can check
that the answer is recoverable from exactly those pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from score_lit.data.common import Sample
from score_lit.toy import assets

DIGIT_PX = 16  # one merged token of a Qwen-style tower with patch 8, merge 2
OPTIONS = [str(d) for d in range(10)]
SPLIT_SALT = {"train": 0, "val": 1, "test": 2}


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_SALT[split], index])


def _crop(rng: np.random.Generator, size: int) -> np.ndarray:
    sc = assets.scenes()
    s = sc[rng.integers(len(sc))]
    y, x = rng.integers(0, assets.SCENE_SIDE - size + 1, size=2)
    return s[y : y + size, x : x + size]


def paste_digit(img: np.ndarray, digit: np.ndarray, row: int, col: int) -> np.ndarray:
    """Alpha-blend an 8x8 digit (values in [0,1]) scaled to 16x16 in white onto cell (row, col)."""
    out = img.astype(np.float32).copy()
    a = np.kron(digit, np.ones((2, 2), np.float32))[..., None]  # [16, 16, 1]
    y, x = row * DIGIT_PX, col * DIGIT_PX
    patch = out[y : y + DIGIT_PX, x : x + DIGIT_PX]
    out[y : y + DIGIT_PX, x : x + DIGIT_PX] = patch * (1 - a) * 0.35 + 255.0 * a
    return out.round().clip(0, 255).astype(np.uint8)


def run_lengths(rng: np.random.Generator, frames: int, min_run: int, max_run: int) -> list[int]:
    """Even run lengths in [min_run, max_run] (the last may be shorter) summing to `frames`."""
    runs, left = [], frames
    while left > 0:
        r = int(rng.integers(min_run // 2, max_run // 2 + 1)) * 2
        runs.append(min(r, left))
        left -= runs[-1]
    return runs


def _cells(rng: np.random.Generator, cells: int, n: int) -> list[tuple[int, int]]:
    flat = rng.choice(cells * cells, size=n, replace=False)
    return [(int(f) // cells, int(f) % cells) for f in flat]


def _digit(rng: np.random.Generator, split: str) -> tuple[int, np.ndarray, str]:
    images, labels = assets.digits()
    pool = assets.digit_indices(split)
    i = int(pool[rng.integers(len(pool))])
    return i, images[i], str(int(labels[i]))


def stitched(
    seed: int, split: str, index: int, frames: int = 16, size: int = 64, min_run: int = 2, max_run: int = 8, **_
) -> Sample:
    rng = _rng(seed, split, index)
    d_idx, digit, answer = _digit(rng, split)
    runs = run_lengths(rng, frames, min_run, max_run)
    target = int(rng.integers(len(runs)))
    cells = size // DIGIT_PX
    row, col = (int(v) for v in rng.integers(0, cells, size=2))
    video, start, ev = [], 0, {}
    for j, r in enumerate(runs):
        still = _crop(rng, size)
        if j == target:
            still = paste_digit(still, digit, row, col)
            ev = {"frames": (start, start + r), "cell": (row, col), "digit_index": d_idx}
        video += [still] * r
        start += r
    return Sample(
        id=f"stitched/{split}/{seed}/{index}",
        frames=np.stack(video),
        question="which digit was shown ?",
        answer=answer,
        options=list(OPTIONS),
        evidence=ev,
    )


def flash(seed: int, split: str, index: int, frames: int = 16, size: int = 64, **_) -> Sample:
    rng = _rng(seed, split, index)
    d_idx, digit, answer = _digit(rng, split)
    scene = _crop(rng, size)
    unit = int(rng.integers(frames // 2))
    ((row, col),) = _cells(rng, size // DIGIT_PX, 1)
    video = np.stack([scene] * frames)
    f0, f1 = 2 * unit, 2 * unit + 2
    video[f0:f1] = paste_digit(scene, digit, row, col)
    return Sample(
        id=f"flash/{split}/{seed}/{index}",
        frames=video,
        question="which digit appeared ?",
        answer=answer,
        options=list(OPTIONS),
        evidence={"frames": (f0, f1), "cell": (row, col), "digit_index": d_idx},
    )


def distracted(
    seed: int, split: str, index: int, frames: int = 16, size: int = 64, distractors: int = 5, **_
) -> Sample:
    rng = _rng(seed, split, index)
    d_idx, digit, answer = _digit(rng, split)
    scene = _crop(rng, size)
    units = frames // 2
    start = 0 if rng.random() < 1 / 3 else int(rng.integers(1, units))  # sits still from frame 0, or appears
    cells = _cells(rng, size // DIGIT_PX, 1 + min(distractors, (size // DIGIT_PX) ** 2 - 1))
    (row, col), others = cells[0], cells[1:]
    video = np.stack([scene] * frames)
    video[2 * start :] = paste_digit(scene, digit, row, col)
    for u in range(units):  # every unit, every distractor cell cuts to an unrelated, high-contrast texture
        for r, c in others:
            tex = _crop(rng, DIGIT_PX)
            if u % 2:  # alternate polarity: consecutive units always differ strongly
                tex = 255 - tex
            video[2 * u : 2 * u + 2, r * DIGIT_PX : (r + 1) * DIGIT_PX, c * DIGIT_PX : (c + 1) * DIGIT_PX] = tex
    return Sample(
        id=f"distracted/{split}/{seed}/{index}",
        frames=video,
        question="which digit appeared ?",
        answer=answer,
        options=list(OPTIONS),
        evidence={"frames": (2 * start, frames), "cell": (row, col), "digit_index": d_idx, "distractor_cells": others},
    )


FAMILIES: dict[str, Callable[..., Sample]] = {"stitched": stitched, "flash": flash, "distracted": distracted}
