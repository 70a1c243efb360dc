"""Data sources, registered by name. `import score_lit.data` loads no images (they load on first use).

FAMILIES holds every synthetic family by name: the first toy's (score_lit.toy.synthetic: stitched, flash,
distracted) and the evidence benchmark's (score_lit.toy.evidence: colour, order, move)."""

from score_lit.config import names
from score_lit.toy import evidence, synthetic

FAMILIES = {**synthetic.FAMILIES, **evidence.FAMILIES}


def register_family(name: str, generator) -> None:
    """Add a synthetic family: generator(seed, split, index, frames=, size=) -> Sample."""
    FAMILIES[name] = generator
    names.add(names.FAMILIES, name)  # the torch-free list the config checks


def build_family(name: str):
    """The generator of synthetic family `name` (sample = gen(seed, split, index, frames=, size=))."""
    if name not in FAMILIES:
        raise ValueError(f"unknown synthetic family data.families={name!r}; registered: {sorted(FAMILIES)}")
    return FAMILIES[name]


__all__ = ["FAMILIES", "build_family", "register_family"]
