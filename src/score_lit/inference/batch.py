"""The inputs of one batched `model.generate` call, built the way `score_lit eval` builds its prompts.

    gb = generate_batch(adapter, videos, questions)   # videos: one VideoBatch row each (score_lit.data.common.collate)
    hooks.positions, hooks.video_positions = gb.positions, gb.video_positions
    out = model.generate(**gb.inputs, ...)

Per row: the family's video inputs (`adapter.video_inputs`, score_lit's preprocessing), the prompt `pre | video block |
post` (the adapter's one prompt builder over its template, `prompt_block` for the stock placeholder layout) and the
row's position ids by the layout's rule (`adapter.full_positions`). Rows are LEFT-padded to one length (pad id,
attention mask 0, positions 0) as decoder-only generation wants; the video inputs of the rows are concatenated as the
stock processor batches them (Qwen: flat patches + one video_grid_thw row per video; LLaVA: [B, F, 3, S, S], so the
videos of one call need one shape there). score_lit.compress's `prepare` and lmms-eval's generate_until
(score_lit.lmms.generate) both build their calls here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from score_lit.mllm.adapter import VideoInputs
from score_lit.mllm.sequence import PromptBatch
from score_lit.types import VideoBatch


@dataclass
class GenerateBatch:
    """One batched generate call (module docstring)."""

    inputs: dict  # input_ids [B, L] left-padded, attention_mask [B, L], + the family's video inputs (CPU tensors)
    positions: Tensor  # [B, P, L] score_lit's position ids of each full row (left padding: 0)
    video_positions: list[Tensor]  # [B] x [P, T_b*N_b] each row's video tokens' ids relative to the video start
    prompts: PromptBatch  # the rows' generation prompts (what a question-conditioned policy reads)

    @property
    def prompt_len(self) -> int:
        return int(self.inputs["input_ids"].shape[1])

    def model_inputs(self, adapter) -> dict:
        """`inputs` on the adapter's model's device, floating tensors in its dtype: `generate`'s keyword arguments."""
        dev, dtype = adapter.device, adapter.model.get_input_embeddings().weight.dtype
        return {k: (v.to(dev, dtype) if v.is_floating_point() else v.to(dev)) for k, v in self.inputs.items()}


def _merge_video_inputs(parts: list[VideoInputs]) -> VideoInputs:
    keys = parts[0].model_kwargs.keys()
    try:
        merged = {k: torch.cat([p.model_kwargs[k] for p in parts]) for k in keys}
    except RuntimeError as e:
        raise ValueError(
            f"the videos of one batch do not stack ({e}): give this family videos of one shape per call "
            "(same frame count and size)"
        ) from None
    return VideoInputs(merged, parts[0].grid, torch.cat([p.positions for p in parts]), parts[0].n_suffix)


def generate_batch(adapter, videos: list[VideoBatch], questions: list[str]) -> GenerateBatch:
    """The generate call of len(videos) rows (module docstring); videos[i] is one video (a VideoBatch of one row)."""
    if len(videos) != len(questions) or not videos:
        raise ValueError(f"{len(videos)} videos and {len(questions)} questions: give one question per video")
    rows, row_pos, parts = [], [], []
    for batch, question in zip(videos, questions):
        spf = None if batch.seconds_per_frame is None else batch.seconds_per_frame[0]
        video_in = adapter.video_inputs(batch)
        pre, post = adapter.prompt_ids(question)
        block, block_pos = adapter.prompt_block(video_in, spf)
        rows.append(pre + block + post)
        row_pos.append(adapter.full_positions(len(pre), block_pos, video_in.n_suffix, len(post)))  # [P, L_b]
        parts.append(video_in)
    length = max(len(r) for r in rows)
    pad = adapter.pad_token_id
    ids = torch.tensor([[pad] * (length - len(r)) + r for r in rows], dtype=torch.long)  # [B, L]
    mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    positions = torch.zeros((len(rows), row_pos[0].shape[0], length), dtype=torch.long)
    for b, pos in enumerate(row_pos):
        positions[b, :, length - pos.shape[1] :] = pos
    merged = _merge_video_inputs(parts)
    inputs = {"input_ids": ids, "attention_mask": mask, **adapter.generate_inputs(ids, merged)}
    spfs = [None if v.seconds_per_frame is None else v.seconds_per_frame[0] for v in videos]
    prompts = adapter.prompt_builder.generation(
        list(questions), None if any(s is None for s in spfs) else [float(s) for s in spfs]
    )
    return GenerateBatch(inputs, positions, [p.positions[0] for p in parts], prompts)


def new_tokens(out: Tensor, prompt_len: int, eos: int | list[int] | None) -> list[Tensor]:
    """Each row's generated tokens of a batched `generate` output [B, prompt_len + n]: up to and including its first
    eos (what a batch-1 call, which stops there, returns); the padding generate adds after it is cut."""
    stops = {eos} if isinstance(eos, int) else set(eos or [])
    res = []
    for row in out[:, prompt_len:]:
        end = len(row)
        for i, tok in enumerate(row.tolist()):
            if tok in stops:
                end = i + 1
                break
        res.append(row[:end])
    return res
