"""The project's user-facing errors and the "did you mean" check: a leaf module (imports nothing of score_lit),
so that the config, the data readers and the registries can all raise them without importing each other."""

from __future__ import annotations

import difflib


class ConfigError(ValueError):
    """A configuration problem, with a one-line message that says how to fix it."""


class DataError(ValueError):
    """A dataset that cannot be trained on (e.g. too large a share of bad samples); the message says what to do."""


def check_choice(key: str, value, choices, verdict: str = "is not valid") -> None:
    """One line with the closest valid value if `value` is not one of `choices` (a torch-free list)."""
    if value not in choices:
        near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {key}={near[0]}?)" if near else ""
        raise ConfigError(f"{key}={value!r} {verdict}{hint}; use one of {list(choices)}")
