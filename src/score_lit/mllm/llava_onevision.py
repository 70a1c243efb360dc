"""LLaVA-OneVision / LLaVA-Video behind the VideoMLLM protocol: encode once, score B*K pruned rollouts in one batch.

The adapter wraps a loaded `LlavaOnevisionForConditionalGeneration` (the HF ports of LLaVA-OneVision and
LLaVA-Video; no class patching) and uses its public pieces directly:

    encode:  our resize + normalize -> model.model.get_video_features(pixels [B, F, 3, S, S]) .pooler_output
             = per frame: vision tower -> projector -> apply_pooling (bilinear to ceil(h/2) x ceil(w/2)),
             frames concatenated, then ONE image_newline after the last frame  [B, F*N + 1, D].
             tokens = everything but that newline -> [B, T=F, N, D]; a temporal unit is one pooled frame.
             positions [B, 1, T*N] = 0..T*N-1, each token's offset from the video start (1-D RoPE).
    score:   model.model.language_model(inputs_embeds, attention_mask, position_ids) -> model.lm_head
             applied only at the answer-predicting positions.

Sequence of one rollout: pre-text | kept video tokens in order | image_newline | post-text. The newline
(the model's learned `image_newline` parameter, which the stock model appends after a video) is not a
selectable visual token: it is always kept, right after the last kept video token, and its slot of the
full sequence is p + T*N (its original position id).

Position ids (mllm.position_ids; Qwen2 text model, 1-D RoPE):
- "original" (default, the method's rule): every kept token and all text keep the id they have in the
  FULL sequence, gaps where tokens were dropped. Equals the stock model on the full sequence with the
  dropped video tokens masked out as keys (`reference_scores`; tests/test_llava_adapter.py).
- "compacted": ids 0..L-1 of the pruned row, as if the dropped tokens never existed. Equals the stock
  model run on the pruned inputs_embeds with its default positions (`reference_scores(..., compacted)`).

Vectorised construction in `score` as in score_lit.mllm.qwen_vl: full right-padded layout [B, Lf], a keep
mask per rollout [B, K, Lf], a stable argsort of ~keep (kept slots first, in order), gather, truncate.

Text: the chat template is split at {video}; {question} is filled in wherever it stands. When
mllm.prompt_template is left at its (Qwen) default, LLAVA_OV_TEMPLATE is used: the qwen_1_5 conversation
of LLaVA-NeXT that LLaVA-OneVision / LLaVA-Video were trained and evaluated with (lmms-eval), "<video>"
followed by a newline before the question. The video placeholder itself is never tokenized. The answer and
options are tokenized jointly with the text before them, as in the Qwen adapter (shared helpers).

Deviations from the stock processor (LlavaOnevisionVideoProcessor needs torchvision, which this stack
leaves out): frames are resized to the vision tower's image_size x image_size (square, aspect ratio not
kept, as the stock processor does) with torch's antialiased bicubic and re-quantised to uint8 levels
(score_lit.mllm.preprocess.resize_frames); torchvision / PIL bicubic kernels differ at the last bit of a
pixel. Frames already at image_size are not resampled. Mean / std: the checkpoint's
video_preprocessor_config.json, else its preprocessor_config.json, when present, else SigLIP's 0.5 / 0.5.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from score_lit.config import MLLMConfig
from score_lit.mllm.preprocess import resize_frames
from score_lit.mllm.qwen_vl import _DTYPES, PromptBatch, QwenVLAdapter, _rotate, answer_scores, compact
from score_lit.types import LLMScores, VideoBatch, VisualTokens

SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
LLAVA_OV_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "{video}\n{question}<|im_end|>\n<|im_start|>assistant\n"
)


class LlavaOnevisionAdapter:
    """LlavaOnevisionForConditionalGeneration (LLaVA-OneVision, LLaVA-Video) as a frozen VideoMLLM."""

    family = "llava_onevision"
    # Text handling is model-independent: the Qwen adapter's tokenization (answer / options joint with the prefix).
    _ids = QwenVLAdapter._ids
    _continuations = QwenVLAdapter._continuations
    tokenize = QwenVLAdapter.tokenize

    def __init__(self, cfg: MLLMConfig, model=None, tokenizer=None):
        """Wrap cfg.path's checkpoint, the tiny random model (path None), or a given `model` + `tokenizer`."""
        if cfg.dtype not in _DTYPES:
            raise ValueError(f"mllm.dtype={cfg.dtype!r}: use one of {sorted(_DTYPES)}")
        template = LLAVA_OV_TEMPLATE if cfg.prompt_template == MLLMConfig.prompt_template else cfg.prompt_template
        if template.count("{video}") != 1 or template.count("{question}") != 1:
            raise ValueError("mllm.prompt_template must contain '{video}' and '{question}' exactly once each")
        self.cfg = replace(cfg, prompt_template=template)  # the shared `tokenize` reads cfg.prompt_template
        dtype = _DTYPES[cfg.dtype]
        mean, std = SIGLIP_MEAN, SIGLIP_STD
        if model is not None:
            if tokenizer is None:
                raise ValueError("pass the tokenizer that goes with the model")
        elif cfg.path is None:
            from score_lit.mllm.tiny import build_tiny_llava_onevision

            model, tokenizer = build_tiny_llava_onevision(cfg.tiny_seed, cfg.attn_implementation)
            model = model.to(dtype)
        else:
            from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

            model = LlavaOnevisionForConditionalGeneration.from_pretrained(
                cfg.path, dtype=dtype, attn_implementation=cfg.attn_implementation
            )
            tokenizer = AutoTokenizer.from_pretrained(cfg.path)
            for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
                if (pp := Path(cfg.path) / name).is_file():
                    pcfg = json.loads(pp.read_text())
                    mean, std = tuple(pcfg.get("image_mean", mean)), tuple(pcfg.get("image_std", std))
                    break
        self.model = model.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.mean, self.std = mean, std
        vc = model.config.vision_config
        self.image_size = int(vc.image_size)
        side = self.image_size // int(vc.patch_size)
        self.pooled = (math.ceil(side / 2), math.ceil(side / 2))  # (H', W') per frame after apply_pooling
        self.hidden_size = int(model.config.text_config.hidden_size)
        self.video_token_id = int(model.config.video_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def identity(self) -> dict[str, Any]:
        return {"family": self.family, "hidden_size": self.hidden_size, "path": self.cfg.path or "tiny-random"}

    # ---------------------------------------------------------------- encode
    def pixels(self, frames: Tensor | list | tuple) -> Tensor:
        """frames [B, F, 3, H, W] uint8 -> pixel_values_videos [B, F, 3, S, S] float32 (S = the tower's image_size)."""
        if isinstance(frames, (list, tuple)):
            shapes = {tuple(f.shape) for f in frames}
            assert len(shapes) == 1, f"all videos of a batch must have one shape [F, 3, H, W]; got {sorted(shapes)}"
            frames = torch.stack(list(frames))
        if frames.ndim != 5 or frames.shape[2] != 3 or frames.dtype != torch.uint8:
            raise ValueError(
                f"frames must be [B, F, 3, H, W] uint8 RGB (one shape per batch); got {tuple(frames.shape)} {frames.dtype}"
            )
        x = resize_frames(frames, self.image_size, self.image_size)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * (1.0 / 255.0) - mean) / std

    @torch.no_grad()
    def encode(self, batch: VideoBatch) -> VisualTokens:
        x = self.pixels(batch.frames)
        b, f = x.shape[:2]
        dev, dtype = self.device, self.model.get_input_embeddings().weight.dtype
        out = self.model.model.get_video_features(x.to(dev, dtype), return_dict=True).pooler_output  # [B, F*N + 1, D]
        h, w = self.pooled
        tokens = out[:, :-1].reshape(b, f, h * w, -1)  # the trailing image_newline is re-added by `score`
        positions = torch.arange(f * h * w, device=dev).expand(b, 1, -1).clone()
        return VisualTokens(tokens=tokens, grid=(f, h, w), positions=positions)  # positions [B, 1, T*N]

    # ----------------------------------------------------------------- score
    def _layout(self, visual: VisualTokens, prompts: PromptBatch, post_len: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Full right-padded sequences pre | video | newline | post[:post_len]: embeddings [B, Lf, D], kind [B, Lf]
        (0 text, 1 video, 2 newline, -1 pad) and the video index of each slot [B, Lf] (0 elsewhere)."""
        dev = self.device
        b, v = visual.tokens.shape[0], visual.num_tokens
        n_pre = [len(p) for p in prompts.pre_ids]
        lf = max(p + v + 1 + n for p, n in zip(n_pre, post_len))
        kind = torch.full((b, lf), -1, dtype=torch.long)
        text_ids = torch.full((b, lf), self.pad_token_id, dtype=torch.long)
        vid_idx = torch.zeros((b, lf), dtype=torch.long)
        for i, (pre, post) in enumerate(zip(prompts.pre_ids, prompts.post_ids)):
            p, e = n_pre[i], n_pre[i] + v + 1 + post_len[i]
            kind[i, :e] = 0
            kind[i, p : p + v] = 1
            kind[i, p + v] = 2
            text_ids[i, :p] = torch.tensor(pre, dtype=torch.long)
            text_ids[i, p + v + 1 : e] = torch.tensor(post[: post_len[i]], dtype=torch.long)
            vid_idx[i, p : p + v] = torch.arange(v)
        kind, text_ids, vid_idx = kind.to(dev), text_ids.to(dev), vid_idx.to(dev)
        embed = self.model.get_input_embeddings()
        vis = visual.flat().to(dev, embed.weight.dtype)  # [B, V, D]
        d = vis.shape[-1]
        full = torch.where((kind == 1)[..., None], vis.gather(1, vid_idx[..., None].expand(-1, -1, d)), embed(text_ids))
        full = torch.where((kind == 2)[..., None], self.model.model.image_newline.to(full.dtype), full)
        return full, kind, vid_idx

    @torch.no_grad()
    def score(self, visual: VisualTokens, prompts: PromptBatch, masks: Tensor) -> LLMScores:
        dev = self.device
        b, k, v = masks.shape
        assert v == visual.num_tokens and visual.tokens.shape[0] == b == len(prompts), (
            f"masks {tuple(masks.shape)} must be [B, K, T*N] for B={visual.tokens.shape[0]} videos of "
            f"T*N={visual.num_tokens} tokens and {len(prompts)} prompts"
        )
        full, kind, vid_idx = self._layout(visual, prompts, [len(q) for q in prompts.post_ids])
        lf, d = full.shape[1:]
        masks = masks.to(dev, torch.bool)
        video_keep = (kind == 1)[:, None] & masks.gather(2, vid_idx[:, None].expand(b, k, lf))
        keep = ((kind == 0) | (kind == 2))[:, None] | video_keep  # text and newline always, video per mask  [B, K, Lf]
        emb, order, attn = compact(full, keep)
        length = order.shape[-1]
        if self.cfg.position_ids == "compacted":
            pids = (attn.long().cumsum(-1) - 1).clamp(min=0) * attn
        else:  # original: the slot index in the full sequence (= its position id there)
            pids = order * attn
        hidden = self.model.model.language_model(
            inputs_embeds=emb, attention_mask=attn.reshape(b * k, length).long(), position_ids=pids.reshape(b * k, length),
            use_cache=False,
        ).last_hidden_state.view(b, k, length, d)

        # Answer token a sits at compacted index n_pre + kept_k + 1 (newline) + answer_start + a; predicted at index - 1.
        n_pre = torch.tensor([len(p) for p in prompts.pre_ids], device=dev)
        first = n_pre[:, None] + masks.sum(-1) + torch.tensor(prompts.answer_start, device=dev)[:, None]  # +1 newline -1 predict
        return answer_scores(self.model.lm_head, hidden, first, prompts)

    # ------------------------------------------------------ video attention
    def _prompt_sequence(self, visual: VisualTokens, prompts: PromptBatch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """All-keep sequence cut before the answer: (embeddings [B, L, D], attention mask [B, L], position ids
        [B, L] (original = compacted with everything kept; pads 0), last prompt index [B], video start [B])."""
        full, kind, _ = self._layout(visual, prompts, list(prompts.answer_start))
        attn = (kind >= 0).long()
        pids = torch.arange(full.shape[1], device=full.device).expand_as(attn) * attn
        start = torch.tensor([len(p) for p in prompts.pre_ids], device=full.device)
        return full, attn, pids, attn.sum(-1) - 1, start

    @torch.no_grad()
    def video_attention(self, visual: VisualTokens, prompts: PromptBatch, layer: int) -> Tensor:
        """[B, T*N] float32: the attention the last prompt token pays to each video token at decoder layer `layer`,
        averaged over heads, all video tokens present (FastV's signal). Same semantics and method as
        QwenVLAdapter.video_attention (layers < `layer` in the model's own forward; layer `layer`: input norm,
        q for the last row, k for all rows, the model's rotary_emb with 1-D ids, float32 softmax over the causal
        keys); the newline and text keys take the rest of the row's mass."""
        lm = self.model.model.language_model
        if not 0 <= layer < len(lm.layers):
            raise ValueError(f"video_attention(layer={layer}): the language model has layers 0..{len(lm.layers) - 1}")
        from transformers.masking_utils import create_causal_mask

        attn_mod = lm.layers[layer].self_attn
        if getattr(attn_mod, "sliding_window", None) is not None or lm.has_sliding_layers:
            raise NotImplementedError("video_attention: sliding-window attention layers are not supported")
        emb, attn, pids, last, start = self._prompt_sequence(visual, prompts)
        b, length, _ = emb.shape
        mask = create_causal_mask(
            config=lm.config, inputs_embeds=emb, attention_mask=attn, past_key_values=None, position_ids=None
        )
        cos, sin = lm.rotary_emb(emb, pids)  # [B, L, head_dim]
        hidden = emb
        for i in range(layer):
            hidden = lm.layers[i](hidden, attention_mask=mask, position_embeddings=(cos, sin), position_ids=None)
        x = lm.layers[layer].input_layernorm(hidden)
        hd, heads = attn_mod.head_dim, int(lm.config.num_attention_heads)
        bi = torch.arange(b, device=emb.device)
        cq, sq = cos[bi, last][:, None, None], sin[bi, last][:, None, None]
        q = _rotate(attn_mod.q_proj(x[bi, last]).view(b, heads, 1, hd), cq, sq)  # [B, H, 1, hd]
        k = _rotate(attn_mod.k_proj(x).view(b, length, -1, hd).transpose(1, 2), cos[:, None], sin[:, None])  # [B, KV, L, hd]
        q = q.view(b, k.shape[1], -1, hd)  # GQA: query heads grouped by their kv head (as repeat_kv)
        logits = (q.float() @ k.float().transpose(-1, -2)).reshape(b, heads, length) * attn_mod.scaling
        causal = torch.arange(length, device=emb.device)[None] <= last[:, None]
        probs = logits.masked_fill(~causal[:, None], float("-inf")).softmax(-1).mean(1)  # [B, L]
        return probs.gather(1, start[:, None] + torch.arange(visual.num_tokens, device=emb.device))


@torch.no_grad()
def reference_scores(adapter: LlavaOnevisionAdapter, batch: VideoBatch, masks: Tensor) -> LLMScores:
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
                logits = adapter.model(
                    input_ids=ids, pixel_values_videos=px, attention_mask=keep[None].long(), position_ids=pos
                ).logits[0].float()
                a, tgt = a0, ids[0, a0 : a0 + n]
            lp = F.log_softmax(logits[a - 1 : a - 1 + n], dim=-1)
            ce[i, j] = -lp.gather(-1, tgt[:, None]).mean().cpu()
            ol = logits[a - 1, opt.clamp(min=0).to(dev)].cpu()
            option_logits[i, j] = ol.masked_fill(opt < 0, float("-inf"))
    return LLMScores(ce=ce, option_logits=option_logits)
