"""Temporary folders that name their owner process, and the removal of those whose owner died.

A process killed with SIGKILL (or a Blender that crashed) runs no cleanup, so its ``asset2vec-*`` folders in
the system's temporary directory would stay forever. Every such folder is made by :func:`make` (or
:func:`folder`), which writes an owner marker (:data:`OWNER_FILE`: host, PID and the process's start time)
inside it; :func:`remove_stale`, called when ``asset2vec serve`` and ``asset2vec bulk-tag`` start and when the
add-on first makes a folder, removes the folders whose owner is gone.

Never removed: a folder without a readable marker (another program's, an older release's, or one whose
marker is still being written), a folder of another host or user, and a folder whose owner is alive. The
start time tells a live owner from a new process that got a dead owner's PID; where it cannot be read
(platforms without ``/proc``), an existing PID counts as alive, so a folder is kept rather than risked.

No bpy, no third-party modules: the add-on vendors this module with the rest of ``shared/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Prefix of every temporary folder Asset2Vec makes (``asset2vec-bulk-*``, ``asset2vec-thumbs-*`` ...).
PREFIX = "asset2vec-"
#: The owner marker inside each folder.
OWNER_FILE = ".asset2vec-owner.json"


def make(prefix: str, parent: str | os.PathLike[str] | None = None) -> Path:
    """A new private folder ``<prefix>XXXX`` in the temporary directory (or ``parent``), marked as this process's."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": process_started(os.getpid())}
    tmp = path / f"{OWNER_FILE}.tmp"
    tmp.write_text(json.dumps(owner))
    os.replace(tmp, path / OWNER_FILE)  # a sweep reads a whole marker or none (none: the folder is kept)
    return path


@contextmanager
def folder(prefix: str, parent: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """:func:`make`, removed again when the block ends (a kill leaves it to :func:`remove_stale`)."""
    path = make(prefix, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale(prefix: str = PREFIX, parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the folders ``<prefix>*`` in the temporary directory (or ``parent``) whose owner process is dead.

    Returns the folders removed. Never raises: a folder that cannot be read or removed is left.
    """
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = [p for p in base.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for path in entries:
        try:
            if path.is_symlink() or not path.is_dir() or not _ours(path):
                continue
            owner = json.loads((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # no marker (not made by make(), or being made right now): never ours to remove
        if isinstance(owner, dict) and _owner_dead(owner):
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    return removed


def process_started(pid: int) -> str | None:
    """An opaque start time of process ``pid`` (None: unknown here, or no such process)."""
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # Field 22 (starttime); the command name (field 2) may hold spaces and parentheses: split after it.
        fields = stat[stat.rfind(")") + 2 :].split()
        return fields[19] if len(fields) > 19 else None
    if sys.platform == "win32":
        return _windows_started(pid)
    return None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie, dead but not yet reaped, counts as dead)."""
    if pid <= 0:
        return False
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X")
    if sys.platform == "win32":
        return _windows_started(pid) is not None
    try:
        os.kill(pid, 0)  # POSIX: signal 0 only checks (on Windows os.kill would terminate it)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _owner_dead(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool):
        return False  # another machine's folder (a shared temp dir), or a marker we do not understand
    if not pid_alive(pid):
        return True
    started = owner.get("started")
    now = process_started(pid)
    return started is not None and now is not None and now != started  # the PID was reused by a new process


def _ours(path: Path) -> bool:
    """Whether ``path`` belongs to this user (another user's folders are theirs to clean)."""
    getuid = getattr(os, "getuid", None)
    return getuid is None or path.stat().st_uid == getuid()


def _windows_started(pid: int) -> str | None:
    """The creation time of a running process on Windows (None when it does not run)."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return None
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) or code.value != 259:  # STILL_ACTIVE
            return None
        times = [wintypes.FILETIME() for _ in range(4)]
        if not kernel32.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
            return None
        return str((times[0].dwHighDateTime << 32) | times[0].dwLowDateTime)
    finally:
        kernel32.CloseHandle(handle)
