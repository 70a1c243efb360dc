"""M-RoPE ids by the original Qwen2/2.5-VL rule: hand-computed values on small grids."""

import pytest
import torch
from reference import transformers_523_text_start

from score_lit.mllm.positions import (
    next_text_start,
    sequence_positions,
    text_positions,
    time_scale,
    video_positions,
)


def test_text_positions_same_on_three_axes():
    assert text_positions(3, start=5).tolist() == [[5, 6, 7]] * 3


def test_video_positions_qwen2_vl_grid_2x2x3():
    # T=2 units, H'=2 rows, W'=3 cols, raster order (t, row, col), time scale 1 (Qwen2-VL).
    ids = video_positions((2, 2, 3), start=0, scale=1.0)
    assert ids.tolist() == [
        [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1],
        [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2],
    ]


def test_sequence_positions_qwen2_vl():
    # pre 3 | video (2, 2, 3) | post 2: video at s=3, max id = 3 + 2 (w) = 5, post starts at 6.
    ids = sequence_positions(3, video_positions((2, 2, 3), scale=1.0), 2)
    assert ids.tolist() == [
        [0, 1, 2] + [3] * 6 + [4] * 6 + [6, 7],
        [0, 1, 2] + [3, 3, 3, 4, 4, 4] * 2 + [6, 7],
        [0, 1, 2] + [3, 4, 5] * 4 + [6, 7],
    ]


def test_long_video_text_starts_after_max_time_id_not_after_spatial_extent():
    # Qwen2.5-VL, T=4 > H'=W'=2, scale = 2 tokens/s x 1 s per temporal patch = 2: t ids 0, 2, 4, 6.
    s = 2
    ids = sequence_positions(s, video_positions((4, 2, 2), scale=2.0), 2)
    assert ids[0].tolist() == [0, 1] + [2] * 4 + [4] * 4 + [6] * 4 + [8] * 4 + [9, 10]
    assert ids[1].tolist() == [0, 1] + [2, 2, 3, 3] * 4 + [9, 10]
    assert ids[2].tolist() == [0, 1] + [2, 3, 2, 3] * 4 + [9, 10]
    # The original rule: max(all vision ids) + 1 = 8 + 1. transformers 5.23: s + max(H', W') = 4, which
    # would put the answer text on the time ids of the 2nd temporal unit (transformers#45381).
    assert next_text_start(ids[:, 2:18]) == 9
    assert transformers_523_text_start(s, (4, 2, 2)) == 4


def test_single_unit_rules_agree():
    # One temporal unit (an image-like grid): both rules start the text at s + max(H', W').
    s, grid = 5, (1, 3, 4)
    ids = sequence_positions(s, video_positions(grid), 1)
    assert ids[:, -1].tolist() == [9, 9, 9] == [transformers_523_text_start(s, grid)] * 3


def test_fractional_time_scale_floors():
    # 2 tokens/s x 0.25 s per temporal patch = 0.5: t ids floor(0, .5, 1, 1.5) = 0, 0, 1, 1.
    assert time_scale(2, 0.25) == 0.5
    ids = video_positions((4, 1, 1), start=10, scale=0.5)
    assert ids.tolist() == [[10, 10, 11, 11], [10] * 4, [10] * 4]


def test_time_scale_by_family():
    from score_lit.mllm.qwen_vl import Qwen2VLAdapter

    assert time_scale(2, 1.0) == 2.0
    assert Qwen2VLAdapter.time_scale(None, 3.0) == 1.0  # Qwen2-VL counts temporal patches
    with pytest.raises(ValueError, match="tokens_per_second"):
        time_scale(None, 1.0)


def test_dtype_and_device():
    ids = sequence_positions(1, video_positions((1, 1, 1)), 1)
    assert ids.dtype == torch.long and ids.tolist() == [[0, 1, 2]] * 3
