"""Frozen video-MLLM adapters, registered lazily by family name.

    from score_lit.mllm import build_mllm
    mllm = build_mllm(cfg.mllm)          # imports transformers only now

`import score_lit.mllm` imports no model code (and not transformers): the registry maps a family name
to a "module:attribute" string that is imported on first use, and to the mllm.position_ids modes the
family implements (checked when a config loads). A new family is one adapter file (a subclass of
score_lit.mllm.adapter.VideoMLLM that fills in its hooks) plus one registry line (the pattern of
lmms-eval's model registry). The registry name is the checkpoint config's `model_type`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, NamedTuple

from score_lit.errors import ConfigError


class Family(NamedTuple):
    target: str  # "package.module:ClassName" of the adapter
    position_ids: tuple[str, ...] = ("original",)  # mllm.position_ids it implements ("compacted" needs 1-D RoPE)


REGISTRY: dict[str, Family] = {
    "qwen2_5_vl": Family("score_lit.mllm.qwen_vl:Qwen25VLAdapter"),
    "qwen2_vl": Family("score_lit.mllm.qwen_vl:Qwen2VLAdapter"),
    "llava_onevision": Family("score_lit.mllm.llava_onevision:LlavaOnevisionAdapter", ("original", "compacted")),
    "qwen3_vl": Family("score_lit.mllm.qwen3_vl:Qwen3VLAdapter"),
    "qwen3_5": Family("score_lit.mllm.qwen3_5:Qwen3_5Adapter"),
}


def register(name: str, target: str, position_ids: tuple[str, ...] = ("original",)) -> None:
    """Add a family: `target` is "package.module:ClassName" of its VideoMLLM subclass (imported on first use)."""
    if target.count(":") != 1:
        raise ValueError(f"register({name!r}, {target!r}): target must be 'package.module:ClassName'")
    REGISTRY[name] = Family(target, tuple(position_ids))


def adapter_class(family: str) -> type:
    """The adapter class registered for `family` (imports its module, and transformers, now)."""
    if family not in REGISTRY:
        raise ConfigError(f"unknown mllm.family={family!r}; valid families: {sorted(REGISTRY)}")
    module, attr = REGISTRY[family].target.split(":")
    return getattr(importlib.import_module(module), attr)


def check_path(path: str) -> Path:
    """A local HF checkpoint directory with a config.json, or a ValueError that says what to fix."""
    p = Path(path).expanduser()
    hint = (
        "set mllm.path to a local Hugging Face checkpoint directory holding config.json and the weights "
        "(e.g. a downloaded Qwen2.5-VL-7B-Instruct; `make first-toy-mllm` builds artifacts/toy-mllm), "
        "or set mllm.path=null for the tiny random model"
    )
    if not p.exists():
        raise ConfigError(f"mllm.path={path!r} does not exist: {hint}")
    if not p.is_dir():
        raise ConfigError(f"mllm.path={path!r} is a file, not a directory: {hint}")
    if not (p / "config.json").is_file():
        raise ConfigError(f"mllm.path={path!r} has no config.json, so it is not a Hugging Face checkpoint: {hint}")
    return p


def checkpoint_identity(cfg: Any) -> dict[str, Any]:
    """What `build_mllm(cfg).identity()` will say, read from the checkpoint's config.json alone (no weights): lets
    the trainer size the policy and check an init policy before the frozen model is built (ZeRO-3 builds it
    inside DeepSpeed's zero.Init, score_lit.training.module.ScoreModule.configure_model)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(check_path(cfg.path)))
    text = getattr(config, "text_config", config)
    return {"family": cfg.family, "hidden_size": int(text.hidden_size), "path": cfg.path}


def build_mllm(cfg: Any) -> Any:
    """The adapter (a score_lit.mllm.adapter.VideoMLLM) for cfg.family (an MLLMConfig), wrapping cfg.path's checkpoint
    or the tiny random model if path is None."""
    cls = adapter_class(cfg.family)
    if cfg.path is not None:
        check_path(cfg.path)
    return cls(cfg)


__all__ = ["REGISTRY", "Family", "register", "adapter_class", "build_mllm", "check_path", "checkpoint_identity"]
