"""Data sources, registered by name. `import score_lit.data` loads no images (they load on first use).

SOURCES holds every synthetic family by name: the first toy's (score_lit.data.synthetic: stitched, flash,
distracted) and the evidence benchmark's (score_lit.data.evidence: colour, order, move)."""

from . import evidence, synthetic

SOURCES = {**synthetic.SOURCES, **evidence.FAMILIES}


def build_source(name: str):
    if name not in SOURCES:
        raise ValueError(f"unknown data.source={name!r}; registered: {sorted(SOURCES)}")
    return SOURCES[name]


__all__ = ["SOURCES", "build_source"]
