"""The names a config may hold, in lists that import no torch: the config checks every name when it loads,
so a typo costs a second, not a traceback after the run folder exists (score_lit.config).

Each list mirrors a registry that holds the implementations (and imports torch). Registering adds the name
here too (`register_estimator`, `register_sampler`, `register_policy`, `data.register_family`, `compressors.register`), and tests/test_config.py holds
every list equal to its registry. Model families: MLLM_FAMILIES mirrors score_lit.mllm.REGISTRY (a family added
with `score_lit.mllm.register` must be added to it too, with the mllm.position_ids modes it implements).
"""

from __future__ import annotations

from score_lit.errors import check_choice

# score_lit.mllm.REGISTRY: mllm.family -> the mllm.position_ids modes it implements ("compacted" needs 1-D RoPE)
MLLM_FAMILIES: dict[str, tuple[str, ...]] = {
    "qwen2_5_vl": ("original",),
    "qwen2_vl": ("original",),
    "llava_onevision": ("original", "compacted"),
    "qwen3_vl": ("original",),
    "qwen3_5": ("original",),
}
ESTIMATORS: list[str] = ["split", "grpo", "rloo"]  # score_lit.rl.advantage.ESTIMATORS
SAMPLERS: list[str] = ["bernoulli", "budget"]  # score_lit.rl.samplers.SAMPLERS
POLICIES: list[str] = ["mlp", "query_mlp", "temporal_mlp"]  # score_lit.rl.policy.POLICIES
ACTIVATIONS: list[str] = ["gelu", "relu", "silu", "tanh"]  # score_lit.rl.policy.ACTIVATIONS
# score_lit.data.FAMILIES: the first toy's (synthetic) and the evidence benchmark's (evidence)
FAMILIES: list[str] = ["stitched", "flash", "distracted", "colour", "order", "move"]
# score_lit.compressors.REGISTRY: eval.methods; DEFAULT_METHODS are eval.methods' default (the pre-vision variants,
# which run the vision tower once per ratio, are swept only when named)
DEFAULT_METHODS: list[str] = ["score", "uniform", "pool", "random", "surprise", "fastv", "visionzip", "dycoke"]
METHODS: list[str] = DEFAULT_METHODS + [
    "score_prevision",
    "score_prevision_embed",
    "score_prevision_next",
    "score_prevision_min25",
    "score_prevision_2x",
    "score_prevision_5x",
]
# score_lit.data.benchmarks.BENCHMARKS: eval.benchmark
BENCHMARKS: list[str] = ["toy", "evidence", "videomme", "mvbench", "mlvu", "longvideobench", "egoschema", "nextqa"]


def add(names: list[str], name: str) -> None:
    """Record a newly registered name (idempotent)."""
    if name not in names:
        names.append(name)


def registrar(registry: dict, listed: list[str]):
    """The `register_<kind>(name)` decorator of a registry: it adds the decorated object to `registry` and its name
    to `listed`, the registry's torch-free list here."""

    def register(name: str):
        def deco(obj):
            registry[name] = obj
            add(listed, name)
            return obj

        return deco

    return register


def check_registered(key: str, value: str, registered: list[str]) -> None:
    """check_choice against a registry's torch-free name list: ConfigError naming the key and the sorted names."""
    check_choice(key, value, sorted(registered), "is not registered")
