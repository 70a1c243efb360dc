"""Writes that survive a kill, and Ctrl-C made reliable: the low-level pieces that training, evaluation, the data
pipeline and the toy share (so none of them imports another for them).

* `atomic_torch_save` / `atomic_write_bytes`: a temporary file in the same folder, then os.replace over the real
  name (atomic on POSIX): a kill -9 while writing leaves the previous file intact and no half-written file under
  the real name. The writers of policy.pt, policy folders, Lightning checkpoints, feature-cache entries and the
  toy's checkpoints.
* `sigint_held` / `SigintLatch`: Python runs a SIGINT handler, and so raises KeyboardInterrupt, wherever the main
  thread happens to be. Two places turn that into damage: inside torch.save's zip writer (a "RuntimeError:
  unexpected pos" traceback; sigint_held holds the Ctrl-C over the write), and inside a weakref callback or a
  __del__, where the exception is printed as "Exception ignored in ..." and dropped, and the run goes on as if
  nothing had been pressed (seen in CI: SQLAlchemy's `_collection_gced` swallowed a training's Ctrl-C; decord's
  VideoReader.__del__ printed one). SigintLatch remembers the Ctrl-C, so a loop that calls `check()` at its step
  boundaries raises it again there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


@contextlib.contextmanager
def sigint_held():
    """Ctrl-C during the block is held and delivered when it ends (main thread only; elsewhere a no-op).

    Why: a KeyboardInterrupt raised inside torch.save's zip writer surfaces as "RuntimeError: unexpected pos ..."
    from the writer's __exit__, a traceback instead of the interrupted run's KILLED end and resume hint (seen
    when a Ctrl-C landed on a periodic checkpoint). Held here, the checkpoint is finished, then the interrupt
    goes on as if it had come a moment later."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    prev = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, prev)
    if got:
        if callable(prev):
            prev(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt here
        elif prev == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


class SigintLatch:
    """While installed (main thread, and only if SIGINT is not ignored), a Ctrl-C raises KeyboardInterrupt as usual
    and is also remembered: `check()` raises it again if it was swallowed on its way up. A KeyboardInterrupt that
    the interpreter cannot raise (inside a __del__ or a weakref callback: it would print "Exception ignored in ..."
    with a traceback and drop it) is taken from sys.unraisablehook instead, silently: check() delivers it."""

    def __init__(self):
        self.pending = False
        self._prev = None
        self._prev_hook = None

    def _handler(self, signum, frame) -> None:
        self.pending = True
        raise KeyboardInterrupt

    def _unraisable(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            self.pending = True  # the Ctrl-C is delivered by check(), at the loop's next boundary
            return
        (self._prev_hook or sys.__unraisablehook__)(unraisable)

    def install(self) -> SigintLatch:
        self.pending = False
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
            self._prev = signal.signal(signal.SIGINT, self._handler)
            self._prev_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def uninstall(self) -> None:
        if self._prev is not None and signal.getsignal(signal.SIGINT) == self._handler:
            signal.signal(signal.SIGINT, self._prev)
        if self._prev_hook is not None and sys.unraisablehook == self._unraisable:
            sys.unraisablehook = self._prev_hook
        self._prev = self._prev_hook = None

    def check(self) -> None:
        if self.pending:
            raise KeyboardInterrupt

    def __enter__(self) -> SigintLatch:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: str | os.PathLike, fsync: bool = True) -> Path:
    """torch.save to a temporary file in the same folder, (fsync,) then rename over `path`; a Ctrl-C while writing is
    held until the file is in place (sigint_held). Used for policy.pt, Lightning checkpoints
    (score_lit.training.resume.AtomicCheckpointIO), feature-cache entries (fsync=False) and the toy's checkpoints."""
    import torch

    with sigint_held():  # a Ctrl-C arrives after the file is in place
        return _atomic_write(Path(path), lambda f: torch.save(obj, f), fsync)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """`data` to a temporary file in the same folder, then renamed over `path` (a kill leaves the old file)."""
    return _atomic_write(Path(path), lambda f: f.write(data), fsync=False)


def _atomic_write(path: Path, write: Callable[[BinaryIO], Any], fsync: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a checkpoint is shared like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
