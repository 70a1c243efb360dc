"""Video QA on disk (stages 2-3 of the curriculum on real data): annotation rows -> decoded, fitted frames.

Reading (`read_video_qa`) accepts two row formats, detected per row of a JSONL file or JSON list:
* LLaVA-Video-178K conversations {"id", "video", "conversations", "data_source"?}: each human/gpt pair is
  one record (id "<id>#<turn>", turn 1-based, when a row has several pairs). Options are taken from
  'A. x' lines of the question when the answer resolves to one of them (common.resolve_answer), else
  the pair is open-ended (options [], the gpt text as answer). The question keeps its option lines.
* multiple-choice rows {"video", "question", "answer", "options"? (list of texts, or dict letter -> text),
  "id"? (default "<file stem>:<line>"), "start"? / "end"? (seconds)}; the answer may be the option
  text, its letter or its 0-based index (common.parse_options: the image-QA reader's rules too). Without
  "options" the row is open-ended. The toy split that score_lit.toy.export writes is such a file.
Every other field goes to `meta` (family, data_source, evidence, fps, ...) with {"source": file}.
Bad rows become `Problem`s and are left out; `check_video_qa` also decodes every video (data-check).

Frame sampling (`frame_indices`, a pure function). Frame i is the one shown at i / avg_fps, so the clip
window [start, end) holds frames ceil(start * fps) .. ceil(end * fps) - 1, clipped to the video.
* uniform (sample_fps None): `frames` frames at the centres of `frames` equal segments of the window
  (TSN test-time sampling); a window shorter than `frames` is a SampleError, never a repeated frame;
* fps: one frame every avg_fps / sample_fps frames (every frame when sample_fps > avg_fps), the run of
  them centred in the window; when more than `frames` would fit, `frames` spread uniformly over the
  window instead (the rate drops, the whole clip stays covered). The count is rounded down to an even
  number because Qwen merges 2 frames per temporal unit.
seconds_per_frame is the spacing of the sampled frames (segment length / avg_fps).

Decoding: decord 0.6.0, one VideoReader per load (1 thread), one get_batch call with only the sampled indices
(decord decodes forward from the keyframe before each index and converts only the frames asked for). Resizing
(`decode_resize`, DECODE_RESIZES): `decoder` opens the reader at the scaled size, so FFmpeg's scaler (swscale, inside
decord) resizes each sampled frame while converting it to RGB, and only the fit's padding or cropping is left
(`fit_size` gives the size per fit: pad = the longer side to `size`, crop = the shorter side); `processor` decodes at
full size and resizes with `fit_frames` (torch bicubic, antialiased). The two differ by interpolation only (on the
bench's 1280x720 video at 336 px: mean absolute difference about 2 of 255 inside the picture, measurements/
decode_cpu.json); where the video already has the fitted size both give the same frames (nothing is scaled), and
where decord cannot give the scaled size (0.6.0 fails to copy out widths 8, 12, 16, 24, 48 and 72 px, seen on every
source tried) the video is decoded at full size and resized by fit_frames, as with processor.
What decord does on each
fault, measured (no crash and no hang was seen; but one fault gives no error at all):
* missing, 0-byte or random-bytes file, an mp4 cut before its index (moov at the end, the usual layout):
  RuntimeError "Error reading <path>..."; no video stream (audio only, an mp4 written with zero frames):
  DECORDError "cannot find video stream"; an index but no frame data: DECORDError "Cannot create buffer source";
* an mp4 with its index first ("faststart", as streamed) cut short: cut at a frame boundary, NO ERROR: the
  reader counts the frames on disk (40 of 120) and uniform sampling silently covers a third of the video;
  cut inside a frame: a DECORDError at open ("av_read_frame failed"), or no error and the partial frame
  raises only if it is decoded;
* bit flips inside the stream: concealed garbage frames, no error (not detectable without a reference).
Guard: before decord, PyAV demuxes the file (packets only, no decoding: about 10 ms per MB, a second read)
and refuses it when a packet is incomplete (FFmpeg flags short reads as corrupt) or fewer packets are there
than the header's frame count. A truncated file is thus always an error, even when the requested frames lie
in its intact part (our choice: those frames would be real, but the timeline is not the annotated video's).
Every failure is raised as SampleError(reason, path); the caller skips the sample and reports it once.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from score_lit.config.data_eval import DECODE_RESIZES, check_decode_resize  # noqa: F401 -- re-exported
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
    text_field,
)

_LLAVA_KEYS = ("id", "video", "conversations", "start", "end")
_MC_KEYS = ("id", "video", "question", "options", "answer", "start", "end")


@dataclass
class VideoQARecord:
    id: str
    video: str  # absolute path of the video file
    question: str
    answer: str  # one of `options` when options is non-empty (common.resolve_answer)
    options: list[str]  # [] = open-ended
    start: float | None  # seconds, optional clip window [start, end)
    end: float | None
    line: int  # 1-based line (JSONL) or item (JSON list) of the annotation file
    meta: dict = field(default_factory=dict)  # the row's other fields + {"source": annotation path}


# ------------------------------------------------------------------------------------------------
# Reading an annotation file


def _seconds(obj: dict, key: str) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"'{key}' must be a number of seconds >= 0; got {v!r}")
    return float(v)


def _parse_row(
    obj: dict, line: int, path: str, root: str
) -> tuple[str, str, list[tuple[str, str, list[str]]], tuple, dict]:
    """One row -> (row id, video path, [(question, answer, options)], (start, end), meta). Raises ValueError."""
    llava = "conversations" in obj
    video = text_field(obj, "video")
    if llava:
        qas = llava_qas(obj["conversations"])
    else:
        qas = [multiple_choice_qa(obj)]
    start, end = _seconds(obj, "start"), _seconds(obj, "end")
    if start is not None and end is not None and start >= end:
        raise ValueError(f"start {start:g} s >= end {end:g} s: the clip window is empty")
    meta = {k: v for k, v in obj.items() if k not in (_LLAVA_KEYS if llava else _MC_KEYS)}
    return (
        row_id(obj, path, line),
        os.path.abspath(os.path.join(root, video)),
        qas,
        (start, end),
        {**meta, "source": path},
    )


def _read(path: str, root: str | None, check_files: bool) -> tuple[list[VideoQARecord], list[Problem], int]:
    turns, problems, n_rows = read_qa_file(path, root, check_files, _parse_row, "video")
    records = [
        VideoQARecord(rid, video, q, a, opts, start, end, line, m)
        for line, rid, video, (start, end), q, a, opts, m in turns
    ]
    return records, problems, n_rows


def read_video_qa(
    path: str, root: str | None = None, check_files: bool = True
) -> tuple[list[VideoQARecord], list[Problem]]:
    """Records of a video-QA annotation file and a Problem per row left out. Relative video paths resolve
    against `root` (default: the annotation file's folder); `check_files` drops rows whose video is missing."""
    records, problems, _ = _read(path, root, check_files)
    return records, problems


# ------------------------------------------------------------------------------------------------
# Which frames, then decoding them


def frame_indices(
    n_frames: int,
    avg_fps: float,
    frames: int,
    sample_fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
) -> tuple[np.ndarray, float]:
    """(frame indices, seconds between consecutive sampled frames) of a video of n_frames at avg_fps; see the
    module docstring. SampleError when the video or its window holds too few frames."""
    if frames < 1:
        raise ValueError(f"frames={frames} must be >= 1")
    if sample_fps is not None and not sample_fps > 0:
        raise ValueError(f"sample_fps={sample_fps} must be > 0 (or None for uniform sampling)")
    if not (math.isfinite(avg_fps) and avg_fps > 0):
        raise SampleError(f"reports no usable frame rate ({avg_fps})")
    if start is not None and end is not None and start >= end:
        raise SampleError(f"start {start:g} s >= end {end:g} s: the clip window is empty")
    lo = 0 if start is None else min(n_frames, max(0, math.ceil(start * avg_fps - 1e-6)))
    hi = n_frames if end is None else min(n_frames, max(0, math.ceil(end * avg_fps - 1e-6)))
    count = max(0, hi - lo)
    if sample_fps is None:
        if count < frames:
            raise SampleError(
                f"has {count} frames in its window, fewer than data.frames={frames}; lower data.frames or drop the clip"
            )
        m, seg = frames, count / frames
    else:
        step = max(1.0, avg_fps / sample_fps)  # frames between samples; every frame when sample_fps > avg_fps
        fit = math.floor(count / step + 1e-9)
        m = min(fit, frames) - min(fit, frames) % 2
        if m < 2:
            raise SampleError(
                f"has {count} frames in its window, too few for 2 frames at sample_fps={sample_fps:g} "
                f"(one every {step:g} frames); drop the clip or raise data.sample_fps"
            )
        seg = step if fit <= frames else count / m  # capped: spread over the whole window
    offset = (count - m * seg) / 2
    idx = lo + np.floor(offset + seg * (np.arange(m) + 0.5) + 1e-9).astype(np.int64)
    return np.minimum(idx, hi - 1), seg / avg_fps


_DECORD_PREFIX = re.compile(r"^\[[\d:]+\]\s*\S+:\d+:\s*")


def _short(e: Exception) -> str:
    """The first line of an exception message, without decord's '[time] file.cc:line:' prefix."""
    first = next((s for s in str(e).splitlines() if s.strip()), type(e).__name__)
    return _DECORD_PREFIX.sub("", first).strip()[:200]


def _probe(path: str) -> tuple[int, int]:
    """Refuse files that are missing, empty, unreadable, without video, or truncated (the guard of the
    module docstring: decord alone may silently see a truncated file as a shorter video). -> (width, height) of the
    video stream as coded (what decord decodes)."""
    import av

    if not os.path.exists(path):
        raise SampleError("video file not found", path)
    if not os.path.isfile(path):
        raise SampleError("is not a regular file", path)
    if os.path.getsize(path) == 0:
        raise SampleError("is empty (0 bytes)", path)
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise SampleError("has no video stream (no frames)", path)
            stream = c.streams.video[0]
            wh = (int(stream.codec_context.width or 0), int(stream.codec_context.height or 0))
            declared, n = int(stream.frames or 0), 0
            for packet in c.demux(stream):
                if packet.size == 0:
                    continue
                n += 1
                if packet.is_corrupt:
                    of = f" of {declared}" if declared else ""
                    raise SampleError(
                        f"is truncated or damaged: video packet {n}{of} is incomplete (fetch it again)", path
                    )
    except SampleError:
        raise
    except Exception as e:  # noqa: BLE001 -- av.error.* (InvalidDataError, EOFError, ...), OSError
        why = getattr(e, "strerror", None) or _short(e)
        raise SampleError(f"is not a readable video (FFmpeg: {why}); corrupt, or cut before its index", path) from None
    if n < declared:
        raise SampleError(f"is truncated: {n} of its {declared} frames are in the file (fetch it again)", path)
    if n == 0:
        raise SampleError("has no video frames", path)
    return wh


DEFAULT_DECODE_RESIZE = "decoder"  # measured faster, accuracy the same within noise (README, measurements/)


def fit_size(width: int, height: int, size: int, fit: str) -> tuple[int, int]:
    """(width, height) a [height, width] frame is scaled to before `fit` pads (pad) or crops (crop) it to size x size,
    by fit_frames' rule: pad scales the longer side to `size`, crop the shorter one, stretch scales to the square."""
    if fit not in FITS:
        raise ValueError(f"fit={fit!r}: use one of {FITS}")
    if fit == "stretch":
        return size, size
    scale = (size / max(height, width)) if fit == "pad" else (size / min(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _pad_or_crop(video: np.ndarray, size: int, fit: str) -> np.ndarray:
    """[F, h, w, 3] at fit_size's size -> [F, size, size, 3]: centred on black (pad) or centre-cropped (crop), with
    fit_frames' offsets."""
    f, h, w, _ = video.shape
    if (h, w) == (size, size):
        return video
    if fit == "crop":
        oy, ox = (h - size) // 2, (w - size) // 2
        return np.ascontiguousarray(video[:, oy : oy + size, ox : ox + size])
    out = np.zeros((f, size, size, 3), dtype=np.uint8)
    oy, ox = (size - h) // 2, (size - w) // 2
    out[:, oy : oy + h, ox : ox + w] = video
    return out


def load_video(
    path: str,
    frames: int,
    size: int,
    fit: str = "pad",
    sample_fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    decode_resize: str = DEFAULT_DECODE_RESIZE,
) -> tuple[np.ndarray, float]:
    """([F, size, size, 3] uint8 RGB, seconds_per_frame). Every failure of the file raises SampleError(reason, path).
    decode_resize: decoder (scaled inside decord, then padded / cropped) or processor (full size, then fit_frames);
    see the module docstring."""
    if fit not in FITS:
        raise ValueError(f"fit={fit!r}: use one of {FITS}")
    check_decode_resize(decode_resize)
    import decord

    path = str(path)
    width, height = _probe(path)
    if decode_resize == "decoder" and width > 0 and height > 0:
        tw, th = fit_size(width, height, size, fit)
        if (tw, th) != (width, height):  # at its fitted size already: decoded as it is, as the processor path does
            try:
                video, spf = _decode(decord, path, frames, sample_fps, start, end, {"width": tw, "height": th})
            except SampleError:
                video = None  # decord 0.6.0 cannot copy out some widths (8, 12, 16, 24, 48, 72 px): full size below
            if video is not None and video.shape[1:3] == (th, tw):
                return _pad_or_crop(video, size, fit), spf
    video, spf = _decode(decord, path, frames, sample_fps, start, end, {})
    return fit_frames(video, size, fit), spf


def _decode(decord, path: str, frames: int, sample_fps, start, end, scale: dict) -> tuple[np.ndarray, float]:
    """The sampled frames [F, H, W, 3] uint8 (scaled by decord to scale's width x height when given) and seconds per
    frame; SampleError(reason, path) on every failure. The reader is freed here with Ctrl-C held (sigint_held): a
    KeyboardInterrupt raised inside decord's VideoReader.__del__ is printed as an ignored exception's traceback
    instead of stopping the run cleanly (seen when a Ctrl-C'd eval sweep was interrupted at that moment)."""
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1, **scale)
    except Exception as e:  # noqa: BLE001 -- RuntimeError, decord.DECORDError
        raise SampleError(f"decord cannot open it ({_short(e)})", path) from None
    try:
        return _read_frames(vr, path, frames, sample_fps, start, end)
    finally:
        from score_lit.durable import sigint_held

        with sigint_held():
            del vr


def _read_frames(vr, path: str, frames: int, sample_fps, start, end) -> tuple[np.ndarray, float]:
    """`_decode`'s reading of an open VideoReader: the sampled frames and seconds per frame, or SampleError."""
    try:
        n, fps = len(vr), float(vr.get_avg_fps())
    except Exception as e:  # noqa: BLE001 -- RuntimeError, decord.DECORDError
        raise SampleError(f"decord cannot open it ({_short(e)})", path) from None
    if n == 0:
        raise SampleError("has no video frames", path)
    try:
        idx, spf = frame_indices(n, fps, frames, sample_fps, start, end)
    except SampleError as e:
        raise SampleError(e.reason, path) from None
    try:
        video = vr.get_batch(idx.tolist()).asnumpy()
    except Exception as e:  # noqa: BLE001
        raise SampleError(f"decoding failed ({_short(e)})", path) from None
    if video.ndim != 4 or video.shape[0] != len(idx) or video.shape[-1] != 3 or min(video.shape[1:3]) == 0:
        raise SampleError(f"decoded {tuple(video.shape)} for {len(idx)} RGB frames", path)
    return video, spf


# ------------------------------------------------------------------------------------------------
# The dataset and the data-check


class VideoQADataset(torch.utils.data.Dataset):
    """Video QA over records; sample i is a pure function of its record, the video file and the settings."""

    def __init__(
        self,
        records: list[VideoQARecord],
        frames: int,
        size: int,
        fit: str = "pad",
        sample_fps: float | None = None,
        decode_resize: str = DEFAULT_DECODE_RESIZE,
    ):
        self.decode_resize = check_decode_resize(decode_resize)
        if fit not in FITS:
            raise ValueError(f"fit={fit!r}: use one of {FITS}")
        if frames < 1 or size < 1:
            raise ValueError(f"frames={frames}, size={size}: both must be >= 1")
        if sample_fps is not None and not sample_fps > 0:
            raise ValueError(f"sample_fps={sample_fps} must be > 0 (or None for `frames` uniformly over the clip)")
        self.records, self.frames, self.size, self.fit, self.sample_fps = list(records), frames, size, fit, sample_fps

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        r = self.records[i]
        video, spf = load_video(
            r.video, self.frames, self.size, self.fit, self.sample_fps, r.start, r.end, self.decode_resize
        )
        return Sample(
            id=r.id,
            frames=np.ascontiguousarray(video),
            question=r.question,
            answer=r.answer,
            options=list(r.options),
            evidence=r.meta.get("evidence", {}),
            seconds_per_frame=spf,
            meta={**r.meta, "video": r.video, "line": r.line},
        )

    def cache_inputs(self, i: int) -> dict:
        """What fixes sample i's frames, for a feature-cache key; nothing is decoded (a stat of the video)."""
        r = self.records[i]
        try:
            st = os.stat(r.video)
        except OSError:
            raise SampleError("video file not found", r.video) from None
        return {
            "path": os.path.abspath(r.video),
            "bytes": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "frames": self.frames,
            "size": self.size,
            "fit": self.fit,
            "sample_fps": self.sample_fps,
            "start": r.start,
            "end": r.end,
            # only when frames are scaled in the decoder: features cached from processor-resized frames keep their key
            **({"decode_resize": self.decode_resize} if self.decode_resize != "processor" else {}),
        }


def check_video_qa(
    path: str,
    root: str | None = None,
    frames: int = 16,
    size: int = 64,
    fit: str = "pad",
    sample_fps: float | None = None,
    progress: Callable[[int], object] | None = None,
) -> tuple[int, list[Problem]]:
    """(rows in the file, every Problem): those of reading plus one per distinct (video, start, end) that fails
    to load, reported at the first record using it. `progress(n)` is told of rows as they are done (n_rows in
    all). Backs `python -m score_lit data-check FILE`."""
    records, problems, n_rows = _read(path, root, check_files=True)
    users: dict[tuple, list[VideoQARecord]] = {}
    for r in records:
        users.setdefault((r.video, r.start, r.end), []).append(r)
    if progress is not None:
        progress(n_rows - len({r.line for r in records}))  # rows left out while reading
    for (video, start, end), recs in users.items():
        rows = len({r.line for r in recs})
        try:
            load_video(video, frames, size, fit, sample_fps, start, end)
        except SampleError as e:
            more = f" (used by {rows} rows)" if rows > 1 else ""
            problems.append(Problem(str(path), recs[0].line, e.reason + more, sample_id=recs[0].id, path=video))
        if progress is not None:
            progress(rows)
    problems.sort(key=lambda p: p.line if p.line is not None else 0)
    return n_rows, problems
