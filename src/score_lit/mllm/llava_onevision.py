"""LLaVA-OneVision / LLaVA-Video: the family hooks of score_lit.mllm.adapter.VideoMLLM (which owns the sequence).

The adapter wraps a loaded `LlavaOnevisionForConditionalGeneration` (the HF ports of LLaVA-OneVision and
LLaVA-Video; no class patching) and uses its public pieces directly:

    _encode: our resize + normalize -> model.model.get_video_features(pixels [B, F, 3, S, S]) .pooler_output
             = per frame: vision tower -> projector -> apply_pooling (bilinear to ceil(h/2) x ceil(w/2)),
             frames concatenated, then ONE image_newline after the last frame  [B, F*N + 1, D].
             tokens = everything but that newline -> [B, T=F, N, D]; a temporal unit is one pooled frame.
             positions [B, 1, T*N] = 0..T*N-1, each token's offset from the video start (1-D RoPE).
    video_suffix: the newline; positions: the adapter's rule, which for 1-D ids is the slot index.

Sequence of one rollout: pre-text | kept video tokens in order | image_newline | post-text. The newline
(the model's learned `image_newline` parameter, which the stock model appends after a video) is not a
selectable visual token: it is always kept, right after the last kept video token, and its slot of the
full sequence is p + T*N (its original position id).

Position ids (mllm.position_ids; Qwen2 text model, 1-D RoPE):
- "original" (default, the method's rule): every kept token and all text keep the id they have in the
  FULL sequence, gaps where tokens were dropped. Equals the stock model on the full sequence with the
  dropped video tokens masked out as keys (tests/reference.py; tests/test_llava_adapter.py).
- "compacted": ids 0..L-1 of the pruned row, as if the dropped tokens never existed. Equals the stock
  model run on the pruned inputs_embeds with its default positions (the same reference, compacted).

Text: the chat template is split at {video}; {question} is filled in wherever it stands. When
mllm.prompt_template is left at its (Qwen) default, LLAVA_OV_TEMPLATE is used: the qwen_1_5 conversation
of LLaVA-NeXT that LLaVA-OneVision / LLaVA-Video were trained and evaluated with (lmms-eval), "<video>"
followed by a newline before the question. The video placeholder itself is never tokenized. The answer and
options are tokenized jointly with the text before them (the base's tokenize).

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
from pathlib import Path

import torch
from torch import Tensor

from score_lit.mllm.adapter import VideoInputs, VideoMLLM
from score_lit.mllm.preprocess import resize_frames, stack_frames
from score_lit.types import VideoBatch, VisualTokens

SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
LLAVA_OV_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "{video}\n{question}<|im_end|>\n<|im_start|>assistant\n"
)
# The real checkpoints (llava-hf/llava-onevision-qwen2-*-hf, LLaVA-Video-*-hf) use Qwen2's tokenizer with
# <image> / <video> added as special tokens, a SigLIP vision tower (image 384, patch 14: 27x27 patches,
# pooled to 14x14 per video frame) and a Qwen2 (1-D RoPE) language model.
LLAVA_SPECIAL_TOKENS = ["<image>", "<video>"]


class LlavaOnevisionAdapter(VideoMLLM):
    """LlavaOnevisionForConditionalGeneration (LLaVA-OneVision, LLaVA-Video) as a frozen VideoMLLM."""

    family = "llava_onevision"
    rope = "1d"
    default_template = LLAVA_OV_TEMPLATE
    norm_files = ("video_preprocessor_config.json", "preprocessor_config.json")
    default_norm = (SIGLIP_MEAN, SIGLIP_STD)

    @classmethod
    def model_class(cls):
        from transformers import LlavaOnevisionForConditionalGeneration

        return LlavaOnevisionForConditionalGeneration

    @classmethod
    def tiny_tokenizer(cls):
        """The tiny word-level tokenizer plus LLaVA's <image> and <video> placeholders as single special tokens."""
        from score_lit.mllm.tiny import SPECIAL_TOKENS, build_tiny_tokenizer

        tok = build_tiny_tokenizer()
        tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS + LLAVA_SPECIAL_TOKENS})
        return tok

    @classmethod
    def tiny_config(cls, tokenizer, text: dict | None = None, vision: dict | None = None):
        """A tiny LlavaOnevisionConfig: SigLIP vision tower image 40, patch 8 (5x5 patches, pooled to ceil(5/2)^2 =
        3x3 per frame: an odd grid, like the real 27x27 -> 14x14), width 32, depth 2; Qwen2 text width 64, 2
        layers, 4 heads / 2 kv heads, 1-D RoPE; vision_feature_layer -1 with the "full" strategy, as the released
        models. `text` / `vision` update the sub-config dicts (e.g. num_hidden_layers for a deeper FastV model)."""
        from transformers import LlavaOnevisionConfig

        from score_lit.mllm.tiny import INIT_STD, SPECIAL_TOKENS

        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS + LLAVA_SPECIAL_TOKENS}
        t = dict(
            model_type="qwen2",
            vocab_size=-(-len(tokenizer) // 64) * 64,
            initializer_range=INIT_STD,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        )
        t.update(text or {})
        v = dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=40,
            patch_size=8,
        )
        v.update(vision or {})
        config = LlavaOnevisionConfig(
            text_config=t,
            vision_config=v,
            image_token_index=ids["<image>"],
            video_token_index=ids["<video>"],
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            initializer_range=INIT_STD,
        )
        return cls.model_class(), config

    @classmethod
    def save_processor(cls, model, path) -> None:
        """A preprocessor_config.json with SigLIP's mean / std (0.5) and the vision tower's image size, as the
        released checkpoints have."""
        size = int(model.config.vision_config.image_size)
        pcfg = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": {"height": size, "width": size}}
        (Path(path) / "preprocessor_config.json").write_text(json.dumps(pcfg, indent=2))

    def setup(self) -> None:
        vc = self.model.config.vision_config
        self.image_size = int(vc.image_size)
        side = self.image_size // int(vc.patch_size)
        self.pooled = (math.ceil(side / 2), math.ceil(side / 2))  # (H', W') per frame after apply_pooling

    def pixels(self, frames: Tensor | list | tuple) -> Tensor:
        """frames [B, F, 3, H, W] uint8 -> pixel_values_videos [B, F, 3, S, S] float32 (S = the tower's image_size)."""
        frames = stack_frames(frames)
        if frames.dtype != torch.uint8:
            raise ValueError(
                f"frames must be [B, F, 3, H, W] uint8 RGB (one shape per batch); got {tuple(frames.shape)} {frames.dtype}"
            )
        x = resize_frames(frames, self.image_size, self.image_size)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * (1.0 / 255.0) - mean) / std

    def video_inputs(self, batch: VideoBatch) -> VideoInputs:
        """pixel_values_videos [B, F, 3, S, S]; grid (F, h, w) pooled; positions [B, 1, T*N] = 0..T*N-1; one suffix
        placeholder (the image_newline), as LlavaOnevisionProcessor expands <video> to T*N + 1 tokens."""
        x = self.pixels(batch.frames)
        b, f = x.shape[:2]
        h, w = self.pooled
        positions = torch.arange(f * h * w).expand(b, 1, -1).clone()
        return VideoInputs({"pixel_values_videos": x}, (f, h, w), positions, n_suffix=1)

    def _encode(self, batch: VideoBatch) -> VisualTokens:
        vi = self.video_inputs(batch)
        dev, dtype = self.device, self.model.get_input_embeddings().weight.dtype
        x = vi.model_kwargs["pixel_values_videos"].to(dev, dtype)
        out = self.model.model.get_video_features(x, return_dict=True).pooler_output  # [B, F*N + 1, D]
        (f, h, w), b = vi.grid, x.shape[0]
        tokens = out[:, :-1].reshape(b, f, h * w, -1)  # the trailing image_newline is re-added as the video suffix
        return VisualTokens(tokens=tokens, grid=vi.grid, positions=vi.positions.to(dev))  # positions [B, 1, T*N]

    def video_suffix(self) -> Tensor:
        """[1, D] the learned image_newline, always kept right after the last kept video token."""
        return self.model.model.image_newline[None]
