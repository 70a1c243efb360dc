"""Frozen video-MLLM adapters, registered lazily by family name.

    from score_lit.mllm import build_mllm
    mllm = build_mllm(cfg.mllm)          # imports transformers only now

`import score_lit.mllm` imports no model code (and not transformers): the registry maps a family name
to a "module:attribute" string that is imported on first use. A new family is one adapter file plus
one `register` line (the pattern of lmms-eval's model registry).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from score_lit.config import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from score_lit.config import MLLMConfig
    from score_lit.mllm.base import VideoMLLM

REGISTRY: dict[str, str] = {
    "qwen2_5_vl": "score_lit.mllm.qwen_vl:Qwen25VLAdapter",
    "qwen2_vl": "score_lit.mllm.qwen_vl:Qwen2VLAdapter",
    "llava_onevision": "score_lit.mllm.llava_onevision:LlavaOnevisionAdapter",
}


def register(name: str, target: str) -> None:
    """Register an adapter class as "package.module:ClassName" under `name` (overrides an existing entry)."""
    if ":" not in target:
        raise ValueError(f"register({name!r}, {target!r}): target must be 'package.module:ClassName'")
    REGISTRY[name] = target


def check_path(path: str) -> Path:
    """A local HF checkpoint directory with a config.json, or a ValueError that says what to fix."""
    p = Path(path).expanduser()
    hint = (
        "set mllm.path to a local Hugging Face checkpoint directory holding config.json and the weights "
        "(e.g. a downloaded Qwen2.5-VL-7B-Instruct; `make toy-mllm` builds artifacts/toy-mllm), "
        "or set mllm.path=null for the tiny random model"
    )
    if not p.exists():
        raise ConfigError(f"mllm.path={path!r} does not exist: {hint}")
    if not p.is_dir():
        raise ConfigError(f"mllm.path={path!r} is a file, not a directory: {hint}")
    if not (p / "config.json").is_file():
        raise ConfigError(f"mllm.path={path!r} has no config.json, so it is not a Hugging Face checkpoint: {hint}")
    return p


def build_mllm(cfg: MLLMConfig) -> VideoMLLM:
    """The adapter for cfg.family, wrapping cfg.path's checkpoint (or the tiny random model if path is None)."""
    if cfg.family not in REGISTRY:
        raise ConfigError(f"unknown mllm.family={cfg.family!r}; valid families: {sorted(REGISTRY)}")
    if cfg.path is not None:
        check_path(cfg.path)
    module, attr = REGISTRY[cfg.family].split(":")
    return getattr(importlib.import_module(module), attr)(cfg)


__all__ = ["REGISTRY", "register", "build_mllm", "check_path"]
