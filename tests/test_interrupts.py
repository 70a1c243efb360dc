"""A Ctrl-C is never lost: one swallowed on its way up (Python prints "Exception ignored in ..." for a
KeyboardInterrupt raised inside a weakref callback or __del__, and goes on) still ends a training at its next batch
boundary, with the interrupted run's usual end (MLflow run KILLED, the resume hint). Seen in CI: a SIGINT that
landed in SQLAlchemy's `_collection_gced` left a 100,000-step training running. The latch and sigint_held are
tested as functions; one fit shows a training ends on a swallowed Ctrl-C (test_smoke_fit: the latch does not outlive
a fit that ends)."""

import gc
import signal
import sys
from types import SimpleNamespace

import pytest
from helpers import tiny_overrides
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from score_lit.config import load_config
from score_lit.durable import SigintLatch, sigint_held
from score_lit.training.fit import fit


@pytest.fixture(autouse=True)
def sigint_as_in_a_terminal():
    """SIGINT at Python's default handler for every test here, as in a terminal: a suite started in the background
    (bash `&`, nohup) inherits SIGINT ignored, and the latch leaves an ignored SIGINT ignored."""
    prev = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, prev)


class _Swallows:
    def __del__(self):
        try:  # what the interpreter does to an exception raised in __del__ or a weakref callback: print, drop
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass


def test_the_latch_remembers_a_ctrl_c_that_was_swallowed_and_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    with SigintLatch() as latch:
        latch.check()  # nothing pressed: nothing raised
        _Swallows()
        gc.collect()
        with pytest.raises(KeyboardInterrupt):
            latch.check()
    assert signal.getsignal(signal.SIGINT) is before


class _Raises:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)  # left to the interpreter: "Exception ignored in ..." + a traceback


def test_the_latch_takes_a_ctrl_c_from_a_del_silently_and_delivers_it_at_check(capfd):
    hook = sys.unraisablehook
    with SigintLatch() as latch:
        _Raises()
        gc.collect()
        assert capfd.readouterr().err == ""  # no "Exception ignored in" traceback on the user's terminal
        with pytest.raises(KeyboardInterrupt):
            latch.check()
        seen = []
        latch._prev_hook = lambda u: seen.append(type(u.exc_value))  # the hook that was there before
        sys.unraisablehook(SimpleNamespace(exc_value=ZeroDivisionError()))
        assert seen == [ZeroDivisionError]  # any other unraisable exception goes on to it
        latch._prev_hook = hook
    assert sys.unraisablehook is hook


def test_the_latch_leaves_an_ignored_sigint_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job started with `&` by a non-interactive shell
    try:
        with SigintLatch():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


class _SwallowAtStep(Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            _Swallows()  # freed at once: the SIGINT is raised and swallowed inside its __del__


def test_a_swallowed_ctrl_c_still_ends_the_training_killed_with_the_resume_hint(tmp_path, capsys):
    cfg = load_config([], tiny_overrides(tmp_path, steps=50) + ["name=cut", "val.every_n_steps=100"])
    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown after a KeyboardInterrupt
            fit(cfg, callbacks=[_SwallowAtStep(2)])
    finally:
        signal.signal(signal.SIGINT, before)  # Lightning leaves SIGINT ignored after its shutdown
    err = capsys.readouterr().err
    assert "interrupted at step 2:" in err and "resume=auto" in err, err[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["KILLED"]


def test_the_latch_is_removed_when_its_block_fails_and_a_new_install_forgets_an_old_ctrl_c():
    before = signal.getsignal(signal.SIGINT)
    latch = SigintLatch()
    with pytest.raises(RuntimeError, match="a bug"):
        with latch:  # as `fit` holds it around trainer.fit
            assert signal.getsignal(signal.SIGINT) == latch._handler
            raise RuntimeError("a bug")
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):
        with latch:
            signal.raise_signal(signal.SIGINT)  # an ordinary Ctrl-C: raised at once, and remembered
    assert latch.pending and signal.getsignal(signal.SIGINT) is before
    with latch:  # installed again (a second fit in the same process): that old Ctrl-C is not raised again
        latch.check()


def test_a_ctrl_c_inside_sigint_held_comes_when_the_block_ends():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_held():
            signal.raise_signal(signal.SIGINT)
            done.append("the rest of the block ran")
    assert done == ["the rest of the block ran"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with sigint_held():  # no Ctrl-C: nothing raised
        pass
