"""What a training run keeps out of its output: warnings and log lines of Lightning and MLflow that are not the user's
business. `fit` enters `quiet_run` for the run's duration; importing score_lit changes no process-wide warning or
logging state. The test suite applies QUIET_WARNINGS to the bare Trainers some tests build (tests/conftest.py), so the
list is written once. Standard library only: cheap to import.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

# Warnings of Lightning that are not the user's business. Intentional here: the frozen MLLM stays in eval mode, and
# manual optimization checkpoints post-step. Noise: the hint to prepend srun (a SLURM install on a workstation is not
# a SLURM job), that resuming writes into a checkpoint folder holding the run's own earlier checkpoints, and a
# deprecation inside Lightning (Lightning vs torch 2.10).
QUIET_WARNINGS = (
    r".*module\(s\) in eval mode at the start of training",
    r".*ModelCheckpoint with manual optimization",
    r"The `srun` command is available on your system",
    r"Checkpoint directory .* exists and is not empty",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


class _DropLines(logging.Filter):
    """Drops log records whose message starts with one of `starts` (advertisements, not information)."""

    def __init__(self, *starts: str):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.starts)


_QUIET_LOGS = [
    *[
        (name, _DropLines("💡 Tip: For seamless cloud logging"))
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
    ],
    ("lightning.pytorch.loggers.mlflow", _DropLines("Experiment with name")),
]


@contextmanager
def quiet_run():
    """While a run lasts: QUIET_WARNINGS ignored, Lightning's and MLflow's advertisement lines dropped, MLflow's
    "Creating initial MLflow database tables" below the log level; the caller's own settings are back when the run
    ends (warnings.catch_warnings)."""
    store = logging.getLogger("mlflow.store.db.utils")
    level = store.level
    with warnings.catch_warnings():
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for name, f in _QUIET_LOGS:
            logging.getLogger(name).addFilter(f)
        store.setLevel(logging.WARNING)
        try:
            yield
        finally:
            store.setLevel(level)
            for name, f in _QUIET_LOGS:
                logging.getLogger(name).removeFilter(f)
