"""The configuration: typed dataclasses are the defaults, YAML files (composed with `defaults:`) override them,
`key=value` last.

    from score_lit.config import load_config
    cfg = load_config(["conf/stage1.yaml"], ["rl.group_size=4", "stage1.steps=50"])

- score_lit.config.schema: the run-level Config and check_files; its sections, every knob with the reason for its
  default and their checks, in score_lit.config.training (mllm, policy, rl, phases, val, optim, trainer, tracking)
  and score_lit.config.data_eval (data, eval);
- score_lit.config.loader: YAML + composition + `key=value` overrides, the typo errors, schema detection;
- score_lit.config.names: the torch-free lists of registered names the checks read;
- score_lit.config.retention: retention ratios (`keep_count`, `retention_label`).

Everything is re-exported here; nothing in this package imports torch or a registry.
"""

from score_lit.config import names
from score_lit.config.data_eval import METHODS, SOURCES, DataConfig, EvalConfig
from score_lit.config.loader import (
    CONF_DIR,
    MOVED,
    compose,
    flatten,
    load_config,
    schema_name,
    schema_of,
    split_args,
    to_dict,
)
from score_lit.config.retention import check_ratio, keep_count, retention_label
from score_lit.config.schema import PROJECT_ROOT, Config, check_files
from score_lit.config.training import (
    PHASES,
    MLLMConfig,
    OptimConfig,
    PhaseConfig,
    PolicyConfig,
    RLConfig,
    TrackingConfig,
    TrainerConfig,
    ValConfig,
)
from score_lit.errors import ConfigError, DataError

__all__ = [
    "CONF_DIR",
    "METHODS",
    "MOVED",
    "PHASES",
    "PROJECT_ROOT",
    "SOURCES",
    "Config",
    "ConfigError",
    "DataConfig",
    "DataError",
    "EvalConfig",
    "MLLMConfig",
    "OptimConfig",
    "PhaseConfig",
    "PolicyConfig",
    "RLConfig",
    "TrackingConfig",
    "TrainerConfig",
    "ValConfig",
    "check_files",
    "check_ratio",
    "compose",
    "flatten",
    "keep_count",
    "load_config",
    "names",
    "retention_label",
    "schema_name",
    "schema_of",
    "split_args",
    "to_dict",
]
