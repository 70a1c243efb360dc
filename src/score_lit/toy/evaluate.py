"""The toy MLLM's evaluation (held-out accuracy with every visual token kept) and its learning-curve plot."""

from __future__ import annotations

from pathlib import Path

import torch

from score_lit.config import MLLMConfig
from score_lit.data.common import collate
from score_lit.toy.config import EVIDENCE_FAMILIES, ToyConfig
from score_lit.toy.model import make_samples


def plot_history(history: list[dict], path: Path, final: dict[str, float] | None = None) -> Path:
    """The learning curves of a toy-mllm run: training answer accuracy per family over the joint stage (one
    line per family, dashed = the first toy's families), the dense accuracy of both stages, and the held-out
    accuracy with all tokens as markers at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = lambda stage: max([h["step"] for h in history if h["stage"] == stage], default=0)  # noqa: E731
    n0 = last("grid")
    offset = {"grid": 0, "vision": n0, "joint": n0 + last("vision")}  # the stages one after the other on x
    joint = [h for h in history if h["stage"] == "joint"]
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.8))
    for key, label in (("digit_acc", "all families (grid stage: digit grids)"), ("digit_acc_ev", "evidence families")):
        pts = [(h["step"] + offset[h["stage"]], h[key]) for h in history if key in h]
        a0.plot([p[0] for p in pts], [p[1] for p in pts], label=label)
    for x in sorted({offset["vision"], offset["joint"]} - {0}):
        a0.axvline(x, color="k", lw=0.8, ls=":")
    a0.set(
        title="dense token accuracy (grid | vision stage | joint)"
        if n0
        else "dense token accuracy (vision stage | joint)",
        xlabel="step",
        ylim=(0, 1),
    )
    a0.legend(fontsize=8)
    fams = sorted({k[4:] for h in joint for k in h if k.startswith("acc/")})
    for f in fams:
        pts = [(h["step"], h[f"acc/{f}"]) for h in joint if f"acc/{f}" in h]
        line = a1.plot([p[0] for p in pts], [p[1] for p in pts], ls="-" if f in EVIDENCE_FAMILIES else "--", label=f)[0]
        if final and f in final and pts:
            a1.plot([pts[-1][0]], [final[f]], marker="o", color=line.get_color())
    a1.set(title="answer accuracy, training batches (o = held-out, all tokens)", xlabel="joint step", ylim=(0, 1))
    a1.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@torch.no_grad()
def evaluate(path: str | Path, cfg: ToyConfig) -> dict[str, float]:
    """{family: accuracy} of the checkpoint at `path` through the adapter, ALL visual tokens kept,
    argmax over the option logits, on the first cfg.eval_per_family samples of each family's "test" split."""
    from score_lit.mllm import build_mllm

    adapter = build_mllm(MLLMConfig(family=cfg.family, path=str(path)))
    acc = {}
    for name in cfg.family_names():
        correct = 0
        for start in range(0, cfg.eval_per_family, cfg.eval_batch_size):
            n = min(cfg.eval_batch_size, cfg.eval_per_family - start)
            batch = collate(make_samples(cfg, "test", start, n, families=[name]))
            visual = adapter.encode(batch)
            masks = torch.ones(n, 1, visual.num_tokens, dtype=torch.bool)
            scores = adapter.score(visual, adapter.tokenize(batch), masks)
            correct += int((scores.option_logits[:, 0].argmax(-1) == batch.answer_index).sum())
        acc[name] = correct / cfg.eval_per_family
    return acc
