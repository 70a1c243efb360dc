"""Data sources, registered by name. `import score_lit.data` loads no images and imports no generator (each loads
on first use).

FAMILIES holds every synthetic family by name, as "package.module:attr" of its generator (imported by
build_family on first use, like score_lit.compressors.REGISTRY): the first toy's (score_lit.toy.synthetic:
stitched, flash, distracted) and the evidence benchmark's (score_lit.toy.evidence: colour, order, move)."""

import importlib
from collections.abc import Callable

from score_lit.config import names

FAMILIES: dict[str, str | Callable] = {
    "stitched": "score_lit.toy.synthetic:stitched",
    "flash": "score_lit.toy.synthetic:flash",
    "distracted": "score_lit.toy.synthetic:distracted",
    "colour": "score_lit.toy.evidence:colour",
    "order": "score_lit.toy.evidence:order",
    "move": "score_lit.toy.evidence:move",
}


def register_family(name: str, generator: str | Callable) -> None:
    """Add a synthetic family: generator(seed, split, index, frames=, size=) -> Sample, or its "module:attr"."""
    FAMILIES[name] = generator
    names.add(names.FAMILIES, name)  # the torch-free list the config checks


def build_family(name: str) -> Callable:
    """The generator of synthetic family `name` (sample = gen(seed, split, index, frames=, size=))."""
    if name not in FAMILIES:
        raise ValueError(f"unknown synthetic family data.families={name!r}; registered: {sorted(FAMILIES)}")
    target = FAMILIES[name]
    if isinstance(target, str):
        module, attr = target.split(":")
        target = getattr(importlib.import_module(module), attr)
    return target


__all__ = ["FAMILIES", "build_family", "register_family"]
