"""score_lit: SCORE (surprise-augmented, RL-learned visual-token compression for video MLLMs) on PyTorch Lightning.

`import score_lit` imports no model code and does no I/O; model families and data sources load lazily.
"""

__version__ = "0.1.0"
