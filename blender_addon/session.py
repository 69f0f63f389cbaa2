"""The add-on's session: what lives while the add-on is registered and is never saved into a .blend.

One :class:`Session` is opened at ``register()`` and closed at ``unregister()``. It owns

- the running background tasks, one per *slot* (``"embed"``, ``"library"``, ``"bulk"``, ``"review"``,
  ``"thumbnails"``), plus the refinements still waiting per asset and the thumbnail downloads that follow an
  embed's answer (:meth:`Session.fetch_thumbnails`: the Similar list's pictures fill in as they come);
- the status line of each panel (:attr:`Session.status`: ``(level, message)`` per channel);
- the backend's last ``/info`` answer (:attr:`Session.backend_info`), the review questions, and the thumbnail
  cache with its previews (:class:`~blender_addon.thumbnails.Thumbnails`);
- the one ``bpy.app.timers`` callback that steps every task on the main thread and redraws the sidebar.

Closing it cancels (or stops following) the tasks, stops the timer, frees the previews and removes the
temporary folders (:mod:`blender_addon.tempdirs`, which also removes them when Blender quits). Panels and
operators reach it with :func:`get`.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from typing import Any

import bpy

from . import tempdirs
from .protocol import api
from .protocol import client as remote
from .tasks import FAILED, BackgroundTask
from .thumbnails import ThumbnailFetch, Thumbnails

#: Seconds between two steps of the running tasks.
TIMER_INTERVAL = 0.1
#: The panels' status lines: Embed (also Check Backend and refinements), Library Model, Bulk Tag, Review Tags.
CHANNELS = ("embed", "library", "bulk", "review")


class Session:
    """The add-on's running tasks and per-session state (see the module docstring)."""

    def __init__(self) -> None:
        self.tasks: dict[str, BackgroundTask] = {}
        #: Refinements still waiting, by asset (a new embed of the same asset replaces its refinement).
        self.refinements: dict[Hashable, BackgroundTask] = {}
        #: Thumbnail downloads started after an answer was written (no slot: several may run, none blocks an embed).
        self.fetches: list[ThumbnailFetch] = []
        #: ``(level, message)`` per channel, shown in the panels ("INFO" / "ERROR").
        self.status: dict[str, tuple[str, str]] = dict.fromkeys(CHANNELS, ("INFO", ""))
        #: The last successful ``/info`` answer of the backend at :attr:`backend_url`, or None when unknown.
        self.backend_info: api.ServerInfo | None = None
        self.backend_url = ""
        #: The Review Tags questions.
        self.review_items: list[api.ReviewItem] = []
        self.thumbnails = Thumbnails()
        self.closed = False

    # -- tasks --------------------------------------------------------------------------------------

    def task(self, slot: str) -> Any:
        """The last task of ``slot`` (running or finished), or None."""
        return self.tasks.get(slot)

    def running(self, slot: str) -> bool:
        task = self.tasks.get(slot)
        return task is not None and task.running

    def start(self, slot: str, task: BackgroundTask) -> Any:
        """Make ``task`` the task of ``slot``, start its worker and the timer. The caller checks :meth:`running`."""
        self.tasks[slot] = task
        task.start()
        self.ensure_timer()
        return task

    def start_refinement(self, key: Hashable, task: BackgroundTask) -> BackgroundTask:
        """Wait for a refinement in the background, replacing an older one of the same asset."""
        self.drop_refinement(key)
        self.refinements[key] = task
        task.start()
        self.ensure_timer()
        return task

    def drop_refinement(self, key: Hashable) -> None:
        """Stop waiting for the refinement of ``key`` (its answer is about to be outdated)."""
        old = self.refinements.pop(key, None)
        if old is not None:
            old.request_cancel()

    def fetch_thumbnails(self, client: remote.Client, names: Iterable[str]) -> ThumbnailFetch | None:
        """Download the thumbnails of ``names`` not yet on disk in the background; None when all are there.

        The answer is already written when this starts: the timer keeps redrawing the panels while the download
        runs, so each picture shows up as it comes. A thumbnail that cannot be fetched is skipped (the list shows
        the asset without one); the download never changes a status line.
        """
        todo = [n for n in dict.fromkeys(names) if not self.thumbnails.path(n).is_file()]
        if not todo or self.closed:
            return None
        task = ThumbnailFetch(self.thumbnails, client, todo)
        self.fetches.append(task)
        task.start()
        self.ensure_timer()
        return task

    def pump_thumbnails(self, timeout: float = 60.0, interval: float = 0.02) -> None:
        """Step the thumbnail downloads until they end (tests and headless use)."""
        deadline = time.monotonic() + timeout
        while any(t.step() for t in list(self.fetches)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the thumbnails did not come within {timeout:.0f} s")
            time.sleep(interval)
        self.step()  # forget the finished ones

    def step(self) -> bool:
        """One step of every running task; True while some still run."""
        running = False
        for task in list(self.tasks.values()):
            running |= task.step()
        for key, task in list(self.refinements.items()):
            if task.step():
                running = True
            elif self.refinements.get(key) is task:
                del self.refinements[key]
        for fetch in list(self.fetches):
            if fetch.step():
                running = True
            else:
                self.fetches.remove(fetch)
        return running

    def pump(self, slot: str, timeout: float = 120.0) -> Any:
        """Step the task of ``slot`` until it ends (tests and headless use); returns it (None when there is none)."""
        task = self.tasks.get(slot)
        if task is not None:
            task.pump(timeout)
        return task

    def pump_refinements(self, timeout: float = 120.0, interval: float = 0.05) -> None:
        """Step the waiting refinements until they are written (tests and headless use)."""
        deadline = time.monotonic() + timeout
        while any(t.step() for t in list(self.refinements.values())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the refinements did not finish within {timeout:.0f} s")
            time.sleep(interval)
        self.step()  # forget the finished ones

    # -- status and backend info -------------------------------------------------------------------------

    def set_status(self, channel: str, level: str, message: str) -> None:
        self.status[channel] = (level, message)

    def report(self, channel: str, task: BackgroundTask) -> None:
        """Show a finished task's message on ``channel``'s status line."""
        self.set_status(channel, "ERROR" if task.state == FAILED else "INFO", task.message)

    def set_backend_info(self, info: api.ServerInfo | None, url: str = "") -> None:
        """Remember the backend's ``/info`` (None: unknown, e.g. it did not answer); main thread."""
        self.backend_info, self.backend_url = info, (url if info is not None else "")

    def info_for(self, url: str) -> api.ServerInfo | None:
        """The last ``/info`` if it came from the backend at ``url`` (the preferences may point elsewhere now)."""
        return self.backend_info if self.backend_info is not None and self.backend_url == url else None

    # -- the timer ----------------------------------------------------------------------------------------

    def ensure_timer(self) -> None:
        if not self.closed and not bpy.app.timers.is_registered(_tick):
            # persistent: tasks go on while the artist opens other files; the panels keep following them
            bpy.app.timers.register(_tick, first_interval=TIMER_INTERVAL, persistent=True)

    def tick(self) -> float | None:
        """The timer's work: step the tasks, redraw the sidebar; the next interval, or None when all are done."""
        running = self.step()
        redraw_sidebar()
        # A task with main-thread slices queued (a capture's views) asks for a shorter pause between them.
        hurry = [t.step_interval for t in self.tasks.values() if t.running and getattr(t, "step_interval", None)]
        return min([TIMER_INTERVAL, *hurry]) if running else None

    def close(self) -> None:
        """The add-on goes away: stop every task (a backend job goes on), the timer, previews, temporary files."""
        self.closed = True
        if bpy.app.timers.is_registered(_tick):
            bpy.app.timers.unregister(_tick)
        for task in [*self.tasks.values(), *self.refinements.values(), *self.fetches]:
            task.close()
        self.tasks.clear()
        self.refinements.clear()
        self.fetches.clear()
        self.thumbnails.close()
        tempdirs.remove_all()  # whatever a task left (an embed closed mid-capture); Blender's quit: see tempdirs


def redraw_sidebar() -> None:
    """Ask Blender to redraw the 3D viewports (the sidebar) and the preferences window."""
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


_session: Session | None = None


def get() -> Session:
    """The session of the registered add-on. Raises RuntimeError when the add-on is not registered."""
    if _session is None:
        raise RuntimeError("the Asset2Vec add-on is not registered (no session)")
    return _session


def timer_registered() -> bool:
    """Whether the session's timer is waiting to step the tasks."""
    return bpy.app.timers.is_registered(_tick)


def _tick() -> float | None:
    """The ``bpy.app.timers`` callback (a module function: Blender keeps a reference to it)."""
    return _session.tick() if _session is not None else None


def register() -> None:
    global _session
    if _session is not None:
        _session.close()
    _session = Session()


def unregister() -> None:
    global _session
    if _session is not None:
        _session.close()
    _session = None
