"""Decode ahead: `prefetched(fn, items)` yields fn(item) in the order of `items` while background threads already
compute the next ones, so the next video decodes while the model works on the current one (lmms-eval's
generate_until, the Python API's `Compression.stream`). The eval sweep and training get the same overlap from their
DataLoader's workers (eval.num_workers / data.num_workers > 0).

decord's get_batch and FFmpeg's scaler run in C with the GIL released, so a decoding thread runs beside the model's
forward (measured: measurements/decode_cpu.json, `prefetch`). An error of item i is raised where result i is taken,
in order: the results before it are yielded first. Leaving the loop early cancels what has not started.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetched(fn: Callable[[T], R], items: Iterable[T], ahead: int = 1) -> Iterator[R]:
    """fn(item) for each item, in order, with up to `ahead` items computed in background threads beyond the one being
    consumed (ahead=0: no thread, plain map)."""
    if ahead < 0:
        raise ValueError(f"ahead={ahead}: use 0 (no prefetch) or more items to decode ahead")
    if ahead == 0:
        yield from map(fn, items)
        return
    it = iter(items)
    pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="score-prefetch")
    pending: deque = deque()
    try:
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
