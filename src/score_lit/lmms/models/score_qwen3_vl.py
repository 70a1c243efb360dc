"""`--model score_qwen3_vl`: lmms-eval's stock Qwen3-VL wrappers with SCORE compression of the video tokens.

    lmms-eval --model score_qwen3_vl \\
        --model_args pretrained=PATH,policy=runs/stage2/policy.pt,retention_ratio=0.1 --tasks videomme ...

Subclasses of lmms_eval 0.7.3's `Qwen3_VL` (simple: lmms_eval.models.simple.qwen3_vl, chat:
lmms_eval.models.chat.qwen3_vl), with the SCORE part of score_qwen2_5_vl (`_ScoreQwen`: the added args policy /
retention_ratio / selection / frame_size / fit / decode_resize / prefetch, loglikelihood through score_lit's adapter, generate_until through
score_lit.lmms.generate with ScoreHooks). Every stock model_arg (device, device_map, attn_implementation,
min/max_pixels, max_num_frames, fps, system_prompt, enable_thinking, ...) means what it means there; total_pixels
and reasoning_prompt are accepted but not used (frames are sized by frame_size / min/max_pixels per frame, as
`score_lit eval` sizes them).

Family specifics (score_lit.mllm.qwen3_vl): every temporal unit is written "<t seconds>" <|vision_start|> its
tokens <|vision_end|> (the adapter's `prompt_block`, on both paths); that text is always kept, only video tokens
are dropped. In the stock forward the hooks prune inputs_embeds, the position ids (score_lit's, the adapter's
`full_positions`) AND the DeepStack inputs the stock Qwen3VLModel hands its language model (`visual_pos_masks`,
`deepstack_visual_embeds`), with one keep mask. The prompt is the stock wrapper's: a system turn with
`system_prompt` (default "You are a helpful assistant."; None: none), then the user turn; the checkpoint's own chat
template is not read (score_lit.mllm.qwen3_vl.qwen3_chat_template).

Without torchvision (this CPU stack) the stock __init__ stops at `AutoProcessor.from_pretrained` after loading the
model; its tail is finished as for score_qwen2_5_vl (processor None: both paths work, they preprocess with score_lit).
"""

from __future__ import annotations

from lmms_eval.models.chat.qwen3_vl import Qwen3_VL as _StockChat
from lmms_eval.models.simple.qwen3_vl import Qwen3_VL as _StockSimple

from score_lit.lmms.models.score_qwen2_5_vl import _ScoreQwen


class _ScoreQwen3(_ScoreQwen):
    family = "qwen3_vl"
    thinking = False  # Qwen3-VL (Instruct) has no thinking block in its chat template

    def prompt_template(self) -> str:
        from score_lit.mllm.qwen3_vl import qwen3_chat_template

        return qwen3_chat_template(self.system_prompt, self.enable_thinking if self.thinking else None, self.thinking)


class ScoreQwen3_VL(_ScoreQwen3, _StockChat):
    """Chat flavour (what `--model score_qwen3_vl` resolves to)."""

    is_simple = False
    max_new_tokens, decode_kwargs = 128, {"clean_up_tokenization_spaces": False}  # the stock DEFAULT_GEN_KWARGS


class ScoreQwen3_VLSimple(_ScoreQwen3, _StockSimple):
    """Simple flavour (`--force_simple`, needed for multiple_choice tasks, and the LMMS_EVAL_PLUGINS route)."""

    is_simple = True
    max_new_tokens, apply_until, decode_kwargs = 128, True, {"clean_up_tokenization_spaces": False}
