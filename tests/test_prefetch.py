"""score_lit.data.prefetch.prefetched: results in the order of the items whatever order the threads finish in,
the next item computed while the current one is consumed, an item's error raised at its place (after the results
before it), ahead=0 a plain map, and an early exit leaving no thread behind."""

from __future__ import annotations

import threading
import time

import pytest

from score_lit.data.prefetch import prefetched


def test_order_is_the_items_order_whatever_finishes_first():
    delays = [0.05, 0.0, 0.03, 0.0, 0.01, 0.0]

    def work(i):
        time.sleep(delays[i])
        return i * 10

    for ahead in (0, 1, 3):
        assert list(prefetched(work, range(len(delays)), ahead)) == [0, 10, 20, 30, 40, 50]


def test_the_next_item_is_computed_while_the_current_one_is_consumed():
    started = {i: threading.Event() for i in range(3)}

    def work(i):
        started[i].set()
        return i

    it = prefetched(work, range(3), ahead=1)
    assert next(it) == 0
    assert started[1].wait(2.0)  # item 1 started without being asked for: it runs beside the consumer
    assert list(it) == [1, 2]


def test_an_error_surfaces_at_its_item_after_the_results_before_it():
    def work(i):
        if i == 2:
            raise ValueError("video 2 is truncated")
        return i

    got = []
    with pytest.raises(ValueError, match="video 2 is truncated"):
        for x in prefetched(work, range(5), ahead=2):
            got.append(x)
    assert got == [0, 1]


def test_leaving_early_stops_the_threads_and_bad_ahead_is_one_line():
    before = threading.active_count()
    it = prefetched(lambda i: i, range(100), ahead=2)
    assert next(it) == 0
    it.close()
    assert threading.active_count() == before
    with pytest.raises(ValueError, match=r"^ahead=-1: use 0"):
        list(prefetched(lambda i: i, [1], -1))
