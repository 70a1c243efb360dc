"""Pictures of the evaluation: kept-token maps (the training curves are in score_lit.training.curves).

python -m score_lit viz VIDEO [CONFIG] [--method score] [--ratio 0.1] [--out DIR]   # PNG grid + GIF (visualize_video)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------------------------
# Kept-token pictures


def overlay_kept(frame: np.ndarray, keep_unit: np.ndarray, dim: float = 0.22, color=(255, 200, 0)) -> np.ndarray:
    """One frame [H, W, 3] uint8 with the tokens of its temporal unit (keep_unit [H', W'] bool) highlighted:
    dropped tokens' pixels dimmed, kept tokens outlined. Token (h, w) covers rows h*H/H' .. (h+1)*H/H'."""
    h, w = frame.shape[:2]
    gh, gw = keep_unit.shape
    ys = np.minimum(np.arange(h) * gh // h, gh - 1)
    xs = np.minimum(np.arange(w) * gw // w, gw - 1)
    kept_px = keep_unit[ys[:, None], xs[None, :]]  # [H, W]
    out = frame.astype(np.float32)
    out[~kept_px] *= dim
    edge = np.zeros_like(kept_px)
    edge[1:] |= kept_px[1:] != kept_px[:-1]
    edge[:-1] |= kept_px[1:] != kept_px[:-1]
    edge[:, 1:] |= kept_px[:, 1:] != kept_px[:, :-1]
    edge[:, :-1] |= kept_px[:, 1:] != kept_px[:, :-1]
    out[edge & kept_px] = color
    return out.clip(0, 255).astype(np.uint8)


def _unit_masks(keep, grid) -> np.ndarray:
    t, gh, gw = grid
    return np.asarray(keep, dtype=bool).reshape(t, gh, gw)


def kept_token_grid(frames: np.ndarray, rows: list, grid: tuple, path, title: str = "") -> Path:
    """PNG: one row per (label, keep [T*N]) and one column per temporal unit (its first frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = grid[0]
    per_unit = max(1, len(frames) // t)
    fig, axes = plt.subplots(len(rows), t, figsize=(1.25 * t + 1.4, 1.35 * len(rows) + 0.5), squeeze=False)
    for i, (label, keep) in enumerate(rows):
        units = _unit_masks(keep, grid)
        for u in range(t):
            ax = axes[i][u]
            ax.imshow(overlay_kept(frames[min(u * per_unit, len(frames) - 1)], units[u]))
            ax.set_xticks([])
            ax.set_yticks([])
            if u == 0:
                ax.set_ylabel(f"{label}\n{int(units.sum())} kept", fontsize=7, rotation=0, ha="right", va="center")
            if i == 0:
                ax.set_title(f"t={u}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def kept_token_gif(frames: np.ndarray, keep, grid: tuple, path, fps: float = 4.0, scale: int = 4) -> Path:
    """Animated GIF of every frame with its temporal unit's kept tokens highlighted (nearest-neighbour upscaled)."""
    from PIL import Image

    units = _unit_masks(keep, grid)
    per_unit = max(1, len(frames) // grid[0])
    imgs = []
    for f, frame in enumerate(frames):
        im = overlay_kept(frame, units[min(f // per_unit, grid[0] - 1)])
        imgs.append(Image.fromarray(im).resize((im.shape[1] * scale, im.shape[0] * scale), Image.NEAREST))
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
    return Path(path)


def visualize_video(cfg, video: str, methods: list[str], ratio: float, question: str, out: str | Path) -> list[Path]:
    """`python -m score_lit viz VIDEO`: the frames of one video with each method's kept tokens highlighted,
    as a PNG grid (one row per method) and one animated GIF per method. Returns the paths written."""
    from score_lit.compressors import build_compressor
    from score_lit.config import retention_label
    from score_lit.data.common import Sample, collate
    from score_lit.data.encode import encode
    from score_lit.data.video_qa import load_video
    from score_lit.mllm import build_mllm

    e = cfg.eval
    frames, spf = load_video(
        video, e.frames, e.size, e.fit, e.sample_fps, decode_resize=e.decode_resize
    )  # SampleError -> one clear line (cli)
    sample = Sample(Path(video).stem, frames, question, "?", [], seconds_per_frame=spf)
    batch = collate([sample])
    mllm = build_mllm(cfg.mllm)
    visual = encode(mllm, batch)
    prompts = mllm.tokenize(batch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, paths = [], []
    for m in methods:
        comp = build_compressor(
            m, mllm=mllm, policy_path=e.policy, selection=cfg.policy.selection, seed=cfg.seed, layer=e.fastv_layer
        )
        keep = comp.select(visual, ratio, prompts).keep[0].cpu()
        rows.append((f"{m} {retention_label(ratio)}", keep))
        paths.append(
            kept_token_gif(frames, keep, visual.grid, out / f"{Path(video).stem}_{m}_{retention_label(ratio)}.gif")
        )
    grid_png = out / f"{Path(video).stem}_{retention_label(ratio)}.png"
    paths.insert(
        0, kept_token_grid(frames, rows, visual.grid, grid_png, title=f"{Path(video).name}: kept tokens at {ratio:.0%}")
    )
    return paths
