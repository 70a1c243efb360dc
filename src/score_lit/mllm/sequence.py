"""The sequence of a rollout: the prompt batch, the full layout pre | video block | suffix | post, the compaction of
B*K kept rows into one padded LLM batch, and the answer's scores. Pure tensor code; the adapter
(score_lit.mllm.adapter) supplies the model pieces (embedding table, video block, suffix).

Vectorised construction (no Python loop over B or K), on the device of the visual tokens:
- `build_layout`: every slot j of a row is classified by comparing j with the row's segment ends (n_pre, the block,
  the suffix, post); text ids are gathered from the pre-tensorised prompt ids, video slots from the block ids (-1 per
  video slot), position ids by ONE rule for every family (the original Qwen rule, which for 1-D RoPE is the slot
  index): pre-text j; block slot rel + n_pre; text after the block continues at n_pre + max(block ids) + 1.
- `compact`: a stable argsort of ~keep puts kept slots first in their original order; embeddings, positions and the
  attention mask are gathered with it and truncated to the longest row (L).
- `answer_scores`: the answer is always kept, so its first token is predicted at n_pre + block text + n_suffix +
  kept_k + answer_start - 1: lm_head runs on [B, K, A] states only, against targets tokenized once per batch.

A `Layout` holds the text part (kinds, ids' embeddings, positions) apart from the video embeddings, so one layout
serves every `score` call of a batch (the eval sweep scores one batch at many ratios and methods, some of which
merge tokens: `Layout.with_video` puts a call's visual tokens in).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from score_lit.types import LLMScores

# Kinds of the slots of a laid-out sequence.
PAD, TEXT, VIDEO, SUFFIX = -1, 0, 1, 2


def pad_ids(rows: list[list[int]], value: int = 0) -> tuple[Tensor, Tensor]:
    """Ragged token ids -> (ids [B, max(1, L_max)] long right-padded with `value`, lengths [B] long)."""
    n = torch.tensor([len(r) for r in rows], dtype=torch.long)
    out = torch.full((len(rows), max(1, int(n.max()) if len(rows) else 1)), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out, n


@dataclass
class PromptBatch:
    """Tokenized text of a batch: the id lists, and the same ids as padded CPU tensors built once (in the DataLoader's
    collate when the adapter's PromptBuilder is given to it), which Lightning moves with the batch."""

    pre_ids: list[list[int]]  # [B][L_pre_b] text before the video
    post_ids: list[list[int]]  # [B][L_post_b] text after it: question + assistant prefix + answer
    answer_start: list[int]  # [B] index in post_ids[b] of the first answer token
    answer_len: list[int]  # [B] number of answer tokens (>= 1 for scoring; 0 for a generation prompt)
    option_ids: Tensor  # [B, C] long, first token of each option as it follows the prefix; -1 = no option
    question_ids: list[list[int]] | None = None  # [B][L_q_b] the question alone (question-conditioned policies)
    # [B] seconds between the sampled frames (the batch's, else mllm.seconds_per_frame): what a family that writes
    # timestamps into the prompt (Qwen3-VL, Qwen3.5: `video_block`) needs at layout time, also for cached features.
    seconds_per_frame: list[float] | None = None
    # [B] the samples' stable ids (VideoBatch.ids), or None: what a per-question random draw is seeded from
    # (score_lit.compressors.simple.RandomTokens), so a question's draw does not depend on its batch.
    sample_ids: list[str] | None = None
    # Tensors of the lists above (filled in __post_init__ when not given):
    pre: Tensor | None = None  # [B, L_pre] long, right-padded with 0
    n_pre: Tensor | None = None  # [B] long
    post: Tensor | None = None  # [B, L_post] long, right-padded with 0
    n_post: Tensor | None = None  # [B] long
    answer_at: Tensor | None = None  # [B] long = answer_start
    targets: Tensor | None = None  # [B, A] long answer token ids (A = max answer_len), 0 after each answer
    n_answer: Tensor | None = None  # [B] long = answer_len
    question: Tensor | None = None  # [B, L_q] long, right-padded with 0 (None without question_ids)
    n_question: Tensor | None = None  # [B] long

    def __post_init__(self) -> None:
        if self.pre is None:
            self.pre, self.n_pre = pad_ids(self.pre_ids)
            self.post, self.n_post = pad_ids(self.post_ids)
            self.answer_at = torch.tensor(self.answer_start, dtype=torch.long)
            self.n_answer = torch.tensor(self.answer_len, dtype=torch.long)
            self.targets, _ = pad_ids(
                [p[s : s + n] for p, s, n in zip(self.post_ids, self.answer_start, self.answer_len)]
            )
            if self.question_ids is not None:
                self.question, self.n_question = pad_ids(self.question_ids)

    def __len__(self) -> int:
        return len(self.pre_ids)

    def rows(self, rows: list[int]) -> PromptBatch:
        """The PromptBatch of some rows, in `rows` order (the lists picked, the tensors rebuilt)."""
        pick = lambda xs: None if xs is None else [xs[r] for r in rows]  # noqa: E731
        return PromptBatch(
            pick(self.pre_ids),
            pick(self.post_ids),
            pick(self.answer_start),
            pick(self.answer_len),
            self.option_ids[rows],
            pick(self.question_ids),
            pick(self.seconds_per_frame),
            pick(self.sample_ids),
        )


@dataclass
class Layout:
    """Full right-padded sequences pre | video | suffix | post of a batch (all video tokens present)."""

    embeds: Tensor  # [B, Lf, D] input embeddings (the visual tokens at the video slots)
    kind: Tensor  # [B, Lf] long: PAD, TEXT, VIDEO or SUFFIX
    index: Tensor  # [B, Lf] long: the video token (VIDEO) or suffix token (SUFFIX) a slot holds, 0 elsewhere
    positions: Tensor  # [B, P, Lf] long: position ids of the full sequence (P = 3 for M-RoPE, 1 for 1-D), 0 at pads
    n_pre: Tensor  # [B] long: the video's first slot
    n_suffix: int  # S, the suffix slots after every video
    n_block_text: Tensor | None = None  # [B] long: text slots interleaved with the video (`video_block`), 0 if none
    text_embeds: Tensor | None = None  # [B, Lf, D] the embeddings of every slot but the video ones (pad id there)

    def kept_text(self) -> Tensor:
        """[B] long: the always-kept non-video slots the adapter adds with the video, i.e. the block's interleaved
        text (Qwen3's timestamps, vision start / end) + the suffix (LLaVA's image_newline); the prompt's own text
        (pre, post) is not counted here. Every method keeps them, vanilla included."""
        block = torch.zeros_like(self.n_pre) if self.n_block_text is None else self.n_block_text
        return block + self.n_suffix

    def video_slots(self) -> Tensor:
        """[B, V] long: the slot of each video token (kept in order, so the j-th VIDEO slot holds token j)."""
        b = self.kind.shape[0]
        return torch.nonzero(self.kind == VIDEO)[:, 1].view(b, -1)

    def keep(self, masks: Tensor) -> Tensor:
        """masks [B, K, V] bool over the video tokens -> [B, K, Lf] bool over the slots: text and suffix always,
        video per mask, pads never."""
        b, k, _ = masks.shape
        idx = self.index[:, None].expand(b, k, -1)
        video = (self.kind == VIDEO)[:, None] & masks.gather(2, idx)
        return ((self.kind == TEXT) | (self.kind == SUFFIX))[:, None] | video

    def with_video(self, video: Tensor) -> Layout:
        """This layout with video [B, V, D] (the model's dtype and device) at the video slots."""
        d = video.shape[-1]
        vid = video.gather(1, self.index[..., None].expand(-1, -1, d))
        return replace(self, embeds=torch.where((self.kind == VIDEO)[..., None], vid, self.text_embeds))


def build_layout(
    prompts: PromptBatch,
    post_len: Tensor,
    block_ids: Tensor,
    block_pos: Tensor,
    n_block: Tensor,
    video: Tensor,
    embed,
    pad_id: int,
    suffix: Tensor | None = None,
) -> Layout:
    """pre | block | suffix | post[:post_len[b]] of every sample, right-padded, on video's device.

    post_len [B] long; block_ids [B, Lb] long (-1 = a video slot, the j-th holding video token j; else a text id;
    anything after n_block[b]); block_pos [B, P, Lb] long ids relative to the block start; video [B, V, D] in the
    embedding's dtype; embed the input embedding table; suffix [S, D] or None."""
    dev = video.device
    b, v, _ = video.shape
    n_suf = 0 if suffix is None else suffix.shape[0]
    n_pre, post_len, n_block = prompts.n_pre.to(dev), post_len.to(dev), n_block.to(dev)
    block_ids, block_pos = block_ids.to(dev), block_pos.to(dev)
    s1 = n_pre + n_block  # [B] first slot after the block
    s2 = s1 + n_suf  # [B] first post slot
    end = s2 + post_len  # [B]
    lf = int(end.max())
    j = torch.arange(lf, device=dev)[None]  # [1, Lf]
    in_pre = j < n_pre[:, None]  # [B, Lf]
    in_blk = ~in_pre & (j < s1[:, None])
    in_suf = (j >= s1[:, None]) & (j < s2[:, None])
    in_post = (j >= s2[:, None]) & (j < end[:, None])
    jb = (j - n_pre[:, None]).clamp(0, block_ids.shape[1] - 1)  # [B, Lf] slot within the block
    bid = block_ids.gather(1, jb)
    is_vid = in_blk & (bid < 0)
    blk_text = in_blk & ~is_vid
    kind = torch.full((b, lf), PAD, dtype=torch.long, device=dev)
    kind = kind.masked_fill(in_pre | in_post | blk_text, TEXT).masked_fill(is_vid, VIDEO).masked_fill(in_suf, SUFFIX)
    index = torch.where(is_vid, is_vid.long().cumsum(1) - 1, torch.where(in_suf, j - s1[:, None], 0))
    pre = prompts.pre.to(dev).gather(1, j.clamp(max=prompts.pre.shape[1] - 1).expand(b, -1))
    post = prompts.post.to(dev).gather(1, (j - s2[:, None]).clamp(0, prompts.post.shape[1] - 1))
    text_ids = torch.where(in_pre, pre, torch.where(in_post, post, torch.where(blk_text, bid, pad_id)))
    text = embed(text_ids)  # [B, Lf, D]
    if suffix is not None:
        text = torch.where(in_suf[..., None], suffix.to(text.dtype)[index * in_suf], text)
    pos = sequence_positions(n_pre, block_pos, n_block, end, lf)
    lay = Layout(text, kind, index, pos, n_pre, n_suf, n_block - v, text)
    return lay.with_video(video)


def sequence_positions(n_pre: Tensor, block_pos: Tensor, n_block: Tensor, end: Tensor, length: int) -> Tensor:
    """[B, P, length] long position ids of rows pre | block | text (suffix and post) | pads, by the one rule: pre-text
    slot j at j, block slot i at block_pos[:, :, i] + n_pre, text after the block from n_pre + max(block ids) + 1 on,
    pads 0. n_pre / n_block / end [B] long (end = the row's length); block_pos [B, P, Lb] relative to the block."""
    dev = block_pos.device
    n_pre, n_block, end = n_pre.to(dev), n_block.to(dev), end.to(dev)
    p, lb = block_pos.shape[1], block_pos.shape[2]
    j = torch.arange(length, device=dev)[None]  # [1, L]
    s1 = n_pre + n_block  # [B]
    in_pre = j < n_pre[:, None]  # [B, L]
    in_blk = ~in_pre & (j < s1[:, None])
    in_after = (j >= s1[:, None]) & (j < end[:, None])
    valid = torch.arange(lb, device=dev)[None] < n_block[:, None]  # [B, Lb]
    q = n_pre + block_pos.masked_fill(~valid[:, None], -1).amax(dim=(1, 2)) + 1  # [B] (n_pre for an empty block)
    jb = (j - n_pre[:, None]).clamp(0, lb - 1)  # [B, L] slot within the block
    blk = block_pos.gather(2, jb[:, None].expand(-1, p, -1)) + n_pre[:, None, None]  # [B, P, L]
    after = (q[:, None] + j - s1[:, None])[:, None]  # [B, 1, L]
    return torch.where(
        in_pre[:, None], j[:, None], torch.where(in_blk[:, None], blk, torch.where(in_after[:, None], after, 0))
    )


def compact(full: Tensor, keep: Tensor, left: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """The B*K rows of one padded batch, no loop over K: full [B, Lf, D] sequences and keep [B, K, Lf] bool ->
    (emb [B*K, L, D], order [B, K, L] the full-sequence index of each compacted slot, attn [B, K, L] bool), L the
    longest kept row. A stable argsort of ~keep puts kept slots first, in their original order; padding after.
    left: padding first, kept slots last (a left-padded batch, as `generate` continues rows at their right end)."""
    b, k, _ = keep.shape
    length = int(keep.sum(-1).max())
    if left:
        order = torch.argsort(keep.to(torch.uint8), dim=-1, stable=True)[..., keep.shape[-1] - length :]
    else:
        order = torch.argsort((~keep).to(torch.uint8), dim=-1, stable=True)[..., :length]  # [B, K, L]
    attn = keep.gather(-1, order)  # [B, K, L]
    bi = torch.arange(b, device=full.device)[:, None, None]
    return full[bi, order].reshape(b * k, length, full.shape[-1]), order, attn


def row_positions(lay: Layout, order: Tensor, attn: Tensor, compacted: bool = False) -> Tensor:
    """Position ids of compacted rows (order / attn [B, K, L]) -> [P, B*K, L], or [B*K, L] for 1-D ids. compacted:
    0..L-1 over the kept slots (as if the dropped never existed), else each kept slot's id in the full sequence."""
    b, k, length = order.shape
    if compacted:
        pids = ((attn.long().cumsum(-1) - 1).clamp(min=0) * attn)[None]  # [1, B, K, L]
    else:
        bi = torch.arange(b, device=order.device)[:, None, None]
        pids = (lay.positions.transpose(1, 2)[bi, order] * attn[..., None]).permute(3, 0, 1, 2)  # [P, B, K, L]
    pids = pids.reshape(pids.shape[0], b * k, length)
    return pids[0] if pids.shape[0] == 1 else pids


def prompt_positions(lay: Layout, attn: Tensor) -> Tensor:
    """The layout's position ids as the language model takes them: [3, B, L] M-RoPE or [B, L] 1-D, pads 0."""
    pids = lay.positions * attn[:, None]  # [B, P, L]
    return pids[:, 0] if pids.shape[1] == 1 else pids.permute(1, 0, 2)


def first_answer_index(lay: Layout, prompts: PromptBatch, masks: Tensor) -> Tensor:
    """masks [B, K, V] -> [B, K] the compacted index that predicts each row's first answer token: answer token a
    sits at n_pre + block text + n_suffix + kept_k + answer_start + a."""
    first = lay.n_pre + lay.n_block_text + lay.n_suffix + prompts.answer_at.to(masks.device)
    return first[:, None] + masks.sum(-1) - 1


def answer_scores(lm_head, hidden: Tensor, first: Tensor, prompts: PromptBatch) -> LLMScores:
    """hidden [B, K, L, D] LLM states of the compacted rows, first [B, K] the index that predicts each row's first
    answer token -> CE over the answer tokens [B, K] (lm_head on [B, K, A] states only) and the options'
    first-token logits [B, K, C] (-inf where a row has fewer options)."""
    b, k, length, d = hidden.shape
    dev = hidden.device
    a_len = prompts.n_answer.to(dev)  # [B]
    a_max = prompts.targets.shape[1]
    ar = torch.arange(a_max, device=dev)
    valid = ar[None, :] < a_len[:, None]  # [B, A]
    idx = (first[..., None] + ar).clamp(max=length - 1)  # [B, K, A]
    logits = lm_head(hidden.gather(2, idx[..., None].expand(-1, -1, -1, d))).float()  # [B, K, A, vocab]
    targets = prompts.targets.to(dev)[:, None, :, None].expand(-1, k, -1, -1)
    nll = -F.log_softmax(logits, dim=-1).gather(-1, targets).squeeze(-1)  # [B, K, A]
    ce = (nll * valid[:, None]).sum(-1) / a_len[:, None]
    opt = prompts.option_ids.to(dev)  # [B, C]
    option_logits = logits[:, :, 0].gather(-1, opt.clamp(min=0)[:, None].expand(-1, k, -1))
    return LLMScores(ce=ce, option_logits=option_logits.masked_fill((opt < 0)[:, None], float("-inf")))
