"""The data and evaluation sections of a run's config: where training videos come from (DataConfig, used by
each curriculum phase) and the retention sweep of `python -m score_lit eval` (EvalConfig). Checks in each
dataclass's `__post_init__`; the run-level Config that holds them is score_lit.config.schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from score_lit.config import names
from score_lit.config.names import check_registered
from score_lit.config.retention import check_ratio as _check_ratio
from score_lit.errors import ConfigError

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
    # Where video_qa frames are resized: decoder (decord's reader scales each sampled frame while decoding it; faster)
    # or processor (full-size decode, then fit_frames' antialiased bicubic: the path before decode_resize existed).
    decode_resize: str = "decoder"
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
        check_decode_resize(self.decode_resize, "data.decode_resize")
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


DECODE_RESIZES = ("decoder", "processor")  # data.decode_resize / eval.decode_resize (score_lit.data.video_qa)


def check_decode_resize(value: str, key: str = "decode_resize") -> str:
    """`value` if it is one of DECODE_RESIZES, else ConfigError naming `key` (one line)."""
    if value not in DECODE_RESIZES:
        raise ConfigError(
            f"{key}={value!r}: use decoder (frames scaled inside decord, faster) or processor (full-size decode, "
            "then fit_frames' bicubic resize)"
        )
    return value


METHODS = names.METHODS  # the compressors eval can sweep (score_lit.compressors), torch-free; registering adds to it
_BUILTIN_METHODS = tuple(names.DEFAULT_METHODS)  # eval.methods' default: the built-in ones but the pre-vision variants


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
    decode_resize: str = "decoder"  # as data.decode_resize: decoder | processor
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
        check_registered("eval.benchmark", self.benchmark, names.BENCHMARKS)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"eval.methods={self.methods}: unknown {unknown}; available: {list(METHODS)}")
        if "score" in self.methods and self.policy is None:
            raise ConfigError(
                "eval.policy=null: method 'score' needs a trained policy.pt, or drop 'score' from eval.methods"
            )
        check_decode_resize(self.decode_resize, "eval.decode_resize")
        if self.batch_size < 1 or self.frames < 2 or self.frames % 2:
            raise ConfigError(
                f"eval.batch_size={self.batch_size} must be >= 1 and eval.frames={self.frames} even and >= 2"
            )
