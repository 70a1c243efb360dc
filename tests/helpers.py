"""Builders the test modules share (pytest puts this folder on sys.path: `from helpers import ...`): tiny training
runs, video batches and masks for the adapter tests, the lmms-eval environment, the local SLURM clusters. conftest.py keeps only pytest hooks
and imports this module, so torch is imported inside the builders that need it, not here."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LMMS_VENV = ROOT / ".venv-lmms"
INTEGRATION = (
    "lmms",
    "slurm",
    "distributed",
    "resume",
    "mlflow_server",
)  # markers whose tests are all integration tests too


# ------------------------------------------------------------------------------------------------ training runs


def tiny_run(
    tmp_path: Path,
    name: str | None = None,
    steps: dict[str, int] | int = 4,
    *,
    data: dict | None = None,
    group: int = 4,
    hidden: int = 16,
    val_every: int = 2,
    extra: tuple | list = (),
) -> list[str]:
    """key=value overrides of a tiny CPU training run that writes only under tmp_path (runs/, a sqlite MLflow store).

    steps: {phase: steps} (an int = stage1 only, the default phase list); every listed phase gets the tiny data
    settings (4 frames of 32 px, batches of 2) updated by `data`; group = rl.group_size, hidden = policy.hidden,
    val_every = val.every_n_steps; `extra` overrides go last."""
    steps = {"stage1": steps} if isinstance(steps, int) else steps
    data = {"frames": 4, "size": 32, "batch_size": 2, **(data or {})}
    over = [f"name={name}"] if name else []
    over += [f"out_dir={tmp_path / 'runs'}", f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    if list(steps) != ["stage1"]:
        over.append(f"phases=[{','.join(steps)}]")
    over += [f"{p}.steps={n}" for p, n in steps.items()]
    over += [f"rl.group_size={group}", f"policy.hidden={hidden}", f"val.every_n_steps={val_every}"]
    over += [f"{p}.data.{k}={v}" for p in steps for k, v in data.items()]
    return over + list(extra)


def tiny_overrides(tmp_path, steps=4):
    """tiny_run of `steps` stage-1 steps on 40 training and 4 validation samples."""
    return tiny_run(tmp_path, steps=steps, data={"val_samples": 4, "train_samples": 40})


# ------------------------------------------------------------------------------------------------ MLflow server


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on loopback with its own sqlite store and artifact folder under `root` (conftest's
    session fixture `mlflow_server` starts one for the session). `kill()` is a real SIGKILL of the server's process
    group; `start()` brings it back on the same port and store. `hang()` stops the group (SIGSTOP: connections are
    still accepted, nothing answers, as a server stuck on its disk or overloaded) and `wake()` lets it go on."""

    def __init__(self, root: Path):
        self.root, self.port = Path(root), free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 90.0) -> MlflowServer:
        import subprocess
        import sys
        import time
        import urllib.request

        cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}", "--workers", "1"]
        cmd += ["--artifacts-destination", str(self.root / "artifacts")]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job workers: 5 s to start, not 13
        log = (self.root / "server.log").open("a")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.proc.returncode}): {self.root / 'server.log'}")
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.25)
        self.kill()
        raise RuntimeError(f"mlflow server did not answer within {timeout:.0f} s: {self.root / 'server.log'}")

    def hang(self) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGSTOP)

    def wake(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        import signal

        self.wake()  # a stopped process group would hold its port past the SIGKILL's wait
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server and the uvicorn worker it started
            self.proc.wait(timeout=30)
        self.proc = None


# ------------------------------------------------------------------------------------------------ adapter batches

QWEN_FAMILIES = ["qwen2_5_vl", "qwen2_vl"]


def make_batch(b=2, f=8, size=32, seed=0, seconds_per_frame=None):
    """A VideoBatch of b random videos (f frames of size x size) with two questions of different lengths."""
    import torch

    from score_lit.types import VideoBatch

    g = torch.Generator().manual_seed(seed)
    questions = [
        "What color is the ball ?",
        "How many people are in the video and what do they hold in the last frame ?",
    ]
    answers = ["red", "B. two"]
    options = [["red", "green", "blue", "yellow"], ["A. one", "B. two", "C. three", "D. four"]]
    return VideoBatch(
        ids=[f"s{i}" for i in range(b)],
        frames=torch.randint(0, 256, (b, f, 3, size, size), generator=g, dtype=torch.uint8),
        questions=questions[:b],
        answers=answers[:b],
        options=options[:b],
        answer_index=torch.tensor([0, 1][:b]),
        seconds_per_frame=seconds_per_frame,
    )


def make_masks(b, k, v, seed=0):
    """Different keep counts per row: all, ~half, a few, none (cycled)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(b, k, v, generator=g) < 0.5
    masks[:, 0] = True
    if k > 2:
        masks[:, 2] = torch.rand(b, v, generator=g) < 0.15
    if k > 3:
        masks[:, 3] = False
    return masks


def select(batch, i):
    """Sample i of `batch` as a batch of one."""
    from score_lit.types import VideoBatch

    return VideoBatch(
        ids=batch.ids[i : i + 1],
        frames=batch.frames[i : i + 1],
        questions=batch.questions[i : i + 1],
        answers=batch.answers[i : i + 1],
        options=batch.options[i : i + 1],
        answer_index=batch.answer_index[i : i + 1],
        seconds_per_frame=None if batch.seconds_per_frame is None else batch.seconds_per_frame[i : i + 1],
    )


# ------------------------------------------------------------------------------------------------ lmms-eval


def need_lmms(*paths: Path) -> None:
    """Skip without .venv-lmms (or `paths`, e.g. the toy bench), unless REQUIRE_LMMS=1 (`make test` sets it after building
    both): then their absence is a failure, so CI cannot pass with the lmms-eval tests silently skipped."""
    missing = [str(p.relative_to(ROOT)) for p in (LMMS_VENV / "bin/lmms-eval", *paths) if not p.exists()]
    if missing:
        msg = f"missing {missing}: `make test` / `make test-lmms` build .venv-lmms and the toy bench"
        pytest.fail(msg + " (REQUIRE_LMMS=1)") if os.environ.get("REQUIRE_LMMS") == "1" else pytest.skip(msg)


def lmms_env(tmp_path: Path) -> dict:
    """The environment of an lmms-eval CLI run: offline hubs, its datasets cache under tmp_path, no plugin variable."""
    env = {k: v for k, v in os.environ.items() if k not in ("LMMS_EVAL_PLUGINS", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"))
    return env


# Per family: its lmms-eval frame arguments (each stock wrapper names them its own way) and the dtype the stock
# wrapper loads in (Qwen: bfloat16; llava_hf: dtype=auto, the checkpoint's float32), which score_lit eval then uses.
FAMILY_ARGS = {
    "qwen2_5_vl": ("max_num_frames=16,frame_size=64,min_pixels=256,max_pixels=200704", "bfloat16"),
    "llava_onevision": ("max_frames_num=16,frame_size=64", "float32"),
    "qwen3_vl": ("max_num_frames=16,frame_size=64,min_pixels=256,max_pixels=200704", "bfloat16"),
    "qwen3_5": ("max_num_frames=16,frame_size=64,min_pixels=256,max_pixels=200704,enable_thinking=false", "bfloat16"),
}


def tiny_random(tmp_path: Path, family: str) -> tuple[Path, Path]:
    """A tiny RANDOM checkpoint of `family` and a RANDOM question-conditioned policy for it (`question_policy`),
    built in seconds (no trained artifacts)."""
    from score_lit.config import MLLMConfig
    from score_lit.mllm import build_mllm
    from score_lit.mllm.tiny import save_tiny
    from score_lit.training.checkpoint import save_policy

    ckpt = save_tiny(tmp_path / f"tiny-{family}", family)
    identity = build_mllm(MLLMConfig(family=family, path=str(ckpt))).identity()
    policy = question_policy(identity["hidden_size"])
    return ckpt, save_policy(tmp_path / "policy.pt", policy, _question_policy_config(), identity)


def _question_policy_config():
    from score_lit.config import PolicyConfig

    return PolicyConfig(name="query_mlp", hidden=16)


def question_policy(width: int, seed: int = 0):
    """A seeded RANDOM question-conditioned policy (query_mlp, the default recipe's) for an MLLM of `width`, whose
    FiLM weights are non-zero (training starts them at zero), so the question moves the ranking."""
    import torch

    from score_lit.rl.policy import build_policy

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = build_policy(2 * width, _question_policy_config())
        torch.nn.init.normal_(policy.film.weight, std=1.0)
        torch.nn.init.normal_(policy.last.weight, std=1.0)
    return policy.eval()


def assert_one_run_each_step_once(tracking_uri: str, steps: int, key: str = "keep_ratio/mean") -> None:
    """The store at tracking_uri holds ONE run of experiment score_lit (a requeued job reopened it) whose `key` was
    logged at every step 0..steps-1 exactly once (a resumed job logs the rest without overlap)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("score_lit").experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]  # the requeued job reopened the run
    logged = sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, key))
    assert logged == list(range(steps)), [s for s in set(logged) if logged.count(s) > 1] or sorted(
        set(range(steps)) - set(logged)
    )


# ------------------------------------------------------------------------------------------------ local SLURM clusters

SLURM_TOOLS = ROOT / "tools" / "slurm"
SLURM_BINARIES = ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/sbatch", "/usr/bin/srun"]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@contextmanager
def local_slurm(base: Path, nodes: int = 1):
    """A SLURM cluster of `nodes` nodes on this machine, in `base` (tools/slurm/setup_slurm.sh, its own free ports);
    yields its slurm.conf. Afterwards, also on failure: every job cancelled (slurmstepd outlives slurmd, and its
    tasks with it), then the daemons it started stopped by their PIDs (stop_slurm.sh)."""
    missing = [p for p in SLURM_BINARIES if not Path(p).exists()]
    if missing:  # no test installs system packages: `make test-slurm` / `make test` run install_slurm.sh first
        pytest.fail(f"SLURM is missing ({missing}): run `make slurm-binaries` (tools/slurm/install_slurm.sh) first")
    ctld, *slurmd = free_ports(1 + nodes)
    env = {
        **os.environ,
        "BASE": str(base),
        "WITH_DBD": "0",
        "NODES": str(nodes),
        "CTLD_PORT": str(ctld),
        "SLURMD_PORT": str(slurmd[0]),
        "SLURMD_PORTS": " ".join(map(str, slurmd)),
    }
    conf = base / "etc" / "slurm.conf"
    try:
        r = subprocess.run(
            ["bash", str(SLURM_TOOLS / "setup_slurm.sh")], capture_output=True, text=True, env=env, timeout=120
        )
        if r.returncode != 0:
            logs = "".join(f"\n--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((base / "log").glob("*")))
            pytest.fail(f"setup_slurm.sh failed (exit {r.returncode}): {r.stderr.strip()[-1000:]}{logs}")
        yield conf
    finally:
        if conf.is_file():
            cenv = {**os.environ, "SLURM_CONF": str(conf)}
            subprocess.run(["scancel", "--full", "--user", "root"], env=cenv, capture_output=True, timeout=30)
            end = time.monotonic() + 30
            while (
                time.monotonic() < end
                and subprocess.run(
                    ["squeue", "-h"], env=cenv, capture_output=True, text=True, timeout=30
                ).stdout.strip()
            ):
                time.sleep(0.5)
        subprocess.run(["bash", str(SLURM_TOOLS / "stop_slurm.sh")], env=env, capture_output=True, timeout=120)


def slurm_job(job: str) -> dict[str, str]:
    """`scontrol show job` as a dict (JobState, Restarts, NodeList, ...)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=30).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))
