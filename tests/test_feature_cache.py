"""The feature cache: `cache-features` fills it offline, training from it gives the same losses as encoding every
time and never writes it, and a changed input (file contents, sampling, model) misses the cache."""

import torch
from helpers import tiny_run
from mlflow.tracking import MlflowClient

from score_lit.config import load_config
from score_lit.data.feature_cache import FeatureCache
from score_lit.data.feature_cache_fill import fill_cache
from score_lit.training.fit import fit


def overrides(tmp_path, name, cache):
    return tiny_run(tmp_path, name, 6, data={"val_samples": 2, "train_samples": 4, "cache_dir": cache}, val_every=3)


def history(res, name):
    return [
        m.value
        for m in sorted(MlflowClient(res.tracking_uri).get_metric_history(res.run_id, name), key=lambda m: m.step)
    ]


def test_training_from_the_cache_gives_the_same_losses(tmp_path):
    features = tmp_path / "features"
    empty = fit(load_config([], overrides(tmp_path, "empty", features)))  # a cache nobody filled: read, never written
    assert history(empty, "data/cache_hit") == [0.0] * 6 and not list(features.rglob("*.pt"))

    cfg = load_config([], overrides(tmp_path, "cached", features))
    (filled,) = fill_cache(cfg, log=lambda line: None)
    assert (filled.rows, filled.written, filled.present, filled.bad) == (6, 6, 0, 0)  # 4 train + 2 val rows
    (again,) = fill_cache(cfg, log=lambda line: None)
    assert (again.written, again.present) == (0, 6)  # a second pass writes nothing
    entries = {p: p.stat().st_mtime_ns for p in features.rglob("*.pt")}
    assert len(entries) == 6

    plain = fit(load_config([], overrides(tmp_path, "plain", "null")))
    cached = fit(cfg)
    assert history(cached, "data/cache_hit") == [1.0] * 6 and history(plain, "data/cache_hit") == [0.0] * 6
    torch.testing.assert_close(
        torch.tensor(history(cached, "loss")), torch.tensor(history(plain, "loss")), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        torch.tensor(history(cached, "dce/mean")), torch.tensor(history(plain, "dce/mean")), rtol=1e-5, atol=1e-6
    )
    assert {
        p: p.stat().st_mtime_ns for p in features.rglob("*.pt")
    } == entries  # training read the cache, wrote nothing


def test_cache_features_without_a_cache_dir_is_one_line(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "score_lit", "cache-features", "conf/stage1.yaml", f"out_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "score_lit: error: cache-features: the config sets no cache: give <phase>.data.cache_dir=DIR (training) or "
        "eval.cache_dir=DIR (a sweep)"
    ], r.stderr


def test_keys_change_with_inputs_and_model(tmp_path):
    a = FeatureCache(tmp_path, {"family": "qwen2_5_vl", "path": "/m"})
    b = FeatureCache(tmp_path, {"family": "qwen2_5_vl", "path": "/other"})
    k = a.key({"path": "/v.mp4", "bytes": 10, "mtime_ns": 1, "frames": 16})
    assert k == a.key({"frames": 16, "mtime_ns": 1, "bytes": 10, "path": "/v.mp4"})  # order-free
    assert k != a.key({"path": "/v.mp4", "bytes": 10, "mtime_ns": 2, "frames": 16})  # the file changed
    assert k != a.key({"path": "/v.mp4", "bytes": 10, "mtime_ns": 1, "frames": 32})  # another sampling
    assert k != b.key({"path": "/v.mp4", "bytes": 10, "mtime_ns": 1, "frames": 16})  # another model


def test_a_damaged_entry_is_a_miss_not_a_crash(tmp_path):
    c = FeatureCache(tmp_path, {"m": 1})
    k = c.key({"x": 1})
    c.save(k, torch.ones(2, 3, 4), torch.zeros(3, 6, dtype=torch.long), (2, 1, 3))
    assert torch.equal(c.load(k)["tokens"], torch.ones(2, 3, 4)) and c.hits == 1
    f = next(tmp_path.rglob("*.pt"))
    f.write_bytes(f.read_bytes()[:20])
    assert c.load(k) is None and c.misses == 1
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files
