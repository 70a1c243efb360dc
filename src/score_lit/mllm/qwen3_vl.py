"""Qwen3-VL: the family hooks of score_lit.mllm.adapter.VideoMLLM (which owns the sequence).

The adapter wraps a loaded `Qwen3VLForConditionalGeneration` (no class patching) and uses its public pieces:

    _encode:  VideoPreprocessor (patch 16, mean / std 0.5) -> model.model.get_video_features(...) ->
              .pooler_output = tokens [B, T, N, D] and .deepstack_features = VisualTokens.deepstack [B, S, T*N, D];
              positions [B, 3, T*N] = (0, r, c) of each temporal unit, relative to that unit's first slot
    video_inputs: the same pixels + video_grid_thw as the stock forward / `generate` takes them (lmms-eval)
    video_block: per temporal unit u, "<t_u seconds>" <|vision_start|> its N tokens <|vision_end|>; the text
              slots are always kept, the video slots are selectable; `prompt_block` is the same block with the
              video placeholder id in the video slots (the prompt of lmms-eval's generate_until)
    qwen3_chat_template: the prompt of lmms-eval's Qwen3-VL / Qwen3.5 wrappers (score_lit.lmms)
    llm_inputs: the kept tokens' DeepStack features + their slots (visual_pos_masks) for language_model
    attention_query_key: Qwen3's q_norm / k_norm before RoPE (FastV's attention)

What is different from Qwen2.5-VL, and how it is handled:
- Timestamps are text. Qwen's processor writes each temporal unit as `<{t:.1f} seconds><|vision_start|>` +
  N video tokens + `<|vision_end|>`, with t the mean time of the unit's frames. A pruned row keeps every
  unit's timestamp and vision start / end tokens (they are text slots of the block), whatever it keeps of
  the unit's tokens. Sampling times: frame j of a video is at j * seconds_per_frame (the batch's spacing, else
  mllm.seconds_per_frame), so unit u is at (u * tps + (tps - 1) / 2) * seconds_per_frame: the stock
  processor's `_calculate_timestamps` given fps = 1 / seconds_per_frame and frame indices 0..F-1 (its
  fallback with no metadata is fps 24, which would put a 32-frame, 16-second clip at 0.0 .. 1.3 seconds).
  Deviation: times count from the first sampled frame (the batch carries only the spacing, not the clip's
  start in the file), and F is taken as T * tps (frame counts are even in this project).
- Positions: each unit is its own grid with t = 1 (interleaved M-RoPE, mrope_interleaved): its tokens sit at
  (s, s + r, s + c) with s the unit's first slot position, and the text after it continues at max + 1 =
  s + max(H', W'). For t = 1 grids transformers 5.23's get_rope_index gives the same ids as the original
  rule (the 5.23 discrepancy of score_lit.mllm.positions needs t > 1), so tests compare with it directly.
  Kept tokens keep their full-sequence ids (the base gathers them).
- DeepStack: the vision tower's features of a few layers are added to the visual tokens' hidden states
  after the LLM's first layers. The base compacts each row; `llm_inputs` gathers the DeepStack features with
  the same slot order and keep mask as the main tokens, so a kept token gets its own features and a dropped
  one none. Methods that merge tokens (pool, VisionZip, DyCoke) replace only the main features; a kept
  slot keeps its own DeepStack features.
- The prompt: Qwen's processor (transformers <= 4.57, qwen-vl-utils) replaces the chat template's
  `<|vision_start|><|video_pad|><|vision_end|>` as a whole by the units above; so a template holding
  `<|vision_start|>{video}<|vision_end|>` (MLLMConfig's default) has that triple replaced by the units
  alone. (transformers 5.23's processor replaces only <|video_pad|> and nests each unit inside one more
  start / end pair; we follow the original.) The default template has no system turn, as Qwen3-VL's chat
  template has none by default.

The pixel budget is MLLMConfig's per-frame min/max_pixels (as for Qwen2.5-VL), not Qwen3-VL's processor
budget over the whole clip; frames already at multiples of 32 are not resampled.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from score_lit.mllm.adapter import VideoInputs, VideoMLLM
from score_lit.mllm.attention import rotate
from score_lit.mllm.positions import text_positions, video_positions
from score_lit.mllm.preprocess import VideoPreprocessor, stack_frames
from score_lit.mllm.qwen_vl import QwenVLAdapter
from score_lit.mllm.sequence import VIDEO, Layout, PromptBatch
from score_lit.types import VideoBatch, VisualTokens

QWEN3_TEMPLATE = "<|im_start|>user\n{video}{question}<|im_end|>\n<|im_start|>assistant\n"
# Words the tiny tokenizer needs for the timestamp text "<0.5 seconds>" ("<", digits, ".", "seconds", ">").
TIMESTAMP_WORDS = ("<", ">", "seconds")


def qwen3_chat_template(
    system_prompt: str | None = None, enable_thinking: bool | None = None, thinking: bool = False
) -> str:
    """The prompt of lmms-eval's Qwen3-VL / Qwen3.5 wrappers as a score_lit template: a system turn with
    `system_prompt` (none if None), the user turn (video, then question), the generation prompt. `thinking`
    (Qwen3.5's chat template) ends it with "<think>\\n" unless enable_thinking is False, then with an empty
    "<think>\\n\\n</think>\\n\\n" block. {video} is the units alone (no start / end pair around it: module docstring),
    so the string never equals MLLMConfig's default and is used as given."""
    system = "" if system_prompt is None else f"<|im_start|>system\n{system_prompt}<|im_end|>\n"
    think = "" if not thinking else ("<think>\n\n</think>\n\n" if enable_thinking is False else "<think>\n")
    return system + "<|im_start|>user\n{video}{question}<|im_end|>\n<|im_start|>assistant\n" + think


def unit_times(units: int, temporal_patch_size: int, seconds_per_frame: float) -> list[float]:
    """Seconds of each temporal unit: the mean of its first and last frame's time, frame j at j * seconds_per_frame
    (the stock processor's `_calculate_timestamps` for frame indices 0..F-1 at fps 1 / seconds_per_frame)."""
    tps = temporal_patch_size
    return [(u * tps + (u * tps + tps - 1)) / 2 * seconds_per_frame for u in range(units)]


class Qwen3VLAdapter(VideoMLLM):
    """Qwen3VLForConditionalGeneration (Qwen3-VL dense) as a frozen VideoMLLM; Qwen3.5 subclasses it."""

    family = "qwen3_vl"
    default_template = QWEN3_TEMPLATE
    default_norm = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    gated_query = False  # Qwen3.5's full attention projects [query | gate] per head

    @classmethod
    def model_class(cls):
        from transformers import Qwen3VLForConditionalGeneration

        return Qwen3VLForConditionalGeneration

    @classmethod
    def config_class(cls):
        from transformers import Qwen3VLConfig

        return Qwen3VLConfig

    @classmethod
    def tiny_tokenizer(cls):
        """The tiny word-level tokenizer (Qwen's specials) plus the timestamp words."""
        from score_lit.mllm.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer(TIMESTAMP_WORDS)

    @classmethod
    def tiny_text(cls) -> dict:
        """Text sub-config entries of the tiny model beyond score_lit.mllm.tiny.qwen_tiny_dicts."""
        return dict(
            head_dim=16,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        )

    # Vision: width 32, patch 8 (as the other tiny Qwen models; the real one has 16), depth 2 with DeepStack after
    # both blocks (the real 8B: blocks 8, 16, 24 of 27), a learned 8x8 position grid (num_position_embeddings).
    tiny_vision = dict(
        hidden_size=32,
        intermediate_size=64,
        out_hidden_size=64,
        num_position_embeddings=64,
        deepstack_visual_indexes=[0, 1],
    )

    @classmethod
    def tiny_config(cls, tokenizer, text: dict | None = None, vision: dict | None = None):
        """A tiny config of the real class: score_lit.mllm.tiny's Qwen sizes (text width 64, 2 layers, 4 heads of 16,
        interleaved M-RoPE sections [2, 3, 3]; vision patch 8, merge 2, temporal patch 2) with this family's parts."""
        from score_lit.mllm.tiny import qwen_tiny_dicts

        t, v, common = qwen_tiny_dicts(tokenizer)
        t.update(cls.tiny_text())
        v.update(cls.tiny_vision)
        t.update(text or {})
        v.update(vision or {})
        return cls.model_class(), cls.config_class()(text_config=t, vision_config=v, **common)

    @classmethod
    def save_processor(cls, model, path) -> None:
        """preprocessor_config.json of a Qwen3-VL checkpoint: the model's patch / merge / temporal patch, mean / std 0.5."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        vc = model.config.vision_config
        Qwen2VLImageProcessorPil(
            patch_size=vc.patch_size,
            merge_size=vc.spatial_merge_size,
            temporal_patch_size=vc.temporal_patch_size,
            image_mean=list(cls.default_norm[0]),
            image_std=list(cls.default_norm[1]),
        ).save_pretrained(path)

    def setup(self) -> None:
        vc = self.model.config.vision_config
        self.merge = int(vc.spatial_merge_size)
        self.temporal_patch_size = int(vc.temporal_patch_size)
        self.vision_start_id = int(self.model.config.vision_start_token_id)
        self.vision_end_id = int(self.model.config.vision_end_token_id)
        self.preprocessor = VideoPreprocessor(
            patch_size=int(vc.patch_size),
            merge_size=self.merge,
            temporal_patch_size=self.temporal_patch_size,
            min_pixels=self.cfg.min_pixels,
            max_pixels=self.cfg.max_pixels,
            mean=self.mean,
            std=self.std,
        )
        # The processor replaces the template's start / video / end triple as a whole (module docstring).
        template = self.cfg.prompt_template.replace("<|vision_start|>{video}<|vision_end|>", "{video}")
        self.cfg = type(self.cfg)(**{**self.cfg.__dict__, "prompt_template": template})
        self._stamps: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ encode
    def video_inputs(self, batch: VideoBatch) -> VideoInputs:
        """pixel_values_videos [B*gt*gh*gw, 3*tps*p*p] + video_grid_thw [B, 3] (t = T units; the stock model splits
        it per unit); positions [B, 3, T*N] = (0, r, c) relative to each unit's first slot."""
        pixels, grid_thw = self.preprocessor(stack_frames(batch.frames))
        gt, gh, gw = (int(g) for g in grid_thw[0].tolist())
        grid = (gt, gh // self.merge, gw // self.merge)  # (T, H', W')
        positions = video_positions(grid, 0, 0.0).expand(grid_thw.shape[0], -1, -1).clone()
        return VideoInputs({"pixel_values_videos": pixels, "video_grid_thw": grid_thw}, grid, positions)

    # + mm_token_type_ids (0 text, 2 video), which the stock forward needs for its rope index: Qwen2/2.5-VL's own
    generate_inputs = QwenVLAdapter.generate_inputs

    def _encode(self, batch: VideoBatch) -> VisualTokens:
        vi = self.video_inputs(batch)
        dev = self.device
        pixels, grid_thw = vi.model_kwargs["pixel_values_videos"], vi.model_kwargs["video_grid_thw"]
        out = self.model.model.get_video_features(pixels.to(dev), grid_thw.to(dev), return_dict=True)
        b, grid = grid_thw.shape[0], vi.grid  # (T, H', W')
        tokens = torch.stack(list(out.pooler_output)).view(b, grid[0], grid[1] * grid[2], -1)  # [B, T, N, D]
        feats = getattr(out, "deepstack_features", None)
        deepstack = torch.stack([torch.stack(list(f)) for f in feats], 1) if feats else None  # [B, S, T*N, D]
        # Each unit its own t = 1 grid: (0, r, c) relative to the unit's first slot (video_block adds the offsets).
        return VisualTokens(tokens=tokens, grid=grid, positions=vi.positions.to(dev), deepstack=deepstack)

    # ---------------------------------------------------------------- sequence
    def _stamp(self, seconds: float) -> list[int]:
        """Token ids of "<t seconds>" followed by <|vision_start|> (cached per text)."""
        text = f"<{seconds:.1f} seconds>"
        if text not in self._stamps:
            self._stamps[text] = self._ids([text])[0] + [self.vision_start_id]
        return self._stamps[text]

    def video_block(self, visual: VisualTokens, prompts: PromptBatch, i: int) -> tuple[list[int], Tensor]:
        """Per unit: "<t seconds>" <|vision_start|> N video slots <|vision_end|>; positions relative to the block:
        text consecutive, unit u's grid at its first slot's id s (t = s, h = s + r, w = s + c), text after it at
        max + 1."""
        spf = self.cfg.seconds_per_frame if prompts.seconds_per_frame is None else prompts.seconds_per_frame[i]
        # Every unit's tokens sit at (0, r, c) (video_inputs): taken from the grid on the CPU, not read back from the
        # device copy in visual.positions.
        return self._block(visual.grid, video_positions(visual.grid, 0, 0.0), spf)

    def prompt_block(self, video: VideoInputs, seconds_per_frame: float | None) -> tuple[list[int], Tensor]:
        """video_block's units for the stock `generate`: the video placeholder id in the video slots."""
        spf = self.cfg.seconds_per_frame if seconds_per_frame is None else float(seconds_per_frame)
        ids, pos = self._block(video.grid, video.positions[0].cpu(), spf)
        return [self.video_token_id if t < 0 else t for t in ids], pos

    def _block(self, grid: tuple[int, int, int], rel: Tensor, spf: float) -> tuple[list[int], Tensor]:
        """(ids [Lb], -1 per video slot; positions [3, Lb] relative to the block) of a video of `grid` whose tokens
        sit at `rel` [3, T*N] (0, r, c) within their unit, frames `spf` seconds apart."""
        t, h, w = grid
        n = h * w
        ids: list[int] = []
        pos: list[Tensor] = []
        cur = 0
        for u, sec in enumerate(unit_times(t, self.temporal_patch_size, spf)):
            head = self._stamp(sec)
            unit = rel[:, u * n : (u + 1) * n] + cur + len(head)
            pos += [text_positions(len(head), cur), unit, text_positions(1, int(unit.max()) + 1)]
            ids += head + [-1] * n + [self.vision_end_id]
            cur = int(unit.max()) + 2
        return ids, torch.cat(pos, dim=1)

    def llm_inputs(self, visual: VisualTokens, lay: Layout, order: Tensor, attn: Tensor) -> dict[str, Any]:
        """DeepStack inputs of the B*K compacted rows: visual_pos_masks [B*K, L] (the kept video slots) and per
        DeepStack layer the features of those slots in row-major order [n_kept_total, D], gathered with the same
        slot order (`order`) and keep mask (`attn`) as the main tokens. {} without DeepStack (Qwen3.5)."""
        if visual.deepstack is None:
            return {}
        b, k, length = order.shape
        bi = torch.arange(b, device=order.device)[:, None, None]
        is_vid = (lay.kind[bi, order] == VIDEO) & attn  # [B, K, L]
        idx = lay.index[bi, order]  # [B, K, L] the video token of each slot
        ds = visual.deepstack.to(lay.embeds.device, lay.embeds.dtype)  # [B, S, V, D]
        masks = is_vid.reshape(b * k, length)
        feats = [ds[:, s][bi, idx].reshape(b * k, length, -1)[masks] for s in range(ds.shape[1])]
        return {"visual_pos_masks": masks, "deepstack_visual_embeds": feats}

    def attention_query_key(
        self, attn_mod, x_q: Tensor, x: Tensor, cos_q: Tensor, sin_q: Tensor, cos: Tensor, sin: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Qwen3 attention: per-head q_norm / k_norm before RoPE; with `gated_query` (Qwen3.5) q_proj gives
        [query | gate] per head and the gate is not needed for the attention map; RoPE rotates the first
        cos.shape[-1] dims of each head (partial rotary, Qwen3.5), the rest pass."""
        b, length, _ = x.shape
        hd = attn_mod.head_dim
        q = attn_mod.q_proj(x_q).view(b, 1, -1, hd * (2 if self.gated_query else 1))[..., :hd]
        q = attn_mod.q_norm(q).transpose(1, 2)  # [B, H, 1, hd]
        k = attn_mod.k_norm(attn_mod.k_proj(x).view(b, length, -1, hd)).transpose(1, 2)  # [B, KV, L, hd]
        r = cos.shape[-1]
        q = torch.cat([rotate(q[..., :r], cos_q[:, None, None], sin_q[:, None, None]), q[..., r:]], -1)
        k = torch.cat([rotate(k[..., :r], cos[:, None], sin[:, None]), k[..., r:]], -1)
        return q, k
