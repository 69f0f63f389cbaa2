"""Bulk Tag Folder from the add-on: run ``asset2vec bulk-tag --progress-json`` as a subprocess and follow it.

The add-on never imports the backend (the extension ships only ``blender_addon/`` and ``shared/``), so the
panel launches the installed ``asset2vec`` command. A :class:`BulkJob` owns that process:

- it is a :class:`~blender_addon.tasks.BackgroundTask` whose worker thread reads the process's stdout, one JSON
  object per line (``progress`` events, then ``summary`` or ``error``; see ``backend/commands/bulk.py``) into
  :attr:`BulkJob.last_event` (the fraction in :attr:`BulkJob.progress`) and :attr:`BulkJob.summary`, until the
  process exits;
- its stderr (tracebacks of a broken install, Blender's messages) goes to a temporary log file, never a
  pipe that could fill up and block it; the last lines explain an unexpected exit;
- :meth:`BulkJob.step` (the session's timer in :mod:`blender_addon.bulk_ui`, or :meth:`BulkJob.pump` in
  tests) escalates a Cancel from SIGTERM to SIGKILL and, once the process has ended, sets the outcome.

Cancel is safe at any moment: bulk-tag journals every step and saves each .blend atomically (temporary file
+ rename), and its Blender workers die with it, so every file is either untouched or fully updated, and
the next run continues where this one stopped. This module has no ``bpy``: plain functions and a class.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import tempdirs
from .errors import AddonError
from .tasks import CANCELLED, DONE, FAILED, FINAL, RUNNING, BackgroundTask

#: The environment variable that carries the backend token to the subprocess (never its command line,
#: which other users of the machine can read in the process list).
TOKEN_ENV = "ASSET2VEC_BULK_TOKEN"
#: Seconds between SIGTERM and SIGKILL when cancelling.
GRACE_S = 5.0
#: Seconds to wait for the rest of stdout (the summary line) once the process has exited.
READER_GRACE_S = 5.0


class BulkJobError(AddonError, ValueError):
    """The bulk run cannot start; the message says what to fix."""


@dataclass
class BulkRequest:
    """What to run: the library folder, the backend and the options shown in the panel."""

    folder: str
    url: str
    token: str | None = None
    dry_run: bool = False
    threshold: float | None = None  # None: the backend's decision (each tag at its own calibrated threshold)
    workers: int = 1
    size: int = 64
    samples: int = 8


def find_command(configured: str = "") -> str:
    """The ``asset2vec`` executable: the preference when set, else the one on PATH. Raises BulkJobError."""
    if configured:
        path = Path(os.path.expanduser(configured))
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise BulkJobError(f"the asset2vec command set in the add-on's preferences does not exist or cannot run: "
                           f"{configured}. Fix the path (e.g. .venv/bin/asset2vec of your Asset2Vec checkout) or "
                           f"clear it to use the one on PATH")
    found = shutil.which("asset2vec")
    if found:
        return found
    raise BulkJobError("the asset2vec command was not found: install the backend (`python build.py demo` sets it up "
                       "in .venv/bin/asset2vec) and set its path in the add-on's preferences ('asset2vec Command')")


def build_command(executable: str, req: BulkRequest) -> list[str]:
    """The argument list of ``asset2vec bulk-tag`` for ``req`` (the token travels in :data:`TOKEN_ENV`)."""
    cmd = [executable, "bulk-tag", req.folder, "--backend", req.url, "--token-env", TOKEN_ENV,
           "--workers", str(req.workers), "--size", str(req.size), "--samples", str(req.samples), "--progress-json"]
    if req.threshold is not None:
        cmd += ["--threshold", f"{req.threshold:g}"]
    if req.dry_run:
        cmd.append("--dry-run")
    return cmd


def parse_line(line: str) -> dict[str, Any] | None:
    """One stdout line as an event dict, or None for anything that is not a JSON object with an ``event``."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def format_eta(seconds: float | None) -> str:
    """``"ETA 1 h 05 min"`` / ``"ETA 3 min 20 s"`` / ``"ETA 12 s"``; ``"ETA ..."`` while unknown."""
    if seconds is None:
        return "ETA ..."
    s = int(round(seconds))
    if s >= 3600:
        return f"ETA {s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"ETA {s // 60} min {s % 60:02d} s"
    return f"ETA {s} s"


class BulkJob(BackgroundTask):
    """One ``asset2vec bulk-tag`` subprocess and what it has reported so far (the process starts at once)."""

    title = "the bulk run"

    def __init__(self, executable: str, req: BulkRequest, command: list[str] | None = None) -> None:
        if not Path(req.folder).is_dir():
            raise BulkJobError(f"{req.folder or 'no folder'} is not a folder: pick the library folder that holds "
                               f"the .blend files")
        super().__init__("starting asset2vec bulk-tag ...")
        self.request = req
        self.command = command or build_command(executable, req)  # given: the add-on's own run (bulk_local)
        self.last_event: dict[str, Any] = {}  # the last ``progress`` event (files/assets done, rate, ETA)
        self.summary: dict[str, Any] | None = None
        self.cli_error: str | None = None  # the CLI's own ``error`` event
        self.returncode: int | None = None
        self._cancel_at: float | None = None
        self._exited_at: float | None = None
        self._lock = threading.Lock()
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)  # Blender's own Python home would break the backend's interpreter
        env.pop(TOKEN_ENV, None)
        if req.token:
            env[TOKEN_ENV] = req.token
        self._log_dir = tempdirs.make("bulkui")
        self.log_path = self._log_dir / "stderr.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        try:
            # Its own session: Cancel can finally kill the whole group, so nothing it started outlives it.
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=self._log, env=env, text=True, encoding="utf-8", errors="replace",
                                         start_new_session=os.name == "posix")
        except OSError as e:
            self._log.close()
            tempdirs.remove(self._log_dir)  # no run, no log: nothing left behind
            raise BulkJobError(f"could not start {executable}: {e.strerror or e}. Check the asset2vec command in "
                               f"the add-on's preferences") from None
        self.start()  # the reader

    # -- worker thread: the reader ---------------------------------------------------------------

    def work(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = parse_line(line)
            if event is None:
                continue
            with self._lock:
                kind = event["event"]
                if kind == "progress":
                    self.last_event = event
                    self.progress = self.fraction
                    if self._cancel_at is None:
                        self.message = event.get("message") or self.message
                elif kind == "summary":
                    self.summary = event
                elif kind == "error":
                    self.cli_error = str(event.get("message", ""))
        self.proc.wait()  # stdout closed: the process is ending

    # -- main thread --------------------------------------------------------------------------------

    @property
    def fraction(self) -> float:
        """Files done / total, 0..1 (0 until the first progress event)."""
        total = self.last_event.get("files_total") or 0
        return min(1.0, self.last_event.get("files_done", 0) / total) if total else 0.0

    def status_line(self) -> str:
        """``"3/10 files, 5 assets, 1 failed, 120/h, ETA 1 min 05 s"`` from the last progress event."""
        p = self.last_event
        if not p:
            return self.message
        return (f"{p.get('files_done', 0)}/{p.get('files_total', 0)} files, {p.get('assets_done', 0)} assets, "
                f"{p.get('failed', 0)} failed, {p.get('rate_per_hour', 0):.0f}/h, {format_eta(p.get('eta_s'))}")

    def advance(self) -> bool:
        """Escalate a Cancel to SIGKILL once the grace time is over; finish if the reader hangs after the exit."""
        code = self.proc.poll()
        now = time.monotonic()
        if code is None:
            if self._cancel_at is not None and now - self._cancel_at > GRACE_S:
                self._signal(signal.SIGKILL if os.name == "posix" else None)
        elif self._exited_at is None:
            self._exited_at = now
        elif self.worker_alive and now - self._exited_at > READER_GRACE_S:
            self._finish(code)  # something it started still holds stdout open: finish without the rest
        return False

    def complete(self) -> None:
        code = self.proc.wait()
        self._finish(code)

    def failure_message(self, e: Exception) -> str:
        return f"asset2vec bulk-tag could not be followed ({type(e).__name__}: {e})"

    def request_cancel(self) -> bool:
        """Ask the process to stop (SIGTERM now, SIGKILL after :data:`GRACE_S` seconds)."""
        if self.state in FINAL or self._cancel_at is not None:
            return False
        self.cancel.set()
        self._cancel_at = time.monotonic()
        self.message = "stopping ..."
        try:
            self.proc.terminate()
        except OSError:
            pass
        return True

    def close(self) -> None:
        """Never leave a bulk run going without a panel to follow or cancel it (add-on unregister)."""
        if self.state in FINAL:
            return
        self.request_cancel()
        deadline = time.monotonic() + GRACE_S + 5.0
        while self.step() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _signal(self, sig: int | None) -> None:
        """SIGKILL the process group (POSIX) or kill the process; what has already exited is skipped."""
        try:
            if sig is not None:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.kill()
        except OSError:
            pass

    def _finish(self, code: int) -> None:
        self.returncode = code
        if self._cancel_at is not None and os.name == "posix":
            self._signal(signal.SIGKILL)  # anything left in its group (a worker whose parent just died)
        self._log.close()
        with self._lock:
            summary, error = self.summary, self.cli_error or self.error
        if self._cancel_at is not None and summary is None:
            p = self.last_event
            done = f" after {p.get('files_done', 0)} of {p.get('files_total', 0)} files" if p else ""
            self.finish(CANCELLED, f"stopped{done}: every file is either untouched or fully tagged; run again to "
                                   f"continue")
        elif summary is not None:
            self.finish(DONE, describe(summary))
        else:
            self.finish(FAILED, error or self._stderr_tail() or f"asset2vec bulk-tag exited with code {code}")

    def finished(self) -> None:
        if not self._log.closed:
            self._log.close()
        tempdirs.remove(self._log_dir)

    def _stderr_tail(self, lines: int = 3) -> str:
        """The last lines of the process's stderr (the reason it failed), without the tqdm noise."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        kept = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
        errors = [ln for ln in kept if ln.startswith("asset2vec: error:")]
        return errors[-1].removeprefix("asset2vec: error:").strip() if errors else " ".join(kept[-lines:])

    @property
    def report_html(self) -> str:
        """Path of the report's index.html ("" until the run has finished with a summary)."""
        return str((self.summary or {}).get("report", {}).get("html", ""))

    @property
    def failures(self) -> list[dict[str, str]]:
        return list((self.summary or {}).get("failures", []))


def describe(summary: dict[str, Any]) -> str:
    """One line about a finished run, from its summary object."""
    dry = bool(summary.get("dry_run"))
    # files_changed / tags_removed: what the run wrote (or, dry, would write), counted as the command line does
    changed = summary.get("files_changed", summary.get("files_written", 0))
    removed = summary.get("tags_removed", 0)
    return (f"{summary.get('files', 0)} files: {'would change' if dry else 'wrote'} {changed}, "
            f"{summary.get('files_skipped', 0)} skipped, {summary.get('files_failed', 0)} failed; "
            f"{summary.get('assets', 0)} assets, {summary.get('tags_added', 0)} tag(s) "
            f"{'to add' if dry else 'added'}, {removed} {'to remove' if dry else 'removed'}; "
            f"{summary.get('seconds', 0):.0f} s")


__all__ = ["CANCELLED", "DONE", "FAILED", "FINAL", "RUNNING", "BulkJob", "BulkJobError", "BulkRequest",
           "build_command", "describe", "find_command", "format_eta", "parse_line"]
