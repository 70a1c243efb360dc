"""The retention sweep end to end on the tiny model: CSV columns and arithmetic, flags, the FLOPs columns
(FastV above vanilla on the 2-layer LLM, SCORE far below at 10%), the MLflow parent / child runs, the files,
the CSV path printed last; and the viz command's pictures."""

import csv

import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from score_lit.cli import main
from score_lit.compressors.flops import TERA, policy_flops, prefill_flops
from score_lit.config import PolicyConfig, load_config
from score_lit.evaluation.records import BatchRecord, Outcome
from score_lit.evaluation.report import accuracy_figure, by_family, compute_curves, compute_table, result_rows
from score_lit.evaluation.sweep import sweep
from score_lit.rl.policy import build_policy
from score_lit.toy.export import export_split
from score_lit.training.checkpoint import save_policy, save_policy_dir


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    d = tmp_path_factory.mktemp("toybench")
    export_split(d / "bench", split="test", n=3, families=["flash", "stitched"], frames=4, size=32)
    policy = build_policy(2 * 64, PolicyConfig(name="mlp", hidden=16))  # the tiny model's width is 64
    ident = {"family": "qwen2_5_vl", "hidden_size": 64, "path": "tiny-random"}
    path = save_policy(d / "policy.pt", policy, PolicyConfig(name="mlp", hidden=16), ident)
    save_policy_dir(d / "policy", policy, PolicyConfig(name="mlp", hidden=16), ident)  # its folder, as training does
    return d, path


def test_family_average_and_share_of_vanilla_by_hand():
    family = {"a1": "a", "a2": "a", "b1": "b"}
    assert by_family({"a1": True, "a2": False, "b1": True}, family) == {"a": 0.5, "b": 1.0, "all": 0.75}

    van = Outcome([True, True, False], [10, 10, 10], prefill_s=0.3)
    meth = Outcome([True, False, False], [2, 3, 4], prefill_s=0.03, select_s=0.003)
    rec = BatchRecord(["a1", "a2", "b1"], vanilla=van, methods={("x", 0.2): meth}, n_tokens=10)
    rows = {(r["method"], r["family"]): r for r in result_rows(rec, family, "t")}
    assert rows[("x", "a")]["accuracy"] == 0.5 and rows[("x", "a")]["pct_of_vanilla"] == 50.0
    assert rows[("x", "all")]["accuracy"] == 0.25 and rows[("x", "all")]["pct_of_vanilla"] == 50.0  # 0.25 / 0.5
    assert rows[("x", "all")]["kept_tokens_mean"] == 3.0 and rows[("x", "all")]["budget_tokens"] == 2
    assert rows[("x", "all")]["over_budget"] == 1  # kept 3 on average against a budget of ceil(0.2 * 10) = 2
    assert rows[("x", "all")]["prefill_ms"] == 10.0 and rows[("x", "all")]["select_ms"] == 1.0  # per question
    assert (
        rows[("vanilla", "b")]["pct_of_vanilla"] != rows[("vanilla", "b")]["pct_of_vanilla"]
    )  # 0 / 0: nan, not a number
    assert rows[("x", "all")]["prefill_tflops"] != rows[("x", "all")]["prefill_tflops"]  # no FLOPs recorded: nan


def test_flops_columns_by_hand():
    family = {"a1": "a", "a2": "a", "b1": "b"}
    van = Outcome([True, True, True], [10, 10, 10], flops=[100e12, 100e12, 200e12], select_flops=[0, 0, 0])
    meth = Outcome([True, True, True], [2, 2, 2], flops=[10e12, 30e12, 50e12], select_flops=[1e12, 1e12, 4e12])
    rec = BatchRecord(["a1", "a2", "b1"], vanilla=van, methods={("x", 0.2): meth}, n_tokens=10)
    rows = {(r["method"], r["family"]): r for r in result_rows(rec, family, "t")}
    assert rows[("x", "a")]["prefill_tflops"] == 20.0 and rows[("x", "a")]["flops_pct_of_vanilla"] == 20.0  # 20 / 100
    assert rows[("x", "b")]["prefill_tflops"] == 50.0 and rows[("x", "b")]["flops_pct_of_vanilla"] == 25.0  # 50 / 200
    assert rows[("x", "all")]["prefill_tflops"] == 30.0 and rows[("x", "all")]["select_tflops"] == 2.0  # over questions
    assert rows[("x", "all")]["flops_pct_of_vanilla"] == round(100 * 30 / (400 / 3), 2) == 22.5
    assert (
        rows[("vanilla", "all")]["flops_pct_of_vanilla"] == 100.0 and rows[("vanilla", "all")]["select_tflops"] == 0.0
    )
    table = compute_table(list(rows.values()))
    assert "| method (TFLOPs) | 20% |" in table and "| vanilla | 133 (100%) |" in table and "| x | 30 (22%) |" in table


def test_sweep_writes_csv_table_plot_and_mlflow_runs(tmp_path, bench, capsys):
    d, policy = bench
    args = [
        "mllm.path=null",
        "eval.benchmark=toy",
        f"eval.root={d / 'bench'}",
        f"eval.policy={policy}",
        "eval.methods=[score,uniform,surprise,random,fastv]",
        "eval.ratios=[1.0,0.25,0.05]",
        "eval.frames=4",
        "eval.size=32",
        "eval.batch_size=4",
        f"eval.out_dir={tmp_path / 'out'}",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "eval.viz_samples=2",
        "eval.viz_ratio=0.25",
    ]
    assert main(["eval", "conf/eval.yaml", *args]) == 0
    printed = capsys.readouterr().out
    out = printed.strip().splitlines()
    csv_path = tmp_path / "out" / "results.csv"
    assert out[-1] == str(csv_path)
    matched = (tmp_path / "out" / "matched.md").read_text()
    assert printed.endswith(matched + f"{csv_path}\n")  # the matched-compute table, then the CSV's path last
    rows = list(csv.DictReader(open(csv_path)))
    for col in (
        "benchmark",
        "family",
        "method",
        "retention_ratio",
        "accuracy",
        "pct_of_vanilla",
        "kept_tokens_mean",
        "prefill_ms",
        "prefill_tflops",
        "select_tflops",
        "flops_pct_of_vanilla",
    ):
        assert col in rows[0]
    assert len(rows) == 3 * (1 + 5 * 3)  # families flash, stitched, all x (vanilla + 5 methods x 3 ratios)
    by = {(r["method"], r["retention_ratio"], r["family"]): r for r in rows}
    n_tokens = int(float(by[("vanilla", "1.0", "all")]["kept_tokens_mean"]))
    assert (
        n_tokens == 2 * 2 * 2
    )  # 4 frames -> 2 temporal units of 2x2 merged tokens (tiny model: patch 8, merge 2) at 32x32
    assert float(by[("score", "0.25", "all")]["kept_tokens_mean"]) == 2  # ceil(0.25 * 8)
    assert by[("uniform", "0.05", "all")]["over_budget"] == "1"  # one whole unit (4) > ceil(0.05 * 8) = 1
    assert by[("surprise", "0.05", "all")]["over_budget"] == "0"
    for (m, r, fam), row in by.items():
        van = float(by[("vanilla", "1.0", fam)]["accuracy"])
        if van > 0:
            assert abs(float(row["pct_of_vanilla"]) - 100 * float(row["accuracy"]) / van) < 0.01
        assert row["n"] == ("6" if fam == "all" else "3")
    for m in ("score", "uniform", "surprise", "random", "fastv"):  # every method keeps everything at ratio 1.0
        assert by[(m, "1.0", "all")]["accuracy"] == by[("vanilla", "1.0", "all")]["accuracy"]
    for r in ("1.0", "0.25", "0.05"):  # the tiny LLM has 2 layers, FastV's K = 2: every layer sees every token
        assert float(by[("fastv", r, "all")]["flops_pct_of_vanilla"]) > 100
        assert float(by[("fastv", r, "all")]["prefill_tflops"]) > float(by[("vanilla", "1.0", "all")]["prefill_tflops"])
        assert float(by[("random", r, "all")]["select_tflops"]) == 0
    assert float(by[("score", "0.05", "all")]["flops_pct_of_vanilla"]) < 100
    assert float(by[("vanilla", "1.0", "all")]["flops_pct_of_vanilla"]) == 100
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| score |" in md and "| method (MFLOPs) |" in md
    # panels: all, all against compute, flash, stitched
    assert Image.open(tmp_path / "out" / "accuracy_vs_retention.png").size[0] == pytest.approx(4 * 4.2 * 120, abs=1)
    # matched.md: SCORE at 0.25 and 0.05 against the 4 other methods; one margin by hand from the CSV's rows
    table = [[c.strip() for c in line.strip("|").split("|")] for line in matched.splitlines() if line.startswith("| ")]
    got = {(c[0], c[3]): c for c in table[1:]}
    assert len(got) == 2 * 4 and max(map(len, matched.splitlines())) <= 120
    score = by[("score", "0.25", "all")]
    eligible = [  # random keeps SCORE's 2 tokens at 0.25 and selects for free: at least that ratio fits
        float(r["accuracy"])
        for (m, _, fam), r in by.items()
        if m == "random" and fam == "all" and float(r["prefill_tflops"]) <= float(score["prefill_tflops"])
    ]
    assert len(eligible) >= 2
    margin = 100 * (float(score["accuracy"]) - max(eligible))
    assert float(got[("0.25", "random")][7]) == pytest.approx(margin, abs=0.05)
    assert got[("0.25", "fastv")][4:8] == ["-"] * 4  # FastV costs more than vanilla on the 2-layer LLM: never matched
    assert float(got[("0.25", "fastv")][8]) == pytest.approx(
        100 * float(by[("fastv", "0.25", "all")]["accuracy"]), abs=0.05
    )
    assert len(list((tmp_path / "out").glob("kept_tokens_*.png"))) == 2

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("score_lit-eval").experiment_id]
    )  # sweeps apart from training
    parent = [r for r in runs if r.data.tags.get("kind") == "eval-sweep"]
    assert parent[0].info.status == "FINISHED" and parent[0].info.run_name == "eval-toy out"
    assert parent[0].data.metrics["accuracy/score_r0.25"] == float(by[("score", "0.25", "all")]["accuracy"])  # summary
    assert parent[0].data.metrics["questions_done"] == 6
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parent) == 1 and len(children) == 1 + 5 * 3
    assert all(c.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for c in children)
    child = next(
        c for c in children if c.data.params["method"] == "score" and c.data.params["retention_ratio"] == "0.25"
    )
    assert child.data.tags["benchmark"] == "toy" and child.data.tags["retention_ratio"] == "0.25"
    assert child.data.metrics["accuracy"] == float(by[("score", "0.25", "all")]["accuracy"])
    assert "accuracy_flash" in child.data.metrics
    assert child.data.metrics["prefill_tflops"] == float(by[("score", "0.25", "all")]["prefill_tflops"])
    assert "select_tflops" in child.data.metrics and "flops_pct_of_vanilla" in child.data.metrics
    arts = {a.path for a in client.list_artifacts(parent[0].info.run_id)}
    assert {"results.csv", "results.md", "matched.md", "accuracy_vs_retention.png", "kept_tokens_0.png"} <= arts

    # The policy folder's model card takes this sweep's headline (`score_lit card FOLDER --eval OUT`): sweep.json
    # names the weights the sweep evaluated (policy.pt's, the same as its folder's); other weights are refused.
    import json
    import shutil

    folder = shutil.copytree(policy.with_suffix(""), tmp_path / "policy")  # the fixture's folder stays as it is
    state = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert state["policy_weights_sha256"] == json.loads((folder / "config.json").read_text())["weights_sha256"]
    assert "No evaluation is recorded" in (folder / "README.md").read_text()
    assert main(["card", str(folder), "--eval", str(tmp_path / "out")]) == 0
    section = (folder / "README.md").read_text().split("## Evaluation\n", 1)[1].split("\n## ", 1)[0]
    assert f": 6 questions (sweep `{tmp_path / 'out'}`)" in section and matched.rstrip("\n") in section
    van, s25 = by[("vanilla", "1.0", "all")], by[("score", "0.25", "all")]
    assert f"(vanilla, every token kept: {100 * float(van['accuracy']):.1f}%)" in section
    row = [100 * float(s25[k]) if k == "accuracy" else float(s25[k]) for k in ("accuracy", "pct_of_vanilla")]
    assert f"| 25% | {row[0]:.1f} | {row[1]:.1f} | {float(s25['flops_pct_of_vanilla']):.1f} |" in section
    assert "| 100% |" in section and "| 5% |" in section and "predates weight fingerprints" not in section
    other = save_policy_dir(
        tmp_path / "other",
        build_policy(2 * 64, PolicyConfig(name="mlp", hidden=16)),
        PolicyConfig(name="mlp", hidden=16),
        {"family": "qwen2_5_vl", "hidden_size": 64, "path": "tiny-random"},
    )
    capsys.readouterr()
    assert main(["card", str(other), "--eval", str(tmp_path / "out")]) == 2
    assert "the sweep evaluated other weights" in capsys.readouterr().err
    assert "No evaluation is recorded" in (other / "README.md").read_text()  # left as it was


def test_the_picture_gets_a_compute_panel_when_the_rows_have_flops():
    import matplotlib.pyplot as plt

    def row(fam, m, r, acc, tflops):
        return {"family": fam, "method": m, "retention_ratio": r, "accuracy": acc, "prefill_tflops": tflops}

    rows = [
        row("all", "vanilla", 1.0, 0.8, 10.0),
        row("all", "score", 0.5, 0.75, 5.0),
        row("all", "score", 0.1, 0.7, 1.0),
        row("all", "fastv", 0.1, 0.6, 12.0),
        row("a", "vanilla", 1.0, 0.8, 10.0),
        row("a", "score", 0.1, 0.7, 1.0),
    ]
    # x: prefill FLOPs / vanilla's (1 / 10, 5 / 10, 12 / 10), cheapest first; y: accuracy %
    assert compute_curves(rows) == {
        "vanilla": [(1.0, 80.0)],
        "score": [(0.1, pytest.approx(70.0)), (0.5, 75.0)],
        "fastv": [(1.2, pytest.approx(60.0))],
    }
    fig = accuracy_figure(rows, "t")
    assert [(ax.get_title(), ax.get_xlabel()) for ax in fig.axes] == [
        ("all", "retention ratio"),
        ("all: accuracy vs compute", "prefill FLOPs / vanilla's"),
        ("a", "retention ratio"),
    ]
    lines = {line.get_label(): line for line in fig.axes[1].get_lines()}
    assert list(lines["score"].get_xdata()) == [0.1, 0.5] and list(lines["vanilla"].get_xdata()) == [1.0]
    no_flops = [{**r, "prefill_tflops": float("nan")} for r in rows if r["family"] == "all"]
    one = accuracy_figure(no_flops, "t")
    assert compute_curves(no_flops) == {} and len(one.axes) == 1  # one panel, as before
    plt.close(fig)
    plt.close(one)


def test_sweep_flops_exact_and_score_far_below_vanilla_at_10pct(bench):
    # 4 frames at 128 px: 2 units of 8x8 = 128 visual tokens, so the video outweighs the prompt's text.
    d, policy = bench
    cfg = load_config(
        ["conf/eval.yaml"],
        [
            "mllm.path=null",
            "eval.benchmark=toy",
            f"eval.root={d / 'bench'}",
            f"eval.policy={policy}",
            "eval.methods=[score,fastv]",
            "eval.ratios=[0.1]",
            "eval.frames=4",
            "eval.size=128",
            "eval.batch_size=6",
        ],
    )
    res = sweep(cfg, progress=False)
    assert res["n_tokens"] == 128
    by = {(r["method"], r["family"]): r for r in res["rows"]}
    van, score, fastv = by[("vanilla", "all")], by[("score", "all")], by[("fastv", "all")]
    assert score["kept_tokens_mean"] == 13 and van["flops_pct_of_vanilla"] == 100  # ceil(0.1 * 128)
    assert score["flops_pct_of_vanilla"] < 50 and fastv["flops_pct_of_vanilla"] > 100
    # exact: SCORE's selection is the state + MLP (hidden 16) over all 128 tokens of width 64, the same for every question
    sel = policy_flops(2, 64, 64, 16)
    assert score["select_tflops"] * TERA == pytest.approx(sel, rel=1e-12)
    # per question: vanilla = prefill(L_text + 128), score = prefill(L_text + 13) + its selection, the same L_text
    from score_lit.mllm import build_mllm

    text_cfg = build_mllm(cfg.mllm).model.config.text_config
    rec = res["record"]
    for j, f in enumerate(rec.vanilla.flops):
        text = next(n for n in range(1, 1000) if prefill_flops(text_cfg, n + 128) == f)
        assert rec.methods[("score", 0.1)].flops[j] == prefill_flops(text_cfg, text + 13) + sel


def test_a_sweep_from_the_filled_cache_gives_the_same_answers(tmp_path, bench):
    # eval.cache_dir: cache-features fills it for the benchmark's questions; the sweep then reads it, decoding nothing.
    from score_lit.data.feature_cache_fill import fill_cache

    d, policy = bench
    over = [
        "mllm.path=null",
        "eval.benchmark=toy",
        f"eval.root={d / 'bench'}",
        f"eval.policy={policy}",
        "eval.methods=[score,uniform]",
        "eval.ratios=[1.0,0.25]",
        "eval.frames=4",
        "eval.size=32",
        "eval.batch_size=4",
        "eval.limit=8",
    ]
    plain = sweep(load_config(["conf/eval.yaml"], over), progress=False)
    cfg = load_config(["conf/eval.yaml"], [*over, f"eval.cache_dir={tmp_path / 'features'}"])
    (filled,) = fill_cache(cfg, log=lambda line: None)
    assert filled.rows == filled.written == len(plain["record"].ids) > 0  # every question of the sweep
    import score_lit.data.video_qa as vq

    def no_decoding(*a, **k):
        raise AssertionError("a cached question was decoded")

    vq.VideoQADataset.__getitem__, saved = no_decoding, vq.VideoQADataset.__getitem__
    try:
        cached = sweep(cfg, progress=False)
    finally:
        vq.VideoQADataset.__getitem__ = saved

    def key(res):
        return {
            (r["method"], r["family"], r["retention_ratio"]): (r["accuracy"], r["kept_tokens_mean"])
            for r in res["rows"]
        }

    assert key(cached) == key(plain)


def test_viz_draws_a_grid_and_a_gif_per_method(tmp_path, bench, capsys):
    d, policy = bench
    video = next((d / "bench" / "videos").glob("flash_*.mp4"))
    args = [
        "viz",
        str(video),
        "mllm.path=null",
        f"eval.policy={policy}",
        "eval.frames=4",
        "eval.size=32",
        "--method",
        "score,surprise",
        "--ratio",
        "0.25",
        "--out",
        str(tmp_path / "viz"),
    ]
    assert main(args) == 0
    paths = capsys.readouterr().out.strip().splitlines()
    assert len(paths) == 3 and paths[0].endswith(".png") and all(p.endswith(".gif") for p in paths[1:])
    gif = Image.open(paths[1])
    total = 0
    for i in range(gif.n_frames):  # PIL folds identical consecutive frames into one longer frame
        gif.seek(i)
        total += gif.info["duration"]
    assert total == 4 * 250 and gif.size == (32 * 4, 32 * 4)  # 4 frames at 4 fps
    gif.seek(0)
    # dropped tokens are dimmed: the GIF is darker than the decoded frame it shows
    from score_lit.data.video_qa import load_video

    frames, _ = load_video(str(video), 4, 32)
    shown = torch.tensor(list(gif.convert("RGB").resize((32, 32), Image.NEAREST).getdata()), dtype=torch.float32)
    assert shown.mean() < 0.8 * torch.from_numpy(frames[0]).float().mean()
    assert main(["viz", str(tmp_path / "nope.mp4")]) == 2


TIMING = ("prefill_ms", "select_ms")


def _csv(path):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(open(path))]


@pytest.mark.integration
def test_an_interrupted_sweep_resumes_to_the_same_results(tmp_path):
    """Ctrl-C (a real SIGINT) in the middle of a sweep keeps what was measured (a partial CSV, a KILLED parent run
    with its metrics so far); eval.resume=true goes on from there to the CSV of an uninterrupted sweep."""
    import json
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from score_lit.evaluation.run import run_eval

    # 48 questions, one per batch: the SIGINT after 3 recorded batches must reach the sweep before it ends
    export_split(tmp_path / "bench", split="test", n=24, families=["flash", "stitched"], frames=4, size=64)
    args = [
        "mllm.path=null",
        "eval.benchmark=toy",
        f"eval.root={tmp_path / 'bench'}",
        "eval.methods=[uniform,fastv]",
        "eval.ratios=[0.1]",
        "eval.frames=4",
        "eval.size=64",
        "eval.batch_size=1",
        "eval.viz_samples=1",
        "eval.viz_ratio=0.1",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    ref = run_eval(load_config(["conf/eval.yaml"], args + [f"eval.out_dir={tmp_path / 'ref'}"]), progress=False)

    out = tmp_path / "cut"
    cmd = [sys.executable, "-m", "score_lit", "eval", "conf/eval.yaml", *args, f"eval.out_dir={out}"]
    root = Path(__file__).resolve().parents[1]
    # SIGINT at its default in the child, as in a terminal: a suite started in the background (bash `&`) would
    # otherwise pass SIG_IGN down and Python would never raise KeyboardInterrupt
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not ((out / "questions.jsonl").is_file() and len((out / "questions.jsonl").read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGINT), err  # the shell shows both as 130
    assert "Traceback" not in err and "interrupted after" in err and "eval.resume=true" in err
    partial = _csv(out / "results.partial.csv")
    assert not (out / "results.csv").exists()
    n_partial = int(next(r for r in partial if r["method"] == "vanilla" and r["family"] == "all")["n"])
    assert 2 <= n_partial < 48  # the batch Ctrl-C cut (possibly while it was being recorded) is left out
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent_id = json.loads((out / "sweep.json").read_text())["parent_run_id"]
    killed = client.get_run(parent_id)
    assert killed.info.status == "KILLED" and "accuracy/uniform_r0.10" in killed.data.metrics

    with pytest.raises(Exception, match="is a sweep of other settings: eval.ratios"):  # resume checks the settings
        run_eval(
            load_config(["conf/eval.yaml"], args + [f"eval.out_dir={out}", "eval.resume=true", "eval.ratios=[0.5]"]),
            progress=False,
        )
    again = subprocess.run(cmd + ["eval.resume=true"], cwd=root, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _csv(out / "results.csv") == _csv(ref)  # the same numbers as the uninterrupted sweep
    assert not (out / "results.partial.csv").exists()
    assert len((out / "questions.jsonl").read_text().splitlines()) == 48  # every question once
    done = client.get_run(parent_id)
    assert done.info.status == "FINISHED" and done.data.metrics["questions_done"] == 48
    assert len(list(out.glob("kept_tokens_*.png"))) == 1
    with pytest.raises(Exception, match="already holds results: resume its sweep with eval.resume=true"):
        run_eval(load_config(["conf/eval.yaml"], args + [f"eval.out_dir={out}"]), progress=False)


def test_every_sweep_gets_its_own_folder_and_resume_finds_the_unfinished_one(tmp_path, monkeypatch):
    import json
    from pathlib import Path

    from score_lit.config import Config, ConfigError, EvalConfig
    from score_lit.evaluation.run import resolve_out_dir, sweep_identity

    monkeypatch.chdir(tmp_path)  # runs/eval/ is relative to where the command runs
    new, again = Config(eval=EvalConfig(methods=["uniform"])), Config(eval=EvalConfig(methods=["uniform"], resume=True))
    first, resuming = resolve_out_dir(new)
    assert not resuming and first.parent == Path("runs/eval") and first.name.startswith("toy-")
    first.mkdir(parents=True)
    second, _ = resolve_out_dir(new)
    assert second != first and not second.exists()  # never onto an earlier sweep, even within the same second
    with pytest.raises(ConfigError, match="no unfinished sweep under runs/eval/"):
        resolve_out_dir(again)
    (first / "sweep.json").write_text(
        json.dumps({"identity": sweep_identity(again), "parent_run_id": "x", "finished": False})
    )
    assert resolve_out_dir(again) == (first, True)  # eval.resume=true alone finds the newest unfinished sweep


def test_the_sweep_ranks_each_batch_once_per_method_and_cuts_it_at_every_ratio(bench, monkeypatch):
    # 6 questions in batches of 4: 2 batches x 3 ratios. A ranking method ranks 2 times (FastV: 2 partial forwards,
    # not 6); uniform selects per ratio, 6 times. The sequence layout is built once per batch and shared by the 1 + 5 x 3
    # score calls, plus once inside each of FastV's partial forwards.
    from score_lit.compressors.fastv import FastV
    from score_lit.compressors.score import ScoreCompressor
    from score_lit.compressors.simple import RandomTokens, UniformFrames
    from score_lit.compressors.surprise import SurpriseTopK
    from score_lit.mllm.adapter import VideoMLLM

    calls = {}

    def counted(cls, name):
        real = getattr(cls, name)

        def wrapper(*a, **k):
            calls[f"{cls.__name__}.{name}"] = calls.get(f"{cls.__name__}.{name}", 0) + 1
            return real(*a, **k)

        monkeypatch.setattr(cls, name, wrapper)

    counted(VideoMLLM, "video_attention")
    counted(VideoMLLM, "layout")
    for cls in (FastV, ScoreCompressor, SurpriseTopK, RandomTokens):
        counted(cls, "rank")
    counted(UniformFrames, "select")
    d, policy = bench
    cfg = load_config(
        ["conf/eval.yaml"],
        [
            "mllm.path=null",
            "eval.benchmark=toy",
            f"eval.root={d / 'bench'}",
            f"eval.policy={policy}",
            "eval.methods=[score,surprise,random,fastv,uniform]",
            "eval.ratios=[1.0,0.25,0.05]",
            "eval.frames=4",
            "eval.size=32",
            "eval.batch_size=4",
        ],
    )
    res = sweep(cfg, progress=False)
    assert len(res["record"].ids) == 6
    assert calls == {
        "VideoMLLM.layout": 4,
        "VideoMLLM.video_attention": 2,
        "FastV.rank": 2,
        "ScoreCompressor.rank": 2,
        "SurpriseTopK.rank": 2,
        "RandomTokens.rank": 2,
        "UniformFrames.select": 6,
    }
    kept = {(m, r): res["record"].methods[(m, r)].kept for m in ("score", "fastv") for r in (1.0, 0.25, 0.05)}
    assert all(k == [8] * 6 for k in (kept[("score", 1.0)], kept[("fastv", 1.0)]))  # each cut has its own budget
    assert all(k == [2] * 6 for k in (kept[("score", 0.25)], kept[("fastv", 0.25)]))
    assert all(k == [1] * 6 for k in (kept[("score", 0.05)], kept[("fastv", 0.05)]))
