"""The job queue: order, progress, cancel, failures, limits, shutdown (pure Python, real threads)."""

from __future__ import annotations

import threading
import time

import pytest

from backend.service.errors import ServiceError
from backend.service.jobs import CANCELLED, DONE, FAILED, JobCancelled, JobError, JobQueue
from shared.api import QueueStats


def _until(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_jobs_run_in_order_with_progress_and_results() -> None:
    q = JobQueue()
    order: list[int] = []

    def work(i: int):
        def fn(progress, cancel):
            progress(0.5, f"half of {i}")
            order.append(i)
            return {"i": i}

        return fn

    jobs = [q.submit("t", work(i)) for i in range(5)]
    for j in jobs:
        assert q.wait(j.id, 5).status == DONE
    assert order == [0, 1, 2, 3, 4]
    assert [q.get(j.id).result for j in jobs] == [{"i": i} for i in range(5)]
    assert q.snapshot(jobs[0].id).progress == 1.0
    q.shutdown()


def test_cancel_queued_and_running_jobs() -> None:
    q = JobQueue()
    started = threading.Event()

    def slow(progress, cancel):
        started.set()
        for i in range(500):
            if cancel.is_set():
                raise JobCancelled()
            progress(i / 500, "working")
            time.sleep(0.01)
        return {"finished": True}

    running = q.submit("slow", slow)
    queued = q.submit("slow", slow)
    assert started.wait(5)
    snap = q.snapshot(queued.id)
    assert snap.status == "queued" and snap.queue_position == 0
    assert q.cancel(queued.id).status == CANCELLED  # at once: it never started
    q.cancel(running.id)
    assert q.wait(running.id, 5).status == CANCELLED
    assert q.get(running.id).result is None
    # The worker is free again.
    after = q.submit("quick", lambda p, c: {"ok": 1})
    assert q.wait(after.id, 5).status == DONE
    q.shutdown()


def test_failures_are_reported_not_raised() -> None:
    q = JobQueue()
    user = q.submit("bad", lambda p, c: (_ for _ in ()).throw(ValueError("views are 16 px but 32 px are required")))
    bug = q.submit("bug", lambda p, c: {}["missing"])
    assert q.wait(user.id, 5).status == FAILED
    assert q.snapshot(user.id).error == "views are 16 px but 32 px are required"
    snap = q.wait(bug.id, 5)
    assert snap.status == FAILED and "internal error" in snap.error and "KeyError" in snap.error
    ok = q.submit("ok", lambda p, c: {"fine": True})  # the worker survived both
    assert q.wait(ok.id, 5).status == DONE
    q.shutdown()


def test_queue_limit_unknown_ids_and_shutdown() -> None:
    q = JobQueue(max_queued=2, keep_finished=1)
    gate = threading.Event()
    first = q.submit("block", lambda p, c: {"waited": gate.wait(5)})
    _until(lambda: q.stats().running == 1)
    q.submit("x", lambda p, c: {})
    q.submit("x", lambda p, c: {})
    with pytest.raises(JobError) as e:
        q.submit("x", lambda p, c: {})
    assert e.value.status == 503 and "full" in str(e.value) and e.value.code == "busy"
    with pytest.raises(ServiceError) as e:
        q.snapshot("nope")
    assert e.value.status == 404
    gate.set()
    assert first.done.wait(5) and first.status == DONE and first.result == {"waited": True}
    _until(lambda: q.stats() == QueueStats(queued=0, running=0))
    with pytest.raises(JobError):  # keep_finished=1: the oldest finished jobs are forgotten
        q.get(first.id)
    q.shutdown()
    with pytest.raises(JobError) as e:
        q.submit("late", lambda p, c: {})
    assert e.value.status == 503


def test_shutdown_cancels_pending_and_stops_running() -> None:
    q = JobQueue()

    def loop(progress, cancel):
        while not cancel.wait(0.01):
            pass
        raise JobCancelled()

    running = q.submit("loop", loop)
    pending = q.submit("loop", loop)
    _until(lambda: q.stats().running == 1)
    q.shutdown(timeout=5)
    assert q.snapshot(running.id).status == CANCELLED
    assert q.snapshot(pending.id).status == CANCELLED
    assert not q._worker.is_alive()


def test_low_priority_jobs_wait_behind_normal_ones_and_have_their_own_limit() -> None:
    q = JobQueue(max_queued=2)
    gate = threading.Event()
    order: list[str] = []

    def job(name: str):
        def fn(progress, cancel):
            order.append(name)
            return {}
        return fn

    q.submit("block", lambda p, c: {"waited": gate.wait(5)})
    _until(lambda: q.stats().running == 1)
    refine1 = q.submit("refine", job("refine1"), low_priority=True)
    q.submit("embed", job("embed1"))
    q.submit("refine", job("refine2"), low_priority=True)
    with pytest.raises(JobError):  # two low-priority jobs wait: their limit
        q.submit("refine", job("refine3"), low_priority=True)
    last = q.submit("embed", job("embed2"))  # normal jobs still fit: they are counted apart
    assert q.snapshot(last.id).queue_position == 1 and q.snapshot(refine1.id).queue_position == 2
    gate.set()
    _until(lambda: len(order) == 4)
    assert order == ["embed1", "embed2", "refine1", "refine2"]
    q.shutdown()
