"""Real images that installed packages ship, loaded offline once per process.

Scenes: public-domain / CC0 photographs from scikit-image's `skimage.data`. Objects: scikit-learn's
1,797 real 8x8 handwritten digits (`load_digits`). Nothing is downloaded.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SCENE_NAMES = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "brick",
    "grass",
    "gravel",
    "text",
    "clock",
    "moon",
    "page",
    "immunohistochemistry",
    "colorwheel",
    "coins",
    "retina",
)

SCENE_SIDE = 160  # scenes are resized once to this square; videos crop windows from them


@lru_cache(maxsize=1)
def scenes() -> np.ndarray:
    """[S, SCENE_SIDE, SCENE_SIDE, 3] uint8 RGB."""
    import skimage.data
    from skimage.transform import resize

    out = []
    for name in SCENE_NAMES:
        im = getattr(skimage.data, name)()
        if im.ndim == 2:
            im = np.stack([im] * 3, axis=-1)
        im = im[..., :3]
        im = resize(im, (SCENE_SIDE, SCENE_SIDE), anti_aliasing=True, preserve_range=True)
        out.append(np.clip(im, 0, 255).astype(np.uint8))
    return np.stack(out)


@lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray]:
    """(images [1797, 8, 8] float in [0, 1], labels [1797] int)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def digit_indices(split: str) -> np.ndarray:
    """Disjoint digit instances per split: index % 10 < 8 train, == 8 val, == 9 test."""
    _, labels = digits()
    idx = np.arange(len(labels))
    sel = {"train": idx % 10 < 8, "val": idx % 10 == 8, "test": idx % 10 == 9}
    if split not in sel:
        raise ValueError(f"unknown split {split!r}; use train, val or test")
    return idx[sel[split]]
