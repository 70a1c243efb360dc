"""SCORE compression hooked into ONE loaded Qwen2/2.5-VL, Qwen3-VL or Qwen3.5 instance (no class patching), for
`model.generate`.
(ScoreHooks1D at the end: the same for LLaVA-OneVision / LLaVA-Video, 1-D RoPE, original or compacted ids.)

    hooks = ScoreHooks(model, select).attach()    # select(VisualTokens) -> keep [1, T*N] bool
    out = model.generate(**inputs)                # prefill sees text + the kept video tokens only
    hooks.remove()

Two forward pre-hooks (FrameFusion's interface.py pattern: wrap the instance, keep device_map / accelerate hooks):
1. on the top-level model: remembers `input_ids` and `video_grid_thw` of the call; on the vision tower the
   `grid_thw` it was given (transformers 5.23's generate runs the vision tower before the first forward and
   passes `mm_encoder_outputs` instead of the grid);
2. on `model.model.language_model` (with_kwargs), i.e. AFTER the stock forward has run the vision tower, scattered
   the video features into `inputs_embeds` and computed the full-sequence M-RoPE `position_ids`:
   * prefill (empty cache, the call's input_ids hold video tokens): the video rows of `inputs_embeds` are the
     projector output [T, N, D] (raster order per temporal unit, as score_lit's VisualTokens); `select` picks the
     kept ones; inputs_embeds, position_ids and the 2-D attention mask are gathered to text + kept video columns.
     Kept tokens keep their ORIGINAL positions (the model's own ids, gathered), as score_lit does. Qwen3-VL: the
     video columns are not contiguous (each temporal unit's timestamp text and vision start / end tokens sit
     between them; they are text, always kept), and the stock forward passes the DeepStack inputs to the language
     model (`visual_pos_masks` [1, L], `deepstack_visual_embeds` per layer [T*N, D]): both are pruned with the same
     keep mask here. Qwen3.5 (no DeepStack): its linear-attention layers run on the pruned inputs_embeds, so the
     recurrence and the conv never see a dropped token;
   * decode steps (cache filled): generate's attention mask still counts the dropped columns; they are removed
     again so the mask matches the (shorter) cache. Position ids of new tokens come from the stock model
     (rope_deltas of the full prompt), so they are the unpruned sequence's positions.
A 4-row position_ids (text row + 3 M-RoPE rows, as generate builds them) loses its text row after pruning: that
row only serves packed-sequence masks, which a pruned row with gaps would fake; the 2-D attention mask is used.

Given positions (`hooks.positions = ids [P, L]`, `hooks.video_positions = [P, T*N]`, set before a generate call;
what score_lit.lmms.generate does with the adapter's `full_positions`): the prefill uses these ids of the FULL
sequence (gathered for the kept columns) instead of the stock model's, the policy sees `video_positions`, and each
decode step continues from the prompt's last id (+1 per token, all rows), as the original rule does. That makes
generate use exactly score_lit's positions (for Qwen the original M-RoPE rule, not transformers 5.23's).

Without given positions the prefill keeps the stock model's own ids, gathered (transformers 5.23's get_rope_index,
which differs from the original Qwen rule for long videos: score_lit.mllm.positions); score_lit's generate path always
gives them, tests/test_lmms.py compares the hooks with the stock forward that way. The kept columns are chosen by
the adapter's own compaction (score_lit.mllm.sequence.compact, one row), so a pruned prefill holds the slots `score`
keeps, in the same order.

Supported (checked, else a clear error): batch size 1 per generate call, one video per prompt, a 2-D attention
mask or none. The policy sees the tokens in the model's dtype (score_lit casts the state the same way).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from score_lit.mllm.sequence import compact
from score_lit.types import VisualTokens


class _PruningHooks:
    """What both families share: the language-model pre-hook that prunes the prefill (`_prune`, per family) and then,
    at every decode step, trims generate's 2-D attention mask to the pruned cache and sets the step's position ids
    (`_decode_positions`, per family)."""

    _handles: list
    _kept: Tensor | None  # [L'] columns of the last pruned prefill (of L)
    _prefill_len: int
    positions: Tensor | None = None  # [P, L] ids of the next prompt's FULL sequence (None: the stock model's ids)
    video_positions: Tensor | None = None  # [P, T*N] its video tokens' ids relative to the video start

    def _given(self, ids: Tensor, emb: Tensor) -> Tensor | None:
        """The given full-sequence ids [P, L] on emb's device, checked against the prompt; None if none given."""
        if self.positions is None:
            return None
        if self.positions.shape[-1] != ids.shape[1]:
            raise ValueError(
                f"{type(self).__name__}: positions for {self.positions.shape[-1]} tokens, the prompt has {ids.shape[1]}"
            )
        return self.positions.to(emb.device)

    def _continue(self, emb: Tensor, past: int) -> Tensor:
        """[P, 1, n] ids of n decode-step tokens after a prompt with given positions: last id + 1 + steps so far."""
        step = past - len(self._kept) + torch.arange(emb.shape[1], device=emb.device)
        return (self.positions[:, -1:].to(emb.device) + 1 + step)[:, None]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._kept = [], None

    @property
    def _dropped(self) -> int:
        return self._prefill_len - (0 if self._kept is None else len(self._kept))

    def _input_ids(self) -> Tensor | None:
        raise NotImplementedError

    def _decode_positions(self, pos: Tensor | None, emb: Tensor, past: int) -> Tensor | None:
        raise NotImplementedError

    def _prune(self, ids: Tensor, emb: Tensor, kwargs: dict) -> dict:
        raise NotImplementedError

    def _drop(self, ids: Tensor, emb: Tensor, col_keep: Tensor, kwargs: dict) -> Tensor:
        """Keep the prefill's columns col_keep [L] bool (in order) with the adapter's compaction: inputs_embeds and
        the 2-D attention mask are gathered; returns the kept columns [L'] (also remembered for the decode steps)."""
        pruned, order, _ = compact(emb, col_keep[None, None])  # [1, L', D], [1, 1, L']
        kept = order[0, 0]
        self._kept, self._prefill_len = kept, ids.shape[1]
        kwargs["inputs_embeds"] = pruned
        mask = kwargs.get("attention_mask")
        if isinstance(mask, Tensor) and mask.ndim == 2:
            kwargs["attention_mask"] = mask[:, kept]
        elif mask is not None:
            raise NotImplementedError(
                f"{type(self).__name__}: prefill attention mask {type(mask).__name__} (only a 2-D tensor or None)"
            )
        return kept

    def _inner(self, module, args, kwargs):
        emb = kwargs.get("inputs_embeds")
        cache = kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None else 0
        ids = self._input_ids()
        if emb is None:
            return None
        if past == 0:
            self._kept = None
            if ids is None or ids.shape[1] != emb.shape[1] or not bool((ids == self.video_token_id).any()):
                return None  # no video in this prompt: nothing to prune
            return args, self._prune(ids, emb, kwargs)
        if self._kept is None:
            return None
        mask = kwargs.get("attention_mask")
        if isinstance(mask, Tensor) and mask.ndim == 2 and mask.shape[1] == past + emb.shape[1] + self._dropped:
            kwargs["attention_mask"] = torch.cat([mask[:, self._kept], mask[:, self._prefill_len :]], dim=1)
        elif mask is not None and not (
            isinstance(mask, Tensor) and mask.ndim == 2 and mask.shape[1] == past + emb.shape[1]
        ):
            raise NotImplementedError(
                f"{type(self).__name__}: decode-step attention mask {type(mask).__name__} not supported"
            )
        kwargs["position_ids"] = self._decode_positions(kwargs.get("position_ids"), emb, past)
        return args, kwargs


class ScoreHooks(_PruningHooks):
    """Forward pre-hooks that drop the video tokens `select` does not keep (module docstring)."""

    def __init__(self, model, select: Callable[[VisualTokens], Tensor]):
        self.model = model
        self.select = select
        self.video_token_id = int(model.config.video_token_id)
        self.merge = int(model.config.vision_config.spatial_merge_size)
        self._handles: list = []
        self._call: dict = {}
        self._vision_grid: Tensor | None = None  # grid_thw of the vision tower's last call (generate precomputes it)
        self._kept: Tensor | None = None  # [L'] columns of the last pruned prefill (of L)
        self._prefill_len = 0
        self.last_keep: Tensor | None = None  # [1, T*N] bool, the last prefill's selection (for tests / logging)

    def attach(self) -> ScoreHooks:
        if self._handles:
            return self
        self._handles = [
            self.model.register_forward_pre_hook(self._outer, with_kwargs=True),
            self.model.model.visual.register_forward_pre_hook(self._vision, with_kwargs=True),
            self.model.model.language_model.register_forward_pre_hook(self._inner, with_kwargs=True),
        ]
        return self

    # ------------------------------------------------------------------ hooks
    def _outer(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._call = {"input_ids": ids, "video_grid_thw": kwargs.get("video_grid_thw")}
        return None

    def _vision(self, module, args, kwargs):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        if grid is not None:
            self._vision_grid = grid
        return None

    def _input_ids(self) -> Tensor | None:
        return self._call.get("input_ids")

    def _decode_positions(self, pos: Tensor | None, emb: Tensor, past: int) -> Tensor | None:
        if self.positions is not None:
            return self._continue(emb, past)  # [3, 1, n]
        return self._three_rows(pos)  # generate's own ids of the unpruned sequence, as 3 M-RoPE rows

    # --------------------------------------------------------------- pruning
    @staticmethod
    def _three_rows(pos: Tensor | None) -> Tensor | None:
        return pos[1:] if pos is not None and pos.ndim == 3 and pos.shape[0] == 4 else pos

    def _prune(self, ids: Tensor, emb: Tensor, kwargs: dict) -> dict:
        if ids.shape[0] != 1:
            raise NotImplementedError(
                f"ScoreHooks: generate with batch size 1 (got {ids.shape[0]}); use --batch_size 1"
            )
        grid = self._call.get("video_grid_thw")
        grid = self._vision_grid if grid is None else grid
        if grid is None or grid.shape[0] != 1:
            raise NotImplementedError("ScoreHooks: exactly one video per prompt (video_grid_thw must have one row)")
        gt, gh, gw = (int(g) for g in grid[0].tolist())
        t, hh, ww = gt, gh // self.merge, gw // self.merge
        vid = ids[0] == self.video_token_id  # [L]
        cols = vid.nonzero().squeeze(1)  # [T*N] video columns, in order
        if cols.numel() != t * hh * ww:
            raise ValueError(
                f"ScoreHooks: {cols.numel()} video tokens in the prompt, grid {t}x{hh}x{ww} wants {t * hh * ww}"
            )
        given = self._given(ids, emb)
        pos = kwargs.get("position_ids") if given is None else given[:, None]  # [3 or 4, 1, L]
        if given is not None:
            rel = self.video_positions.to(emb.device)
        else:
            rel = (
                pos[-3:, 0, cols] - pos[-3:, 0, cols].amin(-1, keepdim=True)
                if pos is not None
                else torch.zeros(3, len(cols))
            )
        visual = VisualTokens(
            tokens=emb[0, cols].reshape(1, t, hh * ww, -1), grid=(t, hh, ww), positions=rel[None].long()
        )
        keep = self.select(visual).to(emb.device).reshape(-1)  # [T*N] bool
        self.last_keep = keep[None].cpu()
        col_keep = ~vid
        col_keep[cols] = keep
        kept = self._drop(ids, emb, col_keep, kwargs)  # [L'] in original order
        if pos is not None:
            kwargs["position_ids"] = self._three_rows(pos)[..., kept]
        vis_mask, deepstack = kwargs.get("visual_pos_masks"), kwargs.get("deepstack_visual_embeds")
        if vis_mask is not None:  # Qwen3-VL's DeepStack: the same keep mask as the main tokens
            if not torch.equal(vis_mask[0].to(vid.device), vid):
                raise NotImplementedError("ScoreHooks: DeepStack features of tokens other than the one video (images?)")
            kwargs["visual_pos_masks"] = vis_mask[:, kept.to(vis_mask.device)]
            kwargs["deepstack_visual_embeds"] = [f[keep.to(f.device)] for f in deepstack or []]  # [T*N, D] -> [k, D]
        return kwargs


class ScoreHooks1D(_PruningHooks):
    """ScoreHooks for LLaVA-OneVision / LLaVA-Video (LlavaOnevisionForConditionalGeneration: Qwen2 LM, 1-D RoPE).

    Same two pre-hooks (top-level model: the call's input_ids; `model.model.language_model`: after the stock forward
    scattered the video features into inputs_embeds). The stock video layout is T*N pooled frame tokens followed by
    ONE image_newline, all on `<video>` placeholder columns (LlavaOnevisionProcessor: T*N + 1 of them); `select`
    sees the T*N tokens as VisualTokens [1, T, N, D] (grid (T, h, w), h = w = ceil(patches / 2), positions
    0..T*N-1 as score_lit's LlavaOnevisionAdapter.encode), the newline is always kept. Position ids
    (`position_ids`, as mllm.position_ids):
    * "original": kept tokens and text keep their ids of the FULL sequence (the ids generate passes, gathered, or
      0..L-1 when it passes none); decode steps keep generate's own ids (the unpruned sequence's, last + 1);
    * "compacted": ids 0..L'-1 of the pruned row; decode steps shifted down by the number of dropped tokens.
    Supported: batch size 1 per generate call, one video per prompt, a 2-D attention mask or none.
    """

    def __init__(self, model, select: Callable[[VisualTokens], Tensor], position_ids: str = "original"):
        import math

        if position_ids not in ("original", "compacted"):
            raise ValueError(f"position_ids={position_ids!r}: use 'original' or 'compacted'")
        self.model = model
        self.select = select
        self.position_ids = position_ids
        self.video_token_id = int(model.config.video_token_id)
        vc = model.config.vision_config
        side = math.ceil((int(vc.image_size) // int(vc.patch_size)) / 2)
        self.pooled = (side, side)
        self._handles: list = []
        self._ids: Tensor | None = None
        self._kept: Tensor | None = None
        self._prefill_len = 0
        self.last_keep: Tensor | None = None

    def attach(self) -> ScoreHooks1D:
        if not self._handles:
            self._handles = [
                self.model.register_forward_pre_hook(self._outer, with_kwargs=True),
                self.model.model.language_model.register_forward_pre_hook(self._inner, with_kwargs=True),
            ]
        return self

    def _outer(self, module, args, kwargs):
        self._ids = kwargs.get("input_ids", args[0] if args else None)
        return None

    def _input_ids(self) -> Tensor | None:
        return self._ids

    def _decode_positions(self, pos: Tensor | None, emb: Tensor, past: int) -> Tensor:
        if self.positions is not None and self.position_ids == "original":
            return self._continue(emb, past)[0]  # [1, n]
        if pos is None:  # the model's default would be past + arange (compacted); the original ids add the dropped
            pos = torch.arange(emb.shape[1], device=emb.device)[None] + past
            if self.position_ids == "original":
                pos = pos + self._dropped
        elif self.position_ids == "compacted":
            pos = pos - self._dropped
        return pos

    def _prune(self, ids: Tensor, emb: Tensor, kwargs: dict) -> dict:
        if ids.shape[0] != 1:
            raise NotImplementedError(
                f"ScoreHooks1D: generate with batch size 1 (got {ids.shape[0]}); use --batch_size 1"
            )
        vid = ids[0] == self.video_token_id  # [L]: T*N frame tokens + the trailing newline
        cols = vid.nonzero().squeeze(1)
        h, w = self.pooled
        n = cols.numel() - 1
        if n <= 0 or n % (h * w) or not bool((cols[-1] - cols[0]) == n):
            raise NotImplementedError(
                f"ScoreHooks1D: one video per prompt, T*{h * w} + 1 contiguous <video> tokens (got {cols.numel()})"
            )
        t = n // (h * w)
        cols = cols[:-1]  # the newline column stays
        given = self._given(ids, emb)
        positions = (
            torch.arange(n, device=emb.device)[None, None]
            if given is None
            else self.video_positions.to(emb.device)[None]
        )
        visual = VisualTokens(tokens=emb[0, cols].reshape(1, t, h * w, -1), grid=(t, h, w), positions=positions)
        keep = self.select(visual).to(emb.device).reshape(-1)  # [T*N] bool
        self.last_keep = keep[None].cpu()
        col_keep = torch.ones_like(vid)
        col_keep[cols] = keep
        kept = self._drop(ids, emb, col_keep, kwargs)
        pos = kwargs.get("position_ids")
        if self.position_ids == "compacted":
            kwargs["position_ids"] = torch.arange(len(kept), device=emb.device)[None]
        else:
            if given is not None:
                pos = given  # [1, L]
            elif pos is None:
                pos = torch.arange(ids.shape[1], device=emb.device)[None]
            kwargs["position_ids"] = pos[..., kept]
        return kwargs
