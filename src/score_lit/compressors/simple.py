"""Structure-only baselines: uniform frame sampling, spatial pooling, random tokens.

All three look at no token values (pooling averages them but chooses nothing), so they are the floor
every content-aware method must clear at the same retention ratio r, budget k = ceil(r * T * N).

- `UniformFrames` (uniform frame sampling, the usual way a video LLM is fed fewer frames): keeps ALL
  N tokens of u = max(1, round(k / N)) temporal units at the centres of u equal segments of [0, T).
  Its granularity is a whole unit: it keeps u * N tokens, more than k when k < N (then one unit) and
  up to N/2 more or fewer otherwise; the evaluation reports the count kept and flags the excess.
  Rounding is half up. Differs from sampling frames before encoding: the units are chosen after the
  encoder, so every kept unit keeps its original temporal position id.
- `SpatialPool` (spatial pooling as in LLaVA-Video / PLLaVA, which pool each frame's feature grid to a
  fixed size): average pooling of each unit's H' x W' grid with a square s x s window (stride s, edge
  windows partial, i.e. ceil mode), s the smallest integer >= 1 with T * ceil(H'/s) * ceil(W'/s) <= k.
  The window mean sits at the slot of the window's top-left token, whose (t, h, w) position id the
  LLM then sees (the papers re-grid instead; positions here stay those of the full grid). If even
  s = max(H', W') is over budget, one token per unit remains: T tokens, more than k when k < T.
  The count is then T * ceil(H'/s) * ceil(W'/s) <= k, usually below k (the grid is coarse).
- `RandomTokens(seed)`: k tokens uniformly at random per sample: its ranking (`rank`) is uniform noise, cut at k
  by the shared top-k (score_lit.compressors.topk), so the masks of two ratios are nested. Each question draws
  its noise from its own torch.Generator seeded from (seed, its id) (the prompts' sample_ids: a 63-bit SHA-256
  digest of "seed:id"), so its mask is the same in any batch, at any batch size, and in a resumed sweep as in an
  uninterrupted one; different questions get different masks. Without ids (prompts None or built without
  them) the rows draw from one generator per compressor, seeded once with `seed` and advancing across calls
  (reproducible for the same sequence of calls). One generator per row costs microseconds per batch.

Selection FLOPs (score_lit.compressors.flops): uniform and random do no arithmetic on the tokens (0); pooling adds
every token into its window sum and divides each sum once, V D.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch

from score_lit.compressors.flops import pool_flops
from score_lit.compressors.topk import TopK
from score_lit.config import keep_count
from score_lit.types import Selection, VisualTokens


class UniformFrames:
    """Uniform temporal subsampling: every token of u = max(1, round(k / N)) evenly spread units.

    Over budget when k < N (one whole unit is the least it can keep); see the module docstring."""

    name = "uniform"
    needs_prompts = False
    ranks = False  # whole units chosen per ratio: select only

    @staticmethod
    def units(t: int, k: int, n: int) -> list[int]:
        """The kept unit indices: floor((j + 1/2) * T / u), the centres of u equal segments."""
        u = min(t, max(1, math.floor(k / n + 0.5)))
        return [math.floor((j + 0.5) * t / u) for j in range(u)]

    @torch.no_grad()
    def select(self, visual: VisualTokens, ratio: float, prompts: Any = None) -> Selection:
        b, t, n, _ = visual.tokens.shape
        keep = torch.zeros(b, t, n, dtype=torch.bool, device=visual.tokens.device)
        keep[:, self.units(t, keep_count(ratio, t * n), n)] = True
        return Selection(keep=keep.reshape(b, t * n))

    def selection_flops(self, shape: tuple[int, int, int], ratio: float, text_tokens: int, llm: Any = None) -> int:
        """0: whole units by index, no arithmetic on the tokens. shape = (T, N, D)."""
        return 0


class SpatialPool:
    """s x s average pooling per unit; each mean placed at its window's top-left slot (see module docstring)."""

    name = "pool"
    needs_prompts = False
    ranks = False  # a window size per ratio: select only

    @staticmethod
    def window(t: int, h: int, w: int, k: int) -> int:
        """The smallest s >= 1 with T * ceil(H'/s) * ceil(W'/s) <= k, else max(H', W') (one token per unit)."""
        for s in range(1, max(h, w) + 1):
            if t * math.ceil(h / s) * math.ceil(w / s) <= k:
                return s
        return max(h, w)

    @torch.no_grad()
    def select(self, visual: VisualTokens, ratio: float, prompts: Any = None) -> Selection:
        x = visual.tokens
        b, t, n, d = x.shape
        _, h, w = visual.grid
        dev = x.device
        s = self.window(t, h, w, keep_count(ratio, t * n))
        wc = math.ceil(w / s)
        rows, cols = torch.arange(h, device=dev).repeat_interleave(w), torch.arange(w, device=dev).repeat(h)
        win = (rows // s) * wc + cols // s  # [N] window id of each raster position
        nwin = math.ceil(h / s) * wc
        sums = torch.zeros(b, t, nwin, d, device=dev, dtype=torch.float32).index_add_(2, win, x.float())
        counts = torch.zeros(nwin, device=dev).index_add_(0, win, torch.ones(n, device=dev))
        wr, wcol = torch.arange(nwin, device=dev) // wc, torch.arange(nwin, device=dev) % wc
        slot = (wr * s) * w + wcol * s  # [nwin] raster index of each window's top-left token
        out = x.clone()
        out[:, :, slot] = (sums / counts[:, None]).to(x.dtype)
        keep = torch.zeros(b, t, n, dtype=torch.bool, device=dev)
        keep[:, :, slot] = True
        return Selection(keep=keep.reshape(b, t * n), tokens=out.reshape(b, t * n, d))

    def selection_flops(self, shape: tuple[int, int, int], ratio: float, text_tokens: int, llm: Any = None) -> int:
        """V D: window sums and means (score_lit.compressors.flops.pool_flops). shape = (T, N, D)."""
        t, n, d = shape
        return pool_flops(t * n, d)


class RandomTokens(TopK):
    """k uniformly random tokens per sample, a question's draw seeded from (seed, its id) (module docstring)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self._gen = torch.Generator(device="cpu").manual_seed(self.seed)  # rows without ids: advances across calls

    def row_seed(self, sample_id: str) -> int:
        """The seed of one question's generator: the first 63 bits of SHA-256("seed:id") (stable across runs and
        machines, unlike Python's hash)."""
        digest = hashlib.sha256(f"{self.seed}:{sample_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") >> 1

    def rank(self, visual: VisualTokens, prompts: Any = None) -> torch.Tensor:
        """[B, T*N] float32 uniform noise on the CPU (the same scores on every device): row b from a generator
        seeded with row_seed(prompts.sample_ids[b]), or, without ids, from the compressor's own generator."""
        b, t, n, _ = visual.tokens.shape
        ids = getattr(prompts, "sample_ids", None)
        if ids is None:
            return torch.rand(b, t * n, generator=self._gen)
        gens = (torch.Generator(device="cpu").manual_seed(self.row_seed(q)) for q in ids)
        return torch.stack([torch.rand(t * n, generator=g) for g in gens])

    def selection_flops(self, shape: tuple[int, int, int], ratio: float, text_tokens: int, llm: Any = None) -> int:
        """0: random numbers and a top-k, no arithmetic on the tokens. shape = (T, N, D)."""
        return 0
