"""The policy checkpoint: policy weights plus what is needed to rebuild and check them, nothing else.

    runs/<name>/policy.pt = {"format": "score_lit.policy/v1", "policy_config": {...}, "in_dim": 2D,
                             "mllm": {"family", "hidden_size", "path"}, "state_dict": {...}, "meta": {...}}

    runs/<name>/policy/   = the same as a shareable folder, the layout of a Hugging Face model repository:
                            config.json (format, policy config, state width, the MLLM identity, meta, the
                            weights' sha256) + model.safetensors (loading it never runs pickled code) + README.md
                            (the model card, score_lit.training.card; loading never reads it)

Either loads with `load_policy(path)` alone: no Lightning, no optimizer, no frozen MLLM. Writes are
atomic (a temporary file in the same folder, then os.replace), so a kill mid-write leaves the
previous file intact; in a folder, config.json is written last and names the weights' sha256, so a
folder whose two files come from different exports is refused. The weights' sha256 is that of their safetensors
bytes (weights_sha256), the same for a policy.pt and its folder: an eval sweep records it (sweep.json), and
`python -m score_lit card` checks it before it puts the sweep in a folder's card.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from score_lit.config import ConfigError, PolicyConfig
from score_lit.durable import atomic_torch_save, atomic_write_bytes
from score_lit.rl.policy import build_policy
from score_lit.training.card import model_card

FORMAT = "score_lit.policy/v1"


def save_policy(
    path: str | os.PathLike, policy: nn.Module, cfg: PolicyConfig, mllm_identity: dict, meta: dict | None = None
) -> Path:
    state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
    return atomic_torch_save(
        {
            "format": FORMAT,
            "policy_config": asdict(cfg),
            "in_dim": policy.in_dim,
            "mllm": dict(mllm_identity),
            "state_dict": state,
            "meta": meta or {},
        },
        path,
    )


def save_policy_dir(
    folder: str | os.PathLike, policy: nn.Module, cfg: PolicyConfig, mllm_identity: dict, meta: dict | None = None
) -> Path:
    """The policy as a shareable folder: model.safetensors, README.md (its card, from the config.json about to be
    written: score_lit.training.card), then config.json (module docstring)."""
    import hashlib
    import json

    from safetensors.torch import save as safetensors_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    blob = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()})
    config = {
        "format": FORMAT,
        "policy_config": asdict(cfg),
        "in_dim": policy.in_dim,
        "mllm": dict(mllm_identity),
        "meta": meta or {},
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    config = json.loads(json.dumps(config, default=str))  # as loading will read it back (tuples -> lists, ...)
    for name, data in (
        ("model.safetensors", blob),
        ("README.md", model_card(config).encode()),  # a new export: no sweep has evaluated these weights yet
        ("config.json", (json.dumps(config, indent=2) + "\n").encode()),
    ):
        atomic_write_bytes(folder / name, data)
    return folder


def weights_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a policy's weights as safetensors bytes (what a folder's config.json names), from a policy.pt
    or a policy folder: the same for both of one export."""
    import hashlib

    from safetensors.torch import save as safetensors_bytes

    policy, _ = load_policy(path)
    return hashlib.sha256(safetensors_bytes({k: v.contiguous() for k, v in policy.state_dict().items()})).hexdigest()


def read_policy_dir(p: Path) -> dict:
    """A policy folder as the checkpoint dict of a policy.pt (format, policy_config, in_dim, mllm, meta, state_dict)."""
    import hashlib
    import json

    from safetensors.torch import load as safetensors_load

    files = [p / "config.json", p / "model.safetensors"]
    if not all(f.is_file() for f in files):
        raise ConfigError(
            f"policy folder {str(p)!r} needs config.json and model.safetensors: pass a folder written by "
            "training (runs/<name>/policy/) or a policy.pt"
        )
    try:
        config = json.loads(files[0].read_text())
        blob = files[1].read_bytes()
        state = safetensors_load(blob)
    except Exception as e:
        raise ConfigError(
            f"policy folder {str(p)!r} is not readable ({type(e).__name__}): re-export it from its run"
        ) from None
    if isinstance(config, dict) and config.get("weights_sha256") not in (None, hashlib.sha256(blob).hexdigest()):
        raise ConfigError(
            f"policy folder {str(p)!r}: model.safetensors is not the one its config.json was written with "
            "(an interrupted or mixed copy): re-export it from its run"
        )
    return {**config, "state_dict": state} if isinstance(config, dict) else {}


def load_policy(path: str | os.PathLike, expect_mllm: dict | None = None) -> tuple[nn.Module, dict]:
    """A policy.pt or a policy folder -> (policy in eval mode, the checkpoint dict without weights). Clear errors
    for bad files."""
    p = Path(path)
    if p.is_dir():
        ckpt = read_policy_dir(p)
    elif not p.is_file():
        raise ConfigError(
            f"policy checkpoint {str(path)!r} does not exist: pass the policy.pt of a finished run (runs/<name>/policy.pt) "
            "or its policy/ folder"
        )
    else:
        try:
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ConfigError(
                f"policy checkpoint {str(path)!r} is not readable ({type(e).__name__}): re-export it from its run"
            ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ConfigError(
            f"{str(path)!r} is not a score_lit policy checkpoint (expected format {FORMAT}); "
            "a Lightning .ckpt resumes training with resume=PATH, a policy.pt initialises or evaluates"
        )
    # Another family is refused even at an equal width (e.g. two tiny models of width 64): its tokens mean other things.
    if expect_mllm is not None and any(ckpt["mllm"].get(k) != expect_mllm.get(k) for k in ("family", "hidden_size")):
        raise ConfigError(
            f"policy {str(path)!r} was trained for {ckpt['mllm'].get('family')} with width {ckpt['mllm'].get('hidden_size')}, "
            f"but the configured MLLM is {expect_mllm.get('family')} with width {expect_mllm.get('hidden_size')}: "
            "use a policy trained for this model"
        )
    policy = build_policy(ckpt["in_dim"], PolicyConfig(**ckpt["policy_config"]))
    policy.load_state_dict(ckpt["state_dict"])
    policy.eval()
    return policy, {k: v for k, v in ckpt.items() if k != "state_dict"}
