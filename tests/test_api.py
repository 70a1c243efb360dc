"""The public Python API (score_lit.load_policy, score_lit.compress) on every family's tiny random model and on the
committed evidence toy.

* every family (tiny random model of the real transformers class, a question-conditioned policy whose FiLM weights
  are non-zero so the question moves the ranking): a batch of 4 left-padded rows (two questions on one video)
  generates exactly what each row generates alone, keeps per row exactly what the score compressor keeps for that
  row's prompts (score_lit eval's selection), and its first token is the argmax of score_lit's own prefill over the
  kept tokens (`adapter.prefill`, the positions `score` uses); the same holds at ratio 1.0. Inputs built outside
  `prepare` (the stock-processor route) give the policy the question read from input_ids: the same kept tokens.
* an accelerate-dispatched model (dispatch_model with a device_map over its parts, accelerate's hooks on each)
  gives the same tokens.
* the committed evidence toy + the committed default policy: greedy answers right exactly where `score_lit eval`
  is right, per question, at ratios 1.0 and 0.1, batch sizes 1 and 4.
* the README's Python API example runs as written.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT

import score_lit
from score_lit.data.common import Sample, collate
from score_lit.errors import ConfigError

FAMILIES = ["qwen2_5_vl", "qwen2_vl", "llava_onevision", "qwen3_vl", "qwen3_5"]
QUESTIONS = [
    "which digit appeared ?",
    "what colour was the first object ?",
    "count them",
    "which digit appeared last ?",
]
GEN = dict(max_new_tokens=3, do_sample=False)


def _tiny(family: str):
    """(model, tokenizer, Policy) : the family's tiny random model and a random query_mlp policy that reads the
    question (non-zero FiLM)."""
    from score_lit.config import PolicyConfig
    from score_lit.inference.api import Policy
    from score_lit.mllm import adapter_class
    from score_lit.rl.policy import build_policy

    model, tok = adapter_class(family).build_tiny(seed=0)
    d = int(model.config.text_config.hidden_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_policy(2 * d, PolicyConfig(name="query_mlp", hidden=16))
        torch.nn.init.normal_(module.film.weight, std=1.0)
        torch.nn.init.normal_(module.last.weight, std=1.0)
    return model, tok, Policy(module.eval(), {"mllm": {"family": family, "hidden_size": d}}, "random")


def _videos(n: int = 3, frames: int = 8, size: int = 64):
    rng = np.random.default_rng(0)
    vids = [rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8) for _ in range(n)]
    return [vids[0], vids[0], vids[1], vids[2]]  # rows 0 and 1: one video, two questions


@pytest.mark.parametrize(
    "family, position_ids",
    [(f, "original") for f in FAMILIES] + [("llava_onevision", "compacted")],  # 1-D RoPE: ids 0..L'-1 per pruned row
)
def test_compress_batch_equals_rows_and_score_lit_selection(family, position_ids):
    model, tok, policy = _tiny(family)
    videos = _videos()
    for ratio in (0.25, 1.0):
        with score_lit.compress(
            model, tok, policy, ratio=ratio, num_frames=8, frame_size=64, position_ids=position_ids
        ) as sc:
            assert sc.adapter.cfg.position_ids == getattr(sc.hooks, "position_ids", "original") == position_ids
            inputs = sc.prepare(videos, QUESTIONS, seconds_per_frame=0.5)
            assert inputs["attention_mask"][:, 0].tolist().count(0) > 0  # rows of different lengths: left padding
            batch_out = model.generate(**inputs, **GEN)
            batch_keep = sc.last_keep
            adapter, comp = sc.adapter, sc.compressor
            for b, (video, question) in enumerate(zip(videos, QUESTIONS)):
                one = model.generate(**sc.prepare([video], [question], seconds_per_frame=0.5), **GEN)
                assert torch.equal(one[0, -GEN["max_new_tokens"] :], batch_out[b, -GEN["max_new_tokens"] :]), (
                    f"{family} ratio {ratio} row {b}: batch {batch_out[b].tolist()} != alone {one[0].tolist()}"
                )
                assert torch.equal(sc.last_keep[0], batch_keep[b])
                # score_lit's own selection and prefill for this row (what score_lit eval and bench compute)
                vb = collate([Sample("d", video, question, "3", ["3", "5"], seconds_per_frame=0.5)])
                visual, prompts = adapter.encode(vb), adapter.tokenize(vb)
                keep = comp.select(visual, ratio, prompts).keep if comp is not None else torch.ones_like(batch_keep[b])
                assert torch.equal(batch_keep[b], keep.reshape(-1).cpu())
                first = adapter.prefill(visual, prompts, keep.reshape(1, -1))
                assert int(first[0]) == int(one[0, -GEN["max_new_tokens"]]), f"{family} ratio {ratio} row {b}"
            if ratio < 1.0:
                v = batch_keep[0].numel()
                assert [int(k.sum()) for k in batch_keep] == [-(-v // 4)] * 4
                assert not torch.equal(batch_keep[0], batch_keep[1])  # one video, another question: other tokens

                # inputs built outside prepare (the stock-processor route): the question is read from input_ids
                sc._prepared = None
                model.generate(**inputs, **GEN)
                for b in range(4):
                    assert torch.equal(sc.last_keep[b], batch_keep[b]), f"{family} row {b}: question from input_ids"


def test_compress_on_an_accelerate_dispatched_model():
    from accelerate import dispatch_model

    model, tok, policy = _tiny("qwen2_5_vl")
    videos = _videos()
    with score_lit.compress(model, tok, policy, ratio=0.25, num_frames=8, frame_size=64) as sc:
        ref = model.generate(**sc.prepare(videos, QUESTIONS, seconds_per_frame=0.5), **GEN)
    # a device_map over the model's parts, as from_pretrained(device_map=...) dispatches it: accelerate's hooks on
    # each part move the inputs at every forward (force_hooks: on one CPU too)
    device_map = {"model.visual": "cpu", "model.language_model": "cpu", "lm_head": "cpu"}
    model = dispatch_model(model, device_map=device_map, main_device="cpu", force_hooks=True)
    assert any(hasattr(m, "_hf_hook") for m in model.modules())
    with score_lit.compress(model, tok, policy, ratio=0.25, num_frames=8, frame_size=64) as sc:
        out = model.generate(**sc.prepare(videos, QUESTIONS, seconds_per_frame=0.5), **GEN)
    assert torch.equal(out, ref)


def test_compress_bad_input_is_one_line():
    model, tok, policy = _tiny("qwen2_5_vl")
    other = _tiny("llava_onevision")[2]
    other.config["mllm"]["hidden_size"] = 999
    for kwargs, needle in [
        (dict(policy=policy, ratio=0.0), "ratio=0.0"),
        (dict(policy=None, ratio=0.5), "needs a policy"),
        (dict(policy=other, ratio=0.5), "trained for llava_onevision with width 999"),
        (dict(policy=policy, ratio=0.5, max_pixel=3), "unknown option"),
    ]:
        with pytest.raises(ConfigError, match=needle) as e:
            score_lit.compress(model, tok, **kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="not a registered family"):
        score_lit.compress(torch.nn.Linear(2, 2), tok, policy)
    with pytest.raises(ConfigError, match="does not exist"):
        score_lit.load_policy(ROOT / "no-such-policy")
    frames = np.zeros((4, 28, 28, 3), np.uint8)
    with score_lit.compress(model, tok, policy, ratio=0.5) as sc:
        for videos, questions, needle in [
            ("a.mp4", ["which colour ?"], "takes lists"),
            ([frames], "which colour ?", "takes lists"),
            ([frames, frames], ["which colour ?"], "2 videos but 1 questions"),
        ]:
            with pytest.raises(ConfigError, match=needle) as e:
                sc.prepare(videos, questions)
            assert "\n" not in str(e.value)
        with pytest.raises(ConfigError, match="1 videos but 2 questions"):  # before any video is decoded
            next(sc.stream([(["no-such-video.mp4"], ["a ?", "b ?"])]))


# ------------------------------------------------------------------------------------------ the committed toy

TOY, POLICY = ROOT / "models/toy-mllm-evidence4", ROOT / "models/score-policy-evidence4"


@pytest.mark.slow
def test_toy_greedy_answers_equal_score_lit_eval(tmp_path):
    """Per question: the API's greedy first token (an option) is right exactly where score_lit eval is right."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from score_lit.mllm.prompts import load_tokenizer

    bench = tmp_path / "bench"
    subprocess.run(
        [sys.executable, "-m", "score_lit", "export-split", "--benchmark", "evidence", "--out", str(bench), "--n", "4"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    out = tmp_path / "eval"
    sl = subprocess.run(
        [
            sys.executable,
            "-m",
            "score_lit",
            "eval",
            "conf/eval.yaml",
            f"mllm.path={TOY}",
            f"eval.root={bench}",
            "eval.methods=[score]",
            "eval.ratios=[0.1]",
            f"eval.policy={POLICY}",
            "eval.viz_samples=0",
            f"eval.out_dir={out}",
            f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert sl.returncode == 0, (sl.stdout + sl.stderr)[-3000:]
    right = {1.0: {}, 0.1: {}}
    for line in (out / "questions.jsonl").read_text().splitlines():
        q = json.loads(line)
        for i, c1, c01 in zip(q["ids"], q["vanilla"]["correct"], q["methods"]["score@0.1"]["correct"]):
            right[1.0][i], right[0.1][i] = bool(c1), bool(c01)
    rows = [json.loads(line) for line in (bench / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and set(right[0.1]) == {r["id"] for r in rows}

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(TOY)
    tok = load_tokenizer(TOY)
    policy = score_lit.load_policy(POLICY)
    videos, questions = [str(bench / r["video"]) for r in rows], [r["question"] for r in rows]
    for ratio in (1.0, 0.1):
        with score_lit.compress(model, tok, policy, ratio=ratio, num_frames=32, frame_size=96) as sc:
            for size in (1, 4):
                answers = []
                for s in range(0, len(rows), size):
                    out_ids = model.generate(**sc.prepare(videos[s : s + size], questions[s : s + size]), **GEN)
                    answers += [a.split()[0] for a in sc.decode(out_ids)]
                assert all(a in r["options"] for a, r in zip(answers, rows)), answers
                got = [a == r["answer"] for a, r in zip(answers, rows)]
                expected = [right[ratio][r["id"]] for r in rows]
                assert got == expected, f"ratio {ratio} batch {size}: API {got} != score_lit eval {expected}"
    assert sum(right[1.0].values()) >= 6  # the toy reads the videos: the equality is not all-wrong == all-wrong


def test_readme_python_api_example_runs_as_written():
    """The README's example (the python block after the marker) run in a fresh interpreter from the repo root."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md: the Python API example block (after <!-- api-example -->) is missing"
    run = subprocess.run([sys.executable, "-c", m.group(1)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = run.stdout.strip().splitlines()
    assert len(printed) == 2 and all(line.split()[0] in "0123456789" for line in printed), run.stdout


def test_stream_prefetches_in_order_equal_to_prepare_and_errors_at_their_call(tmp_path):
    """sc.stream([(videos, questions), ...]) yields prepare()'s inputs call by call (the next call's videos decoding
    in a background thread), in order; a missing video raises SampleError when its call is reached."""
    from score_lit.data.common import SampleError
    from score_lit.toy.export import write_mp4

    model, tok, policy = _tiny("qwen2_5_vl")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"v{i}.mp4"))
        write_mp4(paths[-1], rng.integers(0, 256, (8, 64, 80, 3), dtype=np.uint8), 4.0)
    calls = [([paths[0], paths[1]], QUESTIONS[:2]), ([paths[2]], QUESTIONS[2:3]), ([paths[1]], QUESTIONS[3:])]
    with score_lit.compress(model, tok, policy, ratio=0.5, num_frames=4, frame_size=32) as sc:
        expected = [sc.prepare(v, q) for v, q in calls]
        got = list(sc.stream(calls))
        assert len(got) == 3
        for e, g in zip(expected, got):
            assert e.keys() == g.keys() and all(torch.equal(e[k], g[k]) for k in e)
        bad = calls[:1] + [([str(tmp_path / "missing.mp4")], QUESTIONS[:1])]
        it = sc.stream(bad)
        first = next(it)
        assert torch.equal(first["input_ids"], expected[0]["input_ids"])
        with pytest.raises(SampleError, match="video file not found"):
            next(it)
    with pytest.raises(ConfigError, match="decode_resize='gpu'"):
        score_lit.compress(model, tok, policy, decode_resize="gpu")
