"""How the Trainer spreads a run over processes: cpu / ddp / deepspeed_zero2 / deepspeed_zero3 (conf/trainer/).

build_strategy(cfg) returns what lightning.Trainer(strategy=...) takes. (Being written: issue 7.)
"""

from __future__ import annotations

from typing import Any


def build_strategy(cfg) -> Any:
    """cfg: the whole Config; returns a strategy name or a lightning Strategy instance."""
    return cfg.trainer.strategy
