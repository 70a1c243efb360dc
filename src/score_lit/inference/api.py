"""score_lit's Python API for inference: a trained SCORE policy around a loaded Hugging Face model's `generate`.

    import score_lit
    policy = score_lit.load_policy("runs/stage2/policy")          # a policy folder or a policy.pt
    with score_lit.compress(model, processor, policy, ratio=0.1) as sc:
        inputs = sc.prepare(["a.mp4", "b.mp4"], ["what happens first ?", "which colour ?"])
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    print(sc.decode(out))

`compress` wraps ONE loaded model instance (forward pre-hooks, score_lit.inference.hooks; no class is patched) for
every registered family (the model's `config.model_type`: qwen2_5_vl, qwen2_vl, qwen3_vl, qwen3_5,
llava_onevision), works with device_map / accelerate-dispatched models (the hooks are plain pre-hooks that compute
on the device the tensors arrive on), and with batches of several videos (left-padded rows).

Two ways to build the inputs:
* `sc.prepare(videos, questions)`: score_lit's own decoding (decord: `num_frames`, `frame_size`, `fit`,
  `decode_resize`) and preprocessing, its prompt template and position ids: the prefill is the one `score_lit eval`
  scores, so greedy answers equal its answers (tests/test_api.py). Videos: mp4 paths or uint8 frame arrays
  [F, H, W, 3]. `sc.stream([(videos, questions), ...])` does the same per call, decoding the next call's videos in
  a background thread while the model generates the current one.
* the stock processor's inputs (where transformers' video processors work, i.e. with torchvision): the model's own
  position ids are kept (gathered for the kept tokens), and a question-conditioned policy reads the question from
  `input_ids`: the text after the video up to the prompt template's fixed tail (the chat template's end of turn),
  with special tokens stripped at both ends (`question_from_ids`).

The policy is loaded once (`load_policy`) and checked against the model: another family or width is refused with
one line. Ratio 1.0 keeps every token (no policy needed); the kept mask of each row of the last call is
`sc.last_keep`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from score_lit.errors import ConfigError
from score_lit.mllm.sequence import PromptBatch


@dataclass
class Policy:
    """A trained SCORE policy: the module (eval mode) and what its folder / checkpoint says about it."""

    module: nn.Module
    config: dict  # format, policy_config, in_dim, mllm (family, hidden_size, path), meta
    path: str

    @property
    def mllm(self) -> dict:
        return dict(self.config.get("mllm", {}))

    @property
    def needs_question(self) -> bool:
        return bool(getattr(self.module, "needs_question", False))

    def __repr__(self) -> str:
        name = self.config.get("policy_config", {}).get("name")
        return f"Policy({name!r}, for {self.mllm.get('family')} width {self.mllm.get('hidden_size')}, {self.path!r})"


def load_policy(path: str | os.PathLike) -> Policy:
    """A policy folder (config.json + model.safetensors) or a policy.pt -> Policy (CPU, eval mode). No Lightning, no
    frozen model; bad files get one line (score_lit.training.checkpoint.load_policy)."""
    from score_lit.training.checkpoint import load_policy as _load

    module, config = _load(path)
    return Policy(module, config, str(path))


class Compression:
    """The context manager `compress` returns (module docstring)."""

    def __init__(
        self,
        model,
        processor,
        policy: Policy | str | os.PathLike | None,
        ratio: float = 0.1,
        selection: str = "global",
        num_frames: int = 32,
        frame_size: int = 448,
        fit: str = "pad",
        fps: float | None = None,
        decode_resize: str = "decoder",
        **mllm: Any,
    ):
        from score_lit.compressors.score import ScoreCompressor
        from score_lit.config import MLLMConfig
        from score_lit.inference.hooks import ScoreHooks, ScoreHooks1D
        from score_lit.mllm import REGISTRY, adapter_class
        from score_lit.mllm.adapter import DTYPES

        self.ratio = float(ratio)
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"ratio={ratio!r}: use a retention ratio in (0, 1] (0.1 keeps 10% of the video tokens)")
        family = getattr(getattr(model, "config", None), "model_type", None)
        if family not in REGISTRY:
            raise ConfigError(
                f"score_lit.compress: model type {family!r} ({type(model).__name__}) is not a registered family: "
                f"use one of {sorted(REGISTRY)}"
            )
        known = {f.name for f in fields(MLLMConfig)}
        if bad := sorted(set(mllm) - known):
            raise ConfigError(f"score_lit.compress: unknown option(s) {bad}; mllm options: {sorted(known)}")
        dtype = {v: k for k, v in DTYPES.items()}.get(model.dtype, "float32")
        source = getattr(model.config, "_name_or_path", None)
        path = source if source and (Path(source) / "config.json").is_file() else None
        cfg = MLLMConfig(**{"family": family, "path": path, "dtype": dtype, **mllm})
        tokenizer = getattr(processor, "tokenizer", processor)
        self.adapter = adapter_class(family)(cfg, model=model, tokenizer=tokenizer)
        self.model, self.tokenizer = model, tokenizer
        self.num_frames, self.frame_size, self.fit, self.fps = int(num_frames), int(frame_size), fit, fps
        from score_lit.config.data_eval import check_decode_resize

        self.decode_resize = check_decode_resize(decode_resize, "score_lit.compress: decode_resize")
        if isinstance(policy, (str, os.PathLike)):
            policy = load_policy(policy)
        self.policy = policy
        self.compressor = None
        if self.ratio < 1.0:
            if policy is None:
                raise ConfigError("score_lit.compress: ratio < 1 needs a policy: score_lit.load_policy(PATH)")
            want, got = self.adapter.identity(), policy.mllm
            if (got.get("family"), got.get("hidden_size")) != (want["family"], want["hidden_size"]):
                raise ConfigError(
                    f"policy {policy.path!r} was trained for {got.get('family')} with width {got.get('hidden_size')}, "
                    f"but this model is {want['family']} with width {want['hidden_size']}: use a policy trained for it"
                )
            self.compressor = ScoreCompressor(policy=policy.module, mllm=self.adapter, selection=selection)
        if self.adapter.rope == "1d":
            self.hooks = ScoreHooks1D(model, self._keep, position_ids=cfg.position_ids)
        else:
            self.hooks = ScoreHooks(model, self._keep)
        self._prepared = None  # the GenerateBatch of the last `prepare`
        self._call_prompts: PromptBatch | None = None  # the prompts of the generate call under way
        self._handle = None

    # ------------------------------------------------------------ context
    def __enter__(self) -> Compression:
        if self._handle is None:  # registered before the hooks' own: it runs first and sets their positions
            self._handle = self.model.register_forward_pre_hook(self._call, with_kwargs=True)
        self.hooks.attach()
        return self

    def __exit__(self, *exc) -> None:
        self.hooks.remove()
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @property
    def last_keep(self) -> list[Tensor] | None:
        """Per row of the last generate call: [T*N] bool, the kept video tokens (CPU)."""
        return self.hooks.last_keep

    # ------------------------------------------------------------- inputs
    def _frames(self, video):
        import numpy as np

        from score_lit.data.video_qa import load_video

        if isinstance(video, (str, os.PathLike)):
            return load_video(
                str(video), self.num_frames, self.frame_size, self.fit, self.fps, decode_resize=self.decode_resize
            )
        arr = np.asarray(video)
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
            raise ConfigError(
                f"a video must be a file path or uint8 frames [F, H, W, 3]; got {arr.dtype} {tuple(arr.shape)}"
            )
        return arr, None

    def _decoded(self, videos: list) -> list:
        """(frames, seconds per frame) of each video: score_lit's decoding (what `prepare` does first)."""
        return [self._frames(v) for v in videos]

    @staticmethod
    def _check_lists(videos, questions) -> None:
        """One line, before anything is decoded, if (videos, questions) are not two lists of equal length."""
        if isinstance(videos, (str, os.PathLike)) or isinstance(questions, str):
            raise ConfigError("prepare(videos, questions) takes lists: one question per video")
        if len(videos) != len(questions):
            raise ConfigError(
                f"prepare(videos, questions): {len(videos)} videos but {len(questions)} questions; give one "
                "question per video (repeat a video to ask it two questions)"
            )

    def prepare(
        self, videos: list, questions: list[str], seconds_per_frame: float | None = None, *, decoded: list | None = None
    ) -> dict:
        """The keyword arguments of `model.generate` for these videos and questions (one question per video), on the
        model's device (module docstring). The call they are given to runs with score_lit's positions and prompts.
        `decoded`: the videos' (frames, seconds per frame), already decoded (what `stream` passes)."""
        from score_lit.data.common import Sample, collate
        from score_lit.inference.batch import generate_batch

        self._check_lists(videos, questions)
        rows = []
        for i, ((frames, spf), question) in enumerate(zip(decoded or self._decoded(videos), questions)):
            spf = seconds_per_frame if seconds_per_frame is not None else spf
            rows.append(collate([Sample(f"api/{i}", frames, question, "", [], seconds_per_frame=spf)]))
        self._prepared = generate_batch(self.adapter, rows, list(questions))
        return self._prepared.model_inputs(self.adapter)

    def stream(self, batches, ahead: int = 1, seconds_per_frame: float | None = None):
        """`prepare` over an iterable of (videos, questions) pairs: yields each call's `generate` keyword arguments
        while the next `ahead` pairs' videos decode in background threads (score_lit.data.prefetch), so decoding
        overlaps the model's work on the current call. In order; an undecodable video raises when its call is
        reached. Use the yielded inputs (and `decode`) before taking the next:

            for inputs in sc.stream([(["a.mp4"], ["what happens ?"]), (["b.mp4"], ["which colour ?"])]):
                print(sc.decode(model.generate(**inputs, max_new_tokens=16, do_sample=False)))
        """
        from score_lit.data.prefetch import prefetched

        batches = [(list(v) if not isinstance(v, (str, os.PathLike)) else v, q) for v, q in batches]
        for videos, questions in batches:
            self._check_lists(videos, questions)
        decoded = prefetched(lambda vq: self._decoded(vq[0]), batches, ahead)
        for (videos, questions), frames in zip(batches, decoded):
            yield self.prepare(videos, questions, seconds_per_frame, decoded=frames)

    def decode(self, out: Tensor, **kwargs) -> list[str]:
        """The generated text of each row of `generate`'s output for the last `prepare` (up to its first eos)."""
        from score_lit.inference.batch import new_tokens

        if self._prepared is None:
            raise ConfigError("decode() reads the output of a call built by prepare(); none was prepared")
        seq = out.sequences if hasattr(out, "sequences") else out
        eos = self.model.generation_config.eos_token_id
        kwargs.setdefault("skip_special_tokens", True)
        return [self.tokenizer.decode(t, **kwargs) for t in new_tokens(seq, self._prepared.prompt_len, eos)]

    # -------------------------------------------------------------- hooks
    def _call(self, module, args, kwargs):
        """Pre-hook of every top-level call: a prefill built by `prepare` gets its positions and prompts."""
        ids = kwargs.get("input_ids", args[0] if args else None)
        gb = self._prepared
        if ids is None or (kwargs.get("past_key_values") is not None and kwargs["past_key_values"].get_seq_length()):
            return None  # a decode step: the hooks keep what the prefill set
        if (
            gb is not None
            and ids.shape == gb.inputs["input_ids"].shape
            and torch.equal(ids.cpu(), gb.inputs["input_ids"])
        ):
            self.hooks.positions, self.hooks.video_positions = gb.positions, gb.video_positions
            self._call_prompts = gb.prompts
        else:
            self.hooks.positions = self.hooks.video_positions = None
            self._call_prompts = None
        return None

    def _keep(self, visual, rows: list[int]) -> Tensor:
        if self.compressor is None:  # ratio 1: every token (the hooks still set score_lit's positions)
            return torch.ones(visual.tokens.shape[0], visual.num_tokens, dtype=torch.bool)
        prompts = None
        if self.compressor.needs_prompts:
            prompts = self._call_prompts
            if prompts is None:
                prompts = self.prompts_from_ids(self.hooks._ids)
            prompts = prompts.rows(rows)
        return self.compressor.select(visual, self.ratio, prompts).keep

    # ------------------------------------------------------ stock inputs
    def question_from_ids(self, row: list[int]) -> list[int]:
        """The question's token ids in one prompt row built by the user (module docstring): the text on the
        template's {question} side of the video, without the template's fixed text around {question} and without
        special tokens (padding, chat markers) at either end."""
        builder, vid = self.adapter.prompt_builder, self.adapter.video_token_id
        cols = [i for i, t in enumerate(row) if t == vid]
        after = "{question}" in builder.after
        part = builder.after if after else builder.before
        text = row[cols[-1] + 1 :] if after else row[: cols[0]]
        head, tail = (builder.ids([s])[0] if s else [] for s in part.split("{question}"))
        if tail and text[len(text) - len(tail) :] == tail:
            text = text[: len(text) - len(tail)]
        if head and text[: len(head)] == head:
            text = text[len(head) :]
        special = set(self.tokenizer.all_special_ids) | {self.adapter.pad_token_id}
        while text and text[0] in special:
            text = text[1:]
        while text and text[-1] in special:
            text = text[:-1]
        return text

    def prompts_from_ids(self, ids: Tensor) -> PromptBatch:
        """A PromptBatch carrying the question ids of each row of a user-built call (what the policy reads)."""
        rows = [self.question_from_ids(r) for r in ids.tolist()]
        n = len(rows)
        return PromptBatch([[] for _ in rows], [[] for _ in rows], [0] * n, [0] * n, torch.full((n, 0), -1), rows)


def compress(model, processor, policy: Policy | str | os.PathLike | None, ratio: float = 0.1, **kwargs) -> Compression:
    """SCORE compression of `model`'s video tokens while the `with` block runs (module docstring). kwargs:
    selection (global | per_frame), num_frames / frame_size / fit / fps / decode_resize (how `prepare` decodes videos:
    decode_resize=decoder scales frames inside decord, processor decodes at full size and resizes after), and any
    MLLMConfig field (prompt_template, min_pixels, max_pixels, seconds_per_frame, position_ids)."""
    return Compression(model, processor, policy, ratio, **kwargs)
