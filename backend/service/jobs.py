"""One worker thread (the "GPU queue") that runs jobs in submission order.

Many HTTP clients can submit and wait; only one job touches the model at a time, so a GPU (or the
two CPU cores) is never oversubscribed. Every job has an id, a status, a progress fraction with a
message, a cancel flag and, when finished, a result or an error message. Finished jobs are kept
for a while (bounded) so clients can fetch their results.

Nothing here knows about HTTP, torch or the model: a job is any callable
``fn(progress, cancel) -> result`` (a :mod:`shared.api` object, stored as its JSON) where ``progress(fraction, message)`` reports and ``cancel`` is a
:class:`threading.Event` the callable should check (the engine raises when it is set).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.errors import Asset2VecError, Cancelled
from shared import api
from shared.api import CANCELLED, DONE, FAILED, FINAL_STATES, QUEUED, RUNNING

from .errors import Busy, ServiceError

log = logging.getLogger(__name__)

__all__ = ["CANCELLED", "DONE", "FAILED", "FINAL_STATES", "QUEUED", "RUNNING", "Job", "JobCancelled", "JobError",
           "JobFn", "JobQueue", "ProgressFn"]

ProgressFn = Callable[[float, str], None]
#: A job's work: ``fn(progress, cancel)`` returns its result, a contract object or a JSON-able dict.
JobFn = Callable[[ProgressFn, threading.Event], "api.Wire | dict[str, Any]"]


class JobCancelled(Cancelled):
    """Raised by a job's callable when it noticed its cancel flag and stopped."""


class JobError(ServiceError):
    """A job request that cannot be served (unknown id, queue full, shutting down)."""


class QueueBusy(JobError, Busy):
    """The queue cannot take a job now (full, or shutting down): 503, code "busy"."""

    def __init__(self, message: str) -> None:
        Busy.__init__(self, message, 503)


@dataclass
class Job:
    """One unit of work and everything a client may ask about it."""

    id: str
    kind: str
    fn: JobFn
    status: str = QUEUED
    progress: float = 0.0
    message: str = "waiting in the queue"
    result: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    low_priority: bool = False  # e.g. a background refinement: waits behind every queued normal job

    def snapshot(self, position: int | None = None) -> api.JobStatus:
        """Where the job stands (no result payload: that has its own endpoint)."""
        return api.JobStatus(id=self.id, kind=self.kind, status=self.status, progress=round(self.progress, 4),
                             message=self.message, error=self.error, created=self.created, started=self.started,
                             finished=self.finished, queue_position=position)


class JobQueue:
    """A FIFO of jobs executed by a single worker thread.

    ``max_queued`` bounds the jobs waiting (not yet running) so a flood of uploads cannot exhaust
    memory; ``keep_finished`` bounds how many finished jobs (with results) are remembered.
    """

    def __init__(self, max_queued: int = 32, keep_finished: int = 256) -> None:
        self.max_queued = max_queued
        self.keep_finished = keep_finished
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._pending: collections.deque[Job] = collections.deque()
        self._finished: collections.deque[str] = collections.deque()
        self._stopping = False
        self._worker = threading.Thread(target=self._run, name="asset2vec-job-worker", daemon=True)
        self._worker.start()

    # -- client side -------------------------------------------------------------------------

    def submit(self, kind: str, fn: JobFn, low_priority: bool = False) -> Job:
        """Queue ``fn`` and return its job (status ``queued``). Raises :class:`JobError` (503) when full.

        A ``low_priority`` job (a background refinement) runs only when no normal job waits: normal jobs
        are queued ahead of it. Each kind is bounded by ``max_queued`` on its own.
        """
        with self._lock:
            if self._stopping:
                raise QueueBusy("the backend is shutting down; try again once it is restarted")
            if sum(1 for j in self._pending if j.low_priority == low_priority) >= self.max_queued:
                raise QueueBusy(
                    f"the job queue is full ({self.max_queued} jobs waiting); wait for some to finish and retry"
                )
            job = Job(id=uuid.uuid4().hex, kind=kind, fn=fn, low_priority=low_priority)
            self._jobs[job.id] = job
            if low_priority:
                self._pending.append(job)
            else:  # behind the other normal jobs, ahead of the first waiting low-priority one
                at = next((i for i, j in enumerate(self._pending) if j.low_priority), len(self._pending))
                self._pending.insert(at, job)
            self._wake.notify()
            return job

    def get(self, job_id: str) -> Job:
        """The job with this id, or :class:`JobError` (404)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobError(f"no job with id {job_id!r} (finished jobs are forgotten after a while)", 404)
        return job

    def snapshot(self, job_id: str) -> api.JobStatus:
        """The job's status, with its place in the queue while it waits (0 = next)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobError(f"no job with id {job_id!r} (finished jobs are forgotten after a while)", 404)
            position = None
            if job.status == QUEUED:
                position = next((i for i, j in enumerate(self._pending) if j.id == job_id), None)
            return job.snapshot(position)

    def cancel(self, job_id: str) -> api.JobStatus:
        """Ask a job to stop. A queued job is cancelled at once; a running one at its next check."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobError(f"no job with id {job_id!r}", 404)
            if job.status in FINAL_STATES:
                return job.snapshot()
            job.cancel.set()
            if job.status == QUEUED:
                self._pending.remove(job)
                self._finish(job, CANCELLED, "cancelled before it started")
            else:
                job.message = "cancelling..."
            return job.snapshot()

    def wait(self, job_id: str, timeout: float | None = None) -> api.JobStatus:
        """Block until the job is finished (or ``timeout`` seconds pass); returns its status."""
        self.get(job_id).done.wait(timeout)
        return self.snapshot(job_id)

    def latest(self, kind: str | None = None) -> api.JobStatus | None:
        """The status of the most recent job (of ``kind``), or None."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if kind is None or j.kind == kind]
            return max(jobs, key=lambda j: j.created).snapshot() if jobs else None

    def stats(self) -> api.QueueStats:
        """How many jobs are waiting and running."""
        with self._lock:
            running = sum(1 for j in self._jobs.values() if j.status == RUNNING)
            return api.QueueStats(queued=len(self._pending), running=running)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel everything queued, ask the running job to stop and join the worker."""
        with self._lock:
            self._stopping = True
            while self._pending:
                self._finish(self._pending.popleft(), CANCELLED, "cancelled: the backend shut down")
            for job in self._jobs.values():
                if job.status == RUNNING:
                    job.cancel.set()
            self._wake.notify_all()
        self._worker.join(timeout)

    # -- worker side -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping and not self._pending:
                    return
                job = self._pending.popleft()
                job.status, job.started, job.message = RUNNING, time.time(), "started"
            self._execute(job)

    def _execute(self, job: Job) -> None:
        def progress(fraction: float, message: str = "") -> None:
            # Called from the job's own thread; a float and a str assignment are atomic enough.
            job.progress = min(1.0, max(job.progress, float(fraction)))
            if message and not job.cancel.is_set():
                job.message = message

        try:
            result = job.fn(progress, job.cancel)
        except Exception as e:  # noqa: BLE001 - a job must never kill the worker
            with self._lock:
                if job.cancel.is_set() or isinstance(e, JobCancelled):
                    self._finish(job, CANCELLED, "cancelled")
                elif isinstance(e, (Asset2VecError, ValueError)):
                    # Expected failures carry a message for users: ServiceError and the domain errors
                    # (ModelError, LibraryError, PipelineError...; BundleError is a ValueError). No traceback.
                    self._finish(job, FAILED, str(e), error=str(e))
                else:
                    log.exception("job %s (%s) failed", job.id, job.kind)
                    msg = f"internal error in the backend ({type(e).__name__}: {e}); see the backend's log"
                    self._finish(job, FAILED, msg, error=msg)
            return
        with self._lock:
            job.result = result.to_json() if isinstance(result, api.Wire) else (result if result is not None else {})
            job.progress = 1.0
            self._finish(job, DONE, "done")

    def _finish(self, job: Job, status: str, message: str, error: str | None = None) -> None:
        """Mark ``job`` final and forget the oldest finished jobs beyond ``keep_finished``. Lock held."""
        job.status, job.message, job.error, job.finished = status, message, error, time.time()
        job.fn = _spent  # drop references the callable holds (uploaded images, bundles)
        job.done.set()
        self._finished.append(job.id)
        while len(self._finished) > self.keep_finished:
            self._jobs.pop(self._finished.popleft(), None)


def _spent(progress: ProgressFn, cancel: threading.Event) -> dict[str, Any]:
    raise RuntimeError("job already ran")
