"""The frozen video-MLLM adapter: everything the RL loop, the baselines, eval, bench and lmms-eval ask of a
multimodal LLM, written once over a few family hooks.

A training step touches the frozen model twice (../docs/METHOD.md, "Training step"):

    encode(batch)            -> VisualTokens      vision tower + projector, once per batch
    tokenize(batch)          -> PromptBatch        text around the video, answer span, option ids
    score(visual, prompts, masks [B, K, T*N]) -> LLMScores   all B*K rollouts in ONE padded LLM batch

and the rest of the project asks for two more:

    video_attention(visual, prompts, layer) -> [B, T*N]   the last prompt token's attention (FastV's signal)
    prefill(visual, prompts, keep [B, T*N]) -> [B]        the first output token over the pruned prompt (bench)

`VideoMLLM` implements all five and the sequence layout behind them. A family is one subclass (one file)
plus one line of the registry in score_lit.mllm; it fills in these hooks and nothing else:

    model_class()                       the transformers class that from_pretrained loads
    tiny_config(tokenizer, text, vision) / tiny_tokenizer()   the tiny random model tests build in code
    setup()                             read what encode needs from the loaded model's config
    _encode(batch) -> VisualTokens      frames -> tokens [B, T, N, D] + positions relative to the video start
    video_inputs(batch) -> VideoInputs  frames -> the loaded model's own video inputs (what its stock processor
                                        gives: pixel_values_videos, ...), the grid and relative positions;
                                        _encode feeds them to the vision tower, lmms-eval's generate_until to generate
    full_positions(n_pre, video, n_suffix, n_post) -> [P, L]   position ids of pre | video | suffix | post
    video_suffix() -> [S, D] or None    embeddings always kept right after the video (LLaVA's image_newline)
    video_block(visual, prompts, i)     text interleaved with the video, always kept (Qwen3's per-unit timestamps
                                        and vision start / end tokens), or None
    llm_inputs(visual, lay, order, attn) extra inputs of the language model for compacted rows (Qwen3-VL's DeepStack)
    attention_query_key(...)            one layer's query / key rows for video_attention (q/k norms, gated queries)
    and the class attributes below (default template, normalisation files, accepted mllm.position_ids).

An adapter wraps a loaded Hugging Face model instance (it never patches transformers classes), keeps it
frozen (`requires_grad_(False)`, `eval()`), and follows the model's device: after `adapter.model.to(device)`
every call puts its inputs there. Its calls run without gradients unless inside `with
adapter.gradients():` (the toy MLLM's own training). The frozen model is not part of the policy's
parameters, optimizer or checkpoints; `identity()` is what a policy checkpoint records so that loading it
next to a different MLLM can be refused.

Contract of `score` (what makes pruning faithful): each row is pre-text + the kept visual tokens in their
original order (with the family's block text between them, if any: `video_block`) + the video suffix + post-text; with mllm.position_ids=original every kept token carries
the position id it has in the FULL, unpruned sequence, so dropping tokens never shifts the text's
positions relative to training. Rows are right-padded with a 2-D attention mask. CE is the mean
teacher-forced cross-entropy over the answer tokens only; option logits are read at the position that
predicts the first answer token.

Vectorised construction (no Python loop over K): lay out each sample's full sequence pre | all video |
suffix | post, right-padded over the batch ([B, Lf]); a keep mask per rollout [B, K, Lf]; a stable argsort
of ~keep puts kept slots first in their original order; gather embeddings, positions and the attention
mask with it and truncate to the longest row (L). The answer is always kept, so its row index is
n_pre + kept_k + n_suffix + answer_start: lm_head runs on [B, K, A] states only.

Text: mllm.prompt_template is split at {video}; {question} is filled in wherever it stands. Left at its
default, a family may use its own (`default_template`). The answer (and each option) is tokenized jointly
with the text before it, so a BPE tokenizer sees the real boundary, and its ids are the tail after the
prefix's ids (if the boundary merged, the answer alone). CE covers the answer tokens only.
"""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from score_lit.config import MLLMConfig
from score_lit.types import LLMScores, VideoBatch, VisualTokens

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Kinds of the slots of a laid-out sequence.
PAD, TEXT, VIDEO, SUFFIX = -1, 0, 1, 2


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE as transformers' apply_rotary_pos_emb does it: x * cos + rotate_half(x) * sin (cos/sin broadcast to x)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def frozen_call(fn):
    """Run an adapter method without autograd, unless the adapter is inside `with adapter.gradients():`."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        with torch.set_grad_enabled(self._grad and torch.is_grad_enabled()):
            return fn(self, *args, **kwargs)

    return wrapper


def stack_frames(frames: Tensor | list | tuple) -> Tensor:
    """A batch's frames as one [B, F, 3, H, W] tensor (a list of equal-shaped [F, 3, H, W] is stacked)."""
    if isinstance(frames, (list, tuple)):
        shapes = {tuple(f.shape) for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"all videos of a batch must have one shape [F, 3, H, W]; got {sorted(shapes)}")
        frames = torch.stack(list(frames))
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise ValueError(f"VideoBatch.frames must be [B, F, 3, H, W] (one shape for the whole batch); got {tuple(frames.shape)}")
    return frames


def load_tokenizer(path: str | Path, **kwargs):
    """The tokenizer of a checkpoint folder: AutoTokenizer's, unless tokenizer_config.json declares the plain
    `PreTrainedTokenizerFast` (tokenizer.json as it is), which is then loaded as declared. AutoTokenizer overrides
    the declared class for some model types (transformers 5.23: qwen3_5 -> Qwen3_5Tokenizer, right for the released
    checkpoints, which declare Qwen2Tokenizer), and that rebuilds a byte-level BPE that breaks the tiny word-level
    tokenizer score_lit.mllm.tiny saves (which declares PreTrainedTokenizerFast)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg = Path(path) / "tokenizer_config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("tokenizer_class") == "PreTrainedTokenizerFast":
        return PreTrainedTokenizerFast.from_pretrained(path, **kwargs)
    return AutoTokenizer.from_pretrained(path, **kwargs)


def read_normalisation(path: str | None, files: tuple[str, ...], default: tuple[tuple, tuple]) -> tuple[tuple, tuple]:
    """(mean, std) from the first of `files` in the checkpoint directory `path` that exists, else `default`."""
    mean, std = default
    if path is None or not Path(path).is_dir():
        return mean, std
    for name in files:
        if (pp := Path(path) / name).is_file():
            pcfg = json.loads(pp.read_text())
            return tuple(pcfg.get("image_mean", mean)), tuple(pcfg.get("image_std", std))
    return mean, std


@dataclass
class VideoInputs:
    """A batch's videos as the loaded model's stock forward / `generate` takes them, made by score_lit's preprocessing
    (the same tensors `_encode` gives the vision tower, so the tokens are identical on either path)."""

    model_kwargs: dict  # e.g. {"pixel_values_videos": ..., "video_grid_thw": ...} (CPU tensors)
    grid: tuple[int, int, int]  # (T, H', W') of the selectable tokens
    positions: Tensor  # [B, P, T*N] long, relative to the video start (= VisualTokens.positions)
    n_suffix: int = 0  # video placeholders after the T*N selectable ones (LLaVA's image_newline: 1)

    @property
    def num_placeholders(self) -> int:
        """Video placeholder tokens of one prompt: T*N + n_suffix."""
        t, h, w = self.grid
        return t * h * w + self.n_suffix


@dataclass
class PromptBatch:
    """Tokenized text of a batch (CPU lists; `score` moves what it needs to the model's device)."""

    pre_ids: list[list[int]]  # [B][L_pre_b] text before the video
    post_ids: list[list[int]]  # [B][L_post_b] text after it: question + assistant prefix + answer
    answer_start: list[int]  # [B] index in post_ids[b] of the first answer token
    answer_len: list[int]  # [B] number of answer tokens (>= 1)
    option_ids: Tensor  # [B, C] long, first token of each option as it follows the prefix; -1 = no option
    question_ids: list[list[int]] | None = None  # [B][L_q_b] the question alone (question-conditioned policies)
    # [B] seconds between the sampled frames (the batch's, else mllm.seconds_per_frame): what a family that writes
    # timestamps into the prompt (Qwen3-VL, Qwen3.5: `video_block`) needs at layout time, also for cached features.
    seconds_per_frame: list[float] | None = None

    def __len__(self) -> int:
        return len(self.pre_ids)


@dataclass
class Layout:
    """Full right-padded sequences pre | video | suffix | post of a batch (all video tokens present)."""

    embeds: Tensor  # [B, Lf, D] input embeddings (the visual tokens at the video slots)
    kind: Tensor  # [B, Lf] long: PAD, TEXT, VIDEO or SUFFIX
    index: Tensor  # [B, Lf] long: the video token (VIDEO) or suffix token (SUFFIX) a slot holds, 0 elsewhere
    positions: Tensor  # [B, P, Lf] long: position ids of the full sequence (P = 3 for M-RoPE, 1 for 1-D), 0 at pads
    n_pre: Tensor  # [B] long: the video's first slot
    n_suffix: int  # S, the suffix slots after every video
    n_block_text: Tensor | None = None  # [B] long: text slots interleaved with the video (`video_block`), 0 if none

    def video_slots(self) -> Tensor:
        """[B, V] long: the slot of each video token (kept in order, so the j-th VIDEO slot holds token j)."""
        b = self.kind.shape[0]
        return torch.nonzero(self.kind == VIDEO)[:, 1].view(b, -1)

    def keep(self, masks: Tensor) -> Tensor:
        """masks [B, K, V] bool over the video tokens -> [B, K, Lf] bool over the slots: text and suffix always,
        video per mask, pads never."""
        b, k, _ = masks.shape
        idx = self.index[:, None].expand(b, k, -1)
        video = (self.kind == VIDEO)[:, None] & masks.gather(2, idx)
        return ((self.kind == TEXT) | (self.kind == SUFFIX))[:, None] | video


def compact(full: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The B*K rows of one padded batch, no loop over K: full [B, Lf, D] sequences and keep [B, K, Lf] bool ->
    (emb [B*K, L, D], order [B, K, L] the full-sequence index of each compacted slot, attn [B, K, L] bool), L the
    longest kept row. A stable argsort of ~keep puts kept slots first, in their original order; padding after."""
    b, k, _ = keep.shape
    length = int(keep.sum(-1).max())
    order = torch.argsort((~keep).to(torch.uint8), dim=-1, stable=True)[..., :length]  # [B, K, L]
    attn = keep.gather(-1, order)  # [B, K, L]
    bi = torch.arange(b, device=full.device)[:, None, None]
    return full[bi, order].reshape(b * k, length, full.shape[-1]), order, attn


def answer_scores(lm_head, hidden: Tensor, first: Tensor, prompts: PromptBatch) -> LLMScores:
    """hidden [B, K, L, D] LLM states of the compacted rows, first [B, K] the index that predicts each row's first
    answer token -> CE over the answer tokens [B, K] (lm_head on [B, K, A] states only) and the options'
    first-token logits [B, K, C] (-inf where a row has fewer options)."""
    b, k, length, d = hidden.shape
    dev = hidden.device
    a_max = max(prompts.answer_len)
    a_len = torch.tensor(prompts.answer_len, device=dev)
    ar = torch.arange(a_max, device=dev)
    valid = ar[None, :] < a_len[:, None]  # [B, A]
    idx = (first[..., None] + ar).clamp(max=length - 1)  # [B, K, A]
    logits = lm_head(hidden.gather(2, idx[..., None].expand(-1, -1, -1, d))).float()  # [B, K, A, vocab]
    targets = torch.zeros((b, a_max), dtype=torch.long)
    for i, (post, s, n) in enumerate(zip(prompts.post_ids, prompts.answer_start, prompts.answer_len)):
        targets[i, :n] = torch.tensor(post[s : s + n], dtype=torch.long)
    targets = targets.to(dev)[:, None, :, None].expand(-1, k, -1, -1)
    nll = -F.log_softmax(logits, dim=-1).gather(-1, targets).squeeze(-1)  # [B, K, A]
    ce = (nll * valid[:, None]).sum(-1) / a_len[:, None]
    opt = prompts.option_ids.to(dev)  # [B, C]
    option_logits = logits[:, :, 0].gather(-1, opt.clamp(min=0)[:, None].expand(-1, k, -1))
    return LLMScores(ce=ce, option_logits=option_logits.masked_fill((opt < 0)[:, None], float("-inf")))


class VideoMLLM:
    """A frozen video MLLM behind the calls above. Families: score_lit.mllm.qwen_vl, score_lit.mllm.llava_onevision."""

    family: ClassVar[str] = ""  # registry name, e.g. "qwen2_5_vl"
    # The prompt used when mllm.prompt_template is left at MLLMConfig's default (None = that default).
    default_template: ClassVar[str | None] = None
    # Checkpoint files that may hold image_mean / image_std, first found wins; the default when none does.
    norm_files: ClassVar[tuple[str, ...]] = ("preprocessor_config.json",)
    default_norm: ClassVar[tuple[tuple, tuple]] = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    hidden_size: int  # D, the LLM width = the visual tokens' width
    model: Any  # the frozen Hugging Face model (requires_grad False, eval mode)

    def __init__(self, cfg: MLLMConfig, model=None, tokenizer=None):
        """Wrap cfg.path's checkpoint, the tiny random model (path None), or an already built `model` +
        `tokenizer` of this family (bench's random-weight architectures, lmms-eval's loaded model). The
        normalisation is read from cfg.path when it is a local checkpoint directory, in every case."""
        if cfg.dtype not in DTYPES:
            raise ValueError(f"mllm.dtype={cfg.dtype!r}: use one of {sorted(DTYPES)}")
        template = cfg.prompt_template
        if self.default_template is not None and template == MLLMConfig.prompt_template:
            template = self.default_template
        if template.count("{video}") != 1 or template.count("{question}") != 1:
            raise ValueError("mllm.prompt_template must contain '{video}' and '{question}' exactly once each")
        from score_lit.mllm import REGISTRY

        modes = REGISTRY[self.family].position_ids if self.family in REGISTRY else ("original",)
        if cfg.position_ids not in modes:
            raise ValueError(f"mllm.position_ids={cfg.position_ids!r} is not implemented for {self.family}: use one of {list(modes)}")
        self.cfg = replace(cfg, prompt_template=template)
        dtype = DTYPES[cfg.dtype]
        if model is not None:
            if tokenizer is None:
                raise ValueError("pass the tokenizer that goes with the model")
        elif cfg.path is None:
            model, tokenizer = self.build_tiny(cfg.tiny_seed, cfg.attn_implementation)
            model = model.to(dtype)
        else:
            model = self.model_class().from_pretrained(cfg.path, dtype=dtype, attn_implementation=cfg.attn_implementation)
            tokenizer = load_tokenizer(cfg.path)
        self.mean, self.std = read_normalisation(cfg.path, self.norm_files, self.default_norm)
        self.model = model.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.hidden_size = int(model.config.text_config.hidden_size)
        self.video_token_id = int(model.config.video_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self._grad = False
        self.setup()

    # ------------------------------------------------------------ family hooks
    @classmethod
    def model_class(cls):
        """The transformers class of this family's checkpoints."""
        raise NotImplementedError

    @classmethod
    def tiny_tokenizer(cls):
        """The word-level tokenizer of the tiny test models (score_lit.mllm.tiny), with this family's specials."""
        from score_lit.mllm.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer()

    @classmethod
    def tiny_config(cls, tokenizer, text: dict | None = None, vision: dict | None = None):
        """(model class, config) of the tiny random model; `text` / `vision` update the sub-config dicts."""
        raise NotImplementedError

    @classmethod
    def vision_dims(cls, width: int, depth: int, mlp: int, out_width: int) -> dict:
        """Vision sub-config entries for a tower of these sizes (score_lit.toy.model's knobs; optional)."""
        raise NotImplementedError(f"no toy-MLLM recipe for family {cls.family!r}")

    @classmethod
    def build_tiny(cls, seed: int = 0, attn_implementation: str = "sdpa"):
        """(model, tokenizer): a seeded random model of the real class at the tiny sizes, float32 eval mode."""
        tokenizer = cls.tiny_tokenizer()
        model_cls, config = cls.tiny_config(tokenizer)
        config._attn_implementation = attn_implementation
        with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's global RNG
            torch.manual_seed(seed)
            model = model_cls(config)
        return model.eval(), tokenizer

    @classmethod
    def save_processor(cls, model, path) -> None:
        """Write the preprocessor config a checkpoint of this family carries (score_lit.mllm.tiny.save_hf_dir)."""

    def setup(self) -> None:
        """Read what `_encode` needs from the loaded model (self.model, self.mean / self.std are set)."""

    def video_inputs(self, batch: VideoBatch) -> VideoInputs:
        """frames [B, F, 3, H, W] uint8 -> the model's video inputs (VideoInputs); no model call."""
        raise NotImplementedError

    def prompt_block(self, video: VideoInputs, seconds_per_frame: float | None) -> tuple[list[int], Tensor]:
        """One video's part of a prompt for the stock `generate` (lmms-eval's generate_until): token ids [Lb] as the
        stock processor expands the video (the video placeholder id per video token and suffix slot, the block's
        interleaved text, if any) and the positions [P, Lb'] that `full_positions` takes in place of the video's
        (Lb' = Lb minus the suffix slots, which full_positions adds). Default: T*N + n_suffix placeholders and the
        video's relative positions."""
        return [self.video_token_id] * video.num_placeholders, video.positions[0]

    def generate_inputs(self, input_ids: Tensor, video: VideoInputs) -> dict:
        """Keyword arguments of the stock `generate` for a prompt `input_ids` [1, L] holding the video placeholders
        (besides input_ids / attention_mask). Default: the video inputs."""
        return dict(video.model_kwargs)

    def _encode(self, batch: VideoBatch) -> VisualTokens:
        """frames [B, F, 3, H, W] uint8 (all videos one shape) -> tokens [B, T, N, D] and the full-grid position
        ids relative to the video start ([B, 3, T*N] M-RoPE, or [B, 1, T*N] for 1-D RoPE)."""
        raise NotImplementedError

    def full_positions(self, n_pre: int, video: Tensor, n_suffix: int, n_post: int) -> Tensor:
        """[P, n_pre + V + n_suffix + n_post] position ids of one full sequence; `video` [P, V] relative to the
        video start. Default: 1-D, consecutive (the slot index)."""
        return torch.arange(n_pre + video.shape[1] + n_suffix + n_post, device=video.device)[None]

    def video_suffix(self) -> Tensor | None:
        """[S, D] embeddings that always follow the kept video tokens (not selectable), or None."""
        return None

    def video_block(self, visual: VisualTokens, prompts: PromptBatch, i: int) -> tuple[list[int], Tensor] | None:
        """Sample i's video block with its interleaved text, or None (the block is the video tokens alone):
        (ids [Lb]: a token id per always-kept text slot, -1 per video slot, the j-th -1 holding video token j;
        positions [P, Lb] relative to the block start, which `full_positions` receives in place of the video's)."""
        return None

    def llm_inputs(self, visual: VisualTokens, lay: Layout, order: Tensor, attn: Tensor) -> dict[str, Any]:
        """Extra keyword arguments of the language model for the compacted rows (order / attn [B, K, L], `compact`):
        none by default; Qwen3-VL passes the kept tokens' DeepStack features."""
        return {}

    def attention_query_key(self, attn_mod, x_q: Tensor, x: Tensor, cos_q: Tensor, sin_q: Tensor, cos: Tensor,
                            sin: Tensor) -> tuple[Tensor, Tensor]:  # fmt: skip
        """One attention layer's rotated query of one row per sample and keys of all rows, as its forward builds
        them: x_q [B, D] and x [B, L, D] after input_layernorm, cos_q / sin_q [B, hd], cos / sin [B, L, hd] ->
        (q [B, H, 1, hd], k [B, KV, L, hd]). Default: q_proj / k_proj and rotate-half RoPE (Qwen2-VL, Qwen2.5-VL,
        Qwen2); a family whose attention adds q / k norms or gates overrides it."""
        b, length, _ = x.shape
        hd = attn_mod.head_dim
        q = attn_mod.q_proj(x_q).view(b, -1, 1, hd)  # [B, H, 1, hd]
        k = attn_mod.k_proj(x).view(b, length, -1, hd).transpose(1, 2)  # [B, KV, L, hd]
        return _rotate(q, cos_q[:, None, None], sin_q[:, None, None]), _rotate(k, cos[:, None], sin[:, None])

    # ------------------------------------------------------------------ common
    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def identity(self) -> dict[str, Any]:
        """{'family', 'hidden_size', 'path'} ('path' = checkpoint dir or 'tiny-random'): stored with a policy."""
        return {"family": self.family, "hidden_size": self.hidden_size, "path": self.cfg.path or "tiny-random"}

    @contextlib.contextmanager
    def gradients(self, enabled: bool = True):
        """Within this block the adapter's calls build autograd graphs (when torch's grad mode is on): the toy
        MLLM trains the model through the same encode / score / video_attention as evaluation uses."""
        prev, self._grad = self._grad, enabled
        try:
            yield self
        finally:
            self._grad = prev

    @frozen_call
    def encode(self, batch: VideoBatch) -> VisualTokens:
        return self._encode(batch)

    # ---------------------------------------------------------------- tokenize
    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def _continuations(self, prefix: str, prefix_ids: list[int], conts: list[str]) -> list[list[int]]:
        """Token ids of each continuation as it follows `prefix` (joint tokenization, so a BPE sees the
        real boundary); if the joint ids do not start with the prefix's ids, the continuation alone."""
        out = []
        for cont, full in zip(conts, self._ids([prefix + c for c in conts])):
            if full[: len(prefix_ids)] == prefix_ids and len(full) > len(prefix_ids):
                out.append(full[len(prefix_ids) :])
            else:
                out.append(self._ids([cont])[0])
        return out

    def tokenize(self, batch: VideoBatch) -> PromptBatch:
        before, after = self.cfg.prompt_template.split("{video}")
        pres = self._ids([before.replace("{question}", q) for q in batch.questions])
        posts, starts, lens, options = [], [], [], []
        for b, q in enumerate(batch.questions):
            prefix = after.replace("{question}", q)
            prefix_ids = self._ids([prefix])[0]
            answer = self._continuations(prefix, prefix_ids, [batch.answers[b]])[0]
            if not answer:
                raise ValueError(f"sample {batch.ids[b]!r}: the answer {batch.answers[b]!r} tokenizes to nothing")
            posts.append(prefix_ids + answer)
            starts.append(len(prefix_ids))
            lens.append(len(answer))
            options.append([ids[0] if ids else -1 for ids in self._continuations(prefix, prefix_ids, list(batch.options[b]))])
        c = max((len(o) for o in options), default=0)
        option_ids = torch.tensor([o + [-1] * (c - len(o)) for o in options], dtype=torch.long).view(len(posts), c)
        spf = batch.seconds_per_frame
        spf = [self.cfg.seconds_per_frame] * len(posts) if spf is None else [float(x) for x in spf]
        return PromptBatch(pres, posts, starts, lens, option_ids, self._ids(list(batch.questions)), spf)

    @frozen_call
    def question_embedding(self, prompts: PromptBatch) -> Tensor:
        """[B, D] float32: the mean of the frozen LLM's input embeddings over each question's tokens (zeros for an
        empty question): what a question-conditioned policy (policy.name=query_mlp) is conditioned on. One table
        lookup per question token, no LLM layer."""
        if prompts.question_ids is None:
            raise ValueError("these prompts carry no question ids: build them with the adapter's tokenize(batch)")
        embed = self.model.get_input_embeddings()
        out = torch.zeros(len(prompts), self.hidden_size, dtype=torch.float32, device=self.device)
        for i, ids in enumerate(prompts.question_ids):
            if ids:
                out[i] = embed(torch.tensor(ids, device=self.device)).float().mean(0)
        return out

    # ------------------------------------------------------------------ layout
    def layout(self, visual: VisualTokens, prompts: PromptBatch, post_len: list[int]) -> Layout:
        """pre | video block | suffix | post[:post_len[b]] of every sample, right-padded (see Layout). The block is
        all video tokens, with the family's interleaved text slots if it has any (`video_block`)."""
        dev = self.device
        b, v = visual.tokens.shape[0], visual.num_tokens
        suffix = self.video_suffix()
        n_suf = 0 if suffix is None else suffix.shape[0]
        n_pre = [len(p) for p in prompts.pre_ids]
        blocks = [self.video_block(visual, prompts, i) for i in range(b)]
        n_blk = [v if blk is None else len(blk[0]) for blk in blocks]
        lf = max(p + nb + n_suf + n for p, nb, n in zip(n_pre, n_blk, post_len))
        kind = torch.full((b, lf), PAD, dtype=torch.long)
        text_ids = torch.full((b, lf), self.pad_token_id, dtype=torch.long)
        index = torch.zeros((b, lf), dtype=torch.long)
        pos = None
        for i, (pre, post) in enumerate(zip(prompts.pre_ids, prompts.post_ids)):
            p, s, e = n_pre[i], n_pre[i] + n_blk[i] + n_suf, n_pre[i] + n_blk[i] + n_suf + post_len[i]
            kind[i, :e] = TEXT
            text_ids[i, :p] = torch.tensor(pre, dtype=torch.long)
            text_ids[i, s:e] = torch.tensor(post[: post_len[i]], dtype=torch.long)
            if blocks[i] is None:
                kind[i, p : p + v] = VIDEO
                index[i, p : p + v] = torch.arange(v)
                rel = visual.positions[i].cpu()
            else:
                ids = torch.tensor(blocks[i][0], dtype=torch.long)
                vid = ids < 0
                if int(vid.sum()) != v:
                    raise ValueError(f"video_block of sample {i} has {int(vid.sum())} video slots for {v} video tokens")
                kind[i, p : p + n_blk[i]] = torch.where(vid, VIDEO, TEXT)
                index[i, p : p + n_blk[i]][vid] = torch.arange(v)
                text_ids[i, p : p + n_blk[i]] = torch.where(vid, self.pad_token_id, ids)
                rel = blocks[i][1].cpu()
            kind[i, p + n_blk[i] : s] = SUFFIX
            index[i, p + n_blk[i] : s] = torch.arange(n_suf)
            ids = self.full_positions(p, rel, n_suf, post_len[i])  # [P, e]
            if pos is None:
                pos = torch.zeros((b, ids.shape[0], lf), dtype=torch.long)
            pos[i, :, :e] = ids
        kind, text_ids, index = kind.to(dev), text_ids.to(dev), index.to(dev)
        embed = self.model.get_input_embeddings()
        vis = visual.flat().to(dev, embed.weight.dtype)  # [B, V, D]
        d = vis.shape[-1]
        full = torch.where((kind == VIDEO)[..., None], vis.gather(1, index[..., None].expand(-1, -1, d)), embed(text_ids))
        if suffix is not None:
            is_suf = kind == SUFFIX
            full = torch.where(is_suf[..., None], suffix.to(full.dtype)[index * is_suf], full)
        n_text = torch.tensor([nb - v for nb in n_blk], device=dev)
        return Layout(full, kind, index, pos.to(dev), torch.tensor(n_pre, device=dev), n_suf, n_text)

    def _row_positions(self, lay: Layout, order: Tensor, attn: Tensor) -> Tensor:
        """Position ids of compacted rows (order / attn [B, K, L]) -> [P, B*K, L], or [B*K, L] for 1-D ids."""
        b, k, length = order.shape
        if self.cfg.position_ids == "compacted":  # 0..L-1 over the kept slots, as if the dropped never existed
            pids = ((attn.long().cumsum(-1) - 1).clamp(min=0) * attn)[None]  # [1, B, K, L]
        else:  # original: each kept slot's id in the full sequence
            bi = torch.arange(b, device=order.device)[:, None, None]
            pids = (lay.positions.transpose(1, 2)[bi, order] * attn[..., None]).permute(3, 0, 1, 2)  # [P, B, K, L]
        pids = pids.reshape(pids.shape[0], b * k, length)
        return pids[0] if pids.shape[0] == 1 else pids

    # ------------------------------------------------------------------- score
    @frozen_call
    def score(self, visual: VisualTokens, prompts: PromptBatch, masks: Tensor) -> LLMScores:
        """masks [B, K, T*N] bool (True = keep) -> ce [B, K], option_logits [B, K, C], from one padded LLM
        batch of B*K rows."""
        dev = self.device
        b, k, v = masks.shape
        assert v == visual.num_tokens and visual.tokens.shape[0] == b == len(prompts), (
            f"masks {tuple(masks.shape)} must be [B, K, T*N] for B={visual.tokens.shape[0]} videos of "
            f"T*N={visual.num_tokens} tokens and {len(prompts)} prompts"
        )
        lay = self.layout(visual, prompts, [len(q) for q in prompts.post_ids])
        masks = masks.to(dev, torch.bool)
        emb, order, attn = compact(lay.embeds, lay.keep(masks))
        length, d = order.shape[-1], emb.shape[-1]
        hidden = self.model.model.language_model(
            inputs_embeds=emb, attention_mask=attn.reshape(b * k, length).long(),
            position_ids=self._row_positions(lay, order, attn), use_cache=False, **self.llm_inputs(visual, lay, order, attn),
        ).last_hidden_state.view(b, k, length, d)  # fmt: skip
        # Answer token a sits at compacted index n_pre + kept_k + block text + n_suffix + answer_start + a; predicted
        # at index - 1.
        first = lay.n_pre + lay.n_block_text + lay.n_suffix + torch.tensor(prompts.answer_start, device=dev)
        first = first[:, None] + masks.sum(-1) - 1
        return answer_scores(self.model.lm_head, hidden, first, prompts)

    # ----------------------------------------------------------------- prefill
    @frozen_call
    def prefill(self, visual: VisualTokens, prompts: PromptBatch, keep: Tensor) -> Tensor:
        """keep [B, T*N] bool -> [B] the first output token (argmax): the LLM over pre | kept video | suffix |
        post up to the answer, with its KV cache, and lm_head on each row's last position only: the time to
        first token that `bench` measures. Positions as in `score`."""
        b = keep.shape[0]
        lay = self.layout(visual, prompts, list(prompts.answer_start))
        emb, order, attn = compact(lay.embeds, lay.keep(keep.to(self.device, torch.bool)[:, None]))
        rows = attn[:, 0]  # [B, L]
        out = self.model.model.language_model(
            inputs_embeds=emb, attention_mask=None if bool(rows.all()) else rows.long(),
            position_ids=self._row_positions(lay, order, attn), use_cache=True, **self.llm_inputs(visual, lay, order, attn),
        )  # fmt: skip
        last = rows.sum(-1) - 1
        return self.model.lm_head(out.last_hidden_state[torch.arange(b, device=emb.device), last]).argmax(-1)

    # --------------------------------------------------------- video attention
    def _prompt_layout(self, visual: VisualTokens, prompts: PromptBatch) -> tuple[Layout, Tensor]:
        """The layout of the prompt up to the answer and its attention mask [B, L] long (1 = a real slot)."""
        lay = self.layout(visual, prompts, list(prompts.answer_start))
        return lay, (lay.kind != PAD).long()

    def prompt_sequence(self, visual: VisualTokens, prompts: PromptBatch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The prompt up to the answer, pre | video block | suffix | post[:answer_start], right-padded: (embeddings
        [B, L, D], attention mask [B, L] long, position ids ([3, B, L] M-RoPE or [B, L] 1-D; pads 0), last prompt
        index [B], the slot of each video token [B, T*N]). Same layout, embeddings and ids as `score` with an
        all-keep mask, cut before the answer."""
        lay, attn = self._prompt_layout(visual, prompts)
        return lay.embeds, attn, self._prompt_positions(lay, attn), attn.sum(-1) - 1, lay.video_slots()

    @staticmethod
    def _prompt_positions(lay: Layout, attn: Tensor) -> Tensor:
        """The layout's position ids as the language model takes them: [3, B, L] M-RoPE or [B, L] 1-D, pads 0."""
        pids = lay.positions * attn[:, None]  # [B, P, L]
        return pids[:, 0] if pids.shape[1] == 1 else pids.permute(1, 0, 2)

    @frozen_call
    def video_attention(self, visual: VisualTokens, prompts: PromptBatch, layer: int, states: dict | None = None) -> Tensor:
        """[B, T*N] float32: the attention the last prompt token (the one that predicts the first answer
        token) pays to each video token at decoder layer `layer` (0-based), averaged over heads, with all
        video tokens in the sequence (FastV's ranking signal). Rows sum to at most 1 (text and suffix keys take
        the rest).

        Sequence and position ids are those of `score` with an all-keep mask, cut before the answer (causal
        attention makes the answer irrelevant to this row). Layers 0..layer-1 run as in the model's own
        forward (its attention implementation, e.g. SDPA, its causal/padding mask, the padding mask of
        linear-attention layers, and the DeepStack additions after the first layers when the family passes
        them: `llm_inputs`); layer `layer` must be a full-attention layer and is not run: only its
        input_layernorm, the family's query / key construction (`attention_query_key`: q_proj for the one
        query row and k_proj for all rows, rotated with the model's rotary_emb, which applies M-RoPE's
        mrope_section recomposition in transformers 5.23), GQA heads repeated, softmax in float32 over the
        query's causal keys. No L x L attention map is ever built.

        states (optional): gets "query_input" [B, D], the residual stream entering layer `layer` at the query row
        (the toy MLLM's training reads it: score_lit.toy.model, question_weight).
        """
        lm = self.model.model.language_model
        n_layers = len(lm.layers)
        if not 0 <= layer < n_layers:
            raise ValueError(f"video_attention(layer={layer}): the language model has layers 0..{n_layers - 1}")
        from transformers import masking_utils as mu

        types = list(getattr(lm.config, "layer_types", None) or ["full_attention"] * n_layers)
        if not hasattr(lm.layers[layer], "self_attn"):
            full = [i for i, t in enumerate(types) if t == "full_attention"]
            raise ValueError(f"video_attention(layer={layer}): layer {layer} is a {types[layer]} layer, which has no "
                             f"attention map; use a full-attention layer of this model: {full}")  # fmt: skip
        attn_mod = lm.layers[layer].self_attn
        if getattr(attn_mod, "sliding_window", None) is not None:
            raise NotImplementedError(f"video_attention: layer {layer} uses sliding-window attention (not supported)")
        lay, attn = self._prompt_layout(visual, prompts)
        emb, pids, last, slots = lay.embeds, self._prompt_positions(lay, attn), attn.sum(-1) - 1, lay.video_slots()
        b, length, _ = emb.shape
        builders = {"full_attention": mu.create_causal_mask, "sliding_attention": mu.create_sliding_window_causal_mask,
                    "linear_attention": mu.create_recurrent_attention_mask}  # fmt: skip
        mask_kwargs = dict(config=lm.config, inputs_embeds=emb, attention_mask=attn, past_key_values=None, position_ids=None)
        masks = {t: builders[t](**mask_kwargs) for t in set(types[:layer])}
        # The full prompt as one "rollout" per sample: slot order 0..L-1, every real slot kept.
        extra = self.llm_inputs(visual, lay, torch.arange(length, device=emb.device).expand(b, 1, -1), attn.bool()[:, None])
        deepstack = extra.get("deepstack_visual_embeds") or []
        cos, sin = lm.rotary_emb(emb, pids)  # [B, L, head_dim] each (M-RoPE sections already interleaved)
        hidden = emb
        for i in range(layer):
            hidden = lm.layers[i](hidden, attention_mask=masks[types[i]], position_embeddings=(cos, sin), position_ids=None)
            if i < len(deepstack):  # the language model's own DeepStack step (Qwen3-VL), as in its forward
                hidden = lm._deepstack_process(hidden, extra["visual_pos_masks"], deepstack[i])
        x = lm.layers[layer].input_layernorm(hidden)  # [B, L, D]
        heads = int(lm.config.num_attention_heads)
        bi = torch.arange(b, device=emb.device)
        if states is not None:
            states["query_input"] = hidden[bi, last]  # [B, D]
        q, k = self.attention_query_key(attn_mod, x[bi, last], x, cos[bi, last], sin[bi, last], cos, sin)
        hd = q.shape[-1]
        # GQA as repeat_kv: kv head j serves query heads j*g .. j*g+g-1, so group the query heads instead of copying keys.
        q = q.reshape(b, k.shape[1], -1, hd)  # [B, KV, g, hd]
        logits = (q.float() @ k.float().transpose(-1, -2)).reshape(b, heads, length) * attn_mod.scaling  # [B, H, L]
        causal = torch.arange(length, device=emb.device)[None] <= last[:, None]  # = the query's non-pad keys
        probs = logits.masked_fill(~causal[:, None], float("-inf")).softmax(-1).mean(1)  # [B, L]
        return probs.gather(1, slots)


__all__ = ["VideoMLLM", "VideoInputs", "PromptBatch", "Layout", "compact", "answer_scores", "stack_frames", "read_normalisation", "DTYPES"]
