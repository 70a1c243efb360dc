"""The toy MLLM: a small FROZEN video MLLM of the real Qwen2.5-VL class that really answers.

A randomly initialised MLLM gives noise rewards: its answer does not depend on the video, so dropping
every visual token costs nothing. `train_toy_mllm(ToyConfig())` trains, on 2 CPU cores in minutes, a
small `Qwen2_5_VLForConditionalGeneration` (built from a config in code with tiny.py's tokenizer and
config builder, wider than tiny.py's) to answer the synthetic "which digit was shown / appeared ?"
questions of score_lit.toy.synthetic from the video, and saves it as a standard Hugging Face
directory (config.json + safetensors + tokenizer + preprocessor_config.json) that stock
`from_pretrained` and the adapter (`mllm.path=DIR`) load.

Recipe (two stages, one deterministic data stream):

1. vision only: the vision tower + patch merger with a linear head on DENSE per-token labels
   (`dense_labels`: which digit is visible at this merged token, or none; derived from each sample's
   `evidence`: the temporal units overlapping the evidence frames, at the evidence cell), until the
   digit-token accuracy over the last `log_every` steps reaches `dense_target`. The answer alone is
   a weak signal for a random tower; the dense labels make the merged tokens carry the digit first.
2. whole model: teacher-forced CE of the answer token after the prompt + `dense_weight` x the dense
   loss, the LLM at `llm_lr`, the vision tower and head at `vision_lr`, cosine decay.

Same input format as at RL time, by construction: the model is loaded through the adapter
(`build_mllm(MLLMConfig(path=...))` on the freshly initialised checkpoint) and the training forward
calls the adapter's own `encode` and `score` bodies with gradients enabled (score_lit.toy.trainable)
with an all-ones keep mask: the
prompt template of MLLMConfig, the original M-RoPE positions of score_lit.mllm.positions, the
preprocessing and the answer-token CE are exactly the ones the RL loop will feed the frozen model.

Data: sample j of the stream is family `families[j % len(families)]`, generator index
`j // len(families)`, split "train" (digit instances disjoint from "test"); every step sees fresh
samples, so there is no epoch and no overfitting to a pool. Deterministic for a seed (torch.manual_seed
before init, the stream is a function of the step).

Evaluation: the saved directory is loaded back through `build_mllm`, and `score` with ALL visual tokens
kept picks argmax over the 10 option logits on the held-out "test" split; `accuracy.json` beside the
model records per-family and overall accuracy.

Modules: score_lit.toy.config (ToyConfig, presets in conf/toy/), this one (the model and the sample stream),
score_lit.toy.losses (labels, losses), score_lit.toy.loop (the stages, resume: `train_toy_mllm`),
score_lit.toy.evaluate (held-out accuracy, learning curves).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from score_lit.data import build_family
from score_lit.data.common import collate
from score_lit.toy import trainable
from score_lit.toy.config import ToyConfig
from score_lit.toy.evidence import COLOURS
from score_lit.toy.losses import COLOUR_CLASSES, asked_mask, colour_labels, dense_labels
from score_lit.toy.synthetic import Sample


def grid_samples(cfg: ToyConfig, start: int, count: int) -> list[Sample]:
    """Toy-training images (not a benchmark family): one temporal unit (2 identical frames) of an
    evidence-sized scene; each 2x2 block holds a 32-px "train"-split digit (p 0.6; white or a benchmark
    colour) or flicker texture on some of its cells (p 0.2) or nothing; at least one digit. Deterministic
    per (cfg.seed, index)."""
    from score_lit.toy.evidence import OBJ_PX, WHITE, flicker, paste_object
    from score_lit.toy.synthetic import OPTIONS, _crop, _digit

    size, out = cfg.evidence_size, []
    side = size // OBJ_PX
    for index in range(start, start + count):
        rng = np.random.default_rng([cfg.seed, 7, index])
        video = np.stack([_crop(rng, size)] * 2)
        objects, force = [], int(rng.integers(side * side))
        for b in range(side * side):
            r, c = b // side * 2, b % side * 2
            u = 0.0 if b == force else rng.random()
            if u < 0.6:
                _, img, label = _digit(rng, "train")
                name = COLOUR_CLASSES[1 + int(rng.integers(len(COLOUR_CLASSES) - 1))]
                video[:] = [paste_object(f, img, r, c, WHITE if name == "white" else COLOURS[name]) for f in video]
                objects.append({"label": label, "colour": name, "frames": [0, 2], "cell": [r, c], "px": OBJ_PX})
            elif u < 0.8:
                flicker(video, rng, [(r + i, c + j) for i in range(2) for j in range(2) if rng.random() < 0.5])
        out.append(
            Sample(
                id=f"grid/train/{cfg.seed}/{index}",
                frames=video,
                question="which digit appeared ?",
                answer=objects[0]["label"],
                options=list(OPTIONS),
                evidence={"objects": objects},
            )
        )
    return out


def make_samples(
    cfg: ToyConfig, split: str, start: int, count: int, families: list[str] | None = None, easy: bool = False
) -> list[Sample]:
    """Samples start .. start+count-1 of the deterministic stream (families interleaved). easy: the training
    curriculum's easier variant where a family has one (colour with cfg.easy_colour_objects candidates)."""
    fams = families or cfg.family_names()
    out = []
    for j in range(start, start + count):
        name = fams[j % len(fams)]
        frames, size = cfg.shape(name)
        kw = {"objects": cfg.easy_colour_objects} if easy and name == "colour" else {}
        out.append(build_family(name)(cfg.seed, split, j // len(fams), frames=frames, size=size, **kw))
    return out


def make_batch(samples: list[Sample], cfg: ToyConfig, temporal_patch_size: int, units: Tensor | None = None):
    """(VideoBatch, dense digit labels [B, T, N], dense colour labels [B, T, N], evidence tokens [B, T, N] bool);
    the samples share one shape.

    units [B, U] long (optional): keep only these temporal units of each video (frames and labels), for
    the vision stage; the batch then holds videos of U units."""
    f, size, target = samples[0].frames.shape[0], samples[0].frames.shape[1], cfg.attention_target
    labels = torch.stack([dense_labels(s.evidence, s.answer, f, size, temporal_patch_size) for s in samples])
    colours = torch.stack([colour_labels(s.evidence, f, size, temporal_patch_size) for s in samples])
    asked = torch.stack([asked_mask(s.evidence, s.answer, f, size, temporal_patch_size, target) for s in samples])
    if units is not None:
        tps = temporal_patch_size
        samples = [
            replace(s, frames=np.concatenate([s.frames[tps * u : tps * u + tps] for u in us.tolist()]))
            for s, us in zip(samples, units)
        ]
        pick = lambda x: x.gather(1, units[..., None].expand(-1, -1, x.shape[2]))  # noqa: E731
        labels, colours, asked = pick(labels), pick(colours), pick(asked)
    return collate(samples), labels, colours, asked


def _mrope_section(head_dim: int) -> list[int]:
    """(t, h, w) split of head_dim / 2 in Qwen's proportions (16, 24, 24 of 64); [2, 3, 3] for head_dim 16."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_toy_model(cfg: ToyConfig):
    """(model, tokenizer): a fresh model of the real class at cfg's widths, seeded by cfg.seed."""
    from score_lit.mllm import adapter_class

    family = adapter_class(cfg.family)
    tokenizer = family.tiny_tokenizer()
    text = dict(
        hidden_size=cfg.text_width,
        intermediate_size=cfg.text_mlp,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_kv_heads,
        initializer_range=cfg.init_std,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": _mrope_section(cfg.text_width // cfg.text_heads),
        },
    )
    vision = dict(
        num_heads=cfg.vision_heads,
        initializer_range=cfg.init_std,
        **trainable.vision_dims(cfg.family, cfg.vision_width, cfg.vision_depth, cfg.vision_mlp, cfg.text_width),
    )
    cls, config = family.tiny_config(tokenizer, text, vision)
    config._attn_implementation = "sdpa"
    torch.manual_seed(cfg.seed)
    return cls(config), tokenizer


def model_sizes(model) -> dict[str, int]:
    """Parameter counts: vision tower (incl. merger), language model (incl. embeddings), lm_head, total."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "vision": count(model.model.visual),
        "language_model": count(model.model.language_model),
        "lm_head": count(model.lm_head),
        "total": count(model),
    }
