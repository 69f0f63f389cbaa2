"""Check Backend in the background: ask the backend for its ``/info`` (short timeout) without blocking Blender.

The answer (model served, device, tags, background job, previous model...) becomes the session's
:attr:`~blender_addon.session.Session.backend_info`, which the panels draw; a failure (not running, wrong API
version, token refused) becomes the status line of the panel that asked.
"""

from __future__ import annotations

from collections.abc import Callable

from .protocol import api
from .protocol import client as remote
from .session import Session
from .tasks import DONE, FAILED, BackgroundTask

#: Seconds the check may take: a backend that does not answer by then is reported as not answering.
CHECK_TIMEOUT = 5.0
SLOT = "check"


class BackendCheck(BackgroundTask):
    """One ``/info`` request in a worker thread."""

    title = "the backend check"
    cancel_on_timeout = False

    def __init__(self, url: str, token: str | None, timeout: float = CHECK_TIMEOUT) -> None:
        super().__init__(f"checking the backend at {url} ...")
        self.url, self.token, self.timeout = url, token, min(timeout, CHECK_TIMEOUT)
        self.info: api.ServerInfo | None = None

    def work(self) -> None:
        self.info = remote.Client(self.url, self.token, timeout=self.timeout).info()

    def complete(self) -> None:
        if self.error is not None or self.info is None:
            self.finish(FAILED, self.error or "the backend did not answer")
        else:
            self.finish(DONE, f"backend at {self.url}: model {self.info.model_id}")


def check(session: Session, url: str, token: str | None, timeout: float = CHECK_TIMEOUT, channel: str = "embed",
          then: Callable[[BackendCheck], None] | None = None) -> BackendCheck:
    """Start checking the backend; its outcome updates ``session.backend_info`` and ``channel``'s status line.

    ``then(check)`` runs on the main thread once it has finished (e.g. follow the backend's background job).
    A check still running is superseded (its answer is dropped).
    """
    task = BackendCheck(url, token, timeout)

    def done(t: BackgroundTask) -> None:
        assert isinstance(t, BackendCheck)
        session.set_backend_info(t.info if t.state == DONE else None, url)
        if t.state == FAILED or channel == "embed":
            session.report(channel, t)
        if then is not None:
            then(t)

    task.on_finish.append(done)
    return session.start(SLOT, task)
