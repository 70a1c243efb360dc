"""Ctrl-C, made reliable: held over writes that must not be cut, and never lost.

Python runs a SIGINT handler, and so raises KeyboardInterrupt, wherever the main thread happens to be. Two places
turn that into damage: inside torch.save's zip writer (a "RuntimeError: unexpected pos" traceback, sigint_held
below), and inside a weakref callback or a __del__, where the exception is printed as "Exception ignored in ..."
and dropped, and the run goes on as if nothing had been pressed (seen in CI: SQLAlchemy's `_collection_gced`
swallowed a training's Ctrl-C). SigintLatch remembers the Ctrl-C, so a loop that calls `check()` at its step
boundaries raises it again there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading


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
    and is also remembered: `check()` raises it again if it was swallowed on its way up."""

    def __init__(self):
        self.pending = False
        self._prev = None

    def _handler(self, signum, frame) -> None:
        self.pending = True
        raise KeyboardInterrupt

    def install(self) -> SigintLatch:
        self.pending = False
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
            self._prev = signal.signal(signal.SIGINT, self._handler)
        return self

    def uninstall(self) -> None:
        if self._prev is not None and signal.getsignal(signal.SIGINT) == self._handler:
            signal.signal(signal.SIGINT, self._prev)
        self._prev = None

    def check(self) -> None:
        if self.pending:
            raise KeyboardInterrupt

    def __enter__(self) -> SigintLatch:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()
