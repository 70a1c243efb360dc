"""SCORE compression hooked into ONE loaded model instance (no class patching) for `model.generate`, batches included.

    hooks = ScoreHooks(model, select).attach()    # select(VisualTokens of rows, rows) -> keep [len(rows), T*N] bool
    out = model.generate(**inputs)                # prefill sees text + the kept video tokens only
    hooks.remove()

ScoreHooks: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5 (M-RoPE); ScoreHooks1D: LLaVA-OneVision / LLaVA-Video (1-D RoPE,
original or compacted ids). `score_lit.compress` (score_lit.inference.api) and lmms-eval's generate_until
(score_lit.lmms.generate) both run on these hooks.

Forward pre-hooks (FrameFusion's interface.py pattern: wrap the instance, keep device_map / accelerate hooks):
1. on the top-level model: remembers `input_ids` and `video_grid_thw` of the call; on the vision tower the
   `grid_thw` it was given (transformers 5.23's generate runs the vision tower before the first forward and
   passes `mm_encoder_outputs` instead of the grid);
2. on `model.model.language_model` (with_kwargs), i.e. AFTER the stock forward has run the vision tower, scattered
   the video features into `inputs_embeds` and computed the full-sequence position ids:
   * prefill (empty cache, the call's input_ids hold video tokens): each row's video rows of `inputs_embeds` are the
     projector output [T, N, D] (raster order per temporal unit, as score_lit's VisualTokens); `select` picks the
     kept ones (rows of one grid in one call); inputs_embeds, position_ids and the 2-D attention mask are gathered to
     each row's text + kept video columns with the adapter's compaction (score_lit.mllm.sequence.compact), LEFT-padded
     again (rows keep different numbers of tokens; generate continues every row at its right end). Padding columns
     of the call (attention mask 0) are dropped with the rest. Kept tokens keep their ORIGINAL positions (the given
     ones, or the model's own, gathered), as score_lit does. Qwen3-VL: the video columns are not contiguous (each
     temporal unit's timestamp text and vision start / end tokens sit between them; they are text, always kept),
     and the stock forward passes the DeepStack inputs (`visual_pos_masks` [B, L], `deepstack_visual_embeds` per
     layer [sum of video tokens, D]): both are pruned with the same keep masks. Qwen3.5 (no DeepStack): its
     linear-attention layers run on the pruned inputs_embeds, so the recurrence and the conv never see a dropped
     token;
   * decode steps (cache filled): generate's attention mask still counts the dropped columns; it is replaced by the
     pruned prefill's mask + the new columns, so it matches the (shorter) cache. Position ids of new tokens come from
     the stock model (rope_deltas of the full prompt), so they are the unpruned sequence's positions, or, with given
     positions, each row's last id + 1 + steps.
A 4-row position_ids (text row + 3 M-RoPE rows, as generate builds them) loses its text row after pruning: that
row only serves packed-sequence masks, which a pruned row with gaps would fake; the 2-D attention mask is used.

Given positions (`hooks.positions = ids [B, P, L]`, `hooks.video_positions = [B, P, T*N]`, set before a generate call;
what score_lit.compress and score_lit.lmms.generate do with the adapter's `full_positions`): the prefill uses these
ids of the FULL rows (gathered for the kept columns) instead of the stock model's, and the policy sees
`video_positions`. That makes generate use exactly score_lit's positions (for Qwen2-VL / Qwen2.5-VL the original
M-RoPE rule, not transformers 5.23's; score_lit.mllm.positions).

Supported (checked, else a clear error): one video per row (every row of the call), a 2-D attention mask or none;
rows may be left-padded. The policy sees the tokens in the model's dtype (score_lit casts the state the same way).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from score_lit.mllm.sequence import compact
from score_lit.types import VisualTokens

# (the tokens of some rows of the call, those rows' indices) -> keep [len(rows), T*N] bool
Select = Callable[[VisualTokens, list[int]], Tensor]


class _PruningHooks:
    """What both families share: the language-model pre-hook that prunes the prefill (`_rows` and `_prune_extra`, per
    family) and then, at every decode step, trims generate's 2-D attention mask to the pruned cache and sets the
    step's position ids (`_decode_positions`, per family)."""

    positions: Tensor | None = None  # [B, P, L] ids of the next call's FULL rows (None: the stock model's ids)
    video_positions: Tensor | list | None = None  # [B, P, T*N] (or per row [P, T_b*N_b]) relative to the video start

    def __init__(self, model, select: Select):
        self.model = model
        self.select = select
        self.video_token_id = int(model.config.video_token_id)
        self._handles: list = []
        self._ids: Tensor | None = None  # [B, L] input_ids of the current top-level call
        self._order: Tensor | None = None  # [B, L'] full-row column of each slot of the pruned prefill
        self._attn: Tensor | None = None  # [B, L'] bool, its attention mask (left padding False)
        self._prefill_len = 0  # L
        self.last_keep: list[Tensor] | None = None  # per row [T*N] bool: the last prefill's selection (CPU)

    def attach(self):
        if not self._handles:
            self._handles = self._register()
        return self

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._order = [], None

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.remove()

    # ----------------------------------------------------------------- family
    def _register(self) -> list:
        raise NotImplementedError

    def _rows(self, ids: Tensor, emb: Tensor, kwargs: dict, pos: Tensor | None) -> list[tuple[Tensor, tuple, Tensor]]:
        """Per row: (its selectable video columns [T*N], grid (T, H', W'), their positions [P, T*N] relative to the
        video start)."""
        raise NotImplementedError

    def _prune_extra(self, kwargs: dict, order: Tensor, attn: Tensor, keeps: list[Tensor], given: bool) -> None:
        """Family inputs of the pruned prefill besides inputs_embeds / attention_mask (positions, DeepStack)."""
        raise NotImplementedError

    def _decode_positions(self, pos: Tensor | None, emb: Tensor, past: int) -> Tensor | None:
        raise NotImplementedError

    # ----------------------------------------------------------------- shared
    def _outer(self, module, args, kwargs):
        self._ids = kwargs.get("input_ids", args[0] if args else None)
        return None

    @property
    def _dropped(self) -> int:
        return self._prefill_len - (0 if self._order is None else self._order.shape[1])

    def _given(self, ids: Tensor, emb: Tensor) -> Tensor | None:
        """The given full-row ids [B, P, L] on emb's device, checked against the call; None if none given."""
        if self.positions is None:
            return None
        pos = self.positions if self.positions.ndim == 3 else self.positions[None]
        if pos.shape[0] != ids.shape[0] or pos.shape[-1] != ids.shape[1]:
            raise ValueError(
                f"{type(self).__name__}: positions for {pos.shape[0]} rows of {pos.shape[-1]} tokens, the call has "
                f"{ids.shape[0]} rows of {ids.shape[1]}"
            )
        return pos.to(emb.device)

    def _video_positions(self, b: int, device) -> Tensor:
        vp = self.video_positions  # [B, P, T*N], a list of [P, T_b*N_b], or one row's [P, T*N]
        return (vp[b] if isinstance(vp, (list, tuple)) or vp.ndim == 3 else vp).to(device)

    def _continue(self, emb: Tensor, past: int) -> Tensor:
        """[P, B, n] ids of n decode-step tokens after rows with given positions: each row's last id + 1 + steps."""
        step = past - self._order.shape[1] + torch.arange(emb.shape[1], device=emb.device)  # [n]
        pos = self.positions if self.positions.ndim == 3 else self.positions[None]
        last = pos[:, :, -1].to(emb.device).T  # [P, B]
        return last[..., None] + 1 + step

    def _select(self, emb: Tensor, rows: list[tuple[Tensor, tuple, Tensor]]) -> list[Tensor]:
        """Per row [T*N] bool: `select` once per group of rows with one grid (a batch of equal videos: one call)."""
        keeps: list[Tensor | None] = [None] * len(rows)
        groups: dict[tuple, list[int]] = {}
        for b, (_, grid, _) in enumerate(rows):
            groups.setdefault(tuple(grid), []).append(b)
        for grid, members in groups.items():
            t, h, w = grid
            tokens = torch.stack([emb[b, rows[b][0]].reshape(t, h * w, -1) for b in members])  # [g, T, N, D]
            positions = torch.stack([rows[b][2] for b in members]).long()  # [g, P, T*N]
            keep = self.select(VisualTokens(tokens=tokens, grid=grid, positions=positions), members)
            for i, b in enumerate(members):
                keeps[b] = keep[i].to(emb.device).reshape(-1).bool()
        return keeps

    def _prune(self, ids: Tensor, emb: Tensor, kwargs: dict) -> dict:
        mask = kwargs.get("attention_mask")
        if mask is not None and not (isinstance(mask, Tensor) and mask.ndim == 2):
            raise NotImplementedError(
                f"{type(self).__name__}: prefill attention mask {type(mask).__name__} (only a 2-D tensor or None)"
            )
        given = self._given(ids, emb)
        pos = given.permute(1, 0, 2) if given is not None else kwargs.get("position_ids")  # [P, B, L] or stock
        rows = self._rows(ids, emb, kwargs, pos)
        keeps = self._select(emb, rows)
        self.last_keep = [k.cpu() for k in keeps]
        col_keep = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(ids.device).bool()
        col_keep = col_keep.clone()
        for b, (cols, _, _) in enumerate(rows):
            col_keep[b, cols] = keeps[b]
        pruned, order, attn = compact(emb, col_keep[:, None], left=True)  # [B, L', D], [B, 1, L'] x 2
        order, attn = order[:, 0], attn[:, 0]
        self._order, self._attn, self._prefill_len = order, attn, ids.shape[1]
        kwargs["inputs_embeds"] = pruned
        if mask is not None:
            kwargs["attention_mask"] = attn.to(mask.device, mask.dtype)
        elif not bool(attn.all()):
            kwargs["attention_mask"] = attn.long()
        self._prune_extra(kwargs, order, attn, keeps, given is not None)
        return kwargs

    def _inner(self, module, args, kwargs):
        emb = kwargs.get("inputs_embeds")
        cache = kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None else 0
        ids = self._ids
        if emb is None:
            return None
        if past == 0:
            self._order = None
            if ids is None or ids.shape[:2] != emb.shape[:2] or not bool((ids == self.video_token_id).any()):
                return None  # no video in this prompt: nothing to prune
            return args, self._prune(ids, emb, kwargs)
        if self._order is None:
            return None
        mask = kwargs.get("attention_mask")
        if isinstance(mask, Tensor) and mask.ndim == 2 and mask.shape[1] == past + emb.shape[1] + self._dropped:
            head = self._attn.to(mask.device, mask.dtype)
            kwargs["attention_mask"] = torch.cat([head, mask[:, self._prefill_len :]], dim=1)
        elif mask is not None and not (
            isinstance(mask, Tensor) and mask.ndim == 2 and mask.shape[1] == past + emb.shape[1]
        ):
            raise NotImplementedError(
                f"{type(self).__name__}: decode-step attention mask {type(mask).__name__} not supported"
            )
        kwargs["position_ids"] = self._decode_positions(kwargs.get("position_ids"), emb, past)
        return args, kwargs


class ScoreHooks(_PruningHooks):
    """Forward pre-hooks that drop the video tokens `select` does not keep, M-RoPE families (module docstring)."""

    def __init__(self, model, select: Select):
        super().__init__(model, select)
        self.merge = int(model.config.vision_config.spatial_merge_size)
        self._grid: Tensor | None = None  # video_grid_thw of the call
        self._vision_grid: Tensor | None = None  # grid_thw of the vision tower's last call (generate precomputes it)

    def _register(self) -> list:
        return [
            self.model.register_forward_pre_hook(self._outer, with_kwargs=True),
            self.model.model.visual.register_forward_pre_hook(self._vision, with_kwargs=True),
            self.model.model.language_model.register_forward_pre_hook(self._inner, with_kwargs=True),
        ]

    def _outer(self, module, args, kwargs):
        super()._outer(module, args, kwargs)
        self._grid = kwargs.get("video_grid_thw")
        return None

    def _vision(self, module, args, kwargs):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        if grid is not None:
            self._vision_grid = grid
        return None

    @staticmethod
    def _three_rows(pos: Tensor | None) -> Tensor | None:
        return pos[1:] if pos is not None and pos.ndim == 3 and pos.shape[0] == 4 else pos

    def _rows(self, ids: Tensor, emb: Tensor, kwargs: dict, pos: Tensor | None) -> list[tuple[Tensor, tuple, Tensor]]:
        grid = self._vision_grid if self._grid is None else self._grid
        if grid is None or grid.shape[0] != ids.shape[0]:
            raise NotImplementedError(
                f"{type(self).__name__}: one video per row ({ids.shape[0]} rows, "
                f"{0 if grid is None else grid.shape[0]} videos in video_grid_thw)"
            )
        pos = self._three_rows(pos)
        rows = []
        for b in range(ids.shape[0]):
            gt, gh, gw = (int(g) for g in grid[b].tolist())
            t, hh, ww = gt, gh // self.merge, gw // self.merge
            cols = (ids[b] == self.video_token_id).nonzero().squeeze(1)  # [T*N] video columns, in order
            if cols.numel() != t * hh * ww:
                raise ValueError(
                    f"{type(self).__name__}: {cols.numel()} video tokens in row {b}, its grid {t}x{hh}x{ww} wants "
                    f"{t * hh * ww}"
                )
            if self.positions is not None:
                rel = self._video_positions(b, emb.device)
            elif pos is not None:
                rel = pos[-3:, b, cols] - pos[-3:, b, cols].amin(-1, keepdim=True)
            else:
                rel = torch.zeros(3, len(cols), dtype=torch.long, device=emb.device)
            rows.append((cols, (t, hh, ww), rel))
        return rows

    def _prune_extra(self, kwargs: dict, order: Tensor, attn: Tensor, keeps: list[Tensor], given: bool) -> None:
        pos = (
            self._given(self._ids, kwargs["inputs_embeds"]).permute(1, 0, 2)
            if given
            else self._three_rows(kwargs.get("position_ids"))
        )
        if pos is not None:  # [3, B, L] -> the kept columns [3, B, L']
            kwargs["position_ids"] = pos.gather(2, order.to(pos.device)[None].expand(pos.shape[0], -1, -1))
        vis_mask, deepstack = kwargs.get("visual_pos_masks"), kwargs.get("deepstack_visual_embeds")
        if vis_mask is not None:  # Qwen3-VL's DeepStack: the same keep masks as the main tokens
            vid = self._ids == self.video_token_id
            if not torch.equal(vis_mask.to(vid.device), vid):
                raise NotImplementedError(
                    f"{type(self).__name__}: DeepStack features of tokens other than the videos (images?)"
                )
            kwargs["visual_pos_masks"] = vis_mask.gather(1, order.to(vis_mask.device)) & attn.to(vis_mask.device)
            flat = torch.cat(keeps)  # [sum of T*N] in row order, as the features are
            kwargs["deepstack_visual_embeds"] = [f[flat.to(f.device)] for f in deepstack or []]

    def _decode_positions(self, pos: Tensor | None, emb: Tensor, past: int) -> Tensor | None:
        if self.positions is not None:
            return self._continue(emb, past)  # [3, B, n]
        return self._three_rows(pos)  # generate's own ids of the unpruned sequence, as 3 M-RoPE rows


class ScoreHooks1D(_PruningHooks):
    """ScoreHooks for LLaVA-OneVision / LLaVA-Video (LlavaOnevisionForConditionalGeneration: Qwen2 LM, 1-D RoPE).

    Same pre-hooks (top-level model: the call's input_ids; `model.model.language_model`: after the stock forward
    scattered the video features into inputs_embeds). The stock video layout is T*N pooled frame tokens followed by
    ONE image_newline, all on `<video>` placeholder columns (LlavaOnevisionProcessor: T*N + 1 of them); `select`
    sees the T*N tokens as VisualTokens [g, T, N, D] (grid (T, h, w), h = w = ceil(patches / 2), positions
    0..T*N-1 as score_lit's LlavaOnevisionAdapter.encode), the newline is always kept. Position ids
    (`position_ids`, as mllm.position_ids):
    * "original": kept tokens and text keep their ids of the FULL row (the given ids, generate's, gathered, or
      0..L-1 when it passes none); decode steps continue them;
    * "compacted": ids 0..L'-1 over each pruned row's tokens; decode steps shifted down by the dropped tokens.
    """

    def __init__(self, model, select: Select, position_ids: str = "original"):
        import math

        if position_ids not in ("original", "compacted"):
            raise ValueError(f"position_ids={position_ids!r}: use 'original' or 'compacted'")
        super().__init__(model, select)
        self.position_ids = position_ids
        vc = model.config.vision_config
        side = math.ceil((int(vc.image_size) // int(vc.patch_size)) / 2)
        self.pooled = (side, side)

    def _register(self) -> list:
        return [
            self.model.register_forward_pre_hook(self._outer, with_kwargs=True),
            self.model.model.language_model.register_forward_pre_hook(self._inner, with_kwargs=True),
        ]

    def _rows(self, ids: Tensor, emb: Tensor, kwargs: dict, pos: Tensor | None) -> list[tuple[Tensor, tuple, Tensor]]:
        h, w = self.pooled
        rows = []
        for b in range(ids.shape[0]):
            cols = (ids[b] == self.video_token_id).nonzero().squeeze(1)  # T*N frame tokens + the trailing newline
            n = cols.numel() - 1
            if n <= 0 or n % (h * w) or not bool((cols[-1] - cols[0]) == n):
                raise NotImplementedError(
                    f"{type(self).__name__}: one video per row, T*{h * w} + 1 contiguous <video> tokens "
                    f"(row {b}: {cols.numel()})"
                )
            rel = (
                torch.arange(n, device=emb.device)[None]
                if self.positions is None
                else self._video_positions(b, emb.device)
            )
            rows.append((cols[:-1], (n // (h * w), h, w), rel))  # the newline column stays
        return rows

    def _prune_extra(self, kwargs: dict, order: Tensor, attn: Tensor, keeps: list[Tensor], given: bool) -> None:
        emb = kwargs["inputs_embeds"]
        if self.position_ids == "compacted":
            first = (~attn).sum(1, keepdim=True)  # [B, 1] left padding of each row
            kwargs["position_ids"] = (torch.arange(attn.shape[1], device=emb.device)[None] - first).clamp(min=0)
            return
        pos = kwargs.get("position_ids")
        if given:
            pos = self._given(self._ids, emb)[:, 0]  # [B, L]
        elif pos is None:
            pos = torch.arange(self._prefill_len, device=emb.device)[None].expand(order.shape[0], -1)
        kwargs["position_ids"] = pos.gather(1, order.to(pos.device))

    def _decode_positions(self, pos: Tensor | None, emb: Tensor, past: int) -> Tensor:
        if self.positions is not None and self.position_ids == "original":
            return self._continue(emb, past)[0]  # [B, n]
        step = past - self._order.shape[1] + torch.arange(emb.shape[1], device=emb.device)[None]  # [1, n]
        if self.position_ids == "compacted":  # each row's kept tokens + steps
            return self._attn.sum(1, keepdim=True).to(emb.device) + step
        if pos is None:  # the full row's ids 0..L-1, continued
            pos = step + self._prefill_len
        return pos
