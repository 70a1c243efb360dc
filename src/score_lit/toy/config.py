"""The toy MLLM's training knobs (ToyConfig) and its presets, YAML files in conf/toy/ read by the one loader.

    cfg = load_preset("evidence4", ["joint_steps=100"])            # conf/toy/evidence4.yaml + overrides
    cfg = load_config(["conf/toy/evidence.yaml"], ["seed=1"], schema=ToyConfig)

Presets (`toy-mllm --preset NAME` = `toy-mllm conf/toy/NAME.yaml`): first (the dataclass defaults: the first toy's
families; models/toy-mllm), evidence (also the evidence benchmark's families), evidence4 (the committed
models/toy-mllm-evidence4; it composes evidence), quick (a seconds-long run at tiny widths, tests). Torch-free,
so a bad preset or override stops before the heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from score_lit.config import CONF_DIR, ConfigError, load_config, names

PRESET_DIR = CONF_DIR / "toy"
DEFAULT_PRESET = "first"
DIGIT_PX = 16  # score_lit.toy.synthetic.DIGIT_PX: one merged token of a tower with patch 8, merge 2
FIRST_TOY = ("stitched", "flash", "distracted")  # the first toy benchmark's families (score_lit.toy.synthetic)
EVIDENCE_FAMILIES = ("colour", "order", "move")  # score_lit.toy.evidence.FAMILIES (tests hold the two equal)


@dataclass
class ToyConfig:
    """Knobs of the toy-MLLM training; defaults are the full run (`python -m score_lit toy-mllm`, preset first)."""

    SCHEMA: ClassVar[str] = "toy"  # its YAML files (conf/toy/*.yaml) say `schema: toy` (score_lit.config.loader)

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
        unknown = [f for f in self.families if f not in names.FAMILIES]
        if unknown:
            raise ConfigError(f"unknown toy families {unknown}; registered: {sorted(names.FAMILIES)}")
        if self.size % DIGIT_PX:
            raise ConfigError(f"size={self.size} must be a multiple of {DIGIT_PX} (one merged token per digit cell)")
        if self.question_weight > 0 and self.attention_weight <= 0:
            raise ConfigError("question_weight > 0 reads the attention loss's forward: set attention_weight > 0 too")
        if self.init_parts not in ("all", "vision"):
            raise ConfigError(f"init_parts={self.init_parts!r}: use 'all' or 'vision'")
        if self.attention_target not in ("asked", "answer"):
            raise ConfigError(f"attention_target={self.attention_target!r}: use 'asked' or 'answer'")
        if self.text_width % self.text_heads or (self.text_width // self.text_heads) % 2:
            raise ConfigError(
                f"text_width={self.text_width} must split into text_heads={self.text_heads} even head dims"
            )

    def family_names(self) -> list[str]:
        return list(self.families or FIRST_TOY)

    def shape(self, family: str) -> tuple[int, int]:
        """(frames, size) a family is generated at."""
        return (self.evidence_frames, self.evidence_size) if family in EVIDENCE_FAMILIES else (self.frames, self.size)

    def groups(self) -> list[list[str]]:
        """The families, grouped by shape (one group per step; see evidence_every)."""
        fams = self.family_names()
        return [
            g
            for g in ([f for f in fams if f not in EVIDENCE_FAMILIES], [f for f in fams if f in EVIDENCE_FAMILIES])
            if g
        ]

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


def preset_path(name: str) -> Path:
    """conf/toy/<name>.yaml, or a ConfigError naming the presets there."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"--preset {name!r}: use one of {sorted(p.stem for p in PRESET_DIR.glob('*.yaml'))}")
    return path


def load_preset(name: str = DEFAULT_PRESET, overrides: list[str] = ()) -> ToyConfig:
    """A preset (conf/toy/<name>.yaml) with `key=value` overrides, through the one loader."""
    return load_config([preset_path(name)], overrides, schema=ToyConfig)


def quick_config(**overrides) -> ToyConfig:
    """A seconds-long run with tiny widths (tests, `toy-mllm --quick`: conf/toy/quick.yaml): proves the pipeline,
    not accuracy; keyword arguments replace its fields."""
    return replace(load_preset("quick"), **overrides)
