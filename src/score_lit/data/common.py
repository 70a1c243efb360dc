"""What every dataset reader shares: the sample that travels, how a problem is reported, frame fitting.

Two kinds of bad input, handled at two moments (the aim: a clear report, nothing good lost):

* found while READING an annotation file (a malformed JSON line, a missing media file, an answer that
  is not among the options): the reader leaves the row out and returns a `Problem` for it;
* found while LOADING one sample (a truncated or corrupt mp4, a zero-length video, one shorter than
  the frames asked for, an unreadable image): the loader raises `SampleError`; the curriculum's
  dataset wrapper then reports it and serves the next good sample in its place (score_lit.data.datamodule).

Either way the sample is skipped, reported once with its file and reason, and counted in
`data/skipped`; training stops only when more than `data.max_bad_fraction` of a dataset is bad
(`DataError`). `python -m score_lit data-check FILE` lists every problem of a file ahead of a run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from score_lit.errors import DataError  # noqa: F401  (re-exported: the readers' error for unusable datasets)
from score_lit.types import VideoBatch


class SampleError(Exception):
    """One sample cannot be loaded. `reason` is a short human sentence; `path` the file at fault."""

    def __init__(self, reason: str, path: str | None = None):
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason, self.path = reason, path


@dataclass
class Problem:
    """One bad row or sample of a dataset file, as reported to the user (once)."""

    source: str  # the annotation file
    line: int | None  # 1-based line of a JSONL file, or 1-based item of a JSON list; None if unknown
    reason: str
    sample_id: str | None = None
    path: str | None = None  # the media file at fault, if any

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        what = f" [{self.sample_id}]" if self.sample_id else ""
        media = f" {self.path}:" if self.path else ""
        return f"{where}{what}{media} {self.reason}"


@dataclass
class Sample:
    """One (video, question, answer) as a DataModule yields it, before collation into a VideoBatch."""

    id: str  # stable id: the key of the baseline-CE cache and of the feature cache
    frames: np.ndarray | None  # [F, H, W, 3] uint8 RGB (None when `features` come from the feature cache)
    question: str
    answer: str
    options: list[str]  # candidate answers; [] for open-ended QA (no accuracy, CE only)
    evidence: dict = field(default_factory=dict)  # where the answer is visible (synthetic data only)
    seconds_per_frame: float | None = None  # time between sampled frames, if known (real videos)
    meta: dict = field(default_factory=dict)  # e.g. {"family": ..., "source": file, "line": n}
    features: dict | None = None  # cached projector output (score_lit.data.feature_cache), replaces frames
    cache_key: str | None = None  # feature-cache key of this sample (None = not cacheable)


# ------------------------------------------------------------------------------------------------
# Answers and options

_LETTER = re.compile(r"^\s*\(?([A-Za-z])[\.\):]?(\s|$)")


def option_letter(i: int) -> str:
    return chr(ord("A") + i)


def resolve_answer(answer: object, options: list[str]) -> str:
    """The answer as one of `options`: given as the option text, its letter ("B", "(B)", "B. text") or its
    0-based index. Raises ValueError with the reason when it is none of them."""
    if isinstance(answer, bool):
        raise ValueError(f"answer {answer!r} is not among the options {options}")
    if isinstance(answer, int):
        if 0 <= answer < len(options):
            return options[answer]
        raise ValueError(f"answer index {answer} is outside the {len(options)} options")
    text = str(answer).strip()
    if text in options:
        return text
    m = _LETTER.match(text)
    if m and len(options) <= 26:
        i = ord(m.group(1).upper()) - ord("A")
        rest = text[m.end() :].strip()
        if 0 <= i < len(options) and (not rest or rest == options[i].strip()):
            return options[i]
    stripped = {o.strip().lower(): o for o in options}
    if text.lower() in stripped:
        return stripped[text.lower()]
    raise ValueError(f"answer {text!r} is not among the options {options}")


def text_field(obj: dict, key: str) -> str:
    """The row's `key` as stripped text: a string or a number (an answer may be a 0-based index). Missing, empty, a
    bool, a list or a dict is a ValueError naming the field (str(True) would otherwise become a question or answer)."""
    if obj.get(key) is None:
        raise ValueError(f"missing required field '{key}'")
    if not isinstance(obj[key], (str, int, float)) or isinstance(obj[key], bool):
        raise ValueError(f"'{key}' must be a text; got {type(obj[key]).__name__}")
    text = str(obj[key]).strip()
    if not text:
        raise ValueError(f"empty field '{key}'")
    return text


def parse_options(obj: dict) -> tuple[list[str], object]:
    """(options, answer) of a multiple-choice row: the answer as given, or the option's text when it names a key of
    a dict of options; ([], answer) without an "options" field (open-ended QA). Both readers (image QA, video QA)
    parse their rows with this.

    What a user writing such a file would expect, where the readers used to differ:
    * a dict of options is keyed by letters: the keys must be A, B, C, ... (any case, in any order in the file),
      the options are taken in letter order, and an answer that names a key IS that option (so with
      {"A": "B", "B": "A"}, answer "A" is the text "B": a key wins over an option text equal to it). Other keys
      (numbers, words, a letter skipped) are refused: sorting them would order "10" before "2" silently;
    * an empty list is refused ("leave the field out for open-ended QA"): an empty list is more often a data
      preparation bug than a deliberate open-ended row, and open-ended rows train without accuracy;
    * every option must be a non-empty text: numbers are refused (quote them), because an integer answer is a
      0-based index and options [1, 2, 3] with answer 2 would silently mean "3";
    * the answer itself is checked by `resolve_answer` (text, letter, or 0-based index; a bool is refused)."""
    opts, answer = obj.get("options"), obj.get("answer")
    if opts is None:
        return [], answer
    if isinstance(opts, dict):
        keys = sorted(opts, key=lambda k: str(k).strip().upper())
        if [str(k).strip().upper() for k in keys] != [option_letter(i) for i in range(len(keys))]:
            raise ValueError(f"'options' as a dict needs the keys A, B, C, ...; got {list(opts)}")
        by_key = {str(k).strip().upper(): opts[k] for k in keys}
        if (
            isinstance(answer, str)
            and answer.strip().upper() in by_key
            and isinstance(by_key[answer.strip().upper()], str)
        ):
            answer = by_key[answer.strip().upper()].strip()
        opts = [opts[k] for k in keys]
    if not isinstance(opts, list):
        raise ValueError(f"'options' must be a list of texts or a dict letter -> text; got {type(opts).__name__}")
    if not opts:
        raise ValueError("'options' is empty (leave the field out for open-ended QA)")
    bad = [f"{i}: {type(o).__name__}" for i, o in enumerate(opts) if not isinstance(o, str) or not o.strip()]
    if bad:
        raise ValueError(f"'options' must all be non-empty texts; not so at {', '.join(bad)}")
    return [o.strip() for o in opts], answer


def multiple_choice_qa(obj: dict) -> tuple[str, str, list[str]]:
    """(question, answer, options) of a plain row {"question", "answer", "options"?}: the answer resolved to one of
    the options (`parse_options`, `resolve_answer`), or the answer's text when the row has no options."""
    question, answer_text = text_field(obj, "question"), text_field(obj, "answer")
    opts, answer = parse_options(obj)
    return question, resolve_answer(answer, opts) if opts else answer_text, opts


# ------------------------------------------------------------------------------------------------
# Frames of any size -> size x size

FITS = ("pad", "stretch", "crop")


def fit_frames(frames: np.ndarray | torch.Tensor, size: int, fit: str = "pad") -> np.ndarray:
    """[F, H, W, 3] uint8 -> [F, size, size, 3] uint8.

    pad: scale the longer side to `size` keeping the aspect ratio, centre on black (letterbox; nothing
    is cut, the bars are tokens a policy learns to drop). stretch: resize to the square. crop: scale the
    shorter side to `size` and centre-crop. Resampling: torch bicubic with antialias, rounded to uint8.
    """
    if fit not in FITS:
        raise ValueError(f"fit={fit!r}: use one of {FITS}")
    x = torch.as_tensor(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3] RGB; got {tuple(x.shape)}")
    f, h, w, _ = x.shape
    if (h, w) == (size, size):
        return x.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if fit == "stretch":
        th, tw = size, size
    else:
        scale = (size / max(h, w)) if fit == "pad" else (size / min(h, w))
        th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    y = x.permute(0, 3, 1, 2).float()
    y = F.interpolate(y, size=(th, tw), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 255).round_()
    y = y.to(torch.uint8).permute(0, 2, 3, 1)
    if fit == "stretch":
        return y.numpy()
    out = torch.zeros(f, size, size, 3, dtype=torch.uint8)
    if fit == "pad":
        oy, ox = (size - th) // 2, (size - tw) // 2
        out[:, oy : oy + th, ox : ox + tw] = y
    else:
        oy, ox = (th - size) // 2, (tw - size) // 2
        out[:] = y[:, oy : oy + size, ox : ox + size]
    return out.numpy()


# ------------------------------------------------------------------------------------------------
# Annotation files: JSONL or one JSON list; LLaVA-style conversations


def read_rows(path: str) -> tuple[list[tuple[int, dict]], list[Problem]]:
    """Rows of an annotation file as (1-based line or item, object), plus a Problem per unreadable row.

    A file whose first non-space character is '[' is one JSON list (LLaVA's .json files; an error there
    is one Problem for the whole file); anything else is JSONL, one object per line, blank lines ignored.
    """
    import json

    try:
        text = open(path, encoding="utf-8-sig").read()  # -sig: a byte-order mark is not part of the first row
    except (OSError, UnicodeDecodeError) as e:
        return [], [Problem(path, None, f"cannot read the annotation file: {e}")]
    if not text.strip():
        return [], [Problem(path, None, "the file is empty: an annotation file needs at least one row")]
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            return [], [Problem(path, e.lineno, f"malformed JSON list: {e.msg} (column {e.colno})")]
        rows, problems = [], []
        for i, obj in enumerate(items, start=1):
            if isinstance(obj, dict):
                rows.append((i, obj))
            else:
                problems.append(Problem(path, i, f"item is a {type(obj).__name__}, not a JSON object"))
        return rows, problems
    rows, problems = [], []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(path, i, f"malformed JSON line: {e.msg} (column {e.colno})"))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(path, i, f"line is a JSON {type(obj).__name__}, not an object"))
            continue
        rows.append((i, obj))
    return rows, problems


_MEDIA_TAG = re.compile(r"<(image|video)>\s*")


def conversation_turns(conversations: object) -> list[tuple[str, str]]:
    """LLaVA `conversations` -> [(question, answer)] for each human turn followed by a gpt turn.
    `<image>` / `<video>` placeholders are removed. Raises ValueError when the structure is wrong."""
    if not isinstance(conversations, list) or not conversations:
        raise ValueError("'conversations' must be a non-empty list of {from, value} turns")
    pairs, pending = [], None
    for turn in conversations:
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ValueError("every conversation turn needs 'from' and 'value'")
        who, text = str(turn["from"]).lower(), str(turn["value"])
        if who in ("human", "user"):
            pending = _MEDIA_TAG.sub("", text).strip()
        elif who in ("gpt", "assistant") and pending is not None:
            pairs.append((pending, text.strip()))
            pending = None
    if not pairs:
        raise ValueError("no human turn followed by a gpt turn in 'conversations'")
    return pairs


_OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[\.\):]\s*(.+?)\s*$")


def options_in_text(text: str) -> list[str] | None:
    """Options written into a question as lines 'A. x' / '(B) y' / 'C: z' with consecutive letters from A;
    their texts if there are at least two, else None."""
    found: list[str] = []
    for line in text.splitlines():
        m = _OPTION_LINE.match(line)
        if m and m.group(1) == option_letter(len(found)):
            found.append(m.group(2))
    return found if len(found) >= 2 else None


def llava_qas(conversations: object) -> list[tuple[str, str, list[str]]]:
    """LLaVA `conversations` -> [(question, answer, options)] per human/gpt pair. Options are the 'A. x' lines of
    the question when the answer resolves to one of them (the answer becomes that option's text); otherwise the
    pair is open-ended (options [], the gpt text as the answer)."""
    qas = []
    for q, a in conversation_turns(conversations):
        opts = options_in_text(q) or []
        try:
            a = resolve_answer(a, opts) if opts else a
        except ValueError:
            opts = []  # a free-text answer to a question that lists choices: open-ended
        qas.append((q, a, opts))
    return qas


def row_id(obj: dict, path: str, line: int) -> str:
    """The row's "id", or "<file stem>:<line>" when it has none."""
    import os

    return str(obj["id"]) if obj.get("id") is not None else f"{os.path.splitext(os.path.basename(path))[0]}:{line}"


def read_qa_file(
    path, root: str | None, check_files: bool, parse_row, media: str
) -> tuple[list[tuple], list[Problem], int]:
    """The reading loop shared by the image- and video-QA readers.

    parse_row(obj, line, path, root) -> (row id, absolute media path, [(question, answer, options)], extra, meta)
    or ValueError(reason). Rows that fail, repeat an earlier id, or (check_files) name a missing `media` file become
    Problems. Returns ([(line, record id, media path, extra, question, answer, options, meta)] one per QA pair:
    id "<row id>#<turn>" and meta["turn"] when a row has several, the problems sorted by line, the number of rows
    in the file (a file-level "malformed JSON list" problem is not a row)."""
    import os

    path = str(path)
    rows, problems = read_rows(path)
    n_rows = len(rows) + sum(p.line is not None and not p.reason.startswith("malformed JSON list") for p in problems)
    root = str(root) if root is not None else os.path.dirname(os.path.abspath(path))
    out, seen = [], {}
    for line, obj in rows:
        try:
            rid, file, qas, extra, meta = parse_row(obj, line, path, root)
        except ValueError as e:
            problems.append(
                Problem(path, line, str(e), sample_id=str(obj["id"]) if obj.get("id") is not None else None)
            )
            continue
        if rid in seen:
            problems.append(Problem(path, line, f"duplicate id (first at line {seen[rid]})", sample_id=rid))
            continue
        seen[rid] = line
        if check_files and not os.path.isfile(file):
            problems.append(Problem(path, line, f"{media} file not found", sample_id=rid, path=file))
            continue
        for t, (q, a, opts) in enumerate(qas, start=1):
            rec_id, m = (f"{rid}#{t}", {**meta, "turn": t}) if len(qas) > 1 else (rid, dict(meta))
            out.append((line, rec_id, file, extra, q, a, opts, m))
    problems.sort(key=lambda p: p.line if p.line is not None else 0)
    return out, problems, n_rows


def collate(samples: list[Sample], prompts: Callable[[VideoBatch], Any] | None = None) -> VideoBatch:
    """Samples -> VideoBatch; frames [B', F, 3, H, W] uint8 of the rows without cached features. prompts: the
    adapter's PromptBuilder (score_lit.mllm.adapter), which then tokenizes the batch here, in the DataLoader's workers
    (`functools.partial(collate, prompts=mllm.prompt_builder)`): batch.prompts is the PromptBatch."""
    todo = [s for s in samples if s.features is None]
    frames = None
    if todo:
        shapes = {s.frames.shape for s in todo}
        if len(shapes) != 1:
            raise ValueError(f"videos in one batch must share a shape (frames, H, W, 3); got {sorted(shapes)}")
        frames = torch.from_numpy(np.stack([s.frames for s in todo])).permute(0, 1, 4, 2, 3).contiguous()
    spf = [s.seconds_per_frame for s in samples]
    batch = VideoBatch(
        ids=[s.id for s in samples],
        frames=frames,
        questions=[s.question for s in samples],
        answers=[s.answer for s in samples],
        options=[s.options for s in samples],
        answer_index=torch.tensor([s.options.index(s.answer) if s.answer in s.options else -1 for s in samples]),
        seconds_per_frame=None if any(v is None for v in spf) else [float(v) for v in spf],
        features=[s.features for s in samples] if any(s.features is not None for s in samples) else None,
        skipped=[p for s in samples for p in s.meta.get("skipped", [])],
    )
    if prompts is not None:
        batch.prompts = prompts(batch)
    return batch
