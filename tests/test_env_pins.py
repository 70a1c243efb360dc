"""environment.yml's pip section pins exactly what pyproject.toml pins (dependencies + dev extra)."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(reqs):
    out = {}
    for r in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", r.strip())
        assert m, f"not an exact pin: {r!r}"
        out[m.group(1).lower()] = m.group(2)
    return out


def test_environment_yml_mirrors_pyproject():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    want = _pins(proj["dependencies"] + proj["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    got = _pins([p for p in pip if not p.startswith("-e")])
    assert got == want
    assert want["torch"] == "2.13.0"  # newer torch pulls GBs of CUDA wheels on CPU machines
