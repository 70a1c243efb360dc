"""The toy MLLM (issue 3): a small FROZEN video MLLM of the real Qwen2.5-VL class that really answers.

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
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from score_lit.config import MLLMConfig
from score_lit.data import FAMILIES
from score_lit.data.common import collate
from score_lit.toy import trainable
from score_lit.toy.evidence import COLOURS, SETTINGS
from score_lit.toy.evidence import FAMILIES as EVIDENCE_FAMILIES
from score_lit.toy.synthetic import DIGIT_PX, Sample
from score_lit.mllm.positions import temporal_units
from score_lit.mllm.tiny import save_hf_dir
from score_lit.types import VideoBatch

NONE = 10  # dense label of a merged token that shows no answer digit (digits are 0..9)
# A 32-px digit covers 2x2 merged tokens; each shows one quadrant q (0 top-left, 1 top-right, 2 bottom-left,
# 3 bottom-right) and is labelled QUADRANT + 4 * digit + q: the tokens carry what they show, and reading the
# digit takes its tokens together (a partial view loses the answer, as the evidence benchmark intends).
QUADRANT = NONE + 1
DENSE_CLASSES = QUADRANT + 40
COLOUR_CLASSES = ("none", "white", *COLOURS)  # colour labels of the dense colour head


FIRST_TOY = ("stitched", "flash", "distracted")  # the first toy benchmark's families (score_lit.toy.synthetic)
# Named recipes (`toy-mllm --preset NAME`): "first" = the dataclass defaults (the first toy's families);
# "evidence" = also the evidence benchmark's families (score_lit.toy.evidence): a wider, deeper vision tower
# (96 wide, 4 deep: 32-px digits span 2x2 tokens) pretrained on digit grids, a 4-layer LLM, the vision tower
# frozen in the joint stage and a longer joint stage.
PRESETS: dict[str, dict] = {
    "first": {},
    "evidence": dict(families=FIRST_TOY + tuple(EVIDENCE_FAMILIES), grid_steps=600, vision_steps=800, dense_target=0.9,
                     joint_steps=3000, freeze_vision_in_joint=True, first_only_steps=700,
                     vision_width=96, vision_depth=4, vision_mlp=192, text_layers=4, attention_weight=1.0),
}  # fmt: skip
# "evidence2": the evidence recipe's joint stage continued from its state at joint step 1,250 of 3,000
# (`toy-mllm --preset evidence --stop-after 1250`), with the attention loss on the answer's digit
# (attention_target) and colour at its benchmark's 4 candidates from the start. Why: at that step the LLM read the
# asked digit when only it was kept (colour 0.65 on test videos) but did not find it by colour (the asked digit's
# share of the last layer's attention 0.22 on colour test videos), and order's attention sat on both digits.
PRESETS["evidence2"] = {**PRESETS["evidence"], "init_from": "artifacts/toy-mllm-evidence/train_state.pt",
                        "attention_target": "answer", "joint_steps": 600, "first_only_steps": 0, "easy_fraction": 0.0,
                        "llm_lr": 1.5e-3, "warmup_steps": 20}  # fmt: skip
# "evidence3": evidence2 + the question loss (question_weight): at joint step 100 of evidence2 the asked digit's
# attention share had not moved (colour 0.25, order 0.50), and a linear probe found no trace of the asked colour in
# the last prompt token's state at any layer.
PRESETS["evidence3"] = {**PRESETS["evidence2"], "question_weight": 1.0}
# "evidence4": the vision tower of evidence's state at joint step 1,250 (init_parts="vision"), a FRESH LLM, and the
# attention loss on the answer's digit + the question loss from the first joint step, every family mixed from the
# start (no first-only steps, no easy colour). Why: in evidence3 the last layer's attention sat saturated on digit
# tokens (96-100% of it) that the first families had taught it to find before any question asked which one.
PRESETS["evidence4"] = {**PRESETS["evidence3"], "init_parts": "vision", "joint_steps": 3000, "llm_lr": 2e-3, "warmup_steps": 30}
DEFAULT_PRESET = "first"


@dataclass
class ToyConfig:
    """Knobs of the toy-MLLM training; defaults are the full run (`python -m score_lit toy-mllm`)."""

    # Synthetic families (keys of score_lit.data.FAMILIES) to train and evaluate on; empty = the first toy's.
    families: tuple[str, ...] = ()
    # Model family (adapter registry name); qwen2_5_vl is the real class the project targets first.
    family: str = "qwen2_5_vl"
    # Video shape of the first toy families (16 frames = 8 temporal units; 64 px = 4x4 merged tokens of 16 px).
    frames: int = 16
    size: int = 64
    # Video shape of the evidence families (score_lit.toy.evidence, their default setting: 32 frames of
    # 96 px = 16 units x 6x6 = 576 tokens). A step's batch holds one shape: `evidence_every` of every 4
    # steps draw from the evidence families, the others from the first ones.
    evidence_frames: int = 32
    evidence_size: int = 96
    evidence_every: int = 3
    # Cost control for the long evidence videos (the vision tower's attention runs per temporal unit, so
    # both are exact for what a unit's tokens see): the vision stage trains on `vision_units` random units
    # of each evidence video; in the joint stage the evidence steps run the vision tower without gradients
    # (it learns from the first families' steps and the dense loss) and train the LLM on the full video.
    vision_units: int = 4
    evidence_batch_size: int = 8  # samples per evidence step (4.5x the tokens of a first-family sample)
    # Curriculum of the joint stage: during its first `easy_fraction`, colour videos hold
    # `easy_colour_objects` candidate digits instead of the benchmark's 4 (training data only; the benchmark
    # and the evaluation keep the family as it is).
    easy_fraction: float = 0.4
    easy_colour_objects: int = 2
    # The joint stage's first steps draw from the first families only, so that the LLM learns to read digit
    # tokens on the easy questions before the evidence questions join (measured: mixing from the start, the
    # LLM stayed at chance on every family, the first ones included, for 800 joint steps).
    first_only_steps: int = 0
    seed: int = 0
    # Samples per optimizer step (mixed over the families).
    batch_size: int = 16
    # Stage 0 (vision + merger + dense head) on digit grids (`grid_samples`: one temporal unit of an
    # evidence-sized frame, a 32-px digit in most 2x2 blocks): 32-px digits span 2x2 tokens, and reading one
    # from a quadrant's token takes the tower's attention across tokens; grids give ~10x the labelled digit
    # tokens per step of the evidence videos (measured, vision width 96 / depth 4: 0.82 dense accuracy on
    # evidence test videos after 600 grid steps, never having seen one). 0 = no grid stage.
    grid_steps: int = 0
    grid_batch_size: int = 16
    # Stage 1 (vision + merger + dense head): at most this many steps, earlier once the digit-token
    # accuracy over the last `log_every` steps reaches dense_target.
    vision_steps: int = 400
    dense_target: float = 0.95
    vision_stage_lr: float = 1e-3
    # Stage 2 (whole model): answer CE + dense_weight x dense CE; cosine decay after a short warmup.
    joint_steps: int = 700
    llm_lr: float = 2e-3
    vision_lr: float = 3e-4
    # Freeze the vision tower in the joint stage (measured with the evidence families: training it there on
    # the first families' dense loss let the evidence tokens' dense accuracy fall from 0.6 to 0.3 in 700 steps).
    freeze_vision_in_joint: bool = False
    dense_weight: float = 0.3
    # Evidence-attention loss of the joint stage (0 = off): attention_weight x -log(the share of the video
    # attention that the last prompt token pays to the question's evidence tokens at LLM layer
    # `attention_layer`, -1 = the last; evidence = the objects a sample's `evidence["asked"]` names, the
    # one answer digit on the first families). Measured without it (evidence preset, 1,475 joint steps):
    # the LLM reads the digits but never links "red" or "first" to the asked digit's tokens (colour at its
    # question-blind ceiling 0.25). It teaches the toy where to look, as a pretrained MLLM already knows;
    # it is a property of the frozen toy, the same for every selector. FastV ranks by layer 2, not by the
    # supervised last layer of the 4-layer toy.
    attention_weight: float = 0.0
    attention_layer: int = -1
    # What the attention loss points at: "asked" = every object the question is about (order: both digits);
    # "answer" = of those, the ones that show the answer (order: the digit that came first / last; colour:
    # the asked digit either way; move: both ends, its answer being a direction). Measured with "asked"
    # (joint step 1,250, test videos): order's last-layer attention sat on both digits (share 1.00) and the
    # answer at 0.43, below picking one of the two; the answer's digit is what the last token must read.
    attention_target: str = "asked"
    # Question loss of the joint stage (0 = off): question_weight x the cross-entropy of each question word under a
    # linear probe's softmax over the vocabulary, read from the residual stream entering the attention loss's layer
    # at the last prompt token: that state must say which words the question holds. Measured at joint step 1,250 of "evidence" (linear probes, colour test videos):
    # the video tokens' colour is decodable at every LLM layer (1.00), the asked colour at the last prompt token
    # at none (0.12-0.34, chance 0.25), so that token's query cannot ask for red; 40 steps of the attention loss
    # alone did not move the asked digit's share (0.22-0.32). Needs attention_weight > 0 (the same forward).
    question_weight: float = 0.0
    # Start from another toy run instead of from scratch: its training state (a train_state.pt) or its saved
    # directory (model.safetensors; the dense head then starts fresh). The grid and vision stages are skipped:
    # the vision tower is the one trained there (frozen in the joint stage with freeze_vision_in_joint).
    init_from: str = ""
    # What init_from gives: "all" (the whole model) or "vision" (the vision tower + merger and the dense head; the
    # LLM starts from this run's own fresh init, so a new joint-stage recipe can be tried without the vision stages).
    init_parts: str = "all"
    warmup_steps: int = 30
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # Model widths. Text head_dim = text_width / text_heads; the M-RoPE sections follow from it.
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 8
    text_kv_heads: int = 4
    text_mlp: int = 256
    vision_width: int = 64
    vision_depth: int = 2
    vision_heads: int = 4
    vision_mlp: int = 128  # qwen2_vl takes it as an integer mlp_ratio = vision_mlp // vision_width
    # Weight init std of the fresh model (HF's default; tiny.py's 0.1 is for sensitivity tests, not training).
    init_std: float = 0.02
    # Held-out evaluation: samples per family of the generators' "test" split, scored in batches.
    eval_per_family: int = 200
    eval_batch_size: int = 25
    # A progress line every this many steps (running loss and accuracies over the window).
    log_every: int = 25
    # The training state (<out>/train_state.pt: weights, optimizer, schedule, learning curves) is saved at the end of
    # each stage and every this many joint steps; `toy-mllm --resume` continues from it (the data stream is a
    # function of the step, so a resumed run trains exactly what an uninterrupted one would). 0 = stage ends only.
    checkpoint_every: int = 250
    out: str = "artifacts/toy-mllm"

    def __post_init__(self):
        self.families = tuple(self.families)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown toy families {unknown}; registered: {sorted(FAMILIES)}")
        if self.size % DIGIT_PX:
            raise ValueError(f"size={self.size} must be a multiple of {DIGIT_PX} (one merged token per digit cell)")
        if self.question_weight > 0 and self.attention_weight <= 0:
            raise ValueError("question_weight > 0 reads the attention loss's forward: set attention_weight > 0 too")
        if self.init_parts not in ("all", "vision"):
            raise ValueError(f"init_parts={self.init_parts!r}: use 'all' or 'vision'")
        if self.attention_target not in ("asked", "answer"):
            raise ValueError(f"attention_target={self.attention_target!r}: use 'asked' or 'answer'")
        if self.text_width % self.text_heads or (self.text_width // self.text_heads) % 2:
            raise ValueError(f"text_width={self.text_width} must split into text_heads={self.text_heads} even head dims")

    def family_names(self) -> list[str]:
        return list(self.families or FIRST_TOY)

    def shape(self, family: str) -> tuple[int, int]:
        """(frames, size) a family is generated at."""
        return (self.evidence_frames, self.evidence_size) if family in EVIDENCE_FAMILIES else (self.frames, self.size)

    def groups(self) -> list[list[str]]:
        """The families, grouped by shape (one group per step; see evidence_every)."""
        names = self.family_names()
        return [g for g in ([f for f in names if f not in EVIDENCE_FAMILIES], [f for f in names if f in EVIDENCE_FAMILIES]) if g]

    def step_group(self, step: int) -> tuple[int, int]:
        """(group index, how many earlier steps drew from that group) of optimizer step `step`."""
        groups = self.groups()
        if len(groups) == 1:
            return 0, step
        ev = step % 4 < self.evidence_every  # evidence group at these steps
        n_ev = (step // 4) * self.evidence_every + min(step % 4, self.evidence_every)
        return (1, n_ev) if ev else (0, step - n_ev)

    def joint_group(self, n1: int, step: int) -> tuple[int, int]:
        """step_group for joint-stage step `step` after n1 vision steps: its first `first_only_steps` steps draw
        from the first families only (fresh samples of that group's stream), then the mix of step_group resumes."""
        f = self.first_only_steps if len(self.groups()) > 1 else 0
        if step < f:
            g0, n0 = self.step_group(n1)
            return 0, (n1 - n0 if g0 == 1 else n0) + step  # group 0's steps before n1, then one per step
        g, n = self.step_group(n1 + step - f)
        return (g, n + f) if g == 0 else (g, n)


def quick_config(**overrides) -> ToyConfig:
    """A seconds-long run with tiny widths (tests, `toy-mllm --quick`): proves the pipeline, not accuracy."""
    kw = dict(
        batch_size=4, vision_steps=3, joint_steps=3, warmup_steps=1, text_width=32, text_layers=1, text_heads=2,
        text_kv_heads=1, text_mlp=64, vision_width=16, vision_depth=2, vision_heads=1, vision_mlp=32,
        eval_per_family=4, eval_batch_size=4, log_every=1, dense_target=2.0,  # never stop stage 1 early
        families=PRESETS["evidence"]["families"],
        evidence_batch_size=1, vision_units=1,
    )  # fmt: skip
    kw.update(overrides)
    return ToyConfig(**kw)


# ------------------------------------------------------------------------------------------ labels
def dense_labels(evidence: dict, answer, frames: int, size: int, temporal_patch_size: int = 2) -> Tensor:
    """[T, N] long: the digit at the merged tokens showing it, NONE elsewhere.

    Temporal unit t covers frames [t*tps, (t+1)*tps) (the processor pads F by repeating the last frame);
    it shows an object if that range overlaps the object's frames [f0, f1). An object is a digit of `px`
    pixels (16 or 32) whose top-left 16-px cell is `cell`; it covers (px/16)^2 merged tokens, token
    n = row * (size/16) + col (the caller keeps frames unresized). Evidence of the first toy families is
    one 16-px object {"frames", "cell"} showing `answer` (label = the digit); the evidence families
    (score_lit.toy.evidence) list theirs under "objects", each with its own "label", 32 px: their tokens
    are labelled QUADRANT + 4 * digit + quadrant.
    """
    return _object_labels(evidence, frames, size, temporal_patch_size, lambda o, q: int(o["label"]) if q is None else QUADRANT + 4 * int(o["label"]) + q, answer)


def colour_labels(evidence: dict, frames: int, size: int, temporal_patch_size: int = 2) -> Tensor:
    """[T, N] long: the colour class of the digit at each merged token (COLOUR_CLASSES), 0 where none."""
    return _object_labels(evidence, frames, size, temporal_patch_size, lambda o, q: COLOUR_CLASSES.index(o.get("colour", "white")), 0, none=0)


def asked_mask(evidence: dict, answer, frames: int, size: int, temporal_patch_size: int = 2, target: str = "asked") -> Tensor:
    """[T, N] bool: the merged tokens showing the question's evidence, the objects `evidence["asked"]` names
    (evidence families), or the one answer digit (first families).

    target="answer": of the asked objects, only those whose label is the answer (order: the digit that came
    first / last, not both; colour: the asked digit either way); asked objects when none is (move: the answer
    is a direction)."""
    objects = evidence.get("objects")
    if objects is not None:
        asked = [objects[i] for i in evidence.get("asked", range(len(objects)))]
        if target == "answer":
            asked = [o for o in asked if str(o["label"]) == str(answer)] or asked
        evidence = {"objects": asked}
    return _object_labels(evidence, frames, size, temporal_patch_size, lambda o, q: 1, answer, none=0).bool()


def _object_labels(evidence, frames, size, tps, value, answer, none=NONE) -> Tensor:
    t_units, side = temporal_units(frames, tps), size // DIGIT_PX
    objects = evidence.get("objects") or [{"label": answer, "frames": evidence["frames"], "cell": evidence["cell"], "px": DIGIT_PX}]
    labels = torch.full((t_units, side * side), none, dtype=torch.long)
    for o in objects:
        f0, f1 = (int(v) for v in o["frames"])
        row, col = (int(v) for v in o["cell"])
        span = int(o.get("px", DIGIT_PX)) // DIGIT_PX
        for t in range(t_units):
            if t * tps < f1 and (t + 1) * tps > f0:
                for i in range(span):
                    for j in range(span):
                        labels[t, (row + i) * side + col + j] = value(o, None if span == 1 else i * span + j)
    return labels


# ------------------------------------------------------------------------------------------- data
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
        out.append(Sample(id=f"grid/train/{cfg.seed}/{index}", frames=video, question="which digit appeared ?",
                          answer=objects[0]["label"], options=list(OPTIONS), evidence={"objects": objects}))  # fmt: skip
    return out


def make_samples(cfg: ToyConfig, split: str, start: int, count: int, families: list[str] | None = None,
                 easy: bool = False) -> list[Sample]:  # fmt: skip
    """Samples start .. start+count-1 of the deterministic stream (families interleaved). easy: the training
    curriculum's easier variant where a family has one (colour with cfg.easy_colour_objects candidates)."""
    fams = families or cfg.family_names()
    out = []
    for j in range(start, start + count):
        name = fams[j % len(fams)]
        frames, size = cfg.shape(name)
        kw = {"objects": cfg.easy_colour_objects} if easy and name == "colour" else {}
        out.append(FAMILIES[name](cfg.seed, split, j // len(fams), frames=frames, size=size, **kw))
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
        samples = [replace(s, frames=np.concatenate([s.frames[tps * u : tps * u + tps] for u in us.tolist()]))
                   for s, us in zip(samples, units)]  # fmt: skip
        pick = lambda x: x.gather(1, units[..., None].expand(-1, -1, x.shape[2]))  # noqa: E731
        labels, colours, asked = pick(labels), pick(colours), pick(asked)
    return collate(samples), labels, colours, asked


# ------------------------------------------------------------------------------------------ model
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
        hidden_size=cfg.text_width, intermediate_size=cfg.text_mlp, num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads, num_key_value_heads=cfg.text_kv_heads, initializer_range=cfg.init_std,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": _mrope_section(cfg.text_width // cfg.text_heads)},
    )  # fmt: skip
    vision = dict(num_heads=cfg.vision_heads, initializer_range=cfg.init_std,
                  **trainable.vision_dims(cfg.family, cfg.vision_width, cfg.vision_depth, cfg.vision_mlp, cfg.text_width))  # fmt: skip
    cls, config = family.tiny_config(tokenizer, text, vision)
    config._attn_implementation = "sdpa"
    torch.manual_seed(cfg.seed)
    return cls(config), tokenizer


def model_sizes(model) -> dict[str, int]:
    """Parameter counts: vision tower (incl. merger), language model (incl. embeddings), lm_head, total."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"vision": count(model.model.visual), "language_model": count(model.model.language_model),
            "lm_head": count(model.lm_head), "total": count(model)}  # fmt: skip


# ---------------------------------------------------------------------------------------- training
def _forward(adapter, head: nn.Module, batch: VideoBatch, labels: Tensor, colours: Tensor, answers: bool, vision_grad: bool = True,
             asked: Tensor | None = None, attention_layer: int | None = None, question: tuple | None = None) -> dict[str, Tensor]:
    """Dense losses (+ answer CE, + the evidence-attention loss when attention_layer is set) through the
    adapter's own encode / score / video_attention bodies, with gradients.

    head(tokens) -> [B, T, N, DENSE_CLASSES + len(COLOUR_CLASSES)]: the digit (or digit quadrant) at each merged token (or NONE), and the
    colour of that digit (read only at digit tokens)."""
    visual = trainable.encode(adapter, batch, vision_grad)  # tokens [B, T, N, D], grad flows if vision_grad
    logits = head(visual.tokens)  # [B, T, N, DENSE_CLASSES + len(COLOUR_CLASSES)]
    digit_logits, colour_logits = logits[..., :DENSE_CLASSES], logits[..., DENSE_CLASSES:]
    digit = labels != NONE
    nll = F.cross_entropy(digit_logits.flatten(0, 2), labels.flatten(), reduction="none").view_as(labels)
    if digit.any():
        dense = nll[digit].mean() + nll[~digit].mean()  # class-balanced: digit tokens are a few % of the grid
        dense = dense + F.cross_entropy(colour_logits[digit], colours[digit])
    else:  # a batch of a few sampled units may show no digit at all
        dense = nll[~digit].mean()
    out = {"dense": dense, "digit_acc": (digit_logits.argmax(-1)[digit] == labels[digit]).float().mean() if digit.any() else torch.tensor(0.0)}
    if answers:
        prompts = adapter.tokenize(batch)
        masks = torch.ones(len(batch), 1, visual.num_tokens, dtype=torch.bool)
        scores = trainable.score(adapter, visual, prompts, masks)  # ce [B, 1], option_logits [B, 1, C]
        out["ce"] = scores.ce[:, 0].mean()
        out["correct"] = scores.option_logits[:, 0].argmax(-1) == batch.answer_index  # [B] bool
        out["answer_acc"] = out["correct"].float().mean()
        if attention_layer is not None:
            layer = attention_layer % len(adapter.model.model.language_model.layers)
            probs, query_input = trainable.video_attention(adapter, visual, prompts, layer)  # [B, V], [B, D]
            if question is not None:  # (probe, multi-hot [B, vocab]): which words the question holds
                probe, words = question
                qlogits = probe(query_input)  # [B, vocab]
                w = words.to(qlogits.dtype)
                # CE of each question word under one softmax, averaged over the words: at its floor the probe spreads
                # its mass evenly over exactly the question's words, so the state must say which colour / first or last
                out["question"] = (-(qlogits.log_softmax(-1) * w).sum(-1) / w.sum(-1)).mean()
                top = qlogits.topk(int(w.sum(-1).max()), -1).indices  # the probe's top words
                hit = torch.zeros_like(words).scatter(-1, top, True) & words
                out["question_acc"] = (hit.sum(-1) == words.sum(-1)).float().mean()  # every word among the top
            ev = asked.flatten(1).to(probs.device)  # [B, V] bool
            share = (probs * ev).sum(1) / probs.sum(1).clamp_min(1e-12)  # [B] evidence share of the video attention
            has = ev.any(1)
            out["attn"] = -share[has].clamp_min(1e-6).log().mean() if has.any() else torch.zeros(())
            out["attn_share"] = share[has].mean() if has.any() else torch.zeros(())
            out["shares"] = share.detach().masked_fill(~has, float("nan"))  # [B], per family in the curves
    return out


def question_words(adapter, samples: list[Sample], vocab: int) -> Tensor:
    """[B, vocab] bool: the vocabulary ids of each sample's question (the question loss's target)."""
    words = torch.zeros(len(samples), vocab, dtype=torch.bool)
    for i, s in enumerate(samples):
        words[i, adapter.tokenizer(s.question, add_special_tokens=False)["input_ids"]] = True
    return words


def _run_stage(name, adapter, head, cfg, opt, sched, steps, answers, step_offset, t0, history, stop=None, start=0, on_step=None,
               probe: nn.Module | None = None) -> int:  # fmt: skip
    """Optimizer steps over the stream; a progress line every cfg.log_every steps. Returns steps taken.

    Vision stage: global step step_offset + step draws from group cfg.step_group(...); joint stage (step_offset
    = the vision steps taken): from cfg.joint_group(step_offset, step). One video shape per batch: the next
    cfg.batch_size (evidence group: cfg.evidence_batch_size) samples of that group's deterministic stream.
    start: the first step (a resumed run); on_step(steps done) after every step (the checkpoint hook); probe: the
    question loss's linear probe (cfg.question_weight)."""
    tps = adapter.temporal_patch_size
    groups = cfg.groups()
    window: dict[str, list[float]] = {}
    for step in range(start, steps):
        g, n_prev = cfg.joint_group(step_offset, step) if answers else cfg.step_group(step_offset + step)
        evidence = groups[g][0] in EVIDENCE_FAMILIES
        bs = cfg.evidence_batch_size if evidence else cfg.batch_size
        easy = answers and step < cfg.easy_fraction * steps
        samples = make_samples(cfg, "train", n_prev * bs, bs, families=groups[g], easy=easy)
        units = None
        if evidence and not answers:  # vision stage: a few random units of each long video
            t_units = temporal_units(samples[0].frames.shape[0], tps)
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step_offset + step)
            units = torch.rand(len(samples), t_units, generator=gen).argsort(-1)[:, : cfg.vision_units].sort(-1).values
        batch, labels, colours, asked = make_batch(samples, cfg, tps, units)
        frozen = answers and (evidence or cfg.freeze_vision_in_joint)  # the vision tower gets no gradient
        attn_layer = cfg.attention_layer if answers and cfg.attention_weight > 0 else None
        question = (probe, question_words(adapter, samples, probe.out_features)) if answers and probe is not None else None
        out = _forward(adapter, head, batch, labels, colours, answers, vision_grad=not frozen, asked=asked, attention_layer=attn_layer,
                       question=question)  # fmt: skip
        if evidence:
            out["digit_acc_ev"] = out["digit_acc"]  # the evidence families' share, shown apart
        dense = out["dense"] if not frozen else 0.0
        loss = dense * (cfg.dense_weight if answers else 1.0) + (out["ce"] if answers else 0.0)
        if "attn" in out:
            loss = loss + cfg.attention_weight * out["attn"]
        if "question" in out:
            loss = loss + cfg.question_weight * out["question"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g_ in opt.param_groups for p in g_["params"]], cfg.grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        for k, v in {**out, "loss": loss}.items():
            if k in ("correct", "shares"):  # per sample: the family's answer accuracy / evidence attention share
                for s_, c in zip(samples, v.tolist()):
                    if c == c:  # not NaN
                        window.setdefault(f"{'acc' if k == 'correct' else 'attn'}/{s_.id.split('/')[0]}", []).append(float(c))
            else:
                window.setdefault(k, []).append(float(v.detach()) if isinstance(v, Tensor) else float(v))
        if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
            means = {k: float(np.mean(v)) for k, v in window.items()}
            shown = " ".join(f"{k}={means[k]:.3f}" for k in ("loss", "ce", "dense", "digit_acc", "digit_acc_ev", "attn_share", "question_acc", "answer_acc")
                             if k in means)  # fmt: skip
            fams = " ".join(f"{k[4:]}={v:.2f}" for k, v in sorted(means.items()) if k.startswith("acc/"))
            if any(k.startswith("attn/") for k in means):  # the evidence share of the video attention, per family
                fams += " | attn " + " ".join(f"{k[5:]}={v:.2f}" for k, v in sorted(means.items()) if k.startswith("attn/"))
            print(f"[toy-mllm] {name} step {step + 1}/{steps} {shown} {fams} ({time.time() - t0:.0f}s)", flush=True)
            history.append({"stage": name, "step": step + 1, "seconds": round(time.time() - t0, 1), **means})
            window = {}
            if stop is not None and stop(means):
                print(f"[toy-mllm] {name}: target reached at step {step + 1}", flush=True)
                return step + 1
        if on_step is not None:
            on_step(step + 1)
    return steps


def _grid_stage(adapter, head, cfg: ToyConfig, opt, t0: float, history: list[dict]) -> None:
    """cfg.grid_steps dense-label steps on grid_samples (a progress line every cfg.log_every steps)."""
    window: list[float] = []
    for step in range(cfg.grid_steps):
        batch, labels, colours, _ = make_batch(grid_samples(cfg, step * cfg.grid_batch_size, cfg.grid_batch_size), cfg, adapter.temporal_patch_size)
        out = _forward(adapter, head, batch, labels, colours, answers=False)
        opt.zero_grad(set_to_none=True)
        out["dense"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
        opt.step()
        window.append(float(out["digit_acc"]))
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.grid_steps:
            acc = float(np.mean(window))
            print(f"[toy-mllm] grid step {step + 1}/{cfg.grid_steps} digit_acc={acc:.3f} ({time.time() - t0:.0f}s)", flush=True)
            history.append({"stage": "grid", "step": step + 1, "seconds": round(time.time() - t0, 1), "digit_acc": acc})
            window = []


def save_state(path: Path, **state) -> None:
    """The training state at a stage end or a joint checkpoint (atomic: a kill leaves the previous one)."""
    from score_lit.training.checkpoint import atomic_torch_save

    atomic_torch_save(state, path)


class _Stopped(Exception):
    """The joint stage reached train_toy_mllm's stop_after."""


def _load_parts(model: nn.Module, weights: dict, parts: str) -> None:
    """Load `weights` into model: all of them, or (parts="vision") only the vision tower's (model.visual.*)."""
    if parts == "vision":
        weights = {k: v for k, v in weights.items() if k.startswith("model.visual.")}
        missing = [k for k in model.state_dict() if k.startswith("model.visual.") and k not in weights]
        if missing or not weights:
            raise ValueError(f"init_parts=vision: the init weights lack the vision tower ({missing[:3]})")
    model.load_state_dict(weights, strict=parts == "all")


def _load_init(cfg: ToyConfig, model: nn.Module, head: nn.Module) -> dict:
    """Load cfg.init_from's weights into model (and head, from a training state); returns {"n1": the first joint-stage
    stream position not seen there, "stage", "step"} so that the continuation trains on fresh samples."""
    from score_lit.config import ConfigError
    from score_lit.mllm import build_mllm

    src = Path(cfg.init_from)
    if src.is_file():
        state = torch.load(src, map_location="cpu", weights_only=False)
        if state.get("stage") not in ("vision", "joint"):
            raise ConfigError(f"init_from={src}: its training state ends in the {state.get('stage')!r} stage; "
                              "give one saved after the vision stage (or a saved toy directory)")  # fmt: skip
        _load_parts(model, state["model"], cfg.init_parts)
        head.load_state_dict(state["head"])
        step = state["step"] if state["stage"] == "joint" else 0
        info = {"n1": state["n1"] + step, "stage": state["stage"], "step": step}
    elif (src / "model.safetensors").is_file():
        _load_parts(model, build_mllm(MLLMConfig(family=cfg.family, path=str(src))).model.state_dict(), cfg.init_parts)
        report = json.loads((src / "accuracy.json").read_text()) if (src / "accuracy.json").is_file() else {}
        info = {"n1": report.get("vision_stage_steps", 0) + report.get("joint_steps", 0), "stage": "saved", "step": report.get("joint_steps", 0)}
    else:
        raise ConfigError(f"init_from={src}: neither a toy-mllm train_state.pt nor a saved toy directory (model.safetensors)")
    print(f"[toy-mllm] starting from {src} ({info['stage']} stage, step {info['step']}); grid and vision stages skipped", flush=True)
    return info


def train_toy_mllm(cfg: ToyConfig, resume: bool = False, stop_after: int = 0) -> Path | None:
    """Train, save to cfg.out, evaluate on the test split (accuracy.json beside the model); returns cfg.out.
    resume: continue from <cfg.out>/train_state.pt (written at stage ends and every cfg.checkpoint_every joint
    steps) if it exists; it must come from the same ToyConfig. stop_after: save the training state after this
    joint step and return None (a later --resume continues; another preset can start from it, init_from)."""
    from score_lit.config import ConfigError
    from score_lit.mllm import build_mllm

    state_path = Path(cfg.out) / "train_state.pt"
    state = torch.load(state_path, map_location="cpu", weights_only=False) if resume and state_path.is_file() else None
    if state is not None:
        defaults = asdict(ToyConfig())  # a setting added after the state was saved had its default then
        diff = sorted(k for k in asdict(cfg) if state["config"].get(k, defaults[k]) != asdict(cfg)[k])
        if diff:
            raise ConfigError(f"toy-mllm --resume: {state_path} was trained with other settings ({', '.join(diff)}): "
                              "give the same preset and flags, or another --out")  # fmt: skip
        print(f"[toy-mllm] resuming from {state_path}: {state['stage']} stage, step {state['step']}", flush=True)
    torch.manual_seed(cfg.seed)
    t0 = time.time() - (state["seconds"] if state else 0.0)
    model, tokenizer = build_toy_model(cfg)
    sizes = model_sizes(model)
    print(f"[toy-mllm] {cfg.family} model, parameters: {sizes}; families {cfg.family_names()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:  # load the fresh weights through the adapter, as at RL time
        save_hf_dir(model, tokenizer, Path(tmp))
        adapter = build_mllm(MLLMConfig(family=cfg.family, path=tmp))
    model = adapter.model.requires_grad_(True).train()
    head = nn.Linear(adapter.hidden_size, DENSE_CLASSES + len(COLOUR_CLASSES))
    # the question loss's linear probe (training only, like the dense head: not part of the saved model)
    probe = nn.Linear(adapter.hidden_size, model.lm_head.out_features) if cfg.question_weight > 0 else None
    history: list[dict] = []  # the learning curves (progress lines), saved as history.json beside the model
    if state is not None:
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        if probe is not None and state.get("probe") is not None:
            probe.load_state_dict(state["probe"])
        history = state["history"]
    done = state["stage"] if state else None  # the last stage the state holds (finished, or joint in progress)
    init = None
    if state is None and cfg.init_from:
        init = _load_init(cfg, model, head)
        done = "init"  # the grid and vision stages are the init run's

    def checkpoint(stage: str, step: int, opt, sched=None, n1: int = 0) -> None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        save_state(state_path, stage=stage, step=step, n1=n1, config=asdict(cfg), seconds=time.time() - t0,
                   model=model.state_dict(), head=head.state_dict(), probe=None if probe is None else probe.state_dict(), opt=opt.state_dict(),
                   sched=sched.state_dict() if sched is not None else None, history=history)  # fmt: skip

    # Stage 0 (optional): digit grids; stage 1: the families' videos. Vision tower + merger + dense head.
    vis_params = list(model.model.visual.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(vis_params, lr=cfg.vision_stage_lr, weight_decay=cfg.weight_decay)
    if done is None:
        _grid_stage(adapter, head, cfg, opt, t0, history)
        checkpoint("grid", cfg.grid_steps, opt)
    elif done == "grid":
        opt.load_state_dict(state["opt"])
    if done == "init":
        n1 = init["n1"]
    elif done in (None, "grid"):
        n1 = _run_stage("vision", adapter, head, cfg, opt, None, cfg.vision_steps, False, 0, t0, history,
                        stop=lambda m: m["digit_acc"] >= cfg.dense_target)  # fmt: skip
        checkpoint("vision", n1, opt, n1=n1)
    else:
        n1 = state["n1"]

    # Stage 2: the whole model on the answers + dense_weight x dense loss.
    vis_ids = {id(p) for p in vis_params}
    llm_params = [p for p in model.parameters() if id(p) not in vis_ids] + ([] if probe is None else list(probe.parameters()))
    opt = torch.optim.AdamW(
        [{"params": llm_params, "lr": cfg.llm_lr}, {"params": vis_params, "lr": cfg.vision_lr}],
        weight_decay=cfg.weight_decay,
    )

    def schedule(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.joint_steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    start = 0
    if done == "joint":
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["step"]

    if stop_after and start >= stop_after:
        print(f"[toy-mllm] the state in {state_path} is at joint step {start}, at or past --stop-after {stop_after}: nothing to do", flush=True)
        return None

    def on_step(step: int) -> None:
        if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.joint_steps) or step == stop_after:
            checkpoint("joint", step, opt, sched, n1)
        if step == stop_after:
            raise _Stopped

    try:
        _run_stage("joint", adapter, head, cfg, opt, sched, cfg.joint_steps, True, n1, t0, history, start=start, on_step=on_step,
                   probe=probe)  # fmt: skip
    except _Stopped:
        print(f"[toy-mllm] stopped after joint step {stop_after} (--stop-after); the state is in {state_path}", flush=True)
        return None
    train_seconds = time.time() - t0

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_hf_dir(model.eval().requires_grad_(False), tokenizer, out)
    state_path.unlink(missing_ok=True)  # trained: nothing left to resume
    print(f"[toy-mllm] saved to {out} after {train_seconds:.0f}s of training; evaluating on 'test'", flush=True)
    acc = evaluate(out, cfg)
    ev_names = [f for f in cfg.family_names() if f in EVIDENCE_FAMILIES]
    long_cfg = replace(cfg, evidence_frames=SETTINGS["long"]["frames"], evidence_size=SETTINGS["long"]["size"],
                       families=tuple(ev_names), eval_per_family=cfg.eval_per_family // 2, eval_batch_size=5)  # fmt: skip
    acc_long = evaluate(out, long_cfg) if ev_names else {}
    report = {
        "families": acc, "overall": float(np.mean(list(acc.values()))), "n_per_family": cfg.eval_per_family,
        "families_long": acc_long, "long_setting": SETTINGS["long"], "n_per_family_long": cfg.eval_per_family // 2,
        "seed": cfg.seed, "train_seconds": round(train_seconds, 1), "vision_stage_steps": n1,
        "joint_steps": cfg.joint_steps, "parameters": sizes, "config": asdict(cfg), "init": init,
    }  # fmt: skip
    (out / "accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "history.json").write_text(json.dumps(history) + "\n")
    plot_history(history, out / "learning_curves.png", acc)
    return out


def plot_history(history: list[dict], path: Path, final: dict[str, float] | None = None) -> Path:
    """The learning curves of a toy-mllm run: training answer accuracy per family over the joint stage (one
    line per family, dashed = the first toy's families), the dense accuracy of both stages, and the held-out
    accuracy with all tokens as markers at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = lambda stage: max([h["step"] for h in history if h["stage"] == stage], default=0)  # noqa: E731
    n0 = last("grid")
    offset = {"grid": 0, "vision": n0, "joint": n0 + last("vision")}  # the stages one after the other on x
    joint = [h for h in history if h["stage"] == "joint"]
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.8))
    for key, label in (("digit_acc", "all families (grid stage: digit grids)"), ("digit_acc_ev", "evidence families")):
        pts = [(h["step"] + offset[h["stage"]], h[key]) for h in history if key in h]
        a0.plot([p[0] for p in pts], [p[1] for p in pts], label=label)
    for x in sorted({offset["vision"], offset["joint"]} - {0}):
        a0.axvline(x, color="k", lw=0.8, ls=":")
    a0.set(title="dense token accuracy (grid | vision stage | joint)" if n0 else "dense token accuracy (vision stage | joint)",
           xlabel="step", ylim=(0, 1))  # fmt: skip
    a0.legend(fontsize=8)
    fams = sorted({k[4:] for h in joint for k in h if k.startswith("acc/")})
    for f in fams:
        pts = [(h["step"], h[f"acc/{f}"]) for h in joint if f"acc/{f}" in h]
        line = a1.plot([p[0] for p in pts], [p[1] for p in pts], ls="-" if f in EVIDENCE_FAMILIES else "--", label=f)[0]
        if final and f in final and pts:
            a1.plot([pts[-1][0]], [final[f]], marker="o", color=line.get_color())
    a1.set(title="answer accuracy, training batches (o = held-out, all tokens)", xlabel="joint step", ylim=(0, 1))
    a1.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@torch.no_grad()
def evaluate(path: str | Path, cfg: ToyConfig) -> dict[str, float]:
    """{family: accuracy} of the checkpoint at `path` through the adapter, ALL visual tokens kept,
    argmax over the option logits, on the first cfg.eval_per_family samples of each family's "test" split."""
    from score_lit.mllm import build_mllm

    adapter = build_mllm(MLLMConfig(family=cfg.family, path=str(path)))
    acc = {}
    for name in cfg.family_names():
        correct = 0
        for start in range(0, cfg.eval_per_family, cfg.eval_batch_size):
            n = min(cfg.eval_batch_size, cfg.eval_per_family - start)
            batch = collate(make_samples(cfg, "test", start, n, families=[name]))
            visual = adapter.encode(batch)
            masks = torch.ones(n, 1, visual.num_tokens, dtype=torch.bool)
            scores = adapter.score(visual, adapter.tokenize(batch), masks)
            correct += int((scores.option_logits[:, 0].argmax(-1) == batch.answer_index).sum())
        acc[name] = correct / cfg.eval_per_family
    return acc


__all__ = ["ToyConfig", "quick_config", "dense_labels", "build_toy_model", "model_sizes", "train_toy_mllm", "evaluate", "NONE", "QUADRANT"]
