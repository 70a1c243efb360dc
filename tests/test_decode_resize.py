"""Decoding at the size the model needs (score_lit.data.video_qa.load_video, decode_resize): frames scaled inside
decord have the requested shape and layout (pad / stretch / crop as fit_frames lays them out) and are close to the
processor path's frames (bound measured on these clips: mean absolute difference 0.24-0.61 of 255, 99th percentile
4-7); a video already at its fitted size decodes to the same frames either way; a bad value is one line.
Real H.264 files (score_lit.toy.export.write_mp4) and the real decord, no stand-ins.
"""

from __future__ import annotations

import numpy as np
import pytest

from score_lit.config import ConfigError
from score_lit.data.video_qa import VideoQADataset, VideoQARecord, fit_size, load_video
from score_lit.toy.export import write_mp4


def _clip(h: int, w: int, n: int = 12) -> np.ndarray:
    """Smooth gradients, a moving sine pattern and a white box: content an interpolation difference shows on."""
    y, x = np.mgrid[0:h, 0:w]
    fr = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        fr[i, ..., 0] = (255 * x / w).astype(np.uint8)
        fr[i, ..., 1] = (255 * y / h).astype(np.uint8)
        fr[i, ..., 2] = (128 + 100 * np.sin((x + 7 * i) / 9.0)).astype(np.uint8)
        fr[i, h // 3 : h // 3 + h // 4, (9 * i) % (w // 2) : (9 * i) % (w // 2) + w // 5] = 255
    return fr


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("decode_resize")
    out = {}
    for h, w in [(180, 320), (320, 180), (96, 96)]:
        out[(h, w)] = str(d / f"v{h}x{w}.mp4")
        write_mp4(out[(h, w)], _clip(h, w), 8.0)
    return out


def test_fit_size_follows_fit_frames_rule():
    assert fit_size(1280, 720, 336, "pad") == (336, 189)  # the bench video: longer side to 336
    assert fit_size(1280, 720, 336, "crop") == (597, 336)  # shorter side to 336
    assert fit_size(1280, 720, 336, "stretch") == (336, 336)
    assert fit_size(180, 320, 64, "pad") == (36, 64)  # portrait 180 x 320: the height to 64


@pytest.mark.parametrize("hw", [(180, 320), (320, 180)])
@pytest.mark.parametrize("fit", ["pad", "stretch", "crop"])
def test_decoder_scaled_frames_have_the_shape_and_are_close_to_the_processor_path(videos, hw, fit):
    path, size = videos[hw], 64
    a, spf_a = load_video(path, 4, size, fit, decode_resize="decoder")
    b, spf_b = load_video(path, 4, size, fit, decode_resize="processor")
    assert a.shape == b.shape == (4, size, size, 3) and a.dtype == np.uint8 and spf_a == spf_b
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert d.mean() < 1.0 and np.percentile(d, 99) <= 10, (d.mean(), np.percentile(d, 99))  # measured 0.61 / 7 at most
    if fit == "pad":  # the letterbox bars sit where fit_frames puts them, black in both
        h, w = hw
        tw, th = fit_size(w, h, size, fit)
        oy, ox = (size - th) // 2, (size - tw) // 2
        bars = np.ones((size, size), bool)
        bars[oy : oy + th, ox : ox + tw] = False
        assert bars.any() and not a[:, bars].any() and not b[:, bars].any()


def test_a_video_at_its_fitted_size_decodes_the_same_either_way(videos):
    a, _ = load_video(videos[(96, 96)], 4, 96, "pad", decode_resize="decoder")
    b, _ = load_video(videos[(96, 96)], 4, 96, "pad", decode_resize="processor")
    assert np.array_equal(a, b)


def test_bad_decode_resize_is_one_line(videos):
    from score_lit.config import load_config
    from score_lit.perf.bench_setup import BenchConfig

    with pytest.raises(ValueError, match=r"^decode_resize='gpu': use decoder .* or processor") as e:
        load_video(videos[(96, 96)], 4, 64, decode_resize="gpu")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"^eval.decode_resize='x': use decoder"):
        load_config([], ["eval.decode_resize=x"])
    with pytest.raises(ConfigError, match=r"^data.decode_resize='x': use decoder"):
        load_config([], ["stage1.data.decode_resize=x"])
    with pytest.raises(ConfigError, match=r"^decode_resize='x': use decoder"):
        BenchConfig(arch="tiny", decode_resize="x")


def test_the_feature_cache_key_names_the_decoder_path_only(videos):
    rec = VideoQARecord("a", videos[(96, 96)], "q", "x", [], None, None, 1)
    dec = VideoQADataset([rec], 4, 64, decode_resize="decoder").cache_inputs(0)
    proc = VideoQADataset([rec], 4, 64, decode_resize="processor").cache_inputs(0)
    assert dec["decode_resize"] == "decoder" and "decode_resize" not in proc  # older caches keep their keys
    assert {k: v for k, v in dec.items() if k != "decode_resize"} == proc
    assert VideoQADataset([rec], 4, 64)[0].frames.shape == (4, 64, 64, 3)


def test_a_width_decord_cannot_scale_to_falls_back_to_the_processor_path(videos):
    """decord 0.6.0 fails to copy out frames 48 px wide (and 8, 12, 16, 24, 72): decoded at full size, fit_frames."""
    a, _ = load_video(videos[(96, 96)], 4, 48, "pad", decode_resize="decoder")
    b, _ = load_video(videos[(96, 96)], 4, 48, "pad", decode_resize="processor")
    assert a.shape == (4, 48, 48, 3) and np.array_equal(a, b)
