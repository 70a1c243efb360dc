"""Retention ratios: the share r of visual tokens a compressor keeps, its top-k budget and its metric label.

Torch-free, so that the config's checks, the compressors, the sweep and the benchmark share one rounding rule.
"""

from __future__ import annotations

import math

from score_lit.errors import ConfigError


def check_ratio(name: str, r: float) -> None:
    """A ConfigError naming `name` unless 0 < r <= 1."""
    if not (0.0 < float(r) <= 1.0):
        raise ConfigError(
            f"{name}={r} is outside (0, 1]: a retention ratio is the share of visual tokens kept, e.g. 0.1"
        )


def retention_label(r: float) -> str:
    """0.1 -> 'r0.10': the suffix of val/accuracy_r0.10 (two decimals, so 1.0 -> r1.00)."""
    return f"r{r:.2f}"


def keep_count(ratio: float, total: int) -> int:
    """k = ceil(r * total), at least 1: the top-k budget of a retention ratio."""
    check_ratio("retention_ratio", ratio)
    return max(1, min(total, math.ceil(ratio * total - 1e-9)))
