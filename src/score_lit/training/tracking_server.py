"""Training against an MLflow tracking server (tracking.tracking_uri=http://HOST:PORT, or MLFLOW_TRACKING_URI).

* `check_server(uri)`: before anything is written, the server must answer; if not, one ConfigError line says
  which URI and how to fix it (the CLI exits 2, with no run folder and no checkpoint).
* `bounded_retries()`: MLflow's HTTP client retries a failed request 7 times with backoff 2 (about 4 minutes on a
  dead server). Around a training run the retries are 2 with backoff 1 (a few seconds), unless the environment sets
  MLFLOW_HTTP_REQUEST_MAX_RETRIES / _BACKOFF_FACTOR / _TIMEOUT itself: an outage must not stall the training.
* `Outage`: when a metric batch cannot reach the server, the run goes on. The batch, and every later one, is
  appended to <run_dir>/mlflow_pending.jsonl (rank 0 only: it alone has a logger), one warning line goes to stderr,
  and every tracking.retry_every_s seconds a plain HTTP request asks whether the server is back; when it is, the file is
  uploaded in order and removed, and the run gets the tag `score_lit.tracking_outage` saying which steps came late.
  A run that ends during the outage writes its end ("FINISHED", "KILLED", ...) into the file instead of the server.
* `sync_run(run_dir)`: `python -m score_lit mlflow-sync runs/<name>` uploads what the file holds once the server is
  back: the metrics, then (when the run had ended) policy.pt, the training curves and the run's end status.

Exactly once: a batch written to the file without being sent is not on the server. Only the batch that failed can
be there already (the server stored it, the answer was lost); its values at steps the server already has are left
out. Uploading the same file twice adds nothing: the store ignores a metric identical to one it holds (same key,
step, timestamp and value), so a sync cut short is simply run again.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from score_lit.config import ConfigError

PENDING = "mlflow_pending.jsonl"  # in the run folder
RETRIES = {  # MLflow's HTTP client settings around a run, unless the environment sets them
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
OUTAGE_TAG = "score_lit.tracking_outage"
MAX_BATCH = 1000  # metrics per log_batch request (MLflow's limit)


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


@contextmanager
def bounded_retries():
    """MLflow's HTTP retries bounded for the duration (module docstring); the environment's own values win."""
    added = [k for k in RETRIES if k not in os.environ]
    os.environ.update({k: RETRIES[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _reason(e: BaseException) -> str:
    """A few words for why a request failed (the full MLflow message is a paragraph)."""
    text = str(getattr(e, "reason", "") or e)
    for needle, words in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("timed out", "timed out"),
        ("Max retries exceeded", "no answer"),
    ):
        if needle in text:
            return words
    return text.strip().splitlines()[0][:160] if text.strip() else type(e).__name__


def answers(uri: str, timeout: float = 3.0) -> str | None:
    """None when an HTTP server answers at `uri` (any status: behind a proxy /health may be another page), else why
    not. One plain request, none of MLflow's retries: cheap enough to ask during a run."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as e:
        return _reason(e)
    return None


def unreachable(e: BaseException) -> bool:
    """Whether an exception of a tracking call means the server cannot be reached (or failed on its side), as opposed
    to the server refusing the request (a 4xx: a bug to raise, not an outage to wait out)."""
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(e, RestException):
        return e.get_http_status_code() >= 500
    return isinstance(e, (MlflowException, OSError))  # requests' ConnectionError / Timeout are OSErrors


def check_server(uri: str) -> None:
    """Raise one ConfigError line when `uri` is a tracking server that does not answer (other URIs: nothing to do)."""
    if not is_server(uri):
        return
    why = answers(uri)
    if why is None:  # something answers: is it an MLflow server that lets us in?
        from mlflow.tracking import MlflowClient

        try:
            with bounded_retries():
                MlflowClient(uri).search_experiments(max_results=1)
        except Exception as e:
            why = _reason(e)
    if why is not None:
        raise ConfigError(
            f"no MLflow tracking server at tracking.tracking_uri={uri} ({why}): start it (e.g. `mlflow server --host "
            f"127.0.0.1 --port 5000 --backend-store-uri sqlite:///$PWD/mlflow.db`) or set tracking.tracking_uri "
            f"(or MLFLOW_TRACKING_URI) to one that runs; nothing was written"
        )


class Outage:
    """The outage journal of one run (module docstring); RunLogger (training/fit.py) calls it."""

    def __init__(self, run_dir: Path, uri: str, run_id: str, retry_every_s: float = 30.0):
        self.path, self.uri, self.run_id, self.every = Path(run_dir) / PENDING, uri, run_id, retry_every_s
        self.offline, self.since = False, ""  # while the server is unreachable: since when ("step 7")
        self.refused = False  # the server came back but refused the kept metrics: they wait for mlflow-sync
        self.next_probe = 0.0

    def upload_left(self, client) -> None:
        """A resumed run: upload the journal its previous attempt left (its end status is moot: the run goes on)."""
        if not self.path.is_file():
            return
        header, _ = read_pending(self.path)
        if header["run_id"] != self.run_id:
            raise ConfigError(
                f"{self.path} holds metrics of MLflow run {header['run_id']} that are not uploaded yet, and this run "
                f"logs to {self.run_id}: upload them first with `python -m score_lit mlflow-sync {self.path.parent}`"
            )
        n, steps, _ = replay(client, self.path, "by the resumed run")
        self.path.unlink()
        print(f"score_lit: uploaded {n} metric values of steps {steps} that the previous attempt kept", flush=True)

    def begin(self, error: BaseException, step: int | None) -> None:
        """The server went away at `step` (None: at the end of the run): say so once and keep what comes."""
        self.offline, self.since = True, "the end of the run" if step is None else f"step {step}"
        self.next_probe = time.monotonic() + self.every
        print(
            f"score_lit: warning: MLflow server {self.uri} unreachable at {self.since} ({_reason(error)}); "
            f"training goes on, metrics are kept in {self.path} and uploaded when it answers again "
            f"(asked every {self.every:g} s; after the run: python -m score_lit mlflow-sync {self.path.parent})",
            file=sys.stderr,
            flush=True,
        )

    def report_end(self) -> None:
        print(
            f"score_lit: warning: the MLflow server {self.uri} is still unreachable at the end: what was logged since "
            f"{self.since} and the run's end wait in {self.path}; once the server is back, upload them with: "
            f"python -m score_lit mlflow-sync {self.path.parent}",
            file=sys.stderr,
            flush=True,
        )

    def keep(self, step: int | None, metrics: dict, attempted: bool = False) -> None:
        """Append one step's metrics; `attempted`: the batch that failed (the server may hold it already)."""
        record = {"step": step or 0, "timestamp": int(time.time() * 1000), "metrics": metrics}
        self._append(record | ({"attempted": True} if attempted else {}))

    def keep_end(self, status: str) -> None:
        self._append({"end": status})

    def _append(self, record: dict) -> None:
        new = not self.path.exists()
        with self.path.open("a") as f:
            if new:
                f.write(json.dumps({"run_id": self.run_id, "tracking_uri": self.uri}) + "\n")
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def reconnect(self, client, force: bool = False) -> bool:
        """During an outage: if it is time to ask (or `force`) and the server answers, upload the journal and go
        online. Returns whether the server is reachable now."""
        if not self.offline:
            return True
        if self.refused or (not force and time.monotonic() < self.next_probe):
            return False
        self.next_probe = time.monotonic() + self.every
        if answers(self.uri) is not None:
            return False
        try:
            n, steps, _ = replay(client, self.path, "by the training run itself")
        except Exception as e:
            if not unreachable(e):  # e.g. a server back on another store, without this run: not the training's end
                self.refused = True
                print(
                    f"score_lit: warning: MLflow server {self.uri} answers again but refuses the kept metrics "
                    f"({_reason(e)}); they stay in {self.path} for mlflow-sync, the training goes on",
                    file=sys.stderr,
                    flush=True,
                )
            return False
        self.path.unlink()
        print(
            f"score_lit: MLflow server {self.uri} answers again: uploaded {n} metric values of steps {steps} "
            f"kept during the outage (tagged {OUTAGE_TAG} on the run)",
            file=sys.stderr,
            flush=True,
        )
        self.offline = False
        return True


def read_pending(path: Path) -> tuple[dict, list[dict]]:
    """(header, records) of a journal; a torn last line (a kill while appending) is left out."""
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise ConfigError(f"{path}: line {i + 1} is not JSON; fix or remove that line") from None
    if not records or "run_id" not in records[0]:
        raise ConfigError(f"{path} has no header line with the run id: it was not written by a score_lit run")
    return records[0], records[1:]


def replay(client, path: Path, by: str) -> tuple[int, str, str | None]:
    """Upload a journal's metrics to its run and tag the run (the caller removes the file once all is done). Returns
    (values uploaded, "first-last" steps, the run's recorded end status or None)."""
    from mlflow.entities import Metric

    header, records = read_pending(path)
    run_id = header["run_id"]
    metrics, end = [], None
    for r in records:
        if "end" in r:
            end = r["end"]
            continue
        have = set()
        if r.get("attempted"):  # the batch in flight when the server went away: it may be there already
            have = {k for k in r["metrics"] if any(m.step == r["step"] for m in client.get_metric_history(run_id, k))}
        metrics += [Metric(k, float(v), r["timestamp"], r["step"]) for k, v in r["metrics"].items() if k not in have]
    for i in range(0, len(metrics), MAX_BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + MAX_BATCH], synchronous=True)
    steps = [r["step"] for r in records if "metrics" in r]
    span = f"{min(steps)}-{max(steps)}" if steps else "none"
    note = f"steps {span}: {len(metrics)} values kept in {PENDING} while the server was unreachable, uploaded {by}"
    old = client.get_run(run_id).data.tags.get(OUTAGE_TAG)
    client.set_tag(run_id, OUTAGE_TAG, f"{old}; {note}" if old else note)
    return len(metrics), span, end


def _not_training(run_dir: Path) -> None:
    """Refuse while a training holds the run folder's lock (score_lit.training.rundir): it still appends to the file,
    and uploads it itself when the server answers."""
    import fcntl

    from score_lit.training.rundir import lock_path

    lock = lock_path(run_dir)
    if not lock.exists():
        return
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"a training still runs in {run_dir}: it uploads {PENDING} itself when the server answers; "
                "run mlflow-sync after it ends"
            ) from None


def sync_run(run_dir: Path, tracking_uri: str | None = None) -> str:
    """`python -m score_lit mlflow-sync RUN_DIR`: upload RUN_DIR/mlflow_pending.jsonl (module docstring). Returns the
    line to print."""
    from mlflow.tracking import MlflowClient

    run_dir = Path(run_dir)
    path = run_dir / PENDING
    if not path.is_file():
        if not run_dir.is_dir():
            raise ConfigError(f"{run_dir} is not a run folder: give runs/<name> of a training run")
        return f"{run_dir}: nothing to upload (no {PENDING}): its metrics are all in MLflow"
    _not_training(run_dir)
    header, _ = read_pending(path)
    uri = tracking_uri or header["tracking_uri"]
    check_server(uri)
    run_id = header["run_id"]
    with bounded_retries():
        client = MlflowClient(uri)
        n, steps, end = replay(client, path, f"by mlflow-sync at {time.strftime('%Y-%m-%d %H:%M:%S')}")
        done = f"{run_dir}: uploaded {n} metric values of steps {steps} to run {run_id} in {uri}"
        if end is None:
            path.unlink()
            return done
        from score_lit.training.curves import plot_training_curves

        if (run_dir / "policy.pt").is_file():
            client.log_artifact(run_id, str(run_dir / "policy.pt"))
        curves = plot_training_curves(uri, run_id, run_dir / "curves.png", f"{run_dir.name} ({run_id[:8]})")
        client.log_artifact(run_id, str(curves))
        client.set_terminated(run_id, end)
        path.unlink()
    return f"{done}; policy.pt and curves.png logged, run ended {end}"
