"""Forget This Asset: take the active asset out of the backend's catalogue, in the background.

The operator (:class:`blender_addon.operators.ASSET2VEC_OT_forget_asset`) asks for confirmation and hands the
request to a :class:`~blender_addon.tasks.CallTask` in the session's ``"forget"`` slot; the worker thread sends
``DELETE /v1/assets/{name}`` for the asset's catalogue name (every sampled variant of a family embed) and the
outcome becomes the Embed panel's status line. Only the backend's catalogue changes: the .blend, its tags and
the Asset2Vec data stored in it stay as they are (embedding the asset again brings it back).
"""

from __future__ import annotations

from typing import Any

from . import session, writeback
from .protocol import api
from .protocol import client as remote
from .protocol import metadata as M
from .tasks import DONE, BackgroundTask, CallTask

SLOT = "forget"
CHANNEL = "embed"


def catalogue_names(id_: Any) -> list[str]:
    """The catalogue names an embedded asset stands for: its own, or its family's variants (one per member)."""
    data = writeback.read_metadata(id_)
    members = [str(m.get("name")) for m in data.get(M.FAMILY_MEMBERS) or [] if isinstance(m, dict) and m.get("name")]
    own = str(data.get(M.ASSET_NAME) or "")
    return members or ([own] if own else [])


def forget_names(client: remote.Client, names: list[str]) -> list[api.Forgotten]:
    """``DELETE`` each name (any thread, no bpy). Names the catalogue no longer knows are skipped, unless none is
    known: then the backend's 404 ("no asset named ...") is raised as it is."""
    done: list[api.Forgotten] = []
    unknown: remote.BackendError | None = None
    for name in names:
        try:
            done.append(client.delete_asset(name))
        except remote.BackendError as e:
            if e.status != 404:
                raise
            unknown = unknown or e
    if not done and unknown is not None:
        raise unknown
    return done


def message(names: list[str], done: list[api.Forgotten]) -> str:
    """The status line after forgetting."""
    if len(names) == 1 and done:
        return f"{done[0].message}; the .blend is unchanged"
    left = done[-1].assets if done else 0
    return (
        f"forgot {len(done)} of {len(names)} catalogued variant(s) ({left} asset(s) left in the catalogue); "
        "the .blend is unchanged"
    )


def start(url: str, token: str | None, timeout: float, names: list[str]) -> CallTask:
    """Forget ``names`` on the backend in a worker thread; the outcome goes to the Embed panel's status line."""
    sess = session.get()

    def call() -> list[api.Forgotten]:
        return forget_names(remote.Client(url, token, timeout=timeout), names)

    task = CallTask("forget", call, message=f"asking the backend to forget {names[0]!r} ...")

    def done(t: BackgroundTask) -> None:
        assert isinstance(t, CallTask)
        if t.state == DONE:
            sess.set_status(CHANNEL, "INFO", message(names, t.result or []))
        else:
            sess.set_status(CHANNEL, "ERROR", f"could not forget {names[0]!r}: {t.message}")

    task.on_finish.append(done)
    return sess.start(SLOT, task)


def pump(timeout: float = 60.0) -> Any:
    """Wait for the running request and apply it (what the timer does; for tests and headless use)."""
    return session.get().pump(SLOT, timeout)
