"""Test-only reference oracles of the adapters' `score` (score_lit.mllm.adapter.VideoMLLM): the STOCK model's
own forward, one (sample, rollout) at a time, the slow way. The equivalence tests compare the batched
path against these (tests/test_qwen_adapter.py, tests/test_llava_adapter.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from score_lit.mllm.positions import sequence_positions, video_positions
from score_lit.types import LLMScores, VideoBatch


def transformers_523_text_start(n_pre: int, grid: tuple[int, int, int]) -> int:
    """Where transformers 5.23's get_rope_index starts the post-video text: n_pre + max(H', W') (score_lit.mllm.positions
    explains why score_lit does not use it). Kept only to document (and test) the difference from next_text_start."""
    return n_pre + max(int(grid[1]), int(grid[2]))


@torch.no_grad()
def qwen_reference_scores(adapter, batch: VideoBatch, masks: Tensor) -> LLMScores:
    """Slow reference for `score`: the STOCK model forward, one (sample, rollout) at a time, on the FULL
    sequence (input_ids with <|video_pad|> placeholders + pixel_values_videos, so the stock vision path
    and masked_scatter run too), the dropped video tokens masked out as keys by the 2-D attention mask,
    and our full-sequence position ids. For tests; cost is B*K full forwards."""
    dev = adapter.device
    prompts = adapter.tokenize(batch)
    pixels, grid_thw = adapter.preprocessor(batch.frames)
    b, k, v = masks.shape
    per = pixels.shape[0] // b
    gt, gh, gw = (int(g) for g in grid_thw[0].tolist())
    grid = (gt, gh // adapter.merge, gw // adapter.merge)
    scales = adapter.time_scales(batch)
    ce = torch.zeros(b, k)
    option_logits = torch.zeros(b, k, prompts.option_ids.shape[1])
    for i in range(b):
        pre, post = prompts.pre_ids[i], prompts.post_ids[i]
        p = len(pre)
        ids = torch.tensor(pre + [adapter.video_token_id] * v + post, device=dev)[None]
        mm = torch.zeros_like(ids)
        mm[:, p : p + v] = 2
        pos = sequence_positions(p, video_positions(grid, 0, scales[i]), len(post))[:, None].to(dev)  # [3, 1, L]
        a0, n = p + v + prompts.answer_start[i], prompts.answer_len[i]
        opt = prompts.option_ids[i]
        for j in range(k):
            attn = torch.ones_like(ids)
            attn[0, p : p + v] = masks[i, j].to(dev).long()
            logits = (
                adapter.model(
                    input_ids=ids,
                    pixel_values_videos=pixels[i * per : (i + 1) * per].to(dev),
                    video_grid_thw=grid_thw[i : i + 1].to(dev),
                    mm_token_type_ids=mm,
                    attention_mask=attn,
                    position_ids=pos,
                )
                .logits[0]
                .float()
            )
            lp = F.log_softmax(logits[a0 - 1 : a0 - 1 + n], dim=-1)
            ce[i, j] = -lp.gather(-1, ids[0, a0 : a0 + n, None]).mean().cpu()
            ol = logits[a0 - 1, opt.clamp(min=0).to(dev)].cpu()
            option_logits[i, j] = ol.masked_fill(opt < 0, float("-inf"))
    return LLMScores(ce=ce, option_logits=option_logits)


@torch.no_grad()
def llava_reference_scores(adapter, batch: VideoBatch, masks: Tensor) -> LLMScores:
    """Slow reference for `score`, one (sample, rollout) at a time, with the STOCK model forward.
    original: input_ids with T*N + 1 <video> placeholders + pixel_values_videos (the stock vision path,
    pooling, newline and masked_scatter run too), dropped video tokens masked out as keys by the 2-D
    attention mask, explicit position ids 0..L-1 of the full sequence.
    compacted: the stock forward on inputs_embeds of the PRUNED sequence (stock embeddings of the full
    sequence, dropped video rows removed), default position ids. For tests; cost is B*K full forwards."""
    dev, compacted = adapter.device, adapter.cfg.position_ids == "compacted"
    prompts = adapter.tokenize(batch)
    pixels = adapter.pixels(batch.frames)
    b, k, v = masks.shape
    ce = torch.zeros(b, k)
    option_logits = torch.zeros(b, k, prompts.option_ids.shape[1])
    for i in range(b):
        pre, post = prompts.pre_ids[i], prompts.post_ids[i]
        p = len(pre)
        ids = torch.tensor(pre + [adapter.video_token_id] * (v + 1) + post, device=dev)[None]
        px = pixels[i : i + 1].to(dev)
        a0, n, opt = p + v + 1 + prompts.answer_start[i], prompts.answer_len[i], prompts.option_ids[i]
        for j in range(k):
            keep = torch.ones(ids.shape[1], dtype=torch.bool, device=dev)
            keep[p : p + v] = masks[i, j].to(dev)
            if compacted:
                emb = adapter.model.model.get_input_embeddings()(ids)
                feats = adapter.model.model.get_video_features(px, return_dict=True).pooler_output.flatten(0, 1)
                emb = emb.masked_scatter((ids == adapter.video_token_id)[..., None], feats.to(emb.dtype))
                logits = adapter.model(inputs_embeds=emb[:, keep]).logits[0].float()
                a = a0 - int((~keep).sum())
                tgt = ids[0, a0 : a0 + n]
            else:
                pos = torch.arange(ids.shape[1], device=dev)[None]
                logits = (
                    adapter.model(
                        input_ids=ids, pixel_values_videos=px, attention_mask=keep[None].long(), position_ids=pos
                    )
                    .logits[0]
                    .float()
                )
                a, tgt = a0, ids[0, a0 : a0 + n]
            lp = F.log_softmax(logits[a - 1 : a - 1 + n], dim=-1)
            ce[i, j] = -lp.gather(-1, tgt[:, None]).mean().cpu()
            ol = logits[a - 1, opt.clamp(min=0).to(dev)].cpu()
            option_logits[i, j] = ol.masked_fill(opt < 0, float("-inf"))
    return LLMScores(ce=ce, option_logits=option_logits)


def qwen3_stock_ids(adapter, batch: VideoBatch, prompts, i: int) -> Tensor:
    """[L] input_ids of sample i's full prompt as Qwen3-VL's processor writes it: pre | per unit "<t seconds>"
    <|vision_start|> N <|video_pad|> <|vision_end|> | post. Times from the STOCK `_calculate_timestamps` with
    frame indices 0..F-1 at fps 1 / seconds_per_frame, the placeholder text as in its `replace_video_token`
    (transformers 5.23; written out here because the processor object needs torchvision to be built)."""
    from transformers import Qwen3VLProcessor

    f = batch.frames[i].shape[0]
    spf = prompts.seconds_per_frame[i]
    times = Qwen3VLProcessor._calculate_timestamps(None, list(range(f)), 1.0 / spf, adapter.temporal_patch_size)
    h, w = (s // (adapter.preprocessor.patch_size * adapter.merge) for s in batch.frames.shape[-2:])
    text = "".join(f"<{t:.1f} seconds><|vision_start|>" + "<|video_pad|>" * (h * w) + "<|vision_end|>" for t in times)
    block = adapter.tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(prompts.pre_ids[i] + block + prompts.post_ids[i])


@torch.no_grad()
def qwen3_reference_scores(adapter, batch: VideoBatch, masks: Tensor, pruned: bool) -> LLMScores:
    """Slow reference for Qwen3-VL / Qwen3.5 `score`, one (sample, rollout) at a time, with the STOCK model:
    input_ids of `qwen3_stock_ids`, the stock vision path (get_video_features), position ids of the stock
    get_rope_index on the FULL sequence (mm_token_type_ids 2 at the video slots).
    pruned=False: the stock full forward (input_ids + pixel_values_videos: its masked_scatter and DeepStack run),
    dropped video tokens masked out as keys by the 2-D attention mask (valid for attention-only LLMs).
    pruned=True: the stock forward on inputs_embeds of the PRUNED sequence (stock embeddings of the full
    sequence, dropped video rows removed) with the kept columns' position ids (what a hybrid linear-attention LLM
    needs; a model with DeepStack cannot take this path, its forward adds DeepStack only from pixel values)."""
    dev = adapter.device
    prompts = adapter.tokenize(batch)
    pixels, grid_thw = adapter.preprocessor(batch.frames)
    b, k, v = masks.shape
    per = pixels.shape[0] // b
    ce = torch.zeros(b, k)
    option_logits = torch.zeros(b, k, prompts.option_ids.shape[1])
    for i in range(b):
        ids = qwen3_stock_ids(adapter, batch, prompts, i).to(dev)[None]
        vid = ids[0] == adapter.video_token_id
        mm = vid.long()[None] * 2
        px, g = pixels[i * per : (i + 1) * per].to(dev), grid_thw[i : i + 1].to(dev)
        pos, _ = adapter.model.model.get_rope_index(ids, mm_token_type_ids=mm, video_grid_thw=g)  # [3, 1, L]
        a0 = (
            len(prompts.pre_ids[i])
            + (ids.shape[1] - len(prompts.pre_ids[i]) - len(prompts.post_ids[i]))
            + prompts.answer_start[i]
        )
        n, opt = prompts.answer_len[i], prompts.option_ids[i]
        for j in range(k):
            keep = torch.ones(ids.shape[1], dtype=torch.bool, device=dev)
            keep[vid] = masks[i, j].to(dev)
            if pruned:
                emb = adapter.model.model.get_input_embeddings()(ids)
                feats = torch.cat(adapter.model.model.get_video_features(px, g, return_dict=True).pooler_output)
                emb = emb.masked_scatter(vid[None, :, None], feats.to(emb.dtype))
                logits = adapter.model(inputs_embeds=emb[:, keep], position_ids=pos[:, :, keep]).logits[0].float()
                a = a0 - int((~keep).sum())
            else:
                logits = (
                    adapter.model(
                        input_ids=ids,
                        pixel_values_videos=px,
                        video_grid_thw=g,
                        mm_token_type_ids=mm,
                        attention_mask=keep[None].long(),
                        position_ids=pos,
                    )
                    .logits[0]
                    .float()
                )
                a = a0
            lp = F.log_softmax(logits[a - 1 : a - 1 + n], dim=-1)
            ce[i, j] = -lp.gather(-1, ids[0, a0 : a0 + n, None]).mean().cpu()
            ol = logits[a - 1, opt.clamp(min=0).to(dev)].cpu()
            option_logits[i, j] = ol.masked_fill(opt < 0, float("-inf"))
    return LLMScores(ce=ce, option_logits=option_logits)
