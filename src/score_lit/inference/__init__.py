"""Inference with a trained policy on a loaded Hugging Face model: the public API (`score_lit.load_policy`,
`score_lit.compress`: api.py), the pruning hooks it and lmms-eval's generate_until run on (hooks.py), and the
batched generate inputs they share (batch.py)."""
