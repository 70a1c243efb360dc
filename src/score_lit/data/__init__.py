"""Data sources, registered by name. `import score_lit.data` loads no images (they load on first use)."""

from .synthetic import SOURCES, build_source

__all__ = ["SOURCES", "build_source"]
