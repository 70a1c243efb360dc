"""Loading a config: dataclass defaults <- YAML files (with their `defaults:`) <- `key=value` overrides.

    cfg = load_config(["conf/stage1.yaml"], ["rl.group_size=4", "stage1.steps=50"])            # a run (Config)
    cfg = load_config(["conf/bench_cpu.yaml"], ["repeats=3"], schema=BenchConfig)              # any dataclass schema

OmegaConf merges the layers onto the schema dataclass as a structured config, so an unknown key or a wrong type
fails at start; the error names the key and the closest valid one (`ConfigError`). The dataclass's
`__post_init__` then runs its cross-field checks. Every command that takes a config (train, eval, viz, submit,
cache-features, bench, toy-mllm, show-config) reads `CONFIG.yaml ... key=value ...` through `load_config`.

Composition (the defaults list of lightning-hydra-template, without Hydra): a YAML may name the files it builds on,

    defaults: [recipe/paper]      # conf/recipe/paper.yaml

each entry a path without .yaml, looked up relative to the YAML's own folder first, then to the project's conf/.
The layers merge in order: a file's defaults (each with its own defaults first), earlier entries under later
ones, then the file itself, then the next file on the command line; `key=value` overrides come last. Lists are
replaced, not appended to.

Schemas: a YAML for another schema than a run's says so with a top-level `schema:` key (`schema: bench`,
`schema: toy`; `run`, the default, is score_lit.config.Config). The key is read here and never reaches the
dataclass; `schema_of(files)` tells which schema files declare (show-config uses it), and `load_config` refuses
a file that declares another schema than the one asked for. A file without the key is read as whatever its
command asks for.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import asdict, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from score_lit.config.schema import PROJECT_ROOT, Config
from score_lit.errors import ConfigError

CONF_DIR = PROJECT_ROOT / "conf"  # where `defaults:` entries are looked up after the YAML's own folder
DEFAULT_SCHEMA = "run"  # the schema of a file without a `schema:` key (show-config), Config's


def schema_name(schema: type) -> str:
    """The name a YAML's `schema:` key gives `schema` (its class attribute SCHEMA; Config: run)."""
    return getattr(schema, "SCHEMA", DEFAULT_SCHEMA)


def _all_keys(schema: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        keys.append(key)
        default = f.default_factory() if f.default_factory is not field().default_factory else f.default  # type: ignore[misc]
        if is_dataclass(default):
            keys += _all_keys(default, key + ".")
    return keys


# Keys that moved when the curriculum got phases: the error says where they went.
MOVED = {
    "trainer.max_steps": "stage1.steps / stage2.steps (a run's length is the sum of its phases)",
    "phase": "phases (e.g. phases=[stage1,stage2])",
    "data": "stage1.data / stage2.data (each phase has its own data)",
}


def _closest(key: str, schema: type = None) -> str:
    schema = schema or Config
    for old, new in MOVED.items() if schema is Config else ():
        if key == old or key.startswith(old + "."):
            return f"; it moved to {new}"
    keys = _all_keys(schema)
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not match:  # compare the leaf names only, e.g. "grup_size" -> "rl.group_size"
        leaf = key.rsplit(".", 1)[-1]
        leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
        match = [leaves[m] for m in difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.5)]
    return f"; did you mean '{match[0]}'?" if match else f"; valid top-level keys: {[f.name for f in fields(schema)]}"


def _explain(err: Exception, source: str, schema: type = None) -> ConfigError:
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    key = getattr(err, "full_key", None) or ""
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        return ConfigError(f"unknown config key '{key}' in {source}{_closest(key, schema)}")
    if isinstance(err, ValidationError) and "is not a ListConfig" in str(err):
        value = source.split("=", 1)[1].rstrip("'") if source.startswith("override ") and "=" in source else "..."
        return ConfigError(f"config key '{key}' is a list: write {key}=[{value}] (several: {key}=[1.0,0.1])")
    if isinstance(err, ValidationError):
        msg = str(err).splitlines()[0]
        return ConfigError(f"wrong type for config key '{key}' in {source}: {msg}")
    return ConfigError(f"cannot apply {source}: {str(err).splitlines()[0]}")


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Command-line arguments -> (YAML config files, key=value overrides); anything else is one ConfigError line."""
    files, overrides = [], []
    for a in args:
        if "=" in a:
            overrides.append(a)
        elif a.endswith((".yaml", ".yml")):
            files.append(a)
        else:
            raise ConfigError(f"argument {a!r} is neither a .yaml config file nor a key=value override")
    return files, overrides


def _read_yaml(path: Path, shown: str):
    """One YAML file as a DictConfig (None when empty), or a ConfigError with the line and column of the problem."""
    from omegaconf import DictConfig, OmegaConf

    try:
        layer = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError, UnicodeDecodeError, ...
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {shown!r} is not readable YAML{where}: {what}") from None
    if layer is not None and not isinstance(layer, DictConfig):
        raise ConfigError(f"config file {shown!r} holds a {type(layer).__name__}, not a mapping of config keys")
    return layer


def _find_default(entry: Any, parent: Path, shown: str) -> Path:
    """The file a `defaults:` entry of `parent` names: <parent's folder>/<entry>.yaml, else <conf>/<entry>.yaml."""
    if not isinstance(entry, str) or not entry:
        raise ConfigError(
            f"config file {shown!r}: defaults entries are paths without .yaml, e.g. defaults: [recipe/paper]; got {entry!r}"
        )
    name = entry if entry.endswith((".yaml", ".yml")) else entry + ".yaml"
    tried = [parent.parent / name, CONF_DIR / name]
    for p in tried:
        if p.is_file():
            return p
    raise ConfigError(
        f"config file {shown!r}: defaults entry {entry!r} is not a file (looked for {', '.join(map(str, tried))})"
    )


def compose(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> list[tuple[str, Any, str | None]]:
    """The layers one YAML file stands for, in merge order: [(shown name, DictConfig without the defaults and
    schema keys, declared schema or None), ...]: its defaults' layers (recursively, in list order), then its own."""
    from omegaconf import ListConfig, OmegaConf

    p = Path(path)
    shown = str(path)
    if not p.is_file():
        raise ConfigError(f"config file {shown!r} does not exist: pass a YAML file such as conf/stage1.yaml")
    if p.resolve() in _chain:
        cycle = " -> ".join(str(c) for c in (*_chain, p.resolve()))
        raise ConfigError(f"config file {shown!r}: its defaults include itself ({cycle})")
    layer = _read_yaml(p, shown)
    if layer is None:
        return []
    declared = layer.pop("schema", None)
    if declared is not None and not isinstance(declared, str):
        raise ConfigError(f"config file {shown!r}: schema: {declared!r} must be a name, e.g. schema: bench")
    entries = layer.pop("defaults", [])
    if isinstance(entries, str):
        entries = [entries]
    elif isinstance(entries, ListConfig):
        entries = OmegaConf.to_container(entries)
    elif entries != []:
        raise ConfigError(f"config file {shown!r}: defaults must be a list of files, e.g. defaults: [recipe/paper]")
    layers = []
    for entry in entries:
        layers += compose(_find_default(entry, p, shown), (*_chain, p.resolve()))
    layers.append((shown, layer, declared))
    return layers


def schema_of(files: list[str | os.PathLike]) -> str:
    """The schema `files` declare (their own or their defaults' `schema:` key); run where none does."""
    declared = {d for f in files for _, _, d in compose(f) if d is not None}
    if len(declared) > 1:
        raise ConfigError(
            f"config files {[str(f) for f in files]} declare different schemas {sorted(declared)}: pass files of one"
        )
    return declared.pop() if declared else DEFAULT_SCHEMA


def load_config(files: list[str | os.PathLike] = (), overrides: list[str] = (), schema: type = None) -> Any:
    """Merge the YAML files (each composed with its defaults) then `key=value` overrides onto the dataclass defaults
    of `schema` (default: Config); validate; return the dataclass instance."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    schema = schema or Config
    cfg = OmegaConf.structured(schema)
    for f in files:
        for shown, layer, declared in compose(f):
            if declared is not None and declared != schema_name(schema):
                raise ConfigError(
                    f"config file {shown!r} is a {declared} config (schema: {declared}), not a {schema_name(schema)} "
                    f"config: pass it to the command that takes it (`python -m score_lit show-config {f}` shows it)"
                )
            try:
                cfg = OmegaConf.merge(cfg, layer)
            except OmegaConfBaseException as e:
                raise _explain(e, repr(shown), schema) from None
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not key=value, e.g. rl.group_size=4")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([ov]))
        except OmegaConfBaseException as e:
            raise _explain(e, f"override {ov!r}", schema) from None
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise _explain(e, "the merged config", schema) from None
    assert isinstance(obj, schema)
    return obj


def to_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: the resolved config as MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
