"""lmms-eval's generate_until through score_lit's model classes (make test-lmms; `make test` runs them too).

The score_toy_gen task (tools/lmms/tasks/score_toy_gen: the toy test split in Video-MME's form, options in the prompt,
the answer parsed from the generated text by lmms-eval's own multiple-choice parser) through lmms-eval's REAL CLI,
against `python -m score_lit eval` on the same questions with the same prompt text (a jsonl whose questions are the
task's doc_to_text). The prompt asks for the option alone and every option is one token: greedy generation of one
token must be an option (checked per question: it is the argmax over the whole vocabulary, so it is then the argmax
over the options) and be right exactly where score_lit eval's option argmax is right (per question, not only counts).
* qwen2_5_vl: the trained toy (models/toy-mllm, committed) at retention 1.0 and 0.1 (a seeded random policy,
  shared as a FOLDER: config.json + model.safetensors, so `policy=` takes a folder), the chat class (default);
* llava_onevision: a tiny RANDOM checkpoint + random policy.pt at 0.1, the simple class (--force_simple). A random
  model's greedy token is any word, so this checkpoint's generation_config.json suppresses every token but the
  options (the digits): its generation is then the option argmax, which is what is compared.
* qwen3_vl, qwen3_5: likewise (tiny RANDOM checkpoints saved to disk, random policy.pt, 0.1, simple class), and the
  SAME lmms-eval run also does the loglikelihood task score_toy (`--tasks score_toy,score_toy_gen`: one CLI start
  per family); score_lit eval runs once over both question sets (the task's N docs, then the N generate prompts
  under ids "<id>#gen"), with the prompt the lmms class builds (system turn; Qwen3.5 with enable_thinking=false).
  Both tasks must be right on exactly the same questions as score_lit eval.
Frames are decoded by decord from the toy bench's real mp4 files on both sides; no torchvision, no qwen_vl_utils.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAMILY_ARGS, LMMS_VENV, ROOT, lmms_env, need_lmms, question_policy, tiny_random

TOY, BENCH = (
    ROOT / "models/toy-mllm",
    ROOT / "artifacts/toy-bench/test.jsonl",
)  # the committed toy (make test copies nothing)
TASK = ROOT / "tools/lmms/tasks/score_toy_gen"
N = 16  # questions per run
N_QWEN3 = 8  # questions per task for the Qwen3 families (two tasks in one run)
CASES = {
    "qwen2_5_vl": ("toy", [0.1, 1.0], False),
    "llava_onevision": ("tiny_random", [0.1], True),
    "qwen3_vl": ("tiny_random", [0.1], True),
    "qwen3_5": ("tiny_random", [0.1], True),
}
BOTH_TASKS = ("qwen3_vl", "qwen3_5")  # families whose run also does the loglikelihood task score_toy


def task_utils():
    spec = importlib.util.spec_from_file_location("score_toy_gen_utils", TASK / "gen_utils.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def same_questions(folder: Path, n: int = N, with_plain: bool = False) -> Path:
    """The first n toy rows with the task's prompt as the question and absolute video paths (score_lit eval's input);
    with_plain: after the first n rows as they are (score_toy's docs), the prompted ones under ids "<id>#gen"."""
    gu = task_utils()
    rows = [json.loads(line) for line in BENCH.read_text().splitlines()[:n]]
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "test.jsonl"
    plain = [{**r, "video": str((BENCH.parent / r["video"]).resolve())} for r in rows] if with_plain else []
    gen = [
        {
            **r,
            "id": f"{r['id']}#gen" if with_plain else r["id"],
            "question": gu.doc_to_text(r),
            "video": gu.doc_to_visual(r)[0],
        }
        for r in rows
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in plain + gen))
    return out


def toy_policy_folder(tmp_path: Path) -> Path:
    from score_lit.config import MLLMConfig, PolicyConfig
    from score_lit.mllm import build_mllm
    from score_lit.training.checkpoint import save_policy_dir

    identity = build_mllm(MLLMConfig(family="qwen2_5_vl", path=str(TOY))).identity()
    policy = question_policy(identity["hidden_size"])
    return save_policy_dir(tmp_path / "policy", policy, PolicyConfig(name="query_mlp", hidden=16), identity)


def only_options(ckpt: Path, options: list[str]) -> None:
    """The checkpoint's generation_config.json suppresses every token but the options' (one token each)."""
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(ckpt)
    keep = {tok.convert_tokens_to_ids(o) for o in options}
    vocab = json.loads((ckpt / "config.json").read_text())["text_config"]["vocab_size"]
    gc = GenerationConfig.from_pretrained(ckpt) if (ckpt / "generation_config.json").is_file() else GenerationConfig()
    gc.suppress_tokens = [i for i in range(vocab) if i not in keep]
    gc.save_pretrained(ckpt)


@pytest.mark.lmms
@pytest.mark.slow
@pytest.mark.parametrize("family", list(CASES))
def test_lmms_generate_until_equals_score_lit_eval(tmp_path, family):
    model, ratios, simple = CASES[family]
    both = family in BOTH_TASKS
    n = N_QWEN3 if both else N
    need_lmms(BENCH)
    if model == "toy":
        ckpt, pol = TOY, toy_policy_folder(tmp_path)
    else:
        ckpt, pol = tiny_random(tmp_path, family)
        only_options(ckpt, [str(d) for d in range(10)])
    frame_args, dtype = FAMILY_ARGS[family]
    bench = same_questions(tmp_path / "bench", n, with_plain=both)
    tasks = ["score_toy", "score_toy_gen"] if both else ["score_toy_gen"]

    # (ratio, batch size) of each lmms-eval run: the toy also runs --batch_size 4 at 0.1, which must answer as 1 does
    runs = [(r, 1) for r in ratios] + ([(0.1, 4)] if model == "toy" else [])
    tag = lambda r, b: f"{r}" if b == 1 else f"{r}-bs{b}"  # noqa: E731

    def lmms_cmd(r, b):
        log = tmp_path / f"selection-{tag(r, b)}.jsonl"
        args = f"pretrained={ckpt},policy={pol},retention_ratio={r},{frame_args},device_map=cpu,selection_log={log}"
        return [
            str(LMMS_VENV / "bin/lmms-eval"),
            "--model",
            f"score_{family}",
            "--model_args",
            args,
            "--include_path",
            str(TASK.parent),
            "--tasks",
            ",".join(tasks),
            "--limit",
            str(n),
            "--batch_size",
            str(b),
            "--device",
            "cpu",
            "--log_samples",
            "--output_path",
            str(tmp_path / f"lmms-{tag(r, b)}"),
            *(["--force_simple"] if simple else []),
        ]

    out = tmp_path / "score_lit"
    configs = ["conf/eval.yaml"]
    if both:  # the lmms class's prompt: the stock wrapper's system turn (Qwen3.5: enable_thinking=false)
        from score_lit.mllm.qwen3_vl import qwen3_chat_template

        template = qwen3_chat_template("You are a helpful assistant.", False, thinking=family == "qwen3_5")
        (tmp_path / "prompt.yaml").write_text(json.dumps({"mllm": {"prompt_template": template}}))
        configs.append(str(tmp_path / "prompt.yaml"))
    sl_cmd = [
        sys.executable,
        "-m",
        "score_lit",
        "eval",
        *configs,
        f"mllm.family={family}",
        f"mllm.path={ckpt}",
        f"eval.limit={len(bench.read_text().splitlines())}",
        "eval.benchmark=toy",
        f"eval.root={bench.parent}",
        "eval.frames=16",
        "eval.size=64",
        "eval.methods=[score]",
        "eval.ratios=[0.1]",
        f"eval.policy={pol}",
        "eval.batch_size=1",
        f"mllm.dtype={dtype}",
        "eval.viz_samples=0",
        f"eval.out_dir={out}",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    logs = {rb: tmp_path / f"lmms-{tag(*rb)}.log" for rb in runs}
    procs = {
        rb: subprocess.Popen(
            lmms_cmd(*rb), cwd=ROOT, env=lmms_env(tmp_path), stdout=open(logs[rb], "w"), stderr=subprocess.STDOUT
        )
        for rb in runs
    }
    sl = subprocess.run(sl_cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    for p in procs.values():
        p.wait(timeout=600)
    assert sl.returncode == 0, (sl.stdout + sl.stderr)[-5000:]
    questions = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    correct = {1.0: {}, 0.1: {}}  # ratio -> {id: score_lit eval right?}
    for q in questions:
        for i, c1, c01 in zip(q["ids"], q["vanilla"]["correct"], q["methods"]["score@0.1"]["correct"]):
            correct[1.0][i], correct[0.1][i] = bool(c1), bool(c01)
    rows = {json.loads(line)["id"]: json.loads(line) for line in bench.read_text().splitlines()}
    gen_ids = [i for i in rows if i.endswith("#gen")] if both else list(rows)
    assert len(correct[0.1]) == len(rows) and len(gen_ids) == n
    responses_of = {}
    for r, b in runs:
        log = logs[r, b].read_text()
        assert procs[r, b].returncode == 0 and "Error during evaluation" not in log and "Traceback" not in log, log[
            -5000:
        ]
        results = json.loads(next((tmp_path / f"lmms-{tag(r, b)}").rglob("*_results.json")).read_text())["results"]
        for task in tasks:
            files = list((tmp_path / f"lmms-{tag(r, b)}").rglob(f"*samples_{task}.jsonl"))
            samples = sorted((json.loads(line) for f in files for line in open(f)), key=lambda s: s["doc_id"])
            assert len(samples) == n, log[-3000:]
            ids = gen_ids if task == "score_toy_gen" else [i for i in rows if not i.endswith("#gen")]
            expected = [correct[r][i] for i in ids]
            if task == "score_toy_gen":
                responses = [
                    s["filtered_resps"] if isinstance(s["filtered_resps"], str) else s["filtered_resps"][0]
                    for s in samples
                ]
                # the one greedy token is an option (so it is the argmax over the options as well)...
                assert all(resp.strip() in rows[i]["options"] for resp, i in zip(responses, ids)), responses
                responses_of[r, b] = responses
            # ... and right exactly where score_lit eval's option argmax is right (loglikelihood: its lowest CE)
            got = [bool(s["acc"]) for s in samples]
            assert got == expected, f"{task} ratio {r}: lmms-eval {got} != score_lit eval {expected}"
            assert round(results[task]["acc,none"] * n) == sum(expected)
            print(
                f"{family} {task} ratio {r} batch {b}: lmms-eval {sum(got)}/{n} == score_lit eval {sum(expected)}/{n} "
                "(per question)"
            )
    if (0.1, 4) in runs:  # batch size 4: the same answers and the same kept tokens per question as batch size 1
        assert responses_of[0.1, 4] == responses_of[0.1, 1]
        kept = {b: [json.loads(x) for x in (tmp_path / f"selection-{tag(0.1, b)}.jsonl").open()] for b in (1, 4)}
        assert len(kept[1]) == n and [(x["question"], x["kept"]) for x in kept[4]] == [
            (x["question"], x["kept"]) for x in kept[1]
        ]
    if model == "toy":  # the trained toy reads the digit: a non-trivial accuracy, so the equality says something
        assert sum(correct[1.0].values()) > N // 2


@pytest.mark.lmms
def test_lmms_policy_folder_errors_are_one_line(tmp_path):
    """`policy=` of the lmms-eval classes: a policy folder whose model.safetensors is corrupt, and one whose config
    names another MLLM (a tiny LLaVA-OneVision, width 64, next to the toy Qwen2.5-VL, width 128), each fail with ONE
    line saying what is wrong (not a traceback from safetensors or load_state_dict)."""
    need_lmms(BENCH)
    good = toy_policy_folder(tmp_path / "good")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((good / "config.json").read_text())
    (corrupt / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes()[:40])  # cut inside the header
    from score_lit.training.checkpoint import load_policy, save_policy_dir

    ckpt, llava_pt = tiny_random(tmp_path, "llava_onevision")
    pol, meta = load_policy(llava_pt)
    from score_lit.config import PolicyConfig

    other = save_policy_dir(tmp_path / "other", pol, PolicyConfig(**meta["policy_config"]), meta["mllm"])
    code = (
        "import sys, json\nfrom score_lit.lmms.models.score_qwen2_5_vl import ScoreQwen2_5_VLSimple\nout = {}\n"
        "for name in sys.argv[2:]:\n"
        "    try:\n"
        "        ScoreQwen2_5_VLSimple(pretrained=sys.argv[1], policy=name, retention_ratio=0.1, device_map='cpu', device='cpu')\n"
        "        out[name] = None\n"
        "    except Exception as e:\n"
        "        out[name] = f'{type(e).__name__}: {e}'\n"
        "print('RESULT' + json.dumps(out))\n"
    )
    p = subprocess.run(
        [str(LMMS_VENV / "bin/python"), "-c", code, str(TOY), str(corrupt), str(other)],
        cwd=ROOT,
        env=lmms_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.split("RESULT", 1)[1])
    needles = {
        str(corrupt): ["is not readable", "re-export it"],
        str(other): [
            "llava_onevision with width 64",
            "qwen2_5_vl with width 128",
            "use a policy trained for this model",
        ],
    }
    for name, words in needles.items():
        msg = out[name]
        assert msg is not None and msg.startswith("ConfigError: ") and "\n" not in msg, msg
        assert all(w in msg for w in words), msg


@pytest.mark.lmms
@pytest.mark.slow
def test_lmms_cli_question_changes_kept_tokens(tmp_path):
    """The default (question-conditioned) policy through lmms-eval's real CLI, both output types: two documents with
    ONE video and two questions keep different tokens (the `selection_log` model arg records every selection), in
    loglikelihood (score_toy) and in generate_until (score_toy_gen, --batch_size 2: both rows in one call)."""
    need_lmms(BENCH)
    ckpt, pol = tiny_random(tmp_path, "qwen2_5_vl")
    row = json.loads(BENCH.read_text().splitlines()[0])
    video = str((BENCH.parent / row["video"]).resolve())
    docs = [{**row, "id": "a", "video": video}, {**row, "id": "b", "video": video, "question": "what colour was it ?"}]
    work = tmp_path / "work"  # the tasks read artifacts/toy-bench/test.jsonl relative to the working directory
    (work / "artifacts/toy-bench").mkdir(parents=True)
    (work / "artifacts/toy-bench/test.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    log = tmp_path / "selection.jsonl"
    frame_args, _ = FAMILY_ARGS["qwen2_5_vl"]
    args = f"pretrained={ckpt},policy={pol},retention_ratio=0.1,{frame_args},device_map=cpu,selection_log={log}"
    cmd = [str(LMMS_VENV / "bin/lmms-eval"), "--model", "score_qwen2_5_vl", "--model_args", args]
    cmd += ["--include_path", str(TASK.parent), "--tasks", "score_toy,score_toy_gen", "--batch_size", "2"]
    cmd += ["--device", "cpu", "--force_simple", "--output_path", str(tmp_path / "lmms")]
    run = subprocess.run(cmd, cwd=work, env=lmms_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "Traceback" not in run.stderr, (run.stdout + run.stderr)[-5000:]
    lines = [json.loads(x) for x in log.open()]
    for path in ("loglikelihood", "generate_until"):
        sel = [x for x in lines if x["path"] == path]
        assert len(sel) == 2, lines
        assert row["question"] in sel[0]["question"] and "what colour was it ?" in sel[1]["question"]
        assert len(sel[0]["kept"]) == len(sel[1]["kept"]) > 0
        assert sel[0]["kept"] != sel[1]["kept"], f"{path}: the question did not change the kept tokens"
