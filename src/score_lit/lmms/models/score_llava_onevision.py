"""`--model score_llava_onevision`: lmms-eval's stock HF LLaVA wrappers with SCORE compression of the video tokens.

    lmms-eval --model score_llava_onevision \\
        --model_args pretrained=llava-hf/llava-onevision-qwen2-7b-ov-hf,policy=runs/stage2/policy.pt,retention_ratio=0.1 \\
        --tasks videomme ...

Subclasses of lmms_eval 0.7.3's `LlavaHf` (simple: lmms_eval.models.simple.llava_hf, chat:
lmms_eval.models.chat.llava_hf), which load `LlavaOnevisionForConditionalGeneration` for OneVision / LLaVA-Video
HF checkpoints (model_type llava_onevision). Every stock model_arg (revision, device, dtype, device_map,
attn_implementation, chat_template, use_cache, max_frames_num, ...) means what it means there; the checkpoint must
be a llava_onevision one. lmms-eval's other OneVision wrapper, `llava_onevision` (LLaVA-NeXT's original code), needs
the `llava` package (LLaVA-NeXT), which is not installable on this stack: it is not wrapped. Added args:
  policy           the trained SCORE policy (score_lit checkpoint); required unless retention_ratio=1
  retention_ratio  r: keep k = ceil(r * T * N) video tokens (1.0 = no compression)
  selection        global | per_frame top-k (score_lit.compressors.score)
  position_ids     original | compacted (1-D RoPE; score_lit's mllm.position_ids)
  selection_log    a JSONL file: one line per selection (path, doc, question, ratio, the kept token indices)
  decode_resize    decoder | processor: frames scaled inside decord (default, faster) or decoded at full size and
                   resized by score_lit's fit_frames (eval.decode_resize)
  prefetch         chunks of requests (generate_until) / documents (loglikelihood) decoded ahead in background
                   threads while the model works (default 1; 0: decode in line)
  frame_size, fit  loglikelihood path only: frames are decoded by score_lit (decord, max_frames_num frames) and
                   fitted to a square frame_size (pad | stretch | crop), as `score_lit eval` does

Two paths, both on the instance the stock __init__ loaded (nothing in transformers or lmms-eval is patched):
* generate_until: score_lit.lmms.generate (score_lit's decoding and prompt, the stock `generate`); ScoreHooks1D
  (forward pre-hooks on the loaded model, score_lit.inference.hooks) drop the non-kept video tokens after the stock
  forward built inputs_embeds (image_newline always kept). --batch_size N: N requests per generate call
  (left-padded rows; the stock wrapper asserts 1).
* loglikelihood (multiple_choice tasks): score_lit's own scoring (score_lit.mllm.llava_onevision.
  LlavaOnevisionAdapter wrapping the same model instance, prompt = LLAVA_OV_TEMPLATE, LLaVA-OneVision's qwen_1_5
  conversation, as score_lit eval): decode, encode, policy top-k, one LLM pass; the returned value is the
  continuation's mean CE, so a multiple_choice task's `acc` equals score_lit eval's accuracy. is_greedy is always
  False (exact_match is not supported on this path). The stock wrapper's own loglikelihood (image tokens only,
  through the processor) is replaced.

Without torchvision (this CPU stack), the stock __init__ stops at `AutoProcessor.from_pretrained` AFTER loading
the model; the rest of it is finished here with `_image_processor` None: loglikelihood works, generate_until (which
needs the processor) does not. With a processor (a GPU stack with torchvision) generate_until runs the hooks.
"""

from __future__ import annotations

import inspect

import torch
from lmms_eval.models.chat.llava_hf import LlavaHf as _StockChat
from lmms_eval.models.simple.llava_hf import LlavaHf as _StockSimple
from loguru import logger as eval_logger

from score_lit.inference.hooks import ScoreHooks1D
from score_lit.lmms.generate import ScoreGeneration
from score_lit.lmms.loglikelihood import score_loglikelihood

_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


class _ScoreLlavaOnevision(ScoreGeneration):
    """The SCORE part shared by the simple and chat classes (module docstring)."""

    hooks_class = ScoreHooks1D
    max_new_tokens = 1024  # both stock llava_hf classes' default; neither applies `until`

    def __init__(
        self,
        policy: str | None = None,
        retention_ratio: float = 0.1,
        selection: str = "global",
        position_ids: str = "original",
        frame_size: int = 448,
        fit: str = "pad",
        selection_log: str | None = None,
        decode_resize: str = "decoder",
        prefetch: int = 1,
        **stock,
    ) -> None:
        self.set_decoding(decode_resize, prefetch)  # before the model loads: a typo costs no load
        self._stock_init(stock)
        self.selection_log = selection_log
        from score_lit.compressors import build_compressor
        from score_lit.config import MLLMConfig
        from score_lit.mllm.llava_onevision import LlavaOnevisionAdapter

        if type(self.model).__name__ != "LlavaOnevisionForConditionalGeneration":
            raise ValueError(
                f"score_llava_onevision: {self.pretrained} loads {type(self.model).__name__}; "
                "a llava_onevision checkpoint (LlavaOnevisionForConditionalGeneration) is needed"
            )
        self.retention_ratio = float(retention_ratio)
        if not 0.0 < self.retention_ratio <= 1.0:
            raise ValueError(f"retention_ratio={retention_ratio!r}: use a value in (0, 1]")
        self.frame_size, self.fit = int(frame_size), fit
        cfg = MLLMConfig(
            family="llava_onevision",
            path=str(self.pretrained),
            position_ids=position_ids,
            dtype=_DTYPE_NAMES.get(self.model.dtype, "float32"),
        )
        self.adapter = LlavaOnevisionAdapter(
            cfg, model=self.model, tokenizer=self.tokenizer
        )  # reads the checkpoint's mean / std
        self.compressor = None
        if self.retention_ratio < 1.0:
            if policy is None:
                raise ValueError(
                    "score_llava_onevision needs policy=PATH (a score_lit policy checkpoint) unless retention_ratio=1"
                )
            self.compressor = build_compressor("score", mllm=self.adapter, policy_path=policy, selection=selection)
        self.build_hooks(position_ids=position_ids)
        eval_logger.info(
            f"SCORE: retention_ratio={self.retention_ratio}, policy={policy}, selection={selection}, "
            f"position_ids={position_ids}"
        )

    def _stock_init(self, stock: dict) -> None:
        """The stock __init__; if it stops at the processor (no torchvision here), finish its tail here."""
        bound = inspect.signature(_StockSimple.__init__).bind(self, **stock)
        bound.apply_defaults()
        a = bound.arguments
        try:
            super().__init__(**stock)
            return
        except Exception as e:  # noqa: BLE001 -- only past the model load (below), else re-raised
            if not hasattr(self, "_model") or hasattr(self, "_tokenizer"):
                raise
            eval_logger.info(
                f"LlavaHf: no processor ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}); "
                "not needed: SCORE preprocesses with score_lit"
            )
        from accelerate import Accelerator
        from transformers import AutoTokenizer

        accelerator = Accelerator()
        if accelerator.num_processes > 1:
            raise RuntimeError("score_llava_onevision without a processor: single process only")
        self.pretrained = a["pretrained"]
        self._image_processor = None
        self._tokenizer = AutoTokenizer.from_pretrained(a["pretrained"], revision=a["revision"])
        self._config = self._model.config
        self.batch_size_per_gpu = int(a["batch_size"])
        self.chat_template = a["chat_template"]
        self.use_cache = a["use_cache"]
        if a["device_map"] != "auto":
            self._model.to(self._device)
        self._rank, self._world_size = 0, 1
        self.accelerator = accelerator

    def frame_args(self) -> tuple[int, float | None]:
        return self.max_frames_num, None

    # ------------------------------------------------------------ loglikelihood
    @torch.no_grad()
    def loglikelihood(self, requests) -> list:
        return score_loglikelihood(self, requests, "score_llava_onevision", self.max_frames_num)


class ScoreLlavaOnevision(_ScoreLlavaOnevision, _StockChat):
    """Chat flavour (what `--model score_llava_onevision` resolves to)."""

    is_simple = False


class ScoreLlavaOnevisionSimple(_ScoreLlavaOnevision, _StockSimple):
    """Simple flavour (`--force_simple`, needed for multiple_choice tasks, and the LMMS_EVAL_PLUGINS route)."""

    is_simple = True
