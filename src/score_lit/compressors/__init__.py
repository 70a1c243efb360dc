"""Token compressors behind one interface, registered lazily by name: the trained SCORE policy and the
training-free baselines it is compared against (../docs/METHOD.md "What the paper reports").

    from score_lit.compressors import build_compressor
    comp = build_compressor("surprise", mllm=mllm)                 # or "score", policy=..., selection=...
    sel = comp.select(visual, ratio=0.1, prompts=prompts)          # -> Selection(keep [B, T*N], tokens?)
    if ranks(comp):                                                # score, surprise, fastv, random
        scores = comp.rank(visual, prompts)                        # [B, T*N], once for every ratio
        keep = keep_top(scores, 0.1, visual.grid, comp.per_frame)  # == comp.select(visual, 0.1, prompts).keep

Every compressor gets the frozen projector output (`VisualTokens`: tokens [B, T, N, D] in raster order
per temporal unit, grid (T, H', W')) and a retention ratio r, and keeps about k = ceil(r * T * N) tokens
(score_lit.config.keep_count). The top-k methods (a `Ranker`: score, surprise, fastv, random) rank the
tokens once, independently of r, and every ratio is a cut of that ranking by one shared top-k
(score_lit.compressors.topk.keep_top; `select` = rank + cut); the structural and merging methods (uniform,
pool, visionzip, dycoke) choose per ratio and have only `select`. A method whose structure cannot meet the
budget exactly (e.g. whole frames) may keep more; the evaluation reports the tokens actually kept and flags it. Methods that need
the LLM (fastv) also get the tokenized prompts. A method with `encodes = True` (score_prevision and its variants)
takes the batch's video inputs instead and runs the vision tower itself, on the groups of the tokens a gate lets
through: `select_video(video, ratio, prompts) -> (VisualTokens, Selection, gate keep)`. `selection_flops(shape, ratio, text_tokens, llm)` is what a
method's selection costs in FLOPs, for the sweep's compute column (formulas in score_lit.compressors.flops).
`import score_lit.compressors` imports no method module.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any, Protocol

from torch import Tensor

from score_lit.config import names
from score_lit.types import Selection, VisualTokens

REGISTRY: dict[str, str] = {
    "score": "score_lit.compressors.score:ScoreCompressor",
    "uniform": "score_lit.compressors.simple:UniformFrames",
    "pool": "score_lit.compressors.simple:SpatialPool",
    "random": "score_lit.compressors.simple:RandomTokens",
    "surprise": "score_lit.compressors.surprise:SurpriseTopK",
    "fastv": "score_lit.compressors.fastv:FastV",
    "visionzip": "score_lit.compressors.visionzip:VisionZip",
    "dycoke": "score_lit.compressors.dycoke:DyCoke",
    # SCORE behind a pre-vision gate: the method runs the vision tower itself, on the gate's groups (`encodes`)
    "score_prevision": "score_lit.compressors.prevision:PreVisionScore",
    "score_prevision_embed": "score_lit.compressors.prevision:PreVisionScoreEmbed",
    "score_prevision_next": "score_lit.compressors.prevision:PreVisionScoreNext",
    "score_prevision_min25": "score_lit.compressors.prevision:PreVisionScoreMin25",
    "score_prevision_2x": "score_lit.compressors.prevision:PreVisionScore2x",
    "score_prevision_5x": "score_lit.compressors.prevision:PreVisionScore5x",
}


class Compressor(Protocol):
    name: str
    needs_prompts: bool  # True if select() uses the tokenized prompts (in-LLM methods)
    ranks: bool  # True for a Ranker: rank() once, then keep_top at every ratio (False: select per ratio)

    def select(self, visual: VisualTokens, ratio: float, prompts: Any = None) -> Selection:
        """keep [B, T*N] bool (+ merged token values [B, T*N, D] for merging methods)."""
        ...

    def selection_flops(self, shape: tuple[int, int, int], ratio: float, text_tokens: int, llm: Any = None) -> int:
        """FLOPs of one question's selection beyond a prefill of its text + kept tokens: shape = (T, N, D),
        text_tokens the prompt's text up to the answer, llm the LLM's text config (score_lit.compressors.flops). The
        sweep reports NaN FLOPs for a compressor without it."""
        ...


class Ranker(Compressor, Protocol):
    """A top-k method: a ratio-free ranking, cut at a ratio by keep_top (score_lit.compressors.topk)."""

    per_frame: bool  # the cut keeps keep_count(r, N) per temporal unit instead of keep_count(r, T*N) overall

    def rank(self, visual: VisualTokens, prompts: Any = None) -> Tensor:
        """[B, T*N] float scores, higher = kept first; the same at every ratio."""
        ...


def ranks(comp: Compressor) -> bool:
    """Whether `comp` is a Ranker (a registered class without the attribute is not)."""
    return bool(getattr(comp, "ranks", False))


def keep_top(scores: Tensor, ratio: float, grid: tuple[int, int, int], per_frame: bool = False) -> Tensor:
    """The shared cut of a ranking: score_lit.compressors.topk.keep_top (imported on first use)."""
    from score_lit.compressors.topk import keep_top as cut

    return cut(scores, ratio, grid, per_frame)


def register(name: str, target: str) -> None:
    """Register a compressor class as "package.module:ClassName"."""
    if ":" not in target:
        raise ValueError(f"register({name!r}, {target!r}): target must be 'package.module:ClassName'")
    REGISTRY[name] = target
    names.add(names.METHODS, name)  # the torch-free list eval.methods is checked against


# What a caller may pass to every method at once (eval passes all of them); a method takes the ones it needs.
CONTEXT = ("mllm", "policy_path", "selection", "seed", "layer")


def build_compressor(name: str, **kwargs: Any) -> Compressor:
    """The compressor registered as `name`, built with the keyword arguments its class takes (mllm=...,
    policy_path=..., selection=..., seed=..., layer=...). The shared CONTEXT arguments a class does not take are
    ignored; any other argument the class does not take (a misspelt `selction=`) is an error."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; registered: {sorted(REGISTRY)}")
    import inspect

    module, attr = REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module), attr)
    params = inspect.signature(cls).parameters
    unknown = sorted(k for k in kwargs if k not in params and k not in CONTEXT)
    if unknown:
        raise ValueError(
            f"build_compressor({name!r}): unknown argument(s) {unknown}; {name} takes {sorted(params)}, "
            f"and every method accepts {list(CONTEXT)}"
        )
    return cls(**{k: v for k, v in kwargs.items() if k in params})


def apply_selection(visual: VisualTokens, sel: Selection) -> tuple[VisualTokens, Tensor]:
    """(VisualTokens carrying the merged values if any, keep mask [B, 1, T*N]) ready for mllm.score."""
    if sel.tokens is None:
        return visual, sel.keep[:, None]
    b, t, n, d = visual.tokens.shape
    merged = replace(visual, tokens=sel.tokens.reshape(b, t, n, d))  # positions and DeepStack features unchanged
    return merged, sel.keep[:, None]


__all__ = [
    "REGISTRY",
    "Compressor",
    "Ranker",
    "Selection",
    "Tensor",
    "apply_selection",
    "build_compressor",
    "keep_top",
    "ranks",
    "register",
]
