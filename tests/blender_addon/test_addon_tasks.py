"""The add-on's one background-task pattern (blender_addon/tasks.py, no bpy): a worker thread's outcome reaches the
main-thread steps as a state and a message, whatever goes wrong on either side; cancel and pump behave. Also the
thumbnail cache's downloads from several threads at once (blender_addon/thumbnails.py, no bpy either)."""

from __future__ import annotations

import threading
import time

import pytest

from blender_addon import tempdirs
from blender_addon.tasks import CANCELLED, DONE, FAILED, RUNNING, BackgroundTask, CallTask
from blender_addon.thumbnails import Thumbnails
from shared.client import BackendError, Cancelled, Client


class _Steps(BackgroundTask):
    """Two main-thread steps of work while the worker waits for a go."""

    def __init__(self) -> None:
        super().__init__("working")
        self.go = threading.Event()
        self.main_steps = 0
        self.finished_calls = 0

    def work(self) -> None:
        self.go.wait(5)
        if self.cancel.is_set():
            raise Cancelled("stopped")
        self.message = "worker done"

    def advance(self) -> bool:
        if self.main_steps < 2:
            self.main_steps += 1
            return True
        return False

    def finished(self) -> None:
        self.finished_calls += 1


def test_steps_run_on_the_caller_while_the_worker_works_and_listeners_hear_the_end():
    task = _Steps().start()
    heard: list[tuple[str, str]] = []
    task.on_finish.append(lambda t: heard.append((t.state, t.message)))
    assert task.step() and task.step() and task.main_steps == 2
    assert task.step() and task.state == RUNNING  # the worker still waits: the step returns at once
    task.go.set()
    assert task.pump(timeout=5) is task
    assert (task.state, task.message) == (DONE, "worker done") and heard == [(DONE, "worker done")]
    assert not task.step() and task.finished_calls == 1  # final: nothing more happens


def test_cancel_ends_cancelled_and_backend_errors_become_the_message():
    task = _Steps().start()
    assert task.request_cancel()
    task.go.set()
    assert task.pump(timeout=5).state == CANCELLED and not task.request_cancel()

    def refuse() -> None:
        raise BackendError("the backend at http://x refused the token: enter the token")

    call = CallTask("info", refuse).start().pump(timeout=5)
    assert (call.state, call.message) == (FAILED, "the backend at http://x refused the token: enter the token")


def test_unexpected_errors_on_either_side_end_the_task_with_a_message():
    def broken() -> None:
        raise KeyError("model_id")

    call = CallTask("info", broken).start().pump(timeout=5)
    assert call.state == FAILED and "KeyError" in call.message and "model_id" in call.message

    class BadApply(BackgroundTask):
        def complete(self) -> None:
            raise RuntimeError("the asset is gone")

    task = BadApply().start().pump(timeout=5)
    assert task.state == FAILED and "RuntimeError: the asset is gone" in task.message and task.cancel.is_set()


def test_pump_gives_up_after_its_timeout_and_cancels():
    class Slow(BackgroundTask):
        def work(self) -> None:
            self.cancel.wait(10)

    task = Slow().start()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within 0 s"):
        task.pump(timeout=0.2)
    assert time.monotonic() - t0 < 2 and task.cancel.is_set()
    assert task.pump(timeout=5).state == CANCELLED


class _SlowThumbnails(Client):
    """A client whose thumbnails take a moment (stands in for the network; the race is on the file system)."""

    def thumbnail(self, name: str) -> bytes:
        time.sleep(0.001)
        return b"\x89PNG" + name.encode()


def test_concurrent_fetches_of_the_same_thumbnails_never_clash():
    """An Embed's worker and Load Thumbnails may fetch the same names at once: each download has its own file."""
    thumbs = Thumbnails()
    try:
        client = _SlowThumbnails("http://127.0.0.1:9")
        for round_ in range(20):
            names = [f"lib/Asset{round_}_{i}" for i in range(5)]
            start, errors = threading.Barrier(4), []

            def fetch(names: list[str] = names, start: threading.Barrier = start, errors: list = errors) -> None:
                start.wait()
                try:
                    thumbs.fetch(client, names)
                except Exception as e:  # noqa: BLE001 - collected for the assertion
                    errors.append(e)

            threads = [threading.Thread(target=fetch) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert errors == []
            assert all(thumbs.path(n).read_bytes() == b"\x89PNG" + n.encode() for n in names)
        assert not list(thumbs.folder.glob("*.part"))  # no temporary file left behind
        tempdirs.remove(thumbs.folder)  # a folder gone meanwhile (unregister): the fetch just stops
        assert thumbs.fetch(client, ["lib/Late"]) == 0
    finally:
        tempdirs.remove(thumbs.folder)
