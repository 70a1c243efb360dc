"""Qwen3.5 (dense, `Qwen3_5ForConditionalGeneration`): the family hooks of score_lit.mllm.adapter.VideoMLLM.

Qwen3.5's vision side and prompt are Qwen3-VL's (patch 16, per-unit "<t seconds>" timestamp text, each
temporal unit its own t = 1 grid of interleaved M-RoPE; Qwen3-VL's processor), without DeepStack; so the
adapter is score_lit.mllm.qwen3_vl.Qwen3VLAdapter with this family's classes and tiny sizes. Its language
model is hybrid: Gated DeltaNet linear attention in most layers (a causal conv1d + a recurrent state) and
gated full attention every `full_attention_interval` layers (q_proj gives [query | gate] per head, q / k
norms, partial rotary: only the first partial_rotary_factor of each head is rotated).

Pruning: dropping a token from a linear-attention layer cannot be emulated by masking it as a key (the
recurrence and the conv would still see it), so `score` is the stock language model run on the PRUNED
embedding sequence with each kept token's full-sequence position ids: exactly what the base's compaction
builds (pre | timestamps and kept tokens | post, gathered, original ids). tests/test_qwen3_adapter.py checks it
against the stock forward on the pruned sequence, one row at a time.

Padding: the B*K rows are right-padded. The recurrence and the conv are causal, so pads after a row's answer
never reach its answer tokens; the model also zeroes pad inputs of linear layers (apply_mask_to_padding_states).
The padded batch equals each row run alone (tests/test_adapters.py, test_qwen3_adapter.py).

FastV (video_attention) needs a full-attention layer: asking for a linear-attention layer is an error that
names the model's full-attention layers (fastv_layer=3 for the released models, whose layers 3, 7, ... are full).
"""

from __future__ import annotations

from score_lit.mllm.qwen3_vl import Qwen3VLAdapter


class Qwen3_5Adapter(Qwen3VLAdapter):
    """Qwen3_5ForConditionalGeneration (Qwen3.5 dense) as a frozen VideoMLLM."""

    family = "qwen3_5"
    gated_query = True
    # Vision: as Qwen3-VL's tiny tower, no DeepStack.
    tiny_vision = dict(hidden_size=32, intermediate_size=64, out_hidden_size=64, num_position_embeddings=64)

    @classmethod
    def model_class(cls):
        from transformers import Qwen3_5ForConditionalGeneration

        return Qwen3_5ForConditionalGeneration

    @classmethod
    def config_class(cls):
        from transformers import Qwen3_5Config

        return Qwen3_5Config

    @classmethod
    def tiny_text(cls) -> dict:
        """Hybrid layers [linear, full] (full_attention_interval 2; the released models: 4), heads of 16 with half
        of each rotated (partial_rotary_factor 0.5: 8 dims, 4 frequencies in interleaved sections [2, 1, 1];
        the released: 0.25 of 256 in [11, 11, 10]), Gated DeltaNet 2 key / 4 value heads of 8, conv kernel 4."""
        return dict(
            head_dim=16,
            full_attention_interval=2,
            linear_conv_kernel_dim=4,
            linear_key_head_dim=8,
            linear_value_head_dim=8,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
                "partial_rotary_factor": 0.5,
            },
        )
