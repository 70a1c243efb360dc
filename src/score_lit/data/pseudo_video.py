"""Stage 1 of the curriculum on real data: static pseudo-videos built from image QA (docs/METHOD.md "Curriculum").

A pseudo-video for record i shows the question's image and `distractors` other images of the same
annotation file, each held still for a run of identical frames, with hard cuts between them. "A static
run is redundant, a cut is news": the same lesson as the synthetic `stitched` family, on real pictures.

Reading (`read_image_qa`) accepts two row formats, detected per row of a JSONL file or JSON list:
plain image QA {"image", "question", "answer", "options"? (list, or dict letter -> text), "id"?}, options and
answer parsed as the video-QA reader parses them (common.parse_options says what is accepted), and
LLaVA conversations {"id", "image", "conversations"} (each human/gpt pair is one record; options are
taken from 'A. x' lines of the question when the answer resolves to one of them, else open-ended).
Bad rows become `Problem`s and are left out; `check_image_qa` also decodes every image (data-check).

Choices where the paper says nothing:
* runs are even (Qwen merges 2 frames per temporal unit, so every cut falls on a unit border), in
  [min_run, max_run], summing exactly to `frames`; every image gets at least one run;
* when `frames` cannot hold 1 + distractors runs of min_run, fewer distractors are used (as many as
  fit); a file with fewer other images than `distractors` gives as many as it has;
* when max_run is too small to fill `frames` with one run per image, extra runs are appended, each
  showing an image drawn from the same set other than the one just before (so every cut is a real one);
  the question's image may then appear in several runs: evidence["frames"] lists each [f0, f1);
* a distractor that fails to load is replaced by the next one drawn (recorded in meta["bad_images"]);
  the question's own image failing raises `SampleError` (the caller reports and skips the sample);
* images are EXIF-transposed, converted to RGB and fitted with common.fit_frames (pad by default).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from score_lit.data.common import (
    FITS,
    Problem,
    Sample,
    SampleError,
    fit_frames,
    llava_qas,
    multiple_choice_qa,
    read_qa_file,
    row_id,
)

CACHE_VERSION = "pseudo_video/1"  # bump when the frames a (seed, index) gives change
_PLAIN_KEYS = ("id", "image", "question", "answer", "options")
_LLAVA_KEYS = ("id", "image", "conversations")


@dataclass
class ImageQARecord:
    id: str
    image: str  # absolute path
    question: str
    answer: str  # one of `options` when options is non-empty (common.resolve_answer)
    options: list[str]  # [] = open-ended
    line: int  # 1-based line (JSONL) or item (JSON list) of the annotation file
    meta: dict = field(default_factory=dict)  # the row's other fields + {"source": annotation path}


# ------------------------------------------------------------------------------------------------
# Reading an annotation file


def _image_path(obj: dict, root: str) -> str:
    image = obj.get("image")
    if isinstance(image, list) and len(image) == 1:
        image = image[0]
    if image is None or image == "" or image == []:
        text_only = "conversations" in obj
        raise ValueError(
            "has no image (a text-only row cannot make a pseudo-video)"
            if text_only
            else "missing required field 'image'"
        )
    if not isinstance(image, str):
        raise ValueError(f"'image' must be one path; got {image!r}")
    return os.path.abspath(os.path.join(root, image))


def _parse_row(
    obj: dict, line: int, path: str, root: str
) -> tuple[str, str, list[tuple[str, str, list[str]]], None, dict]:
    """One row -> (row id, image path, [(question, answer, options)], no extra, meta). Raises ValueError with the reason."""
    llava = "conversations" in obj
    image = _image_path(obj, root)
    if llava:
        qas = llava_qas(obj["conversations"])
    else:
        qas = [multiple_choice_qa(obj)]
    meta = {k: v for k, v in obj.items() if k not in (_LLAVA_KEYS if llava else _PLAIN_KEYS)}
    return row_id(obj, path, line), image, qas, None, {**meta, "source": path}


def _read(path: str, root: str | None, check_files: bool) -> tuple[list[ImageQARecord], list[Problem], int]:
    turns, problems, n_rows = read_qa_file(path, root, check_files, _parse_row, "image")
    return (
        [ImageQARecord(rid, image, q, a, opts, line, m) for line, rid, image, _, q, a, opts, m in turns],
        problems,
        n_rows,
    )


def read_image_qa(
    path: str, root: str | None = None, check_files: bool = True
) -> tuple[list[ImageQARecord], list[Problem]]:
    """Records of an image-QA annotation file and a Problem per row left out. Relative image paths resolve
    against `root` (default: the annotation file's folder); `check_files` drops rows whose image is missing."""
    records, problems, _ = _read(path, root, check_files)
    return records, problems


# ------------------------------------------------------------------------------------------------
# Loading one image


def load_image(path: str, size: int, fit: str = "pad") -> np.ndarray:
    """[size, size, 3] uint8 RGB. Any failure of the file (missing, empty, corrupt, truncated, not an image)
    raises SampleError(reason, path); nothing else escapes. Truncated files are errors, never padded."""
    if fit not in FITS:
        raise ValueError(f"fit={fit!r}: use one of {FITS}")
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # a global someone else set would silently grey-fill truncated files
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; score_lit needs truncated images to fail")
    try:
        if os.path.getsize(path) == 0:
            raise SampleError("empty image file (0 bytes)", path)
        with Image.open(path) as im:
            im.load()  # PIL decodes lazily: force it here so a truncated file fails inside this guard
            rgb = np.array(ImageOps.exif_transpose(im).convert("RGB"))
    except SampleError:
        raise
    except FileNotFoundError:
        raise SampleError("image file not found", path) from None
    except Image.UnidentifiedImageError:
        raise SampleError("cannot identify the image format (not an image, or a corrupt header)", path) from None
    except Exception as e:  # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        raise SampleError(f"corrupt or truncated image ({type(e).__name__}: {e})", path) from None
    if rgb.ndim != 3 or min(rgb.shape[:2]) == 0:
        raise SampleError(f"image has no pixels (shape {rgb.shape})", path)
    return fit_frames(rgb[None], size, fit)[0]


def _stat(path: str) -> tuple[str, int | None, int | None]:
    try:
        st = os.stat(path)
    except OSError:
        return path, None, None
    return path, st.st_size, st.st_mtime_ns


# ------------------------------------------------------------------------------------------------
# Pseudo-videos


def _draw(rng: np.random.Generator, pool: list[str], exclude: int):
    """Distinct pool entries in random order, never pool[exclude]; lazy, so a huge pool costs nothing."""
    n, seen = len(pool) - (exclude >= 0), set()
    while len(seen) < n:
        j = int(rng.integers(len(pool)))
        if j != exclude and j not in seen:
            seen.add(j)
            yield pool[j]


def plan_runs(
    rng: np.random.Generator, images: int, frames: int, min_run: int, max_run: int
) -> tuple[list[int], list[int]]:
    """(run lengths, image index per run): even runs in [min_run, max_run] summing to `frames`; images 0..n-1
    each get one run in random order, then extra runs (only when max_run forces them) never repeat the image before."""
    total, lo, hi = frames // 2, min_run // 2, max_run // 2
    m = max(images, -(-total // hi))
    units = np.full(m, lo)
    for _ in range(total - m * lo):  # spread the spare temporal units over runs that still have room
        room = np.flatnonzero(units < hi)
        units[room[rng.integers(len(room))]] += 1
    order = [int(j) for j in rng.permutation(images)]
    while len(order) < m:
        choices = [j for j in range(images) if j != order[-1]] or [0]
        order.append(choices[int(rng.integers(len(choices)))])
    return [int(u) * 2 for u in units], order


class PseudoVideoDataset(torch.utils.data.Dataset):
    """Pseudo-video QA over image-QA records; sample i is a pure function of (seed, i) and the image files."""

    def __init__(
        self,
        records: list[ImageQARecord],
        frames: int,
        size: int,
        fit: str = "pad",
        distractors: int = 5,
        min_run: int = 2,
        max_run: int = 8,
        seed: int = 0,
    ):
        if min_run < 2 or min_run % 2 or max_run % 2 or max_run < min_run:
            raise ValueError(
                f"min_run={min_run}, max_run={max_run}: use even run lengths with 2 <= min_run <= max_run "
                "(Qwen merges 2 frames per temporal unit, so cuts must fall on unit borders)"
            )
        if frames < min_run or frames % 2:
            raise ValueError(f"frames={frames}: use an even number of frames >= min_run={min_run}")
        total, lo, hi = frames // 2, min_run // 2, max_run // 2
        if -(-total // hi) * lo > total:
            raise ValueError(f"frames={frames} cannot be cut into even runs in [{min_run}, {max_run}]; lower min_run")
        if fit not in FITS:
            raise ValueError(f"fit={fit!r}: use one of {FITS}")
        self.records, self.frames, self.size, self.fit = list(records), frames, size, fit
        self.distractors, self.min_run, self.max_run, self.seed = max(0, distractors), min_run, max_run, seed
        self.bad_images: dict[str, str] = {}  # path -> reason, for distractors found broken by this process
        pools: dict[str, dict[str, int]] = {}  # annotation file -> {image path: index}, first appearance order
        for r in self.records:
            pool = pools.setdefault(r.meta.get("source", ""), {})
            pool.setdefault(r.image, len(pool))
        self._pools = {src: list(p) for src, p in pools.items()}
        self._index = [pools[r.meta.get("source", "")][r.image] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def _pick(
        self, i: int, load: bool
    ) -> tuple[list[tuple[str, str]], list[str], list[np.ndarray], np.random.Generator]:
        """(bad (path, reason) drawn on the way, distractor paths, their frames if `load`, rng for the runs)."""
        rec = self.records[i]
        pool = self._pools[rec.meta.get("source", "")]
        pick_rng, run_rng = np.random.default_rng([self.seed, i]).spawn(2)
        want = min(self.distractors, self.frames // self.min_run - 1, len(pool) - 1)
        bad, used, stills = [], [], []
        for p in _draw(pick_rng, pool, self._index[i]):
            if len(used) == want:
                break
            reason = self.bad_images.get(p)
            if reason is None and load:
                try:
                    stills.append(load_image(p, self.size, self.fit))
                except SampleError as e:
                    reason = self.bad_images[p] = e.reason
            elif reason is None and _stat(p)[1] in (None, 0):
                reason = "image file missing or empty"
            if reason is None:
                used.append(p)
            else:
                bad.append((p, reason))
        return bad, used, stills, run_rng

    def __getitem__(self, i: int) -> Sample:
        rec = self.records[i]
        question = load_image(rec.image, self.size, self.fit)  # SampleError: the caller skips this sample
        bad, used, stills, run_rng = self._pick(i, load=True)
        runs, order = plan_runs(run_rng, 1 + len(used), self.frames, self.min_run, self.max_run)
        stills, paths = [question, *stills], [rec.image, *used]
        starts = np.cumsum([0, *runs]).tolist()
        evidence = [(starts[j], starts[j + 1]) for j, k in enumerate(order) if k == 0]
        video = np.concatenate([np.broadcast_to(stills[k], (r, *stills[k].shape)) for r, k in zip(runs, order)])
        return Sample(
            id=rec.id,
            frames=np.ascontiguousarray(video),
            question=rec.question,
            answer=rec.answer,
            options=list(rec.options),
            evidence={"frames": evidence, "image": rec.image},
            meta={
                **rec.meta,
                "image": rec.image,
                "line": rec.line,
                "images": [paths[k] for k in order],
                "bad_images": bad,
            },
        )

    def cache_inputs(self, i: int) -> dict:
        """What fixes sample i's frames, for a feature-cache key: no image is decoded. Exact once this dataset
        has met the broken distractors on the way (missing or empty files are seen by stat); before that, a
        distractor whose corruption only decoding shows is named in place of its replacement: a cache miss."""
        bad, used, _, _ = self._pick(i, load=False)
        images = [self.records[i].image, *[p for p, _ in bad], *used]
        return {
            "version": CACHE_VERSION,
            "seed": self.seed,
            "index": i,
            "id": self.records[i].id,
            "frames": self.frames,
            "size": self.size,
            "fit": self.fit,
            "distractors": self.distractors,
            "min_run": self.min_run,
            "max_run": self.max_run,
            "images": [_stat(p) for p in images],
        }


def check_image_qa(
    path: str,
    root: str | None = None,
    size: int = 64,
    fit: str = "pad",
    progress: Callable[[int], object] | None = None,
) -> tuple[int, list[Problem]]:
    """(rows in the file, every Problem): those of reading plus one per distinct image that fails to load
    (reported at the first record using it). `progress(n)` is told of rows as they are done.
    Backs `python -m score_lit data-check FILE`."""
    records, problems, n_rows = _read(path, root, check_files=True)
    users: dict[str, list[ImageQARecord]] = {}
    for r in records:
        users.setdefault(r.image, []).append(r)
    if progress is not None:
        progress(n_rows - len({r.line for r in records}))  # rows left out while reading
    for image, recs in users.items():
        if progress is not None:
            progress(len({r.line for r in recs}))
        try:
            load_image(image, size, fit)
        except SampleError as e:
            more = f" (used by {len(recs)} records)" if len(recs) > 1 else ""
            problems.append(Problem(path, recs[0].line, e.reason + more, sample_id=recs[0].id, path=image))
    problems.sort(key=lambda p: p.line if p.line is not None else 0)
    return n_rows, problems
