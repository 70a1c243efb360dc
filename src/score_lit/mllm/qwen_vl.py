"""Qwen2-VL / Qwen2.5-VL behind the VideoMLLM protocol: encode once, score B*K pruned rollouts in one batch.

The adapter wraps a loaded `Qwen2VLForConditionalGeneration` / `Qwen2_5_VLForConditionalGeneration`
instance (no class patching) and uses its public pieces directly:

    encode:   VideoPreprocessor (torch, no torchvision) -> model.model.get_video_features(...)
              .pooler_output -> tokens [B, T, N, D]; positions.video_positions -> [B, 3, T*N]
    score:    model.model.language_model(inputs_embeds, attention_mask, position_ids) -> model.lm_head
              applied only at the answer-predicting positions.

Deviation from the stock forward (on purpose): position ids come from score_lit.mllm.positions (the
original Qwen M-RoPE rule, not transformers 5.23's get_rope_index; see that module) and are computed
on the FULL sequence, then gathered for the kept columns. With all tokens kept this is exactly the
stock forward given the same ids; with some dropped it equals the full sequence with the dropped
tokens masked out as keys (tests/test_qwen_adapter.py checks both against the stock model).

Vectorised construction in `score` (no Python loop over K): lay out each sample's full sequence
pre | all video | post, right-padded over the batch ([B, Lf]); a keep mask per rollout [B, K, Lf];
a stable argsort of ~keep puts kept slots first in their original order; gather embeddings,
positions and the attention mask with it and truncate to the longest row (L). The answer is always
kept, so its row index is n_pre + kept_k + answer_start: lm_head runs on [B, K, A] states only.

Text: mllm.prompt_template is split at {video}; {question} is filled in wherever it stands. The answer
(and each option) is tokenized jointly with the text before it, so a BPE tokenizer sees the real
boundary, and its ids are the tail after the prefix's ids (if the boundary merged, the answer alone).
CE covers the answer tokens only (no <|im_end|> after it).

Families differ only in the model class and the temporal position scale: Qwen2.5-VL's t-axis counts
absolute time (tokens_per_second x seconds per temporal patch), Qwen2-VL's counts temporal patches.
Processor numbers: patch / merge / temporal patch come from the model's vision config, mean / std
from preprocessor_config.json when the checkpoint has one; the pixel budget (min/max_pixels) is
MLLMConfig's, since it is this project's per-frame video knob, not the checkpoint's image default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from score_lit.config import MLLMConfig
from score_lit.mllm.positions import sequence_positions, time_scale, video_positions
from score_lit.mllm.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, VideoPreprocessor
from score_lit.types import LLMScores, VideoBatch, VisualTokens

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE as transformers' apply_rotary_pos_emb does it: x * cos + rotate_half(x) * sin (cos/sin broadcast to x)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


@dataclass
class PromptBatch:
    """Tokenized text of a batch (CPU lists; `score` moves what it needs to the model's device)."""

    pre_ids: list[list[int]]  # [B][L_pre_b] text before the video
    post_ids: list[list[int]]  # [B][L_post_b] text after it: question + assistant prefix + answer
    answer_start: list[int]  # [B] index in post_ids[b] of the first answer token
    answer_len: list[int]  # [B] number of answer tokens (>= 1)
    option_ids: Tensor  # [B, C] long, first token of each option as it follows the prefix; -1 = no option

    def __len__(self) -> int:
        return len(self.pre_ids)


class QwenVLAdapter:
    """Shared implementation; subclasses set `family`."""

    family: str = ""

    def __init__(self, cfg: MLLMConfig, model=None, tokenizer=None):
        """Wrap cfg.path's checkpoint, the tiny random model (path None), or an already built `model` +
        `tokenizer` of this family (e.g. an architecture built with random weights on the GPU by bench)."""
        if cfg.dtype not in _DTYPES:
            raise ValueError(f"mllm.dtype={cfg.dtype!r}: use one of {sorted(_DTYPES)}")
        if cfg.prompt_template.count("{video}") != 1 or cfg.prompt_template.count("{question}") != 1:
            raise ValueError("mllm.prompt_template must contain '{video}' and '{question}' exactly once each")
        self.cfg = cfg
        dtype = _DTYPES[cfg.dtype]
        mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        if model is not None:
            if tokenizer is None:
                raise ValueError("pass the tokenizer that goes with the model")
        elif cfg.path is None:
            from score_lit.mllm.tiny import build_tiny

            model, tokenizer = build_tiny(self.family, cfg.tiny_seed, cfg.attn_implementation)
            model = model.to(dtype)
        else:
            from transformers import AutoTokenizer

            model = self._model_class().from_pretrained(cfg.path, dtype=dtype, attn_implementation=cfg.attn_implementation)
            tokenizer = AutoTokenizer.from_pretrained(cfg.path)
            pp = Path(cfg.path) / "preprocessor_config.json"
            if pp.is_file():
                pcfg = json.loads(pp.read_text())
                mean, std = tuple(pcfg.get("image_mean", mean)), tuple(pcfg.get("image_std", std))
        self.model = model.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        vc = model.config.vision_config
        self.merge = int(vc.spatial_merge_size)
        self.temporal_patch_size = int(vc.temporal_patch_size)
        self.tokens_per_second = getattr(vc, "tokens_per_second", None)
        self.preprocessor = VideoPreprocessor(
            patch_size=int(vc.patch_size), merge_size=self.merge, temporal_patch_size=self.temporal_patch_size,
            min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, mean=mean, std=std,
        )
        self.hidden_size = int(model.config.text_config.hidden_size)
        self.video_token_id = int(model.config.video_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    def _model_class(self):
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def identity(self) -> dict[str, Any]:
        return {"family": self.family, "hidden_size": self.hidden_size, "path": self.cfg.path or "tiny-random"}

    # ---------------------------------------------------------------- encode
    def time_scales(self, batch: VideoBatch) -> list[float]:
        """[B] t-axis step per temporal unit (seconds_per_frame from the batch, else from the config)."""
        spf = batch.seconds_per_frame
        secs = [self.cfg.seconds_per_frame] * len(batch) if spf is None else [float(s) for s in spf]
        return [time_scale(self.family, self.tokens_per_second, s * self.temporal_patch_size) for s in secs]

    @torch.no_grad()
    def encode(self, batch: VideoBatch) -> VisualTokens:
        frames = batch.frames
        if isinstance(frames, (list, tuple)):
            shapes = {tuple(f.shape) for f in frames}
            assert len(shapes) == 1, f"all videos of a batch must have one shape [F, 3, H, W]; got {sorted(shapes)}"
            frames = torch.stack(list(frames))
        assert frames.ndim == 5 and frames.shape[2] == 3, (
            f"VideoBatch.frames must be [B, F, 3, H, W] (one shape for the whole batch); got {tuple(frames.shape)}"
        )
        pixels, grid_thw = self.preprocessor(frames)  # [B*gt*gh*gw, 3*tps*p*p], [B, 3]
        dev = self.device
        out = self.model.model.get_video_features(pixels.to(dev), grid_thw.to(dev))
        b = frames.shape[0]
        gt, gh, gw = (int(g) for g in grid_thw[0].tolist())
        grid = (gt, gh // self.merge, gw // self.merge)  # (T, H', W')
        tokens = torch.stack(list(out.pooler_output)).view(b, grid[0], grid[1] * grid[2], -1)  # [B, T, N, D]
        positions = torch.stack([video_positions(grid, 0, s, device=dev) for s in self.time_scales(batch)])
        return VisualTokens(tokens=tokens, grid=grid, positions=positions)  # positions [B, 3, T*N]

    # -------------------------------------------------------------- tokenize
    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def _continuations(self, prefix: str, prefix_ids: list[int], conts: list[str]) -> list[list[int]]:
        """Token ids of each continuation as it follows `prefix` (joint tokenization, so a BPE sees the
        real boundary); if the joint ids do not start with the prefix's ids, the continuation alone."""
        out = []
        for cont, full in zip(conts, self._ids([prefix + c for c in conts])):
            if full[: len(prefix_ids)] == prefix_ids and len(full) > len(prefix_ids):
                out.append(full[len(prefix_ids):])
            else:
                out.append(self._ids([cont])[0])
        return out

    def tokenize(self, batch: VideoBatch) -> PromptBatch:
        before, after = self.cfg.prompt_template.split("{video}")
        pres = self._ids([before.replace("{question}", q) for q in batch.questions])
        posts, starts, lens, options = [], [], [], []
        for b, q in enumerate(batch.questions):
            prefix = after.replace("{question}", q)
            prefix_ids = self._ids([prefix])[0]
            answer = self._continuations(prefix, prefix_ids, [batch.answers[b]])[0]
            if not answer:
                raise ValueError(f"sample {batch.ids[b]!r}: the answer {batch.answers[b]!r} tokenizes to nothing")
            posts.append(prefix_ids + answer)
            starts.append(len(prefix_ids))
            lens.append(len(answer))
            options.append([ids[0] if ids else -1 for ids in self._continuations(prefix, prefix_ids, list(batch.options[b]))])
        c = max((len(o) for o in options), default=0)
        option_ids = torch.tensor([o + [-1] * (c - len(o)) for o in options], dtype=torch.long).view(len(posts), c)
        return PromptBatch(pres, posts, starts, lens, option_ids)

    # ----------------------------------------------------------------- score
    @torch.no_grad()
    def score(self, visual: VisualTokens, prompts: PromptBatch, masks: Tensor) -> LLMScores:
        dev = self.device
        b, k, v = masks.shape
        assert v == visual.num_tokens and visual.tokens.shape[0] == b == len(prompts), (
            f"masks {tuple(masks.shape)} must be [B, K, T*N] for B={visual.tokens.shape[0]} videos of "
            f"T*N={visual.num_tokens} tokens and {len(prompts)} prompts"
        )
        n_pre = [len(p) for p in prompts.pre_ids]
        lf = max(p + v + len(q) for p, q in zip(n_pre, prompts.post_ids))
        # Full sequences pre | video | post, right-padded: kind 0 text, 1 video, -1 pad.  [B, Lf]
        kind = torch.full((b, lf), -1, dtype=torch.long)
        text_ids = torch.full((b, lf), self.pad_token_id, dtype=torch.long)
        vid_idx = torch.zeros((b, lf), dtype=torch.long)
        pos = torch.zeros((b, 3, lf), dtype=torch.long)
        for i, (pre, post) in enumerate(zip(prompts.pre_ids, prompts.post_ids)):
            p, e = n_pre[i], n_pre[i] + v + len(post)
            kind[i, :e] = 0
            kind[i, p : p + v] = 1
            text_ids[i, :p] = torch.tensor(pre, dtype=torch.long)
            text_ids[i, p + v : e] = torch.tensor(post, dtype=torch.long)
            vid_idx[i, p : p + v] = torch.arange(v)
            pos[i, :, :e] = sequence_positions(p, visual.positions[i].cpu(), len(post))
        kind, text_ids, vid_idx, pos = kind.to(dev), text_ids.to(dev), vid_idx.to(dev), pos.to(dev)
        embed = self.model.get_input_embeddings()
        vis = visual.flat().to(dev, embed.weight.dtype)  # [B, V, D]
        d = vis.shape[-1]
        full = torch.where(
            (kind == 1)[..., None], vis.gather(1, vid_idx[..., None].expand(-1, -1, d)), embed(text_ids)
        )  # [B, Lf, D]

        masks = masks.to(dev, torch.bool)
        keep = (kind == 0)[:, None] | ((kind == 1)[:, None] & masks.gather(2, vid_idx[:, None].expand(b, k, lf)))
        emb, order, attn = compact(full, keep)
        length = order.shape[-1]
        bi = torch.arange(b, device=dev)[:, None, None]
        pids = (pos.transpose(1, 2)[bi, order] * attn[..., None]).permute(3, 0, 1, 2).reshape(3, b * k, length)
        hidden = self.model.model.language_model(
            inputs_embeds=emb, attention_mask=attn.reshape(b * k, length).long(), position_ids=pids, use_cache=False
        ).last_hidden_state.view(b, k, length, d)

        # Answer rows: the token at compacted index n_pre + kept_k + answer_start + a is predicted at index - 1.
        first = torch.tensor(n_pre, device=dev)[:, None] + masks.sum(-1) + torch.tensor(prompts.answer_start, device=dev)[:, None] - 1
        return answer_scores(self.model.lm_head, hidden, first, prompts)


    # ------------------------------------------------------ video attention
    def _prompt_sequence(self, visual: VisualTokens, prompts: PromptBatch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The prompt up to the answer, pre | all video | post[:answer_start], right-padded: (embeddings [B, L, D],
        attention mask [B, L] long, M-RoPE ids [3, B, L] (pads 0), last prompt index [B], video start [B]).
        Same layout, embeddings and ids as `score` with an all-keep mask, cut before the answer."""
        dev = self.device
        b, v = visual.tokens.shape[0], visual.num_tokens
        n_pre = [len(p) for p in prompts.pre_ids]
        lens = [p + v + s for p, s in zip(n_pre, prompts.answer_start)]
        length = max(lens)
        kind = torch.zeros((b, length), dtype=torch.long)  # 0 text / pad, 1 video
        text_ids = torch.full((b, length), self.pad_token_id, dtype=torch.long)
        vid_idx = torch.zeros((b, length), dtype=torch.long)
        pos = torch.zeros((b, 3, length), dtype=torch.long)
        attn = torch.zeros((b, length), dtype=torch.long)
        for i, (pre, post, s) in enumerate(zip(prompts.pre_ids, prompts.post_ids, prompts.answer_start)):
            p = n_pre[i]
            kind[i, p : p + v] = 1
            text_ids[i, :p] = torch.tensor(pre, dtype=torch.long)
            text_ids[i, p + v : lens[i]] = torch.tensor(post[:s], dtype=torch.long)
            vid_idx[i, p : p + v] = torch.arange(v)
            pos[i, :, : lens[i]] = sequence_positions(p, visual.positions[i].cpu(), s)
            attn[i, : lens[i]] = 1
        kind, text_ids, vid_idx = kind.to(dev), text_ids.to(dev), vid_idx.to(dev)
        embed = self.model.get_input_embeddings()
        vis = visual.flat().to(dev, embed.weight.dtype)  # [B, V, D]
        video = vis.gather(1, vid_idx[..., None].expand(-1, -1, vis.shape[-1]))
        emb = torch.where((kind == 1)[..., None], video, embed(text_ids))  # [B, L, D]
        last = torch.tensor(lens, device=dev) - 1
        return emb, attn.to(dev), pos.to(dev).permute(1, 0, 2), last, torch.tensor(n_pre, device=dev)

    @torch.no_grad()
    def video_attention(self, visual: VisualTokens, prompts: PromptBatch, layer: int) -> Tensor:
        """[B, T*N] float32: the attention the last prompt token (the one that predicts the first answer
        token) pays to each video token at decoder layer `layer` (0-based), averaged over heads, with all
        video tokens in the sequence (FastV's ranking signal). Rows sum to at most 1 (text keys take the rest).

        Sequence and position ids are those of `score` with an all-keep mask, cut before the answer (causal
        attention makes the answer irrelevant to this row). Layers 0..layer-1 run as in the model's own
        forward (its attention implementation, e.g. SDPA, and its causal/padding mask); layer `layer` is not
        run: only its input_layernorm, q_proj for the one query row and k_proj for all rows, the model's
        rotary_emb (which applies M-RoPE's mrope_section recomposition in transformers 5.23) and the
        rotate-half rotation of apply_rotary_pos_emb, GQA heads repeated, softmax in float32 over the
        query's causal keys. No L x L attention map is ever built.
        """
        lm = self.model.model.language_model
        n_layers = len(lm.layers)
        if not 0 <= layer < n_layers:
            raise ValueError(f"video_attention(layer={layer}): the language model has layers 0..{n_layers - 1}")
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        attn_mod = lm.layers[layer].self_attn
        if getattr(attn_mod, "sliding_window", None) is not None:
            raise NotImplementedError(f"video_attention: layer {layer} uses sliding-window attention (not supported)")
        emb, attn, pids, last, start = self._prompt_sequence(visual, prompts)
        b, length, _ = emb.shape
        mask_kwargs = dict(config=lm.config, inputs_embeds=emb, attention_mask=attn, past_key_values=None, position_ids=None)
        masks = {"full_attention": create_causal_mask(**mask_kwargs)}
        if lm.has_sliding_layers:
            masks["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)
        cos, sin = lm.rotary_emb(emb, pids)  # [B, L, head_dim] each, M-RoPE sections already interleaved
        hidden = emb
        for i in range(layer):
            hidden = lm.layers[i](
                hidden, attention_mask=masks[lm.config.layer_types[i]], position_embeddings=(cos, sin), position_ids=None
            )
        x = lm.layers[layer].input_layernorm(hidden)  # [B, L, D]
        hd, heads = attn_mod.head_dim, attn_mod.num_heads
        bi = torch.arange(b, device=emb.device)
        q = attn_mod.q_proj(x[bi, last]).view(b, heads, 1, hd)  # [B, H, 1, hd]
        k = attn_mod.k_proj(x).view(b, length, -1, hd).transpose(1, 2)  # [B, KV, L, hd]
        q = _rotate(q, cos[bi, last][:, None, None], sin[bi, last][:, None, None])
        k = _rotate(k, cos[:, None], sin[:, None])
        # GQA as repeat_kv: kv head j serves query heads j*g .. j*g+g-1, so group the query heads instead of copying keys.
        q = q.view(b, k.shape[1], -1, hd)  # [B, KV, g, hd]
        logits = (q.float() @ k.float().transpose(-1, -2)).reshape(b, heads, length) * attn_mod.scaling  # [B, H, L]
        causal = torch.arange(length, device=emb.device)[None] <= last[:, None]  # = the query's non-pad keys
        probs = logits.masked_fill(~causal[:, None], float("-inf")).softmax(-1).mean(1)  # [B, L]
        cols = start[:, None] + torch.arange(visual.num_tokens, device=emb.device)
        return probs.gather(1, cols)


def compact(full: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The B*K rows of one padded batch, no loop over K: full [B, Lf, D] sequences and keep [B, K, Lf] bool ->
    (emb [B*K, L, D], order [B, K, L] the full-sequence index of each compacted slot, attn [B, K, L] bool), L the
    longest kept row. A stable argsort of ~keep puts kept slots first, in their original order; padding after."""
    b, k, _ = keep.shape
    length = int(keep.sum(-1).max())
    order = torch.argsort((~keep).to(torch.uint8), dim=-1, stable=True)[..., :length]  # [B, K, L]
    attn = keep.gather(-1, order)  # [B, K, L]
    bi = torch.arange(b, device=full.device)[:, None, None]
    return full[bi, order].reshape(b * k, length, full.shape[-1]), order, attn


def answer_scores(lm_head, hidden: Tensor, first: Tensor, prompts: PromptBatch) -> LLMScores:
    """hidden [B, K, L, D] LLM states of the compacted rows, first [B, K] the index that predicts each row's first
    answer token -> CE over the answer tokens [B, K] (lm_head on [B, K, A] states only) and the options'
    first-token logits [B, K, C] (-inf where a row has fewer options)."""
    b, k, length, d = hidden.shape
    dev = hidden.device
    a_max = max(prompts.answer_len)
    a_len = torch.tensor(prompts.answer_len, device=dev)
    ar = torch.arange(a_max, device=dev)
    valid = ar[None, :] < a_len[:, None]  # [B, A]
    idx = (first[..., None] + ar).clamp(max=length - 1)  # [B, K, A]
    logits = lm_head(hidden.gather(2, idx[..., None].expand(-1, -1, -1, d))).float()  # [B, K, A, vocab]
    targets = torch.zeros((b, a_max), dtype=torch.long)
    for i, (post, s, n) in enumerate(zip(prompts.post_ids, prompts.answer_start, prompts.answer_len)):
        targets[i, :n] = torch.tensor(post[s : s + n], dtype=torch.long)
    targets = targets.to(dev)[:, None, :, None].expand(-1, k, -1, -1)
    nll = -F.log_softmax(logits, dim=-1).gather(-1, targets).squeeze(-1)  # [B, K, A]
    ce = (nll * valid[:, None]).sum(-1) / a_len[:, None]
    opt = prompts.option_ids.to(dev)  # [B, C]
    option_logits = logits[:, :, 0].gather(-1, opt.clamp(min=0)[:, None].expand(-1, k, -1))
    return LLMScores(ce=ce, option_logits=option_logits.masked_fill((opt < 0)[:, None], float("-inf")))


class Qwen25VLAdapter(QwenVLAdapter):
    family = "qwen2_5_vl"

    def _model_class(self):
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration


class Qwen2VLAdapter(QwenVLAdapter):
    family = "qwen2_vl"

    def _model_class(self):
        from transformers import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration


@torch.no_grad()
def reference_scores(adapter: QwenVLAdapter, batch: VideoBatch, masks: Tensor) -> LLMScores:
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
            logits = adapter.model(
                input_ids=ids, pixel_values_videos=pixels[i * per : (i + 1) * per].to(dev),
                video_grid_thw=grid_thw[i : i + 1].to(dev), mm_token_type_ids=mm, attention_mask=attn, position_ids=pos,
            ).logits[0].float()
            lp = F.log_softmax(logits[a0 - 1 : a0 - 1 + n], dim=-1)
            ce[i, j] = -lp.gather(-1, ids[0, a0 : a0 + n, None]).mean().cpu()
            ol = logits[a0 - 1, opt.clamp(min=0).to(dev)].cpu()
            option_logits[i, j] = ol.masked_fill(opt < 0, float("-inf"))
    return LLMScores(ce=ce, option_logits=option_logits)
