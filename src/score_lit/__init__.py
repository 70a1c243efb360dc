"""score_lit: SCORE (surprise-augmented, RL-learned visual-token compression for video MLLMs) on PyTorch Lightning.

`import score_lit` imports no model code and does no I/O; model families and data sources load lazily.

    policy = score_lit.load_policy("runs/stage2/policy")
    with score_lit.compress(model, processor, policy, ratio=0.1) as sc:
        out = model.generate(**sc.prepare(videos, questions), max_new_tokens=16)
"""

__version__ = "0.1.0"

__all__ = ["compress", "load_policy", "Compression", "Policy"]


def __getattr__(name: str):
    """The inference API (score_lit.inference.api), imported on first use."""
    if name in __all__:
        from score_lit.inference import api

        return getattr(api, name)
    raise AttributeError(f"module 'score_lit' has no attribute {name!r}")
