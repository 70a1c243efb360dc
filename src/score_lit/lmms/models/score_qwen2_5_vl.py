"""`--model score_qwen2_5_vl`: lmms-eval's stock Qwen2.5-VL wrappers with SCORE compression of the video tokens.

    lmms-eval --model score_qwen2_5_vl \\
        --model_args pretrained=PATH,policy=runs/stage2/policy.pt,retention_ratio=0.1 --tasks videomme ...

Subclasses of lmms_eval 0.7.3's `Qwen2_5_VL` (simple: lmms_eval.models.simple.qwen2_5_vl, chat:
lmms_eval.models.chat.qwen2_5_vl): every stock model_arg (device, device_map, attn_implementation, min/max_pixels,
max_num_frames, fps, system_prompt, use_cache, ...) means what it means there. Added args:
  policy           the trained SCORE policy (score_lit checkpoint); required unless retention_ratio=1
  retention_ratio  r: keep k = ceil(r * T * N) video tokens (1.0 = no compression)
  selection        global | per_frame top-k (score_lit.compressors.score)
  selection_log    a JSONL file: one line per selection (path, doc, question, ratio, the kept token indices)
  decode_resize    decoder | processor: frames scaled inside decord (default, faster) or decoded at full size and
                   resized by score_lit's fit_frames (eval.decode_resize)
  prefetch         chunks of requests (generate_until) / documents (loglikelihood) decoded ahead in background
                   threads while the model works (default 1; 0: decode in line)
  frame_size, fit  loglikelihood path only: frames are decoded by score_lit (decord) and fitted to a square
                   frame_size (pad | stretch | crop), as `score_lit eval` does (eval.size / eval.fit)

Two paths, both on the instance the stock __init__ loaded (no class of transformers or lmms-eval is patched):
* generate_until (videomme, mvbench, ... as lmms-eval runs them): score_lit.lmms.generate; ScoreHooks (forward
  pre-hooks on the loaded model, score_lit.inference.hooks) drop the non-kept video tokens after the vision tower.
  --batch_size N: N requests per generate call (left-padded rows, score_lit.inference.batch).
* loglikelihood (multiple_choice tasks; the stock wrapper raises NotImplementedError): score_lit's own scoring
  (score_lit.mllm.qwen_vl.Qwen25VLAdapter wrapping the same model instance): decode (max_num_frames frames, fps if
  set), encode, policy top-k, one LLM pass over text + kept tokens with their original positions; the returned
  value is the continuation's mean CE (lmms-eval's convention: a loss, the lowest one wins). This is exactly what
  `score_lit eval` computes, so a multiple_choice task's `acc` equals score_lit eval's accuracy. is_greedy is not
  computed (always False): the exact_match metric is not supported on this path.

Without torchvision (this CPU stack, see ../../../../README.md), the stock __init__ stops at
`AutoProcessor.from_pretrained` (Qwen2VLVideoProcessor needs torchvision) AFTER loading the model; the rest of the
stock __init__ (tokenizer, system prompt, batch size, single process) is then finished here and `processor` is None:
loglikelihood works, generate_until (which needs the processor and qwen_vl_utils) does not.
"""

from __future__ import annotations

import inspect

import torch
from lmms_eval.models.chat.qwen2_5_vl import Qwen2_5_VL as _StockChat
from lmms_eval.models.simple.qwen2_5_vl import Qwen2_5_VL as _StockSimple
from loguru import logger as eval_logger

from score_lit.inference.hooks import ScoreHooks
from score_lit.lmms.generate import ScoreGeneration
from score_lit.lmms.loglikelihood import score_loglikelihood

_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


class _ScoreQwen(ScoreGeneration):
    """The SCORE part shared by the simple and chat classes (module docstring), and by the Qwen3-VL / Qwen3.5 classes
    (score_qwen3_vl.py, score_qwen3_5.py), which set `family` and override `prompt_template`."""

    hooks_class = ScoreHooks
    family = "qwen2_5_vl"

    def __init__(
        self,
        policy: str | None = None,
        retention_ratio: float = 0.1,
        selection: str = "global",
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
        from score_lit.mllm import adapter_class

        name = f"score_{self.family}"
        self.retention_ratio = float(retention_ratio)
        if not 0.0 < self.retention_ratio <= 1.0:
            raise ValueError(f"retention_ratio={retention_ratio!r}: use a value in (0, 1]")
        self.frame_size, self.fit = int(frame_size), fit
        cfg = MLLMConfig(
            family=self.family,
            path=self.pretrained,
            dtype=_DTYPE_NAMES.get(self.model.dtype, "float32"),
            prompt_template=self.prompt_template(),
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
        )
        # reads the checkpoint's mean / std
        self.adapter = adapter_class(self.family)(cfg, model=self.model, tokenizer=self.tokenizer)
        self.compressor = None
        if self.retention_ratio < 1.0:
            if policy is None:
                raise ValueError(f"{name} needs policy=PATH (a score_lit policy checkpoint) unless retention_ratio=1")
            self.compressor = build_compressor("score", mllm=self.adapter, policy_path=policy, selection=selection)
        self.build_hooks()
        eval_logger.info(f"SCORE: retention_ratio={self.retention_ratio}, policy={policy}, selection={selection}")

    def prompt_template(self) -> str:
        """The stock wrapper's chat prompt (system turn with its system_prompt, unless None) as a score_lit template."""
        template = (
            f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|>{video}<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
        )
        return template if self.system_prompt is not None else template.split("<|im_end|>\n", 1)[1]

    def _stock_args(self, stock: dict) -> dict:
        """The stock __init__'s arguments: every stock class's defaults (the subclass's win, e.g. Qwen3.5's over
        Qwen3-VL's), then the given ones."""
        args: dict = {}
        for c in reversed(type(self).__mro__):
            if c.__module__.startswith("lmms_eval.models.") and "__init__" in c.__dict__:
                ps = inspect.signature(c.__init__).parameters.values()
                args.update({p.name: p.default for p in ps if p.default is not inspect.Parameter.empty})
        return {**args, **stock}

    def _stock_init(self, stock: dict) -> None:
        """The stock __init__; if it stops at the processor for want of torchvision, finish its tail here."""
        from score_lit.mllm.prompts import load_tokenizer

        name = f"score_{self.family}"
        a = self._stock_args(stock)
        self.pretrained = a["pretrained"]
        try:
            super().__init__(**stock)
        except ImportError as e:
            if "torchvision" not in str(e).lower() or not hasattr(self, "_model"):
                raise
            eval_logger.info(
                f"{name}: no processor without torchvision ({str(e).strip().splitlines()[0]}); "
                "not needed: SCORE preprocesses with score_lit"
            )
            if self.accelerator.num_processes > 1:
                raise RuntimeError(f"{name} without torchvision: single process only")
            self.processor = None
            self.system_prompt = a["system_prompt"]
            self.interleave_visuals = a["interleave_visuals"]
            self._config = self.model.config
            self._max_length = 2048
            self.batch_size_per_gpu = int(a["batch_size"])
            self.use_cache = a["use_cache"]
            self._rank, self._world_size = 0, 1
        # AutoTokenizer's, unless the checkpoint declares the plain PreTrainedTokenizerFast (score_lit's tiny ones)
        self._tokenizer = load_tokenizer(self.pretrained)

    def frame_args(self) -> tuple[int, float | None]:
        return self.max_num_frames, self.fps

    # ------------------------------------------------------------ loglikelihood
    @torch.no_grad()
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        return score_loglikelihood(self, requests, f"score_{self.family}", self.max_num_frames, self.fps)


class ScoreQwen2_5_VL(_ScoreQwen, _StockChat):
    """Chat flavour (what `--model score_qwen2_5_vl` resolves to, as `qwen2_5_vl` resolves to its chat class)."""

    is_simple = False
    max_new_tokens, decode_kwargs = 128, {"clean_up_tokenization_spaces": False}  # the stock chat class's


class ScoreQwen2_5_VLSimple(_ScoreQwen, _StockSimple):
    """Simple flavour (`--force_simple`, and the LMMS_EVAL_PLUGINS route, which registers simple classes only)."""

    is_simple = True
    max_new_tokens, apply_until, decode_kwargs = (
        32768,
        True,
        {"clean_up_tokenization_spaces": False},
    )  # the stock simple class's
