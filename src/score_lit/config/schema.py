"""The configuration schema of train / eval / viz / submit / cache-features: the run-level Config (one
experiment: its name, phases, resume / overwrite, and one section per part) and check_files. The sections are
typed dataclasses whose defaults are the documented knobs (each with the reason for its default) and whose
`__post_init__` holds the cross-field checks, each saying how to fix what it rejects: the model and training
sections in score_lit.config.training, data and eval in score_lit.config.data_eval. Loading (YAML, composition,
`key=value`) is score_lit.config.loader.

Every name a config may hold is checked against the torch-free lists of score_lit.config.names, so this package
imports nothing of score_lit but errors (no registry, no torch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from score_lit.config.data_eval import DataConfig, EvalConfig
from score_lit.config.training import (
    PHASES,
    MLLMConfig,
    OptimConfig,
    PhaseConfig,
    PolicyConfig,
    RLConfig,
    TrackingConfig,
    TrainerConfig,
    ValConfig,
)
from score_lit.errors import ConfigError

# The repository root (src/score_lit/config/schema.py -> 3 folders up): the default MLflow store lives here.
PROJECT_ROOT = Path(__file__).resolve().parents[3]


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
        return (
            self.tracking.tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
        )

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
