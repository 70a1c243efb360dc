"""The frozen video-MLLM adapter: everything the RL loop, the baselines, eval, bench and lmms-eval ask of a
multimodal LLM, written once over a few family hooks.

A training step touches the frozen model twice (../../../docs/METHOD.md, "Training step"):

    encode(batch)            -> VisualTokens      vision tower + projector, once per batch
    tokenize(batch)          -> PromptBatch        text around the video, answer span, option ids (score_lit.mllm.prompts:
                                                   also run by the DataLoader's collate, in its workers)
    score(visual, prompts, masks [B, K, T*N], layout=None) -> LLMScores   all B*K rollouts in ONE padded LLM batch

and the rest of the project asks for more:

    layout(visual, prompts)                  the batch's full sequences, built once and passed to every `score`
                                             of the batch (the eval sweep scores one batch many times)
    video_attention(visual, prompts, layer) -> [B, T*N]   the last prompt token's attention (FastV's signal)
    prefill(visual, prompts, keep [B, T*N]) -> [B]        the first output token over the pruned prompt (bench)
    question_embedding(prompts) -> [B, D]                 what a question-conditioned policy reads

The sequence math is score_lit.mllm.sequence (layout, compaction, answer scores), the attention map
score_lit.mllm.attention. A family is one subclass (one file) plus one line of the registry in score_lit.mllm
(Qwen2-VL / Qwen2.5-VL: qwen_vl, LLaVA-OneVision: llava_onevision, Qwen3-VL: qwen3_vl, Qwen3.5: qwen3_5); it fills in
these hooks and nothing else:

    model_class()                       the transformers class that from_pretrained loads
    tiny_config(tokenizer, text, vision) / tiny_tokenizer()   the tiny random model tests build in code
    setup()                             read what encode needs from the loaded model's config
    _encode(batch) -> VisualTokens      frames -> tokens [B, T, N, D] + positions relative to the video start
    video_inputs(batch) -> VideoInputs  frames -> the loaded model's own video inputs (what its stock processor
                                        gives: pixel_values_videos, ...), the grid and relative positions;
                                        _encode feeds them to the vision tower, lmms-eval's generate_until to generate
    video_suffix() -> [S, D] or None    embeddings always kept right after the video (LLaVA's image_newline)
    video_block(visual, prompts, i)     text interleaved with the video, always kept (Qwen3's per-unit timestamps
                                        and vision start / end tokens), or None
    prompt_block(video, spf)            the same block for the stock `generate` (lmms-eval)
    llm_inputs(visual, lay, order, attn) extra inputs of the language model for compacted rows (Qwen3-VL's DeepStack)
    attention_query_key(...)            one layer's query / key rows for video_attention (q/k norms, gated queries)
    and the class attributes below (default template, normalisation files, accepted mllm.position_ids).

Position ids follow ONE rule for every family (score_lit.mllm.sequence): pre-text consecutive, the video block at its
relative ids (VisualTokens.positions, or the block's) offset by the pre-text, text after it from max + 1: the
original Qwen M-RoPE rule (score_lit.mllm.positions), which for 1-D RoPE is the slot index.

An adapter wraps a loaded Hugging Face model instance (it never patches transformers classes), keeps it
frozen (`requires_grad_(False)`, `eval()`), and follows the model's device: after `adapter.model.to(device)`
every call puts its inputs there. Its calls run without gradients (the toy MLLM's own training runs the same
bodies with gradients: score_lit.toy.trainable). The frozen model is not part of the policy's parameters, optimizer
or checkpoints; `identity()` is what a policy checkpoint records so that loading it next to a different MLLM can be
refused.

Contract of `score` (what makes pruning faithful): each row is pre-text + the kept visual tokens in their
original order (with the family's block text between them, if any: `video_block`) + the video suffix + post-text;
with mllm.position_ids=original every kept token carries the position id it has in the FULL, unpruned sequence, so
dropping tokens never shifts the text's positions relative to training. Rows are right-padded with a 2-D attention
mask. CE is the mean teacher-forced cross-entropy over the answer tokens only; option logits are read at the
position that predicts the first answer token.

Text: mllm.prompt_template is split at {video}; {question} is filled in wherever it stands (`prompt_ids`, the one
prompt builder, also lmms-eval's generate path). Left at its default, a family may use its own
(`default_template`). The answer (and each option) is tokenized jointly with the text before it, so a BPE tokenizer
sees the real boundary, and its ids are the tail after the prefix's ids (if the boundary merged, the answer alone).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from score_lit.config import MLLMConfig
from score_lit.mllm.attention import attention_map, rotate
from score_lit.mllm.preprocess import read_normalisation
from score_lit.mllm.prompts import PromptBuilder, load_tokenizer
from score_lit.mllm.sequence import (
    Layout,
    PromptBatch,
    answer_scores,
    build_layout,
    compact,
    first_answer_index,
    pad_ids,
    row_positions,
    sequence_positions,
)
from score_lit.types import LLMScores, VideoBatch, VisualTokens

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


class VideoMLLM:
    """A frozen video MLLM behind the calls above (module docstring); one subclass per family."""

    family: ClassVar[str] = ""  # registry name, e.g. "qwen2_5_vl"
    # The prompt used when mllm.prompt_template is left at MLLMConfig's default (None = that default).
    default_template: ClassVar[str | None] = None
    # Checkpoint files that may hold image_mean / image_std, first found wins; the default when none does.
    norm_files: ClassVar[tuple[str, ...]] = ("preprocessor_config.json",)
    default_norm: ClassVar[tuple[tuple, tuple]] = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    # The LLM's rotary positions: "mrope" (3 rows: time, height, width; Qwen) or "1d" (one row; LLaVA). Inference
    # picks its generate hooks by it (score_lit.inference.hooks: ScoreHooks / ScoreHooks1D).
    rope: ClassVar[str] = "mrope"

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
            raise ValueError(
                f"mllm.position_ids={cfg.position_ids!r} is not implemented for {self.family}: use one of {list(modes)}"
            )
        self.cfg = replace(cfg, prompt_template=template)
        dtype = DTYPES[cfg.dtype]
        if model is not None:
            if tokenizer is None:
                raise ValueError("pass the tokenizer that goes with the model")
        elif cfg.path is None:
            model, tokenizer = self.build_tiny(cfg.tiny_seed, cfg.attn_implementation)
            model = model.to(dtype)
        else:
            model = self.model_class().from_pretrained(
                cfg.path, dtype=dtype, attn_implementation=cfg.attn_implementation
            )
            tokenizer = load_tokenizer(cfg.path)
        self.mean, self.std = read_normalisation(cfg.path, self.norm_files, self.default_norm)
        self.model = model.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.hidden_size = int(model.config.text_config.hidden_size)
        self.video_token_id = int(model.config.video_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.setup()
        self.prompt_builder = PromptBuilder(tokenizer, self.cfg.prompt_template, self.cfg.seconds_per_frame)

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
        interleaved text, if any) and the positions [P, Lb'] of the block without its suffix slots (Lb' = Lb minus
        them), which `full_positions` takes. Default: T*N + n_suffix placeholders and the
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

    def video_suffix(self) -> Tensor | None:
        """[S, D] embeddings that always follow the kept video tokens (not selectable), or None."""
        return None

    # Pre-vision pruning (score_lit.compressors.prevision): families whose vision tower can skip dropped tokens'
    # groups override these three (Qwen2.5-VL: score_lit.mllm.vision_prune); the others refuse with one line.
    def group_inputs(self, video: VideoInputs, embed: bool = False) -> Tensor:
        """[B, T, N, F] what the pre-vision gate reads per visual token: its group's pixels (embed: its patch
        embeddings)."""
        raise NotImplementedError(f"pre-vision pruning is not implemented for {self.family} (Qwen2.5-VL only)")

    def encode_groups(self, video: VideoInputs, keep: Tensor) -> VisualTokens:
        """keep [B, T*N] bool -> VisualTokens from the vision tower run on the kept tokens' groups only."""
        raise NotImplementedError(f"pre-vision pruning is not implemented for {self.family} (Qwen2.5-VL only)")

    def vision_flops(self, grid: tuple[int, int, int], keep: Tensor | None = None) -> int:
        """FLOPs of the vision tower on one video of token grid (T, H', W'), over every token's group (keep None) or
        the kept ones (keep [T*N] bool)."""
        raise NotImplementedError(f"vision FLOPs are not implemented for {self.family} (Qwen2.5-VL only)")

    def video_block(self, visual: VisualTokens, prompts: PromptBatch, i: int) -> tuple[list[int], Tensor] | None:
        """Sample i's video block with its interleaved text, or None (the block is the video tokens alone):
        (ids [Lb]: a token id per always-kept text slot, -1 per video slot, the j-th -1 holding video token j;
        positions [P, Lb] relative to the block start, in place of the video's)."""
        return None

    def llm_inputs(self, visual: VisualTokens, lay: Layout, order: Tensor, attn: Tensor) -> dict[str, Any]:
        """Extra keyword arguments of the language model for the compacted rows (order / attn [B, K, L], `compact`):
        none by default; Qwen3-VL passes the kept tokens' DeepStack features."""
        return {}

    def attention_query_key(
        self, attn_mod, x_q: Tensor, x: Tensor, cos_q: Tensor, sin_q: Tensor, cos: Tensor, sin: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One attention layer's rotated query of one row per sample and keys of all rows, as its forward builds
        them: x_q [B, D] and x [B, L, D] after input_layernorm, cos_q / sin_q [B, hd], cos / sin [B, L, hd] ->
        (q [B, H, 1, hd], k [B, KV, L, hd]). Default: q_proj / k_proj and rotate-half RoPE (Qwen2-VL, Qwen2.5-VL,
        Qwen2); a family whose attention adds q / k norms or gates overrides it."""
        b, length, _ = x.shape
        hd = attn_mod.head_dim
        q = attn_mod.q_proj(x_q).view(b, -1, 1, hd)  # [B, H, 1, hd]
        k = attn_mod.k_proj(x).view(b, length, -1, hd).transpose(1, 2)  # [B, KV, L, hd]
        return rotate(q, cos_q[:, None, None], sin_q[:, None, None]), rotate(k, cos[:, None], sin[:, None])

    # ------------------------------------------------------------------ common
    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def identity(self) -> dict[str, Any]:
        """{'family', 'hidden_size', 'path'} ('path' = checkpoint dir or 'tiny-random'): stored with a policy."""
        return {"family": self.family, "hidden_size": self.hidden_size, "path": self.cfg.path or "tiny-random"}

    @torch.no_grad()
    def encode(self, batch: VideoBatch) -> VisualTokens:
        return self._encode(batch)

    # ---------------------------------------------------------------- tokenize
    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.prompt_builder.ids(texts)

    def prompt_ids(self, question: str) -> tuple[list[int], list[int]]:
        """(pre, post) token ids of the prompt around the video for `question`, up to the answer (PromptBuilder)."""
        return self.prompt_builder.prompt_ids(question)

    def tokenize(self, batch: VideoBatch) -> PromptBatch:
        """The batch's PromptBatch: the one the DataLoader's collate built (batch.prompts), else built now."""
        return batch.prompts if getattr(batch, "prompts", None) is not None else self.prompt_builder(batch)

    @torch.no_grad()
    def question_embedding(self, prompts: PromptBatch) -> Tensor:
        """[B, D] float32: the mean of the frozen LLM's input embeddings over each question's tokens (zeros for an
        empty question): what a question-conditioned policy (policy.name=query_mlp) is conditioned on. One table
        lookup per question token, no LLM layer."""
        if prompts.question is None:
            raise ValueError("these prompts carry no question ids: build them with the adapter's tokenize(batch)")
        dev = self.device
        ids, n = prompts.question.to(dev), prompts.n_question.to(dev)  # [B, Lq], [B]
        valid = torch.arange(ids.shape[1], device=dev)[None] < n[:, None]  # [B, Lq]
        emb = self.model.get_input_embeddings()(ids).float() * valid[..., None]  # [B, Lq, D]
        return emb.sum(1) / n.clamp(min=1)[:, None]

    # ------------------------------------------------------------------ layout
    def _blocks(self, visual: VisualTokens, prompts: PromptBatch) -> tuple[Tensor, Tensor, Tensor]:
        """The video blocks of a batch: (ids [B, Lb] long, -1 per video slot; positions [B, P, Lb] relative to the
        block; lengths [B]). Without `video_block` the block is the video tokens at VisualTokens.positions."""
        b, v = visual.tokens.shape[0], visual.num_tokens
        blocks = [self.video_block(visual, prompts, i) for i in range(b)]
        if all(blk is None for blk in blocks):
            return torch.full((b, v), -1, dtype=torch.long), visual.positions, torch.full((b,), v, dtype=torch.long)
        blocks = [([-1] * v, visual.positions[i]) if blk is None else blk for i, blk in enumerate(blocks)]
        ids, n = pad_ids([blk[0] for blk in blocks])
        for i, blk in enumerate(blocks):
            if (got := sum(t < 0 for t in blk[0])) != v:
                raise ValueError(f"video_block of sample {i} has {got} video slots for {v} video tokens")
        pos = torch.zeros((b, blocks[0][1].shape[0], ids.shape[1]), dtype=torch.long, device=visual.positions.device)
        for i, blk in enumerate(blocks):
            pos[i, :, : blk[1].shape[1]] = blk[1]
        return ids, pos, n

    def layout(self, visual: VisualTokens, prompts: PromptBatch, post_len: list[int] | Tensor | None = None) -> Layout:
        """pre | video block | suffix | post[:post_len[b]] of every sample (all of post when None), right-padded, on
        the model's device (see score_lit.mllm.sequence.Layout). One layout serves every `score` of the batch."""
        post_len = prompts.n_post if post_len is None else torch.as_tensor(post_len, dtype=torch.long)
        embed = self.model.get_input_embeddings()
        ids, pos, n_block = self._blocks(visual, prompts)
        video = visual.flat().to(self.device, embed.weight.dtype)  # [B, V, D]
        return build_layout(prompts, post_len, ids, pos, n_block, video, embed, self.pad_token_id, self.video_suffix())

    def _rows(self, lay: Layout, order: Tensor, attn: Tensor) -> Tensor:
        return row_positions(lay, order, attn, compacted=self.cfg.position_ids == "compacted")

    # ------------------------------------------------------------------- score
    @torch.no_grad()
    def score(
        self, visual: VisualTokens, prompts: PromptBatch, masks: Tensor, layout: Layout | None = None
    ) -> LLMScores:
        """masks [B, K, T*N] bool (True = keep) -> ce [B, K], option_logits [B, K, C], from one padded LLM batch of
        B*K rows. layout: `self.layout(visual', prompts)` of the same batch (any visual tokens of it: this call's
        are put in), to skip rebuilding it."""
        return score_rows(self, visual, prompts, masks, layout)

    # ----------------------------------------------------------------- prefill
    @torch.no_grad()
    def prefill(self, visual: VisualTokens, prompts: PromptBatch, keep: Tensor) -> Tensor:
        """keep [B, T*N] bool -> [B] the first output token (argmax): the LLM over pre | kept video | suffix |
        post up to the answer, with its KV cache, and lm_head on each row's last position only: the time to
        first token that `bench` measures. Positions as in `score`."""
        b = keep.shape[0]
        lay = self.layout(visual, prompts, prompts.answer_at)
        emb, order, attn = compact(lay.embeds, lay.keep(keep.to(self.device, torch.bool)[:, None]))
        rows = attn[:, 0]  # [B, L]
        out = self.model.model.language_model(
            inputs_embeds=emb,
            attention_mask=None if bool(rows.all()) else rows.long(),
            position_ids=self._rows(lay, order, attn),
            use_cache=True,
            **self.llm_inputs(visual, lay, order, attn),
        )
        last = rows.sum(-1) - 1
        return self.model.lm_head(out.last_hidden_state[torch.arange(b, device=emb.device), last]).argmax(-1)

    # --------------------------------------------------------- video attention
    @torch.no_grad()
    def video_attention(self, visual: VisualTokens, prompts: PromptBatch, layer: int) -> Tensor:
        """[B, T*N] float32: the attention the last prompt token (the one that predicts the first answer token) pays
        to each video token at decoder layer `layer` (0-based), averaged over heads, with all video tokens in the
        sequence (FastV's ranking signal; score_lit.mllm.attention)."""
        return attention_map(self, visual, prompts, layer)[0]

    @staticmethod
    def full_positions(n_pre: int, block: Tensor, n_suffix: int, n_post: int) -> Tensor:
        """[P, n_pre + Lb + n_suffix + n_post] position ids of one sequence pre | block | suffix | post whose block
        sits at `block` [P, Lb] relative ids (what `prompt_block` gives): the layout's rule, for lmms-eval's generate."""
        lb = block.shape[1]
        end = n_pre + lb + n_suffix + n_post
        one = lambda x: torch.tensor([x], dtype=torch.long)  # noqa: E731
        return sequence_positions(one(n_pre), block[None].long(), one(lb), one(end), end)[0]


def score_rows(
    mllm: VideoMLLM, visual: VisualTokens, prompts: PromptBatch, masks: Tensor, layout: Layout | None = None
) -> LLMScores:
    """The body of `VideoMLLM.score`; grad follows torch's grad mode (the toy MLLM trains through it)."""
    dev = mllm.device
    b, k, v = masks.shape
    assert v == visual.num_tokens and visual.tokens.shape[0] == b == len(prompts), (
        f"masks {tuple(masks.shape)} must be [B, K, T*N] for B={visual.tokens.shape[0]} videos of "
        f"T*N={visual.num_tokens} tokens and {len(prompts)} prompts"
    )
    if layout is None:
        lay = mllm.layout(visual, prompts)
    else:
        lay = layout.with_video(visual.flat().to(dev, layout.text_embeds.dtype))
    masks = masks.to(dev, torch.bool)
    emb, order, attn = compact(lay.embeds, lay.keep(masks))
    length, d = order.shape[-1], emb.shape[-1]
    hidden = mllm.model.model.language_model(
        inputs_embeds=emb,
        attention_mask=attn.reshape(b * k, length).long(),
        position_ids=mllm._rows(lay, order, attn),
        use_cache=False,
        **mllm.llm_inputs(visual, lay, order, attn),
    ).last_hidden_state.view(b, k, length, d)
    return answer_scores(mllm.model.lm_head, hidden, first_answer_index(lay, prompts, masks), prompts)


__all__ = ["VideoMLLM", "VideoInputs", "PromptBuilder", "PromptBatch", "Layout", "score_rows", "DTYPES"]
