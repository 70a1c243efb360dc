"""The configuration schema of train / eval / viz / submit / cache-features: typed dataclasses whose defaults
are the documented knobs (each with the reason for its default) and whose `__post_init__` holds the cross-field
checks, each saying how to fix what it rejects. Loading (YAML, composition, `key=value`) is score_lit.config.loader.

Every name a config may hold is checked against the torch-free lists of score_lit.config.names, so this module
imports nothing of score_lit but errors, names and retention (no registry, no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from score_lit.config import names
from score_lit.config.retention import check_ratio as _check_ratio
from score_lit.errors import ConfigError
from score_lit.errors import check_choice as _check_choice

# The repository root (src/score_lit/config/schema.py -> 3 folders up): the default MLflow store lives here.
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _check_registered(key: str, value: str, names: list[str]) -> None:
    """_check_choice against a registry's torch-free name list (score_lit.config.names)."""
    _check_choice(key, value, sorted(names), "is not registered")


@dataclass
class MLLMConfig:
    """The frozen multimodal LLM (never trained, never checkpointed)."""

    # Registry name of the adapter (score_lit.mllm; the list: names.MLLM_FAMILIES): qwen2_5_vl | qwen2_vl |
    # llava_onevision (the HF ports of LLaVA-OneVision and LLaVA-Video, LlavaOnevisionForConditionalGeneration) |
    # qwen3_vl | qwen3_5.
    family: str = "qwen2_5_vl"
    # A local HF checkpoint directory (e.g. /models/Qwen2.5-VL-7B-Instruct). None builds the tiny
    # randomly initialised model of the same transformers class from a config in code (tests, CPU smoke).
    path: str | None = None
    # Seed of the tiny random model's weights (only when path is None).
    tiny_seed: int = 0
    # float32 on CPU; bfloat16 for real checkpoints on GPU.
    dtype: str = "float32"
    # sdpa works everywhere and needs no attention maps (compression happens before the LLM).
    attn_implementation: str = "sdpa"
    # The chat prompt around the video; {video} marks where the visual tokens go, {question} the question.
    # This is Qwen2/2.5-VL's own chat template for one video and one user turn. Left at this default with
    # family=llava_onevision, the adapter uses LLaVA-OneVision's own template instead
    # (score_lit.mllm.llava_onevision.LLAVA_OV_TEMPLATE); any other value is used as given by every family.
    prompt_template: str = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|>{video}<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
    )
    # Pixel budget per frame for the processor's smart resize (Qwen's min/max_pixels); frames are
    # resized to multiples of patch_size * merge_size within it.
    min_pixels: int = 16 * 16
    max_pixels: int = 448 * 448
    # Seconds between sampled frames when the data does not say (Qwen2.5-VL scales temporal positions by it).
    seconds_per_frame: float = 0.5
    # Position ids of a pruned sequence, for 1-D RoPE models (llava_onevision): "original" keeps every kept
    # token's and the text's ids of the FULL sequence (gaps where tokens were dropped; the method's default:
    # pruning never shifts the text), "compacted" renumbers 0..L-1 as if the dropped tokens never existed.
    # Qwen2/2.5-VL's M-RoPE always keeps original ids (compacted is refused there).
    position_ids: str = "original"

    def __post_init__(self) -> None:
        _check_registered("mllm.family", self.family, list(names.MLLM_FAMILIES))
        _check_choice("mllm.dtype", self.dtype, ("float32", "bfloat16", "float16"))
        if self.position_ids not in ("original", "compacted"):
            raise ConfigError(f"mllm.position_ids={self.position_ids!r}: use 'original' or 'compacted'")
        modes = names.MLLM_FAMILIES[self.family]
        if self.position_ids not in modes:
            raise ConfigError(
                f"mllm.position_ids={self.position_ids} is not implemented for {self.family}: use mllm.position_ids="
                + " or ".join(modes)
            )


@dataclass
class PolicyConfig:
    """The compressor: a token-wise network over the surprise-augmented state [LN(x); LN(dx)]."""

    # Registry name (score_lit.rl.policy): mlp (the paper's: each token alone) | query_mlp (ours: also conditioned
    # on the question, FiLM on the mean of the question's input embeddings in the frozen LLM) | temporal_mlp (ours:
    # hidden units also see the same position in the neighbouring temporal units).
    name: str = "mlp"
    # Paper: "lightweight"; 256 keeps the policy far under 1% of a 7B model's prefill.
    hidden: int = 256
    activation: str = "gelu"
    # Output bias = logit(init_keep_prob), so the first rollouts explore around half the tokens.
    init_keep_prob: float = 0.5
    # Inference selection: global top-k over the whole video (frames that change get more budget)
    # or per_frame (the same k in every temporal unit).
    selection: str = "global"

    def __post_init__(self) -> None:
        _check_registered("policy.name", self.name, names.POLICIES)
        _check_registered("policy.activation", self.activation, names.ACTIVATIONS)
        if not (0.0 < self.init_keep_prob < 1.0):
            raise ConfigError(f"policy.init_keep_prob={self.init_keep_prob} must lie strictly between 0 and 1")
        if self.selection not in ("global", "per_frame"):
            raise ConfigError(f"policy.selection={self.selection!r}: use 'global' or 'per_frame'")
        if self.hidden < 1:
            raise ConfigError(f"policy.hidden={self.hidden} must be a positive width, e.g. 256")


@dataclass
class RLConfig:
    """Group-wise RL: K masks per sample, fidelity + sparsity rewards, an advantage estimator by name."""

    # K: rollouts per sample. The paper's group; 8 gives a usable within-group std at modest cost.
    group_size: int = 8
    # Advantage estimator (score_lit.rl.advantage): split (default) | grpo | rloo.
    estimator: str = "split"
    # lambda: weight of the sparsity advantage against the fidelity advantage.
    sparsity_weight: float = 1.0
    # tau (nats): a rollout whose answer CE rose by at most tau "kept the answer"; only those are
    # rewarded for sparsity, which is what stops the policy over-pruning for speed.
    gate_tau: float = 0.1
    # eps in the within-group z-score; also keeps a degenerate group (all equal) at advantage 0.
    eps: float = 1e-6
    # Optional entropy bonus on the Bernoulli keep distribution (0 = the figure's loss exactly).
    entropy_coef: float = 0.0
    # How the K masks are drawn (score_lit.rl.samplers): bernoulli (the paper's: independent per token) | budget
    # (ours: each rollout keeps rl.budgets[j] of the tokens in expectation, j drawn per rollout, so training sees
    # masks of the sizes evaluation keeps and trains the ranking top-k reads).
    sampler: str = "bernoulli"
    # Keep fractions the budget sampler draws from (uniformly, per rollout); default: the evaluation's ratios.
    budgets: list[float] = field(default_factory=lambda: [0.05, 0.10, 0.15, 0.25])

    def __post_init__(self) -> None:
        _check_registered("rl.estimator", self.estimator, names.ESTIMATORS)
        _check_registered("rl.sampler", self.sampler, names.SAMPLERS)
        if not self.budgets or any(not 0.0 < b < 1.0 for b in self.budgets):
            raise ConfigError(
                f"rl.budgets={self.budgets}: give keep fractions strictly between 0 and 1, e.g. [0.05,0.1,0.25]"
            )
        if self.group_size < 2:
            raise ConfigError(
                f"rl.group_size={self.group_size}: every estimator compares a sample's K rollouts with each other, so with "
                f"K < 2 every advantage is 0 and nothing trains; use rl.group_size >= 2, e.g. rl.group_size=8"
            )
        if self.gate_tau < 0:
            raise ConfigError(f"rl.gate_tau={self.gate_tau} must be >= 0 (nats of answer CE the gate tolerates)")


SOURCES = ("synthetic", "image_qa", "video_qa")


@dataclass
class DataConfig:
    """Where one curriculum phase's samples come from, and how they become frames."""

    # synthetic: generated video QA from still images (built in, no download; `families` below);
    # image_qa: an image-QA file (JSONL or LLaVA conversation JSON) -> static pseudo-videos (stage 1);
    # video_qa: a video-QA file (LLaVA-Video-178K JSON or multiple-choice JSONL), decoded with decord.
    source: str = "synthetic"
    # The annotation file (image_qa, video_qa). Relative media paths resolve against `root`
    # (default: the annotation file's folder).
    path: str | None = None
    root: str | None = None
    # A held-out annotation file for validation; None holds out `val_samples` rows of `path` instead
    # (a seeded choice, removed from training).
    val_path: str | None = None
    # Synthetic generator families (score_lit.data.FAMILIES): stitched (stage 1), flash, distracted
    # (dynamic). Several are interleaved by index: sample i comes from families[i % n].
    families: list[str] = field(default_factory=lambda: ["stitched"])
    frames: int = 16  # F sampled frames per video (even: Qwen merges 2 frames per temporal unit)
    size: int = 64  # frames are fitted to size x size pixels (a multiple of patch 8 x merge 2 = 16 for the toy)
    # How a frame of another aspect ratio becomes a square: pad (letterbox, nothing cut) | stretch | crop.
    fit: str = "pad"
    # video_qa: sample at this many frames per second, capped at `frames` (None: `frames` uniformly over
    # the clip). Videos then differ in length, so it needs batch_size 1 (K rollouts still batch).
    sample_fps: float | None = None
    min_run: int = 2  # pseudo-videos: shortest still run in frames (even, so cuts fall on temporal-unit borders)
    max_run: int = 8
    # Pseudo-videos (image_qa): distractor images per video; synthetic `distracted`: cutting distractor cells.
    distractors: int = 5
    train_samples: int = 2000  # synthetic: generated on the fly from a seed (the epoch length)
    val_samples: int = 64  # synthetic: generated; files: rows held out when val_path is None (0 = no validation)
    batch_size: int = 4
    num_workers: int = 0  # the tiny generators are cheap; >0 for decoding real videos
    seed: int = 0
    # Bad samples (missing / corrupt / too short videos, malformed rows) are skipped and reported once;
    # the run stops only when more than this share of a dataset is bad.
    max_bad_fraction: float = 0.05
    # On-disk cache of the frozen vision tower + projector output per (media file, sampling, model), filled
    # offline by `python -m score_lit cache-features CONFIG` and only read by training: a cached row skips
    # decoding and the vision tower. None = off.
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"data.source={self.source!r}: use one of {list(SOURCES)}")
        if self.source != "synthetic" and not self.path:
            raise ConfigError(f"data.source={self.source} needs data.path=<annotation file (JSONL or JSON)>")
        if self.frames < 2 or self.frames % 2:
            raise ConfigError(f"data.frames={self.frames} must be an even number >= 2 (2 frames per temporal unit)")
        if self.size % 16:
            raise ConfigError(f"data.size={self.size} must be a multiple of 16 (patch 8 x merge 2), e.g. 64")
        if self.fit not in ("pad", "stretch", "crop"):
            raise ConfigError(f"data.fit={self.fit!r}: use pad, stretch or crop")
        if not (2 <= self.min_run <= self.max_run):
            raise ConfigError(f"data.min_run={self.min_run}, data.max_run={self.max_run}: need 2 <= min_run <= max_run")
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} must be >= 1")
        if self.sample_fps is not None and (self.sample_fps <= 0 or self.batch_size != 1):
            raise ConfigError(
                f"data.sample_fps={self.sample_fps} needs a positive rate and data.batch_size=1 (videos then differ in "
                f"length); or leave sample_fps unset to take data.frames frames uniformly"
            )
        if not (0.0 <= self.max_bad_fraction < 1.0):
            raise ConfigError(f"data.max_bad_fraction={self.max_bad_fraction} must lie in [0, 1), e.g. 0.05")
        unknown = [f for f in self.families if f not in names.FAMILIES]
        if unknown or not self.families:
            raise ConfigError(f"data.families={self.families}: unknown {unknown}; available: {sorted(names.FAMILIES)}")


PHASES = ("stage1", "stage2")


@dataclass
class PhaseConfig:
    """One phase of the curriculum (docs/METHOD.md "Curriculum"): how many optimizer steps, on which data."""

    steps: int = 300
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps} of a phase must be >= 1")


@dataclass
class ValConfig:
    """Held-out validation with the policy's deterministic top-k."""

    every_n_steps: int = 50
    # Retention ratios validated (logged as val/accuracy_r0.25 ...); 1.00 (all tokens) is added once per run.
    ratios: list[float] = field(default_factory=lambda: [0.25, 0.10])
    # The bound (nats) the run promises on validation dCE at the smallest ratio: the policy's top-k
    # must keep the answer's likelihood within it. Logged as val/dce_bound_ok (1 = within).
    dce_bound: float = 0.1

    def __post_init__(self) -> None:
        for r in self.ratios:
            _check_ratio("val.ratios", r)
        if self.every_n_steps < 1:
            raise ConfigError(f"val.every_n_steps={self.every_n_steps} must be >= 1")


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # 0 disables clipping


@dataclass
class TrainerConfig:
    """Passed to lightning.Trainer. The run's length is the sum of its phases' steps (stage1.steps, ...)."""

    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    # auto | ddp | deepspeed_zero2 | deepspeed_zero3 (score_lit.training.strategies; conf/trainer/*.yaml). Groups of K
    # rollouts always stay on one rank: each rank trains its own samples (the curriculum shards them).
    strategy: str = "auto"
    # 32-true on CPU; bf16-mixed on GPU (under DeepSpeed: bf16 weights, fp32 master weights in the optimizer).
    precision: str = "32-true"
    log_every_n_steps: int = 1
    # ZeRO-3 only: parameters of at most this many elements stay whole on every rank instead of being
    # partitioned (DeepSpeed's stage3_param_persistence_threshold; its default 1e5 spares norms and biases
    # the all-gathers). 0 partitions every frozen parameter (the CPU test does, so the tiny model is split).
    # The policy is kept whole regardless (score_lit.training.strategies.keep_whole).
    zero3_persistence_threshold: int = 100_000

    def __post_init__(self) -> None:
        _check_choice("trainer.accelerator", self.accelerator, ("cpu", "gpu", "cuda", "mps", "tpu", "auto"))
        _check_choice("trainer.strategy", self.strategy, ("auto", "ddp", "deepspeed_zero2", "deepspeed_zero3"))
        if self.zero3_persistence_threshold < 0:
            raise ConfigError(
                f"trainer.zero3_persistence_threshold={self.zero3_persistence_threshold} must be >= 0, e.g. 100000"
            )


@dataclass
class TrackingConfig:
    """MLflow, through Lightning's MLFlowLogger."""

    # None -> sqlite:///<project root>/mlflow.db. MLflow 3.17 refuses the old ./mlruns file store.
    tracking_uri: str | None = None
    experiment: str = "score_lit"
    run_name: str | None = None
    # Log metrics from MLflow's background queue instead of one blocking sqlite write per step (about
    # 10 ms a step on the toy setup, where a whole step is 80 ms). Flushed before the run ends.
    async_logging: bool = True
    # Where a new experiment stores artifacts (policy.pt, plots). None -> mlartifacts/ beside a sqlite
    # store's file (not ./mlruns of whatever folder the command ran in).
    artifact_location: str | None = None


METHODS = names.METHODS  # the compressors eval can sweep (score_lit.compressors), torch-free; registering adds to it
_BUILTIN_METHODS = tuple(METHODS)  # eval.methods' default: the built-in ones


@dataclass
class EvalConfig:
    """A retention sweep: every method at every ratio on one benchmark, with the frozen MLLM (score_lit.evaluation.sweep)."""

    # score_lit.data.benchmarks: toy (the exported toy test split) | evidence (the exported evidence benchmark,
    # score_lit.toy.evidence) | videomme | mvbench | mlvu | longvideobench | egoschema | nextqa, read from `root`
    # in its published layout.
    benchmark: str = "toy"
    root: str = "artifacts/toy-bench"
    split: str | None = None
    limit: int | None = None  # at most this many questions (None = all)
    # score_lit.compressors names; vanilla (all tokens) is always measured, once, as the reference.
    methods: list[str] = field(default_factory=lambda: list(_BUILTIN_METHODS))
    ratios: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.15, 0.10, 0.05])
    # The trained SCORE policy for method `score` (make train-stage1 && make train-stage2 writes it).
    policy: str | None = "runs/stage2/policy.pt"
    fastv_layer: int = 2  # FastV's K: the layer whose attention ranks the visual tokens (its paper's default)
    # Frame sampling of the benchmark's videos (as data.*).
    frames: int = 16
    size: int = 64
    fit: str = "pad"
    sample_fps: float | None = None
    batch_size: int = 8
    num_workers: int = 0
    cache_dir: str | None = (
        None  # the feature cache (data.cache_dir; filled by cache-features): cached questions skip decoding and the vision tower
    )
    # results.csv, results.md, accuracy_vs_retention.png, kept-token pictures, questions.jsonl (per question, as
    # they come) and sweep.json. None: a new runs/eval/<benchmark>-<time> for every sweep (never overwritten).
    out_dir: str | None = None
    # Continue an interrupted sweep (Ctrl-C, a kill, a preempted job) where it stopped: the sweep in eval.out_dir,
    # or with eval.out_dir unset the newest unfinished one under runs/eval/. Its settings must be the same.
    resume: bool = False
    # MLflow experiment of the sweeps (parent run + one child per method and ratio); None: <tracking.experiment>-eval,
    # so that a sweep's dozens of runs do not bury the training runs.
    experiment: str | None = None
    viz_samples: int = 3  # kept-token pictures logged per run (one per sample, every method, at viz_ratio)
    viz_ratio: float = 0.1

    def __post_init__(self) -> None:
        if not self.ratios:
            raise ConfigError(
                "eval.ratios=[] sweeps nothing: give at least one retention ratio, e.g. eval.ratios=[1.0,0.1]"
            )
        for r in self.ratios:
            _check_ratio("eval.ratios", r)
        _check_ratio("eval.viz_ratio", self.viz_ratio)
        _check_registered("eval.benchmark", self.benchmark, names.BENCHMARKS)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"eval.methods={self.methods}: unknown {unknown}; available: {list(METHODS)}")
        if "score" in self.methods and self.policy is None:
            raise ConfigError(
                "eval.policy=null: method 'score' needs a trained policy.pt, or drop 'score' from eval.methods"
            )
        if self.batch_size < 1 or self.frames < 2 or self.frames % 2:
            raise ConfigError(
                f"eval.batch_size={self.batch_size} must be >= 1 and eval.frames={self.frames} even and >= 2"
            )


@dataclass
class Config:
    """One experiment. `name` names the output folder runs/<name>/ and the MLflow run."""

    name: str = "stage1"
    seed: int = 0
    out_dir: str = "runs"
    # The curriculum phases this run trains, in order (stage1: static pseudo-videos; stage2: dynamic
    # videos). [stage1, stage2] goes through both in one run; a resumed run lands in the right phase.
    phases: list[str] = field(default_factory=lambda: ["stage1"])
    # A policy checkpoint (policy.pt) to start from, e.g. stage 2 from stage 1's result.
    init_policy: str | None = None
    # Continue a run: a Lightning .ckpt path, or "auto" for runs/<name>/checkpoints/last.ckpt if present.
    resume: str | None = None
    # A new run whose runs/<name>/ already holds a run refuses to start; overwrite=true moves the old folder
    # aside to runs/<name>.old-<time> first (nothing is deleted). Not with resume.
    overwrite: bool = False
    mllm: MLLMConfig = field(default_factory=MLLMConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    stage1: PhaseConfig = field(default_factory=PhaseConfig)
    stage2: PhaseConfig = field(default_factory=lambda: PhaseConfig(data=DataConfig(families=["flash", "distracted"])))
    val: ValConfig = field(default_factory=ValConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # Used by `python -m score_lit eval` only. Optional so that training configs never need its files.
    eval: EvalConfig | None = None

    def __post_init__(self) -> None:
        bad = [p for p in self.phases if p not in PHASES]
        if bad or not self.phases or len(set(self.phases)) != len(self.phases):
            raise ConfigError(
                f"phases={self.phases}: list each of {list(PHASES)} at most once, in order, e.g. phases=[stage1,stage2]"
            )
        if self.overwrite and self.resume is not None:
            raise ConfigError(
                f"overwrite=true and resume={self.resume} contradict: resume continues the run, overwrite moves it aside; pass one"
            )

    def phase(self, name: str) -> PhaseConfig:
        return getattr(self, name)

    @property
    def max_steps(self) -> int:
        """The run's length: the sum of its phases' steps."""
        return sum(self.phase(p).steps for p in self.phases)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def tracking_uri(self) -> str:
        return self.tracking.tracking_uri or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        if self.tracking.artifact_location:
            return self.tracking.artifact_location
        uri = self.tracking_uri
        if uri.startswith("sqlite:///"):
            return str(Path(uri[len("sqlite:///") :]).parent / "mlartifacts")
        return None  # a tracking server decides


def check_files(cfg: Config) -> None:
    """Every file the run reads, checked in one place at the start of train / eval / viz / submit (not when a
    config loads: `show-config conf/stage2.yaml` works on a fresh clone). One line naming the key and the
    command that makes the file."""
    need: list[tuple[str, str | None, str]] = [
        (
            "init_policy",
            cfg.init_policy,
            "give the policy.pt of a finished run (runs/<name>/policy.pt, e.g. make train-stage1 "
            "writes runs/stage1/policy.pt) or init_policy=null",
        ),
    ]
    if cfg.resume not in (None, "auto"):  # a file, or DeepSpeed's folder
        need.append(("resume", cfg.resume, "pass a .ckpt from runs/<name>/checkpoints/ or resume=auto"))
    for p in cfg.phases:
        d = cfg.phase(p).data
        for key in ("path", "val_path", "root"):
            need.append(
                (f"{p}.data.{key}", getattr(d, key), f"give an existing {'folder' if key == 'root' else 'file'}")
            )
    if cfg.eval is not None and "score" in cfg.eval.methods:
        need.append(
            (
                "eval.policy",
                cfg.eval.policy,
                "method 'score' needs a trained policy.pt (make train-stage1 && "
                "make train-stage2 writes runs/stage2/policy.pt), or drop 'score' "
                "from eval.methods",
            )
        )
    for key, value, hint in need:
        if value is not None and not Path(value).exists():
            raise ConfigError(f"{key}={value!r} does not exist: {hint}")
