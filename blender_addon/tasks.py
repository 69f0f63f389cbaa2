"""One background-task pattern for the whole add-on: a worker thread that talks to the backend (or a subprocess),
followed by short steps on Blender's main thread.

Blender's data (bpy) may only be touched from the main thread, and the main thread must never wait on the
network: a :class:`BackgroundTask` splits the work in two halves.

- :meth:`BackgroundTask.work` runs in the worker thread (no bpy there). It reports through plain fields
  (:attr:`~BackgroundTask.progress`, :attr:`~BackgroundTask.message`) and watches :attr:`~BackgroundTask.cancel`.
  A :class:`BackendError` it raises becomes the task's error message; any other exception is reported too,
  never lost with a dying thread.
- :meth:`BackgroundTask.step` runs on the main thread, from the session's one ``bpy.app.timers`` callback (tests
  call :meth:`~BackgroundTask.pump`, the same steps in a loop). Each step does a little main-thread work
  (:meth:`~BackgroundTask.advance`, e.g. capture one asset); once the worker has ended, :meth:`~BackgroundTask.complete`
  applies its outcome (write into the .blend) and the task finishes with a state and a message. Listeners
  (:attr:`~BackgroundTask.on_finish`) then update the panels' status lines.

This module has no bpy: the pattern is testable anywhere. The :class:`~blender_addon.session.Session` owns the
running tasks and the timer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Self

from .protocol import client as remote

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)


class BackgroundTask:
    """A worker thread plus the main-thread steps that follow it; subclasses fill in the hooks.

    Hooks: :meth:`work` (worker thread), :meth:`advance` (main thread, every step), :meth:`complete` (main thread,
    once the worker has ended), :meth:`failure_message` (an exception raised on the main thread), :meth:`finished`
    (clean-up). The task is *final* once :meth:`finish` has set :attr:`state` to DONE, FAILED or CANCELLED.
    """

    #: What the task is called in messages ("the embed did not finish within ...").
    title = "the task"
    #: Whether :meth:`pump` cancels the task when it runs out of time.
    cancel_on_timeout = True

    def __init__(self, message: str = "") -> None:
        self.state, self.progress, self.message = RUNNING, 0.0, message
        self.cancel = threading.Event()
        self.error: str | None = None  # set by the worker thread when it failed
        self.started = time.monotonic()
        #: Called on the main thread once the task is final (the session's status lines, panel data).
        self.on_finish: list[Callable[[BackgroundTask], None]] = []
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"asset2vec-{type(self).__name__.lower()}",
                                            daemon=True)
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.state not in FINAL

    @property
    def worker_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.worker_alive

    def request_cancel(self) -> bool:
        """Ask the task to stop; False when it has already finished."""
        if self.state in FINAL:
            return False
        self.cancel.set()
        return True

    def close(self) -> None:
        """The add-on goes away (unregister): stop the task; subclasses may only stop following instead."""
        self.request_cancel()

    # -- worker thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.work()
        except remote.Cancelled:
            self.cancel.set()
        except remote.BackendError as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - a worker thread must report, never die silently
            self.error = f"unexpected error while talking to the backend: {type(e).__name__}: {e}"

    def work(self) -> None:
        """The worker thread's job (no bpy). Raise remote.BackendError with a message the artist can act on."""

    # -- main thread -------------------------------------------------------------------------------

    def step(self) -> bool:
        """Do the next piece of main-thread work; True while the task still runs. Never raises."""
        if self.state in FINAL:
            return False
        try:
            if self.advance() or self.state in FINAL:
                return self.state not in FINAL
            if self.worker_alive:
                return True
            self.complete()
            if self.state not in FINAL:
                self.finish(DONE, self.message)
        except Exception as e:  # noqa: BLE001 - a timer callback must end the task with a message, not a traceback
            self.cancel.set()
            self.finish(FAILED, self.failure_message(e))
        return self.state not in FINAL

    def advance(self) -> bool:
        """Main-thread work of one step (called before looking at the worker); True: come back for more."""
        return False

    def complete(self) -> None:
        """Apply the worker's outcome on the main thread; ends with :meth:`finish` (else DONE is assumed)."""
        if self.error is not None:
            self.finish(FAILED, self.error)
        elif self.cancel.is_set():
            self.finish(CANCELLED, "cancelled")

    def failure_message(self, e: Exception) -> str:
        """The status message for an exception raised by a main-thread hook."""
        return f"unexpected error ({type(e).__name__}: {e})"

    def finish(self, state: str, message: str) -> None:
        """End the task with ``state`` and ``message`` (main thread); calls the listeners once."""
        if self.state in FINAL:
            return
        self.state, self.message = state, message
        self.finished()
        for listener in self.on_finish:
            listener(self)

    def finished(self) -> None:
        """Clean-up once final (temporary files, the worker's queue)."""

    def pump(self, timeout: float = 120.0, interval: float = 0.05) -> Self:
        """Step until the task ends (what the session's timer does; for tests and headless use)."""
        deadline = time.monotonic() + timeout
        while self.step():
            if time.monotonic() > deadline:
                if self.cancel_on_timeout:
                    self.request_cancel()
                raise TimeoutError(f"{self.title} did not finish within {timeout:.0f} s")
            time.sleep(interval)
        return self


class CallTask(BackgroundTask):
    """One call (``call()``, e.g. a request to the backend) in a worker thread; its return value is :attr:`result`."""

    cancel_on_timeout = False  # a request cannot be taken back; it ends unseen

    def __init__(self, what: str, call: Callable[[], Any], message: str = "") -> None:
        super().__init__(message)
        self.what, self.result = what, None
        self._call = call
        self.title = f"the backend's answer to {what!r}"

    def work(self) -> None:
        self.result = self._call()


__all__ = ["CANCELLED", "DONE", "FAILED", "FINAL", "RUNNING", "BackgroundTask", "CallTask"]
