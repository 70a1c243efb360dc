"""Bad data in a real training run: each planted fault is skipped, reported once with its file and reason,
counted in `data/skipped`; no good sample is dropped; too many bad rows stop the run with one clear line."""

import json
import logging

import numpy as np
import pytest
from helpers import tiny_run
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from score_lit.cli import main
from score_lit.config import DataError, load_config
from score_lit.toy.export import export_split, write_mp4
from score_lit.training.fit import fit


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """6 good toy videos (real mp4 files) plus one row for each fault of EXPECTED and one malformed line."""
    d = tmp_path_factory.mktemp("planted")
    src = export_split(d / "bench", split="val", n=6, families=["flash"], frames=16, size=64)
    good = [json.loads(line) for line in src.read_text().splitlines()]
    for r in good:
        r["video"] = str(d / "bench" / r["video"])
    raw = open(good[0]["video"], "rb").read()
    (d / "truncated.mp4").write_bytes(raw[: len(raw) // 3])
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (d / "empty.mp4").write_bytes(b"")
    write_mp4(d / "short.mp4", np.zeros((2, 64, 64, 3), np.uint8), 2.0)  # 2 frames < data.frames=4
    row = {k: good[0][k] for k in ("question", "options", "answer")}
    bad_rows = [
        {**row, "id": "bad/truncated", "video": "truncated.mp4"},
        {**row, "id": "bad/corrupt", "video": "corrupt.mp4"},
        {**row, "id": "bad/empty", "video": "empty.mp4"},
        {**row, "id": "bad/short", "video": "short.mp4"},
        {**row, "id": "bad/missing", "video": "missing.mp4"},
        {**row, "id": "bad/answer", "video": good[0]["video"], "answer": "eleven"},
    ]
    lines = (
        [json.dumps(r) for r in good[:3]]
        + [json.dumps(r) for r in bad_rows]
        + ['{"video": "x.mp4", "question": ']
        + [json.dumps(r) for r in good[3:]]
    )
    f = d / "train.jsonl"
    f.write_text("\n".join(lines) + "\n")
    return f, [r["id"] for r in good]


class Recorder(Callback):
    def __init__(self):
        self.ids = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.ids += batch.ids


def overrides(tmp_path, f, extra=()):
    return tiny_run(
        tmp_path,
        steps={"stage2": 10},
        group=2,
        hidden=8,
        val_every=5,
        extra=extra,
        data={"source": "video_qa", "path": f, "val_samples": 0},
    )


EXPECTED = {
    "bad/truncated": "cut before its index",
    "bad/corrupt": "not a readable video",
    "bad/empty": "empty (0 bytes)",
    "bad/short": "fewer than data.frames=4",
    "bad/missing": "not found",
    "bad/answer": "not among the options",
}


def test_training_skips_each_fault_once_and_keeps_every_good_sample(tmp_path, planted, caplog):
    f, good_ids = planted
    rec = Recorder()
    with caplog.at_level(logging.WARNING, logger="score_lit.data"):
        res = fit(load_config([], overrides(tmp_path, f, ["stage2.data.max_bad_fraction=0.6"])), callbacks=[rec])
    assert set(rec.ids) == set(good_ids)  # every good sample trained on, no bad one
    msgs = [r.getMessage() for r in caplog.records if "skipped a bad sample" in r.getMessage()]
    assert len(msgs) == 7  # six planted rows + the malformed line, each reported exactly once
    for sid, reason in EXPECTED.items():
        (m,) = [m for m in msgs if f"[{sid}]" in m]
        assert reason in m and str(f) in m, m
    assert any("malformed JSON line" in m and f"{f}:10" in m for m in msgs)
    hist = MlflowClient(res.tracking_uri).get_metric_history(res.run_id, "data/skipped")
    assert max(m.value for m in hist) == 7 and len(hist) == 10


def test_too_many_bad_rows_stop_the_run_with_one_line(tmp_path, planted, capsys):
    f, _ = planted
    with pytest.raises(DataError, match=r"more than data.max_bad_fraction=0.05.*data-check"):
        fit(load_config([], overrides(tmp_path, f)))
    assert not (tmp_path / "runs").exists()  # the 3 rows bad at read time stop it before anything is written
    rc = main(["train", *overrides(tmp_path, f)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("score_lit: error:") and "data-check" in err[0]


def test_data_check_lists_every_problem(planted, capsys):
    f, _ = planted
    rc = main(["data-check", str(f), "--frames", "4", "--size", "32"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 1
    assert out[-1] == f"{f}: 13 rows (video_qa), 7 problems (53.8% of rows)"
    body = out[:-1]
    assert len(body) == 7
    for sid, reason in EXPECTED.items():
        assert sum(f"[{sid}]" in line and reason in line for line in body) == 1, sid
    good = f.parent / "good.jsonl"
    good.write_text(
        "".join(line + "\n" for line in f.read_text().splitlines() if '"bad/' not in line and "x.mp4" not in line)
    )
    assert main(["data-check", str(good), "--frames", "4", "--size", "32"]) == 0
    assert capsys.readouterr().out.strip().endswith(": 6 rows (video_qa), no problems")


def test_bad_samples_found_while_training_stop_the_run_past_the_fraction(tmp_path, planted):
    f, _ = planted  # 3 of 13 rows bad at read time (23%), 4 more only when decoded (54% in all)
    with pytest.raises(
        DataError, match=r"train.jsonl: [4-7] of 13 samples are bad \(more than data.max_bad_fraction=0.3\)"
    ):
        fit(load_config([], overrides(tmp_path, f, ["stage2.data.max_bad_fraction=0.3"])))


def test_a_byte_order_mark_keeps_the_first_row_and_an_empty_file_is_an_error(tmp_path, planted, capsys):
    f, _ = planted
    good = [ln for ln in f.read_text().splitlines() if '"bad/' not in ln and "x.mp4" not in ln]
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + "".join(ln + "\n" for ln in good).encode())  # as Windows editors save it
    assert main(["data-check", str(bom), "--frames", "4", "--size", "32"]) == 0
    assert capsys.readouterr().out.strip().endswith(": 6 rows (video_qa), no problems")  # not 5 rows + 1 malformed

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["data-check", str(empty)]) == 1  # data-check and training agree: an empty file is an error
    assert "the file is empty" in capsys.readouterr().out
    with pytest.raises(DataError, match=r"empty.jsonl: the file is empty: an annotation file needs at least one row"):
        fit(load_config([], overrides(tmp_path, empty)))
    assert not (tmp_path / "runs").exists()
