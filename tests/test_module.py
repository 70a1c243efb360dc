"""The LightningModule's bookkeeping and the prompt batch built in the DataLoader's collate."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from helpers import tiny_run
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader

from score_lit.config import MLLMConfig, load_config
from score_lit.data.common import Sample, collate
from score_lit.mllm.qwen_vl import Qwen25VLAdapter
from score_lit.training.fit import fit


def test_time_data_is_measured_only_after_a_training_step(tmp_path):
    """time/data is the wait since the previous training step's hooks ended: the first step and the step after a
    validation have none (it is not the previous step's value again), and time/step does not add a stale one."""
    cfg = load_config([], tiny_run(tmp_path, steps=5, val_every=2, data={"val_samples": 2, "train_samples": 20}))
    res = fit(cfg)
    client = MlflowClient(res.tracking_uri)
    data = {m.step: m.value for m in client.get_metric_history(res.run_id, "time/data")}
    assert sorted(data) == [1, 3], data  # validations after steps 1 and 3 (every 2 steps)
    steps = [m.step for m in client.get_metric_history(res.run_id, "time/step")]
    assert steps == [0, 1, 2, 3, 4]


def _samples(n: int) -> list[Sample]:
    rng = np.random.default_rng(0)
    qs = ["which digit appeared ?", "what colour was the first object ?", "how many objects ?"]
    return [
        Sample(
            f"s{i}",
            rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
            qs[i % 3],
            str(i % 10),
            ["1", "2", str(i % 10)],
        )
        for i in range(n)
    ]


def test_collate_builds_the_prompt_batch_in_the_workers():
    """partial(collate, prompts=adapter.prompt_builder) gives each batch the PromptBatch that adapter.tokenize gives
    the plain batch, with num_workers 0 and 2; the adapter then returns it instead of tokenizing again."""
    adapter = Qwen25VLAdapter(MLLMConfig())
    samples = _samples(6)
    for workers in (0, 2):
        loader = DataLoader(
            samples, batch_size=3, collate_fn=partial(collate, prompts=adapter.prompt_builder), num_workers=workers
        )
        for i, batch in enumerate(loader):
            want = adapter.tokenize(collate(samples[3 * i : 3 * i + 3]))
            got = batch.prompts
            assert got is not None and adapter.tokenize(batch) is got
            assert (got.pre_ids, got.post_ids, got.answer_start, got.answer_len) == (
                want.pre_ids,
                want.post_ids,
                want.answer_start,
                want.answer_len,
            )
            for name in (
                "option_ids",
                "pre",
                "n_pre",
                "post",
                "n_post",
                "targets",
                "n_answer",
                "question",
                "n_question",
            ):
                assert torch.equal(getattr(got, name), getattr(want, name)), name
    # the answer targets of a row, by hand: the answer's ids right after answer_start
    p = adapter.tokenize(collate(samples[:1]))
    assert (
        p.targets[0, : p.answer_len[0]].tolist()
        == p.post_ids[0][p.answer_start[0] : p.answer_start[0] + p.answer_len[0]]
    )


def test_baseline_cache_keeps_device_tensors():
    """put / get round-trip the values exactly as tensors (no Python floats in between), in the order asked."""
    from score_lit.rl.rollout import BaselineCache

    cache = BaselineCache()
    ce = torch.tensor([[0.1, 1.5], [0.2, 2.25], [0.3, 3.125]])[:, 1]  # a view, as score_with_baseline passes it
    cache.put(["a", "b", "c"], ce, torch.tensor([True, False, True]))
    ce.add_(1.0)  # the cache holds its own copy
    assert not cache.missing(["c", "a"]) and cache.missing(["a", "d"])
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in cache.ce.values())
    assert cache.get(["c", "a"], torch.device("cpu")).tolist() == [3.125, 1.5]
    assert cache.get_correct(["b", "c"], torch.device("cpu")).tolist() == [False, True]
