"""A headless Blender worker process: imports bpy once, then handles many requests sent by its driver.

Run as ``python -m blender_addon.headless.bulk_worker``. Drivers: the bulk tagger
(:mod:`backend.bulk.workers`, one request per .blend) and the library index's capture stage
(:mod:`backend.lifecycle.index`: bpy never runs inside the backend's process, whose threads serve
HTTP and are not bpy's main thread). Protocol: one JSON object per line.

- stdin (driver → worker): ``{"op": "file", "path", "options", "known"}`` (bulk-tag one file),
  ``{"op": "import", "root", "models"}``, ``{"op": "capture", "src", "out", "size", "samples",
  "device", "skip_files"}`` (:func:`~blender_addon.headless.capture_library.capture_library`; events
  ``file`` and ``asset``) or ``{"op": "quit"}``.
- the protocol stream (the process's original stdout): events ``{"ev": ...}`` while working, then
  ``{"ev": "result", ...}`` once per request.

Blender prints to stdout from C ("Read blend:", render logs), which would corrupt the protocol, so
the protocol keeps a private duplicate of stdout and file descriptor 1 is pointed at stderr.
On Linux the worker asks the kernel to kill it when the driver dies (``PR_SET_PDEATHSIG``), so a
killed run leaves no worker still saving a file behind the next run's back.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from typing import IO, Any

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the driver died before the request above took effect
        os._exit(1)


def _protocol_stream() -> IO[str]:
    """A private copy of stdout for JSON lines; fd 1 (Blender's C output) goes to stderr from now on."""
    sys.stdout.flush()
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    return proto


def main() -> int:
    _die_with_parent()
    proto = _protocol_stream()

    def send(event: dict[str, Any]) -> None:
        proto.write(json.dumps(event) + "\n")
        proto.flush()

    from . import bulk  # imports bpy: once per worker

    send({"ev": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.get("op")
        if op == "quit":
            break
        try:
            if op == "file":
                result = bulk.process_file(request["path"], request["options"], request.get("known"), emit=send)
            elif op == "import":
                result = bulk.import_loose_models(request["root"], request["models"])
            elif op == "capture":
                result = _capture(request, send)
            else:
                result = {"status": "failed", "error": f"unknown request {op!r}"}
        except Exception as e:  # noqa: BLE001 - report, keep serving: one bad file never stops the run
            traceback.print_exc(file=sys.stderr)
            result = {"status": "failed", "error": f"unexpected error ({type(e).__name__}: {e})"}
        send({"ev": "result", **result})
    return 0


def _capture(request: dict[str, Any], send: Any) -> dict[str, Any]:
    """Capture a library folder (or one file) into bundles; an error the artist can act on is a failed result."""
    from pathlib import Path

    from ..errors import AddonError
    from .capture_library import capture_library

    try:
        summary = capture_library(
            Path(request["src"]), Path(request["out"]), size=int(request["size"]), samples=int(request["samples"]),
            device=str(request.get("device", "AUTO")), skip_files=set(request.get("skip_files") or ()),
            on_file=lambda path: send({"ev": "file", "path": str(path)}),
            on_asset=lambda done, total: send({"ev": "asset", "done": done, "total": total}))
    except AddonError as e:
        return {"status": "failed", "error": str(e)}
    return {"status": "done", "done": summary.done, "skipped": summary.skipped, "failed": summary.failed,
            "opened": summary.opened, "names": summary.names, "present": summary.present}


if __name__ == "__main__":
    sys.exit(main())
