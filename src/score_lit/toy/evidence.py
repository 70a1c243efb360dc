"""The evidence benchmark (version 2): synthetic video QA whose evidence spans tokens, times and the question.

The first toy families (score_lit.toy.synthetic) put the answer in one 16-px token that appears once;
every good selector keeps it and ties at the vanilla ceiling. These families miniaturise real video-QA
task types, each with the properties real benchmarks have and the first toy lacks:

* objects are 32-px handwritten digits: each covers 2x2 merged tokens and stays for a run of frames, so
  keeping every copy wastes the budget and a partial view loses the answer;
* every question needs more than one piece of evidence (two objects, or one object at two times);
* salient distractors: `distractors` 16-px cells cut to an unrelated texture with flipped polarity at
  EVERY temporal unit, so "keep the largest change" spends its budget on noise;
* length: the default setting is 32 frames of 96 px (16 temporal units x 6x6 = 576 visual tokens of a
  Qwen-style tower with patch 8, merge 2, temporal patch 2), the long one 64 frames of 128 px (2,048).

Budgets at the default setting: 10% = 58 tokens, 5% = 29; long: 205 and 103.

Families (all deterministic per (seed, split, index); digit instances disjoint between splits):

`colour` (MVBench object existence / Video-MME object recognition, with an attribute in the question:
  query dependence). `objects` (4) digits of distinct labels and distinct colours (red, green, blue,
  yellow), each visible for its own run of 3-6 units at its own 2x2 block; "which red digit appeared ?".
  Evidence: 4 tokens x 3-6 units = 12-24 tokens of the asked digit among 48-96 digit tokens. A
  question-blind selector must cover every candidate (16 tokens for one unit of each at best, 29 at
  5%), and any rule that ranks by change or by norm also pays for the distractors; a question-aware one
  needs only one view of the asked digit (4 tokens). Should defeat: every question-blind rule (uniform,
  pool, surprise, visionzip, dycoke) at 5%; FastV (question-aware) is the training-free rule to beat.

`order` (MVBench temporal order / Video-MME temporal reasoning). Two digits at different places, the
  second appearing after the first has gone (runs of 3-6 units each); "which digit appeared first ?" or
  "... last ?" (half each). Evidence: both digits (8 tokens for one view of each, 24-48 tokens in all);
  either one alone gives 50%. Should defeat: `surprise` and `dycoke` (both onsets are changes, but so
  is every distractor at every unit), and `uniform` / `pool` at 5% (a sampled frame holds at most one
  of the two digits; pooling 2x2 blocks destroys the strokes).

`move` (MVBench moving direction / Video-MME spatial-temporal perception). One digit enters at a 2x2
  block and slides one token (16 px) at a time, holding each position for 1-3 units, 2-4 steps in one
  direction; "where did the digit move to ?" -> left / right / top / bottom. Evidence: the digit at two
  different times (8 tokens for its first and last positions; 4 x (steps + 1) x hold in all). One
  position alone says nothing. Should defeat: `surprise` (the distractors change more than the moving
  digit), `uniform` at 5% (one frame shows one position), `dycoke` (its merging keeps the first copy of
  a position and drops later ones, the motion is in the later ones).

Counting (MVBench action count) is not a family: a model that counts by the share of its visual tokens
that show a digit (the easy solution for a small model) overcounts whenever a selector keeps digits
preferentially, which penalises the best selectors; left for a later version.

Fixed before any method was trained or evaluated on it: the families, their parameters and the settings
below were version 1 (`VERSION`, written into the export's manifest). A change after seeing results
bumps the version, and both are reported (`VERSIONS`: the families each version exports by default).

Version 2 (after the first sweeps) drops `move` from the exported set, as the benchmark's design asks of a
family the toy cannot learn: the evidence toy (models/toy-mllm-evidence4) answers it at chance with
every token (0.23 at 576 tokens, 0.20 at 2,048; four options), so every method scores chance there and
the family only dilutes the mean. Nothing else changed: colour and order are the same generators, so
their videos and questions are identical in both versions (a test holds that). `move` stays registered
(`--families move` exports it; the toy trained on it), and `--version 1` exports version 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from score_lit.data.common import Sample
from score_lit.errors import ConfigError
from score_lit.toy import assets
from score_lit.toy.synthetic import DIGIT_PX, OPTIONS, _crop, _digit, _rng

VERSION = 2
OBJ_PX = 32  # a digit covers 2x2 merged tokens of 16 px
CELLS_PER_OBJ = OBJ_PX // DIGIT_PX
SETTINGS = {"default": {"frames": 32, "size": 96}, "long": {"frames": 64, "size": 128}}
COLOURS = {"red": (235, 40, 40), "green": (40, 210, 60), "blue": (60, 90, 255), "yellow": (245, 225, 30)}
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "top": (-1, 0), "bottom": (1, 0)}
WHITE = (255, 255, 255)
MIN_RUN, MAX_RUN = 3, 6  # units an object of colour / order stays visible
TPS = 2  # frames per temporal unit (Qwen's temporal patch); runs start and end on unit boundaries


class FamilyParamError(ConfigError):
    """Parameters that cannot hold a family; the message is one line naming the parameter."""


def paste_object(img: np.ndarray, digit: np.ndarray, row: int, col: int, colour=WHITE, px: int = OBJ_PX) -> np.ndarray:
    """Alpha-blend an 8x8 digit (values in [0, 1]) scaled to px x px in `colour` at cell (row, col) (16-px cells)."""
    out = img.astype(np.float32).copy()
    s = px // 8
    a = np.kron(digit, np.ones((s, s), np.float32))[..., None]  # [px, px, 1]
    y, x = row * DIGIT_PX, col * DIGIT_PX
    patch = out[y : y + px, x : x + px]
    out[y : y + px, x : x + px] = patch * (1 - a) * 0.35 + np.asarray(colour, np.float32) * a
    return out.round().clip(0, 255).astype(np.uint8)


def flicker(video: np.ndarray, rng: np.random.Generator, cells: list[tuple[int, int]]) -> None:
    """In place: each cell cuts to an unrelated texture at every temporal unit, polarity flipped on odd units."""
    for u in range(video.shape[0] // TPS):
        for r, c in cells:
            tex = _crop(rng, DIGIT_PX)
            if u % 2:
                tex = 255 - tex
            video[TPS * u : TPS * u + TPS, r * DIGIT_PX : (r + 1) * DIGIT_PX, c * DIGIT_PX : (c + 1) * DIGIT_PX] = tex


def _block_cells(row: int, col: int) -> set[tuple[int, int]]:
    return {(row + i, col + j) for i in range(CELLS_PER_OBJ) for j in range(CELLS_PER_OBJ)}


def _aligned_blocks(rng: np.random.Generator, cells: int, n: int) -> list[tuple[int, int]]:
    """n distinct 2x2 blocks on the even grid (never overlapping), top-left cells."""
    side = cells // CELLS_PER_OBJ
    flat = rng.choice(side * side, size=n, replace=False)
    return [(int(f) // side * CELLS_PER_OBJ, int(f) % side * CELLS_PER_OBJ) for f in flat]


def _free_cells(rng: np.random.Generator, cells: int, taken: set, n: int) -> list[tuple[int, int]]:
    free = [(r, c) for r in range(cells) for c in range(cells) if (r, c) not in taken]
    idx = rng.choice(len(free), size=n, replace=False)
    return [free[int(i)] for i in idx]


def _distinct_digits(rng: np.random.Generator, split: str, n: int) -> list[tuple[int, np.ndarray, str]]:
    out: list[tuple[int, np.ndarray, str]] = []
    while len(out) < n:
        d = _digit(rng, split)
        if d[2] not in {o[2] for o in out}:
            out.append(d)
    return out


def _run(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


# ------------------------------------------------------------------------------------------ checks
def check_params(family: str, frames: int, size: int, objects: int = 4, distractors: int = 4, **_) -> None:
    """Raise FamilyParamError (one line naming the parameter) if (frames, size, ...) cannot hold `family`."""
    if family not in FAMILIES:
        raise FamilyParamError(f"unknown evidence family {family!r}; registered: {sorted(FAMILIES)}")
    if frames <= 0 or frames % TPS:
        raise FamilyParamError(
            f"frames={frames} must be a positive multiple of {TPS} (one temporal unit = {TPS} frames)"
        )
    if size % DIGIT_PX:
        raise FamilyParamError(f"size={size} must be a multiple of {DIGIT_PX} (one merged token per {DIGIT_PX} px)")
    if size < OBJ_PX:
        raise FamilyParamError(f"size={size} px cannot hold a {OBJ_PX}-px object: use size >= {OBJ_PX}")
    if size > assets.SCENE_SIDE:
        raise FamilyParamError(
            f"size={size} px is larger than the {assets.SCENE_SIDE}-px scenes frames are cropped from"
        )
    cells, units = size // DIGIT_PX, frames // TPS
    blocks = (cells // CELLS_PER_OBJ) ** 2
    n_obj = {"colour": objects, "order": 2, "move": 1}[family]
    if family == "colour" and objects > len(COLOURS):
        raise FamilyParamError(f"objects={objects} is more than the {len(COLOURS)} colours {list(COLOURS)}")
    if family == "colour" and objects < 2:
        raise FamilyParamError(f"objects={objects}: a colour question needs at least 2 candidate digits")
    if n_obj > blocks:
        raise FamilyParamError(
            f"objects={n_obj} is more than the {blocks} places for a {OBJ_PX}-px object in a {size}-px frame"
        )
    path_cells = (CELLS_PER_OBJ + 2) * CELLS_PER_OBJ if family == "move" else CELLS_PER_OBJ**2 * n_obj
    if family == "move" and cells < CELLS_PER_OBJ + 2:
        raise FamilyParamError(
            f"size={size} px leaves no room for a {OBJ_PX}-px object to move 2 steps: use size >= {OBJ_PX + 2 * DIGIT_PX}"
        )
    if distractors < 0 or path_cells + distractors > cells * cells:
        raise FamilyParamError(
            f"distractors={distractors} do not fit beside the objects in the {cells * cells} cells of a {size}-px frame"
        )
    need = {"colour": MIN_RUN, "order": 2 * MIN_RUN, "move": 3}[family]
    if units < need:
        raise FamilyParamError(
            f"frames={frames} ({units} units) is too few for family {family!r}: it needs at least {need * TPS} frames"
        )


# ------------------------------------------------------------------------------------------ families
def colour(
    seed: int, split: str, index: int, frames: int = 32, size: int = 96, objects: int = 4, distractors: int = 4, **_
) -> Sample:
    check_params("colour", frames, size, objects=objects, distractors=distractors)
    rng = _rng(seed, split, 100 + index)
    cells, units = size // DIGIT_PX, frames // TPS
    digits = _distinct_digits(rng, split, objects)
    names = [list(COLOURS)[int(i)] for i in rng.permutation(len(COLOURS))[:objects]]
    blocks = _aligned_blocks(rng, cells, objects)
    taken = set().union(*(_block_cells(*b) for b in blocks))
    scene = _crop(rng, size)
    video = np.stack([scene] * frames)
    objs = []
    for (d_idx, img, label), name, (r, c) in zip(digits, names, blocks):
        run = _run(rng, MIN_RUN, min(MAX_RUN, units))
        u0 = int(rng.integers(0, units - run + 1))
        f0, f1 = TPS * u0, TPS * (u0 + run)
        video[f0:f1] = [paste_object(f, img, r, c, COLOURS[name]) for f in video[f0:f1]]
        objs.append(
            {"label": label, "colour": name, "frames": [f0, f1], "cell": [r, c], "px": OBJ_PX, "digit_index": d_idx}
        )
    asked = int(rng.integers(objects))
    others = _free_cells(rng, cells, taken, distractors)
    flicker(video, rng, others)
    return Sample(
        id=f"colour/{split}/{seed}/{index}",
        frames=video,
        question=f"which {objs[asked]['colour']} digit appeared ?",
        answer=objs[asked]["label"],
        options=list(OPTIONS),
        evidence={"objects": objs, "asked": [asked], "distractor_cells": [list(x) for x in others]},
    )


def order(seed: int, split: str, index: int, frames: int = 32, size: int = 96, distractors: int = 4, **_) -> Sample:
    check_params("order", frames, size, distractors=distractors)
    rng = _rng(seed, split, 200 + index)
    cells, units = size // DIGIT_PX, frames // TPS
    digits = _distinct_digits(rng, split, 2)
    blocks = _aligned_blocks(rng, cells, 2)
    hi = min(MAX_RUN, units // 2)
    r1, r2 = _run(rng, MIN_RUN, hi), _run(rng, MIN_RUN, hi)
    a0 = int(rng.integers(0, units - r1 - r2 + 1))
    b0 = int(rng.integers(a0 + r1, units - r2 + 1))
    scene = _crop(rng, size)
    video = np.stack([scene] * frames)
    objs = []
    for (d_idx, img, label), (r, c), (u0, run) in zip(digits, blocks, [(a0, r1), (b0, r2)]):
        f0, f1 = TPS * u0, TPS * (u0 + run)
        video[f0:f1] = [paste_object(f, img, r, c) for f in video[f0:f1]]
        objs.append({"label": label, "frames": [f0, f1], "cell": [r, c], "px": OBJ_PX, "digit_index": d_idx})
    last = bool(rng.random() < 0.5)
    taken = _block_cells(*blocks[0]) | _block_cells(*blocks[1])
    others = _free_cells(rng, cells, taken, distractors)
    flicker(video, rng, others)
    return Sample(
        id=f"order/{split}/{seed}/{index}",
        frames=video,
        question=f"which digit appeared {'last' if last else 'first'} ?",
        answer=objs[int(last)]["label"],
        options=list(OPTIONS),
        evidence={"objects": objs, "asked": [0, 1], "distractor_cells": [list(x) for x in others]},
    )


def move(seed: int, split: str, index: int, frames: int = 32, size: int = 96, distractors: int = 4, **_) -> Sample:
    check_params("move", frames, size, distractors=distractors)
    rng = _rng(seed, split, 300 + index)
    cells, units = size // DIGIT_PX, frames // TPS
    d_idx, img, label = _digit(rng, split)
    room = cells - CELLS_PER_OBJ  # the largest number of one-cell steps across the frame
    direction = list(DIRECTIONS)[int(rng.integers(len(DIRECTIONS)))]
    dr, dc = DIRECTIONS[direction]
    max_steps = min(4, room, units - 1)
    steps = _run(rng, 2, max_steps)
    hold = _run(rng, 1, max(1, min(3, units // (steps + 1))))
    u0 = int(rng.integers(0, units - hold * (steps + 1) + 1))
    # the start leaves room for `steps` cells in the motion's direction; the other axis is free
    lo_r, hi_r = (steps if dr < 0 else 0), room - (steps if dr > 0 else 0)
    lo_c, hi_c = (steps if dc < 0 else 0), room - (steps if dc > 0 else 0)
    r0, c0 = int(rng.integers(lo_r, hi_r + 1)), int(rng.integers(lo_c, hi_c + 1))
    scene = _crop(rng, size)
    video = np.stack([scene] * frames)
    objs, taken = [], set()
    for s in range(steps + 1):
        r, c = r0 + s * dr, c0 + s * dc
        f0, f1 = TPS * (u0 + s * hold), TPS * (u0 + (s + 1) * hold)
        video[f0:f1] = [paste_object(f, img, r, c) for f in video[f0:f1]]
        objs.append({"label": label, "frames": [f0, f1], "cell": [r, c], "px": OBJ_PX, "digit_index": d_idx})
        taken |= _block_cells(r, c)
    others = _free_cells(rng, cells, taken, distractors)
    flicker(video, rng, others)
    return Sample(
        id=f"move/{split}/{seed}/{index}",
        frames=video,
        question="where did the digit move to ?",
        answer=direction,
        options=list(DIRECTIONS),
        evidence={
            "objects": objs,
            "asked": [0, len(objs) - 1],
            "direction": direction,
            "distractor_cells": [list(x) for x in others],
        },
    )


FAMILIES: dict[str, Callable[..., Sample]] = {"colour": colour, "order": order, "move": move}
VERSIONS: dict[int, tuple[str, ...]] = {1: ("colour", "order", "move"), 2: ("colour", "order")}

__all__ = [
    "VERSION",
    "VERSIONS",
    "SETTINGS",
    "FAMILIES",
    "COLOURS",
    "DIRECTIONS",
    "OBJ_PX",
    "FamilyParamError",
    "check_params",
    "paste_object",
    "colour",
    "order",
    "move",
]
