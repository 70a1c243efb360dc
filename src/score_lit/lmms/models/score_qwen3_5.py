"""`--model score_qwen3_5`: lmms-eval's stock Qwen3.5 wrappers with SCORE compression of the video tokens.

    lmms-eval --model score_qwen3_5 \\
        --model_args pretrained=PATH,policy=runs/stage2/policy.pt,retention_ratio=0.1,enable_thinking=false ...

Subclasses of lmms_eval 0.7.3's `Qwen3_5` (simple: lmms_eval.models.simple.qwen3_5, chat:
lmms_eval.models.chat.qwen3_5), which are its Qwen3-VL wrappers with Qwen3.5 defaults (max_num_frames 768,
min/max_pixels 64*32*32 / 128*32*32, enable_thinking True, max_new_tokens 1024); everything else is score_qwen3_vl.
Qwen3.5 has no DeepStack; its hybrid language model (Gated DeltaNet linear attention + gated full attention) gets
the pruned sequence from the hooks, so its recurrence and conv never see a dropped token, as in `score_lit eval`.

Prompt: the stock wrapper renders Qwen3.5's chat template with `enable_thinking`; its generation prompt ends
"<|im_start|>assistant\n" + "<think>\n" (thinking, the default) or "<think>\n\n</think>\n\n" (enable_thinking=false),
which score_lit.mllm.qwen3_vl.qwen3_chat_template writes out (the checkpoint's template file is not read). With
thinking on, the answer is what follows "</think>" (the stock `_strip_thinking`: empty if the generation stops
before it), so multiple-choice evaluation wants enable_thinking=false.
"""

from __future__ import annotations

from lmms_eval.models.chat.qwen3_5 import Qwen3_5 as _StockChat
from lmms_eval.models.simple.qwen3_5 import Qwen3_5 as _StockSimple

from score_lit.lmms.models.score_qwen3_vl import _ScoreQwen3


class _ScoreQwen3_5(_ScoreQwen3):
    family = "qwen3_5"
    thinking = True


class ScoreQwen3_5(_ScoreQwen3_5, _StockChat):
    """Chat flavour (what `--model score_qwen3_5` resolves to)."""

    is_simple = False
    max_new_tokens, decode_kwargs = 1024, {"clean_up_tokenization_spaces": False}  # the stock DEFAULT_GEN_KWARGS


class ScoreQwen3_5Simple(_ScoreQwen3_5, _StockSimple):
    """Simple flavour (`--force_simple`, needed for multiple_choice tasks, and the LMMS_EVAL_PLUGINS route)."""

    is_simple = True
    max_new_tokens, apply_until, decode_kwargs = 1024, True, {"clean_up_tokenization_spaces": False}
