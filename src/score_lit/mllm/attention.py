"""FastV's ranking signal: the attention the last prompt token pays to each video token at one decoder layer, with all
video tokens in the sequence, computed without an L x L map (score_lit.compressors.fastv; the toy MLLM's evidence loss).

Sequence and position ids are those of `score` with an all-keep mask, cut before the answer (causal attention makes
the answer irrelevant to this row). Layers 0..layer-1 run as in the model's own forward (its attention
implementation, e.g. SDPA, its causal/padding mask, the padding mask of linear-attention layers, and the DeepStack
additions after the first layers when the family passes them: `llm_inputs`); layer `layer` must be a full-attention
layer and is not run: only its input_layernorm, the family's query / key construction (`attention_query_key`:
q_proj for the one query row and k_proj for all rows, rotated with the model's rotary_emb, which applies M-RoPE's
mrope_section recomposition in transformers 5.23), GQA heads repeated, softmax in float32 over the query's causal
keys. Deviation from FastV's paper code: the map is one query row averaged over heads, not the full map's last row
of an eager-attention forward (the same numbers, without materialising L x L).
"""

from __future__ import annotations

import torch
from torch import Tensor

from score_lit.mllm.sequence import PAD, prompt_positions
from score_lit.types import VisualTokens


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE as transformers' apply_rotary_pos_emb does it: x * cos + rotate_half(x) * sin (cos/sin broadcast to x)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def attention_map(mllm, visual: VisualTokens, prompts, layer: int) -> tuple[Tensor, Tensor]:
    """-> (probs [B, T*N] float32: the last prompt token's attention to each video token at decoder layer `layer`
    (0-based), averaged over heads; rows sum to at most 1, text and suffix keys take the rest; query_input [B, D]:
    the residual stream entering layer `layer` at that query row). Grad follows torch's grad mode (the adapter's
    `video_attention` runs it without)."""
    lm = mllm.model.model.language_model
    n_layers = len(lm.layers)
    if not 0 <= layer < n_layers:
        raise ValueError(f"video_attention(layer={layer}): the language model has layers 0..{n_layers - 1}")
    from transformers import masking_utils as mu

    types = list(getattr(lm.config, "layer_types", None) or ["full_attention"] * n_layers)
    if not hasattr(lm.layers[layer], "self_attn"):
        full = [i for i, t in enumerate(types) if t == "full_attention"]
        raise ValueError(
            f"video_attention(layer={layer}): layer {layer} is a {types[layer]} layer, which has no "
            f"attention map; use a full-attention layer of this model: {full}"
        )
    attn_mod = lm.layers[layer].self_attn
    if getattr(attn_mod, "sliding_window", None) is not None:
        raise NotImplementedError(f"video_attention: layer {layer} uses sliding-window attention (not supported)")
    lay = mllm.layout(visual, prompts, prompts.answer_at)  # the prompt up to the answer
    attn = (lay.kind != PAD).long()  # [B, L] 1 = a real slot
    emb, pids, last, slots = lay.embeds, prompt_positions(lay, attn), attn.sum(-1) - 1, lay.video_slots()
    b, length, _ = emb.shape
    builders = {
        "full_attention": mu.create_causal_mask,
        "sliding_attention": mu.create_sliding_window_causal_mask,
        "linear_attention": mu.create_recurrent_attention_mask,
    }
    mask_kwargs = dict(
        config=lm.config, inputs_embeds=emb, attention_mask=attn, past_key_values=None, position_ids=None
    )
    masks = {t: builders[t](**mask_kwargs) for t in set(types[:layer])}
    # The full prompt as one "rollout" per sample: slot order 0..L-1, every real slot kept.
    extra = mllm.llm_inputs(visual, lay, torch.arange(length, device=emb.device).expand(b, 1, -1), attn.bool()[:, None])
    deepstack = extra.get("deepstack_visual_embeds") or []
    cos, sin = lm.rotary_emb(emb, pids)  # [B, L, head_dim] each (M-RoPE sections already interleaved)
    hidden = emb
    for i in range(layer):
        hidden = lm.layers[i](hidden, attention_mask=masks[types[i]], position_embeddings=(cos, sin), position_ids=None)
        if i < len(deepstack):  # the language model's own DeepStack step (Qwen3-VL), as in its forward
            hidden = lm._deepstack_process(hidden, extra["visual_pos_masks"], deepstack[i])
    x = lm.layers[layer].input_layernorm(hidden)  # [B, L, D]
    heads = int(lm.config.num_attention_heads)
    bi = torch.arange(b, device=emb.device)
    q, k = mllm.attention_query_key(attn_mod, x[bi, last], x, cos[bi, last], sin[bi, last], cos, sin)
    hd = q.shape[-1]
    # GQA as repeat_kv: kv head j serves query heads j*g .. j*g+g-1, so group the query heads instead of copying keys.
    q = q.reshape(b, k.shape[1], -1, hd)  # [B, KV, g, hd]
    logits = (q.float() @ k.float().transpose(-1, -2)).reshape(b, heads, length) * attn_mod.scaling  # [B, H, L]
    causal = torch.arange(length, device=emb.device)[None] <= last[:, None]  # = the query's non-pad keys
    probs = logits.masked_fill(~causal[:, None], float("-inf")).softmax(-1).mean(1)  # [B, L]
    return probs.gather(1, slots), hidden[bi, last]
