"""The model architectures `bench` (and the GPU check) can build with random weights, by name (BenchConfig.arch):
published config.json numbers of the real checkpoints, as overrides of each family's tiny model config.

Prefill time does not depend on the weights' values, so a named architecture stands in for a downloaded checkpoint.
"""

from __future__ import annotations

_ROPE = {"rope_type": "default", "rope_theta": 1000000.0}
# Named architectures: (text config overrides, vision config overrides) on score_lit.mllm.tiny's Qwen2.5-VL config.
# arch name -> (the family it is an architecture of, None = any; text and vision sub-config overrides of that
# family's tiny model, score_lit.mllm.tiny / the adapter's tiny_config).
ARCHS: dict[str, tuple[str | None, dict, dict]] = {
    "tiny": (None, {}, {}),  # the test model of score_lit.mllm.tiny (patch 8, width 64), any family
    # Sized so that a CPU run is meaningful (prefill dominated by the linear layers, ~1.2k visual tokens).
    "cpu-small": (
        "qwen2_5_vl",
        dict(
            hidden_size=768,
            intermediate_size=2048,
            num_hidden_layers=8,
            num_attention_heads=12,
            num_key_value_heads=4,
            vocab_size=32000,
            max_position_embeddings=32768,
            rope_parameters={**_ROPE, "mrope_section": [8, 12, 12]},
        ),
        dict(
            depth=4,
            hidden_size=256,
            intermediate_size=512,
            num_heads=4,
            out_hidden_size=768,
            patch_size=14,
            window_size=112,
            fullatt_block_indexes=[1, 3],
            tokens_per_second=2,
        ),
    ),
    # Qwen/Qwen2.5-VL-7B-Instruct config.json (values as published; 2 of its nested fields renamed for transformers 5).
    "qwen2_5_vl_7b": (
        "qwen2_5_vl",
        dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
            max_position_embeddings=128000,
            rms_norm_eps=1e-6,
            initializer_range=0.02,
            rope_parameters={**_ROPE, "mrope_section": [16, 24, 24]},
        ),
        dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=3584,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31],
            tokens_per_second=2,
            hidden_act="silu",
            initializer_range=0.02,
        ),
    ),
    # Qwen/Qwen3-VL-8B-Instruct config.json (as published: interleaved M-RoPE [24, 20, 20], DeepStack after vision
    # blocks 8, 16, 24, patch 16).
    "qwen3_vl_8b": (
        "qwen3_vl",
        dict(
            hidden_size=4096,
            intermediate_size=12288,
            num_hidden_layers=36,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
            vocab_size=151936,
            max_position_embeddings=262144,
            rms_norm_eps=1e-6,
            initializer_range=0.02,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [24, 20, 20],
                "mrope_interleaved": True,
            },
        ),
        dict(
            depth=27,
            hidden_size=1152,
            intermediate_size=4304,
            num_heads=16,
            out_hidden_size=4096,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=2304,
            deepstack_visual_indexes=[8, 16, 24],
            hidden_act="gelu_pytorch_tanh",
            initializer_range=0.02,
        ),
    ),
    # Qwen3.5-9B: transformers 5.23's Qwen3_5TextConfig defaults, which it documents as the Qwen3.5-9B style (32 layers,
    # every 4th full attention, Gated DeltaNet 16 key / 32 value heads of 128, heads of 256 with a quarter rotated in
    # interleaved sections [11, 11, 10]); the vision tower of Qwen3_5VisionConfig's defaults, its merger sized to the
    # text width. Not checked against the published config.json (no hub access here).
    "qwen3_5_9b": (
        "qwen3_5",
        dict(
            hidden_size=4096,
            intermediate_size=12288,
            num_hidden_layers=32,
            num_attention_heads=16,
            num_key_value_heads=4,
            head_dim=256,
            vocab_size=248320,
            max_position_embeddings=262144,
            rms_norm_eps=1e-6,
            initializer_range=0.02,
            full_attention_interval=4,
            linear_conv_kernel_dim=4,
            linear_key_head_dim=128,
            linear_value_head_dim=128,
            linear_num_key_heads=16,
            linear_num_value_heads=32,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000000.0,
                "mrope_section": [11, 11, 10],
                "mrope_interleaved": True,
                "partial_rotary_factor": 0.25,
            },
        ),
        dict(
            depth=27,
            hidden_size=1152,
            intermediate_size=4304,
            num_heads=16,
            out_hidden_size=4096,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=2304,
            hidden_act="gelu_pytorch_tanh",
            initializer_range=0.02,
        ),
    ),
}
