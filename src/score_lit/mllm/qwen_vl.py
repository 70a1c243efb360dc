"""Qwen2-VL / Qwen2.5-VL: the family hooks of score_lit.mllm.adapter.VideoMLLM (which owns the sequence).

The adapter wraps a loaded `Qwen2VLForConditionalGeneration` / `Qwen2_5_VLForConditionalGeneration`
instance (no class patching) and uses its public pieces directly:

    video_inputs: VideoPreprocessor (torch, no torchvision) -> pixel_values_videos + video_grid_thw (also what
              lmms-eval's generate_until hands the stock `generate`)
    _encode:  video_inputs -> model.model.get_video_features(...)
              .pooler_output -> tokens [B, T, N, D]; positions.video_positions -> [B, 3, T*N]
    positions: the adapter's one rule (score_lit.mllm.sequence), which is positions.sequence_positions's
    score etc.: the base's, model.model.language_model(inputs_embeds, attention_mask, position_ids) ->
              model.lm_head applied only at the answer-predicting positions.

Deviation from the stock forward (on purpose): position ids come from score_lit.mllm.positions (the
original Qwen M-RoPE rule, not transformers 5.23's get_rope_index; see that module) and are computed
on the FULL sequence, then gathered for the kept columns. With all tokens kept this is exactly the
stock forward given the same ids; with some dropped it equals the full sequence with the dropped
tokens masked out as keys (tests/test_qwen_adapter.py checks both against the stock model).

Text: MLLMConfig's default prompt_template is Qwen's own chat template; CE covers the answer tokens only
(no <|im_end|> after it).

Families differ only in the model class and the temporal position scale: Qwen2.5-VL's t-axis counts
absolute time (tokens_per_second x seconds per temporal patch), Qwen2-VL's counts temporal patches.
Processor numbers: patch / merge / temporal patch come from the model's vision config, mean / std
from preprocessor_config.json when the checkpoint has one; the pixel budget (min/max_pixels) is
MLLMConfig's, since it is this project's per-frame video knob, not the checkpoint's image default.
"""

from __future__ import annotations

import torch
from torch import Tensor

from score_lit.mllm.adapter import VideoInputs, VideoMLLM
from score_lit.mllm.positions import time_scale, video_positions
from score_lit.mllm.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, VideoPreprocessor, stack_frames
from score_lit.types import VideoBatch, VisualTokens


class QwenVLAdapter(VideoMLLM):
    """Shared by Qwen2-VL and Qwen2.5-VL; subclasses set `family`, the model class and the t-axis scale."""

    default_norm = (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)

    @classmethod
    def tiny_config(cls, tokenizer, text: dict | None = None, vision: dict | None = None):
        from score_lit.mllm.tiny import qwen_tiny_dicts

        t, v, common = qwen_tiny_dicts(tokenizer)
        v.update(cls.tiny_vision)
        t.update(text or {})
        v.update(vision or {})
        return cls.model_class(), cls.config_class()(text_config=t, vision_config=v, **common)

    @classmethod
    def save_processor(cls, model, path) -> None:
        """preprocessor_config.json of a Qwen-VL checkpoint, with the model's patch / merge / temporal patch sizes."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        vc = model.config.vision_config
        Qwen2VLImageProcessorPil(
            patch_size=vc.patch_size, merge_size=vc.spatial_merge_size, temporal_patch_size=vc.temporal_patch_size
        ).save_pretrained(path)

    def setup(self) -> None:
        vc = self.model.config.vision_config
        self.merge = int(vc.spatial_merge_size)
        self.temporal_patch_size = int(vc.temporal_patch_size)
        self.tokens_per_second = getattr(vc, "tokens_per_second", None)
        self.preprocessor = VideoPreprocessor(
            patch_size=int(vc.patch_size),
            merge_size=self.merge,
            temporal_patch_size=self.temporal_patch_size,
            min_pixels=self.cfg.min_pixels,
            max_pixels=self.cfg.max_pixels,
            mean=self.mean,
            std=self.std,
        )

    def time_scale(self, seconds_per_temporal_patch: float) -> float:
        """Step of the t-axis per temporal unit."""
        raise NotImplementedError

    def time_scales(self, batch: VideoBatch) -> list[float]:
        """[B] t-axis step per temporal unit (seconds_per_frame from the batch, else from the config)."""
        spf = batch.seconds_per_frame
        secs = [self.cfg.seconds_per_frame] * len(batch) if spf is None else [float(s) for s in spf]
        return [self.time_scale(s * self.temporal_patch_size) for s in secs]

    def video_inputs(self, batch: VideoBatch) -> VideoInputs:
        """pixel_values_videos [B*gt*gh*gw, 3*tps*p*p] + video_grid_thw [B, 3] (Qwen's processor output); positions
        [B, 3, T*N] by the original rule (time-scaled t-axis)."""
        pixels, grid_thw = self.preprocessor(stack_frames(batch.frames))
        gt, gh, gw = (int(g) for g in grid_thw[0].tolist())
        grid = (gt, gh // self.merge, gw // self.merge)  # (T, H', W')
        positions = torch.stack([video_positions(grid, 0, s) for s in self.time_scales(batch)])
        return VideoInputs({"pixel_values_videos": pixels, "video_grid_thw": grid_thw}, grid, positions)

    def generate_inputs(self, input_ids: Tensor, video: VideoInputs) -> dict:
        """+ mm_token_type_ids (0 text, 2 video), which transformers 5.x's Qwen-VL forward reads, as its processor gives."""
        return {**video.model_kwargs, "mm_token_type_ids": (input_ids == self.video_token_id).long() * 2}

    def _encode(self, batch: VideoBatch) -> VisualTokens:
        vi = self.video_inputs(batch)
        dev = self.device
        out = self.model.model.get_video_features(
            vi.model_kwargs["pixel_values_videos"].to(dev), vi.model_kwargs["video_grid_thw"].to(dev)
        )
        b, (t, h, w) = vi.positions.shape[0], vi.grid
        tokens = torch.stack(list(out.pooler_output)).view(b, t, h * w, -1)  # [B, T, N, D]
        return VisualTokens(tokens=tokens, grid=vi.grid, positions=vi.positions.to(dev))  # positions [B, 3, T*N]


class Qwen25VLAdapter(QwenVLAdapter):
    family = "qwen2_5_vl"
    # hidden_size = vision width, out_hidden_size = LLM width; window 32 px = 2 merged units; block 1 uses
    # full attention, block 0 windowed, as in the real model's alternation.
    tiny_vision = dict(
        hidden_size=32,
        intermediate_size=64,
        out_hidden_size=64,
        window_size=32,
        fullatt_block_indexes=[1],
        tokens_per_second=2,
    )

    @classmethod
    def model_class(cls):
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    @classmethod
    def config_class(cls):
        from transformers import Qwen2_5_VLConfig

        return Qwen2_5_VLConfig

    def time_scale(self, seconds_per_temporal_patch: float) -> float:
        """Absolute time: tokens_per_second x seconds per temporal patch (2 x 1 s -> t ids 0, 2, 4, ...)."""
        return time_scale(self.tokens_per_second, seconds_per_temporal_patch)

    # ------------------------------------------------ pre-vision pruning (score_lit.mllm.vision_prune)
    def group_inputs(self, video: VideoInputs, embed: bool = False) -> Tensor:
        """[B, T, N, F]: each token's group of m x m patches as pixel rows (F = m^2 C tps p^2), or with `embed` as
        patch embeddings (F = m^2 x vision width; patch_embed over every patch)."""
        px = video.model_kwargs["pixel_values_videos"].to(self.device)
        b, (t, h, w) = video.positions.shape[0], video.grid
        if embed:
            px = self.model.model.visual.patch_embed(px)
        return px.float().view(b, t, h * w, -1)

    def encode_groups(self, video: VideoInputs, keep: Tensor) -> VisualTokens:
        """keep [B, T*N] bool -> VisualTokens whose kept tokens come from the vision tower run on the kept groups only
        (vision_prune.pruned_vision_forward). A dropped token holds the last kept token at its spatial position
        before it (zeros if none): what the policy's state reads there (its change is then 0), never given to the
        LLM by a selection inside `keep`."""
        from score_lit.mllm.vision_prune import pruned_vision_forward

        dev = self.device
        b, (t, h, w) = video.positions.shape[0], video.grid
        keep = keep.to(dev, torch.bool).view(b, t, h * w)
        px, grid_thw = video.model_kwargs["pixel_values_videos"].to(dev), video.model_kwargs["video_grid_thw"]
        out, order = pruned_vision_forward(self.model.model.visual, px, grid_thw, keep.reshape(-1))
        tokens = out.new_zeros(b * t * h * w, out.shape[-1])
        tokens[order.to(dev)] = out
        tokens = tokens.view(b, t, h * w, -1)
        steps = torch.arange(t, device=dev)[None, :, None].expand_as(keep)
        last = torch.where(keep, steps, torch.full_like(steps, -1)).cummax(dim=1).values  # [B, T, N]
        held = tokens.gather(1, last.clamp(min=0)[..., None].expand_as(tokens)) * (last >= 0)[..., None]
        return VisualTokens(tokens=held, grid=video.grid, positions=video.positions.to(dev))

    def vision_flops(self, grid: tuple[int, int, int], keep: Tensor | None = None) -> int:
        """Vision tower FLOPs of one video of token grid (T, H', W') (score_lit.compressors.flops.vision_tower_flops),
        over all its groups, or over the kept ones (keep [T*N] bool)."""
        from score_lit.compressors.flops import vision_tower_flops
        from score_lit.mllm.vision_prune import pruned_segments

        t, h, w = grid
        grid_thw = torch.tensor([[t, h * self.merge, w * self.merge]])
        k = torch.ones(t * h * w, dtype=torch.bool) if keep is None else keep.reshape(-1).cpu().bool()
        _, win, units = pruned_segments(self.model.model.visual, grid_thw, k)
        return vision_tower_flops(self.model.config.vision_config, win.tolist(), units.tolist())


class Qwen2VLAdapter(QwenVLAdapter):
    family = "qwen2_vl"
    tiny_vision = dict(embed_dim=32, hidden_size=64, mlp_ratio=2)  # embed_dim = vision width, hidden_size = LLM width

    @classmethod
    def model_class(cls):
        from transformers import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration

    @classmethod
    def config_class(cls):
        from transformers import Qwen2VLConfig

        return Qwen2VLConfig

    def time_scale(self, seconds_per_temporal_patch: float) -> float:
        """Temporal patches: the t-axis counts units (1 per unit)."""
        return 1.0
