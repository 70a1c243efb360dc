"""FastV (Chen et al., ECCV 2024, "An Image is Worth 1/2 Tokens After Layer 2"), as a pre-LLM pruner.

FastV ranks the visual tokens by the attention they receive at decoder layer K and keeps the top ones.
Here the signal is the attention of the LAST prompt token (the one that predicts the first answer token),
averaged over heads, with every video token present (mllm.video_attention), and the kept set is its
global top-k over the whole video, k = keep_count(ratio, T*N).

How this differs from the paper's FastV:
- Where the pruning happens. The paper keeps all tokens in layers < K and drops tokens inside the LLM
  from layer K on, so its first K layers still pay the full-sequence cost. Here the same ranking (layer
  K's attention) only chooses the keep mask, and the pruned sequence is then run from layer 0, like every
  other method in the sweep (pre-LLM pruning), so prefill times of the methods are comparable and the
  answer is scored by the same `mllm.score` path. The layers < K therefore see fewer tokens than in the
  paper (accuracy may differ from the paper's FastV, in either direction).
- Cost. The ranking (`rank`) is an extra partial forward over the FULL sequence: layers 0..K-1 in the
  model's own attention implementation (SDPA), plus layer K's input norm and q/k projections (one query
  row, no L x L map). That is about K / num_layers of a full-sequence prefill (2/28 ~ 7% for
  Qwen2.5-VL-7B) on top of the pruned prefill. It does not depend on the ratio: the sweep runs it once
  per batch and cuts it at every ratio. The sweep's prefill time covers only `mllm.score`; this partial
  forward is in its select time.
- FLOPs (`selection_flops`, score_lit.compressors.flops.fastv_flops). The sweep's FLOPs column counts what the
  paper's FastV costs in deployment: layers < K over all tokens, layers >= K over the kept ones, plus the
  ranking; its selection cost is K (layer(L_text + V) - layer(L_text + k)) + rank(L_text + V). With
  K >= num_layers (the 2-layer toy) every layer sees every token: more than vanilla at any ratio. What
  this class plus the sweep execute differs (score_lit.compressors.flops docstring says by how much).
- Budget. The paper's R is the share of tokens DROPPED at layer K; here `ratio` is the share KEPT
  (r = 1 - R), the sweep's common knob. The default K=2 follows the paper.
- Which query row ranks. The paper describes the attention a token receives on average; its released
  code (pkunlp-icler/FastV, LLaVA) ranks by the LAST input token's row, averaged over heads, as here.
  Our last prompt token sits after the question, so the ranking is question-aware.
- A model with fewer than K+1 layers (the 2-layer tiny / toy test models) uses its last layer instead,
  with a warning (`self.layer_used`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from score_lit.compressors.flops import fastv_flops
from score_lit.compressors.topk import TopK
from score_lit.config import keep_count
from score_lit.types import VisualTokens


class FastV(TopK):
    """Keep the global top-k visual tokens by the layer-K attention of the last prompt token."""

    name = "fastv"
    needs_prompts = True

    def __init__(self, mllm: Any, layer: int = 2):
        if layer < 0:
            raise ValueError(f"fastv layer={layer}: must be >= 0 (0-based decoder layer index)")
        self.mllm = mllm
        self.layer = int(layer)
        n_layers = int(mllm.model.config.text_config.num_hidden_layers)
        self.layer_used = min(self.layer, n_layers - 1)
        if self.layer_used != self.layer:
            warnings.warn(
                f"fastv layer={layer} but the language model has only {n_layers} layers: ranking by layer {self.layer_used}",
                stacklevel=2,
            )

    @torch.no_grad()
    def rank(self, visual: VisualTokens, prompts: Any = None) -> torch.Tensor:
        """[B, T*N] float32: the layer-K attention of the last prompt token (one partial forward)."""
        if prompts is None:
            raise ValueError("fastv needs the tokenized prompts: select(visual, ratio, prompts=mllm.tokenize(batch))")
        return self.mllm.video_attention(visual, prompts, self.layer_used)

    def selection_flops(self, shape: tuple[int, int, int], ratio: float, text_tokens: int, llm: Any = None) -> int:
        """Deployment cost beyond a prefill of the kept tokens (module docstring): K (layer(L_text + V) -
        layer(L_text + k)) + rank(L_text + V), K = min(self.layer, layers). shape = (T, N, D); `llm` is the
        LLM's text config (default: this adapter's)."""
        t, n, _ = shape
        llm = llm if llm is not None else self.mllm.model.config.text_config
        return fastv_flops(llm, text_tokens, t * n, keep_count(ratio, t * n), self.layer)
