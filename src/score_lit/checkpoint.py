"""The policy checkpoint: policy weights plus what is needed to rebuild and check them, nothing else.

    runs/<name>/policy.pt = {"format": "score_lit.policy/v1", "policy_config": {...}, "in_dim": 2D,
                             "mllm": {"family", "hidden_size", "path"}, "state_dict": {...}, "meta": {...}}

It loads with `load_policy(path)` alone: no Lightning, no optimizer, no frozen MLLM. Writes are
atomic (a temporary file in the same folder, then os.replace), so a kill mid-write leaves the
previous file intact.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ConfigError, PolicyConfig
from .policy import build_policy

FORMAT = "score_lit.policy/v1"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: str | os.PathLike, fsync: bool = True) -> Path:
    """torch.save to a temporary file in the same folder, (fsync,) then rename over `path`: a kill while writing
    leaves the previous file intact and no half-written file under the real name. The one atomic writer of
    policy.pt, Lightning checkpoints (resume.AtomicCheckpointIO) and feature-cache entries (fsync=False)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a checkpoint is shared like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_policy(path: str | os.PathLike, policy: nn.Module, cfg: PolicyConfig, mllm_identity: dict, meta: dict | None = None) -> Path:
    state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
    return atomic_torch_save(
        {"format": FORMAT, "policy_config": asdict(cfg), "in_dim": policy.in_dim, "mllm": dict(mllm_identity),
         "state_dict": state, "meta": meta or {}},
        path,
    )  # fmt: skip


def load_policy(path: str | os.PathLike, expect_mllm: dict | None = None) -> tuple[nn.Module, dict]:
    """-> (policy in eval mode, the checkpoint dict without weights). Clear errors for bad files."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"policy checkpoint {str(path)!r} does not exist: pass the policy.pt of a finished run (runs/<name>/policy.pt)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"policy checkpoint {str(path)!r} is not readable ({type(e).__name__}): re-export it from its run") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ConfigError(
            f"{str(path)!r} is not a score_lit policy checkpoint (expected format {FORMAT}); "
            "a Lightning .ckpt resumes training with resume=PATH, a policy.pt initialises or evaluates"
        )
    if expect_mllm is not None and ckpt["mllm"].get("hidden_size") != expect_mllm.get("hidden_size"):
        raise ConfigError(
            f"policy {str(path)!r} was trained for {ckpt['mllm'].get('family')} with width {ckpt['mllm'].get('hidden_size')}, "
            f"but the configured MLLM is {expect_mllm.get('family')} with width {expect_mllm.get('hidden_size')}: "
            "use a policy trained for this model"
        )
    policy = build_policy(ckpt["in_dim"], PolicyConfig(**ckpt["policy_config"]))
    policy.load_state_dict(ckpt["state_dict"])
    policy.eval()
    return policy, {k: v for k, v in ckpt.items() if k != "state_dict"}
