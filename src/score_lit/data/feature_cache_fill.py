"""`python -m score_lit cache-features CONFIG.yaml [key=value ...]`: fill the feature cache in one offline pass.

Every row a run of CONFIG would read is encoded once by the frozen vision tower + projector and written to the
cache (score_lit.data.feature_cache): the train and held-out rows of each phase (`<phase>.data.cache_dir`) and, when the
config has an eval section with `eval.cache_dir`, the benchmark's questions. Rows already cached are skipped, so
a second pass writes nothing and an interrupted pass continues where it stopped (entries are written atomically).
A row that fails to load is counted and left out, as training would skip it. Training and eval only read the cache.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from score_lit.config import Config, ConfigError, check_files


@dataclass
class Filled:
    cache_dir: str
    rows: int = 0  # rows looked at
    written: int = 0  # entries encoded and written now
    present: int = 0  # already cached
    bad: int = 0  # rows that failed to load


def _datasets(cfg: Config):
    """(cache_dir, name, dataset) of every row set CONFIG's run would read through the cache."""
    from score_lit.data.phases import build_phase_data

    for p in cfg.phases:
        d = cfg.phase(p).data
        if d.cache_dir is None:
            continue
        pd = build_phase_data(d)
        yield d.cache_dir, f"{p} train", pd.train
        if pd.val is not None:
            yield d.cache_dir, f"{p} val", pd.val
    e = cfg.eval
    if e is not None and e.cache_dir is not None:
        from score_lit.data.benchmarks import load_benchmark
        from score_lit.data.video_qa import VideoQADataset

        bench = load_benchmark(e.benchmark, e.root, limit=e.limit, split=e.split)
        yield (
            e.cache_dir,
            f"eval {e.benchmark}",
            VideoQADataset(bench.records, e.frames, e.size, e.fit, e.sample_fps, e.decode_resize),
        )


def fill_cache(cfg: Config, batch_size: int = 8, log=print) -> list[Filled]:
    """Encode and write every row of `cfg` that its cache lacks; one progress line per 10% of each row set."""
    from score_lit.data.common import SampleError, collate
    from score_lit.data.feature_cache import FeatureCache, model_key
    from score_lit.mllm import build_mllm

    check_files(cfg)
    sets = list(_datasets(cfg))
    if not sets:
        raise ConfigError(
            "cache-features: the config sets no cache: give <phase>.data.cache_dir=DIR (training) or "
            "eval.cache_dir=DIR (a sweep)"
        )
    mllm = build_mllm(cfg.mllm)
    model = model_key(cfg.mllm, mllm.identity())
    out: dict[str, Filled] = {}
    t0 = time.time()
    for cache_dir, name, ds in sets:
        cache = FeatureCache(cache_dir, model)
        f = out.setdefault(str(cache_dir), Filled(str(cache_dir)))
        pending: list = []  # (key, sample) of one frame shape, encoded together

        def flush() -> None:
            if not pending:
                return
            visual = mllm.encode(collate([s for _, s in pending]))
            for j, (key, _) in enumerate(pending):
                ds = None if visual.deepstack is None else visual.deepstack[j]
                cache.save(key, visual.tokens[j], visual.positions[j], visual.grid, ds)
            f.written += len(pending)
            pending.clear()

        step = max(1, len(ds) // 10)
        for i in range(len(ds)):
            f.rows += 1
            key = cache.key(ds.cache_inputs(i))
            if cache.load(key) is not None:
                f.present += 1
            else:
                try:
                    sample = ds[i]
                except SampleError:
                    f.bad += 1
                    sample = None
                if sample is not None:
                    if pending and pending[0][1].frames.shape != sample.frames.shape:
                        flush()
                    pending.append((key, sample))
                    if len(pending) == batch_size:
                        flush()
            if (i + 1) % step == 0 or i + 1 == len(ds):
                flush()
                log(
                    f"cache-features: {name}: {i + 1}/{len(ds)} rows ({f.written} written, {f.present} already cached, "
                    f"{f.bad} unreadable) {time.time() - t0:.0f}s"
                )
    return list(out.values())


def main(args: list[str]) -> int:
    from score_lit.config import load_config, split_args

    cfg = load_config(*split_args(args))
    for f in fill_cache(cfg):
        print(
            f"{f.cache_dir}: {f.rows} rows, {f.written} written now, {f.present} were cached, {f.bad} unreadable",
            flush=True,
        )
        if f.bad:
            print(f"  `python -m score_lit data-check FILE` lists the {f.bad} unreadable rows", file=sys.stderr)
    return 0


__all__ = ["fill_cache", "Filled", "main"]
