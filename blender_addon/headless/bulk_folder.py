"""The add-on's own Bulk Tag Folder run: one background Blender tags a folder through a (remote) backend.

Used by the panel when no ``asset2vec`` command is installed (:mod:`blender_addon.bulk_local` builds the command
line): the artist's machine needs only the extension (``blender_addon/`` + ``shared/``), no torch; the backend
can be a studio server. Each .blend goes through the same per-file task as ``asset2vec bulk-tag``
(:func:`blender_addon.headless.bulk.process_file`: capture, upload, final answer, atomic save with backup), one
file after the other in this process. What only ``asset2vec bulk-tag`` adds: parallel workers, the journal (here
a second run skips what the files already hold: assets whose stored answer matches their content and the model),
the HTML report and importing loose .obj/.gltf/.glb models.

stdout carries the same JSON lines as ``asset2vec bulk-tag --progress-json`` (``progress`` events, then one
``summary`` or ``error``), so :class:`blender_addon.bulk_job.BulkJob` follows either alike. Blender's own prints
go to stderr. The token comes in the environment (:data:`blender_addon.bulk_job.TOKEN_ENV`), never argv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from ..bulk_job import TOKEN_ENV
from ..protocol import client, library_files, naming
from .bulk_worker import _protocol_stream


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bulk_folder")
    ap.add_argument("folder")
    ap.add_argument("--url", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--timeout", type=float, default=60.0)
    return ap.parse_args(argv)


def run(args: argparse.Namespace, out: IO[str]) -> int:
    """Tag every .blend under ``args.folder``; JSON lines to ``out``. Returns the exit code (2: could not start)."""
    t0 = time.monotonic()

    def send(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    root = Path(args.folder).expanduser().resolve()
    if not root.is_dir():
        send({"event": "error", "message": f"{args.folder} is not a folder: pick the library folder"})
        return 2
    if naming.find_library_root(root / "x.blend") is None:
        # The root asset names use, as bulk-tag's journal and index mark it: the panel then names them alike.
        with contextlib.suppress(OSError):
            (root / naming.STATE_DIR).mkdir(exist_ok=True)
    blends, models = library_files.scan(root)
    if not blends:
        send({"event": "error", "message": f"no .blend files under {root}"
              + (" (loose models are imported only by the asset2vec command)" if models else "")})
        return 2
    token = os.environ.get(TOKEN_ENV) or None
    try:
        model_id = client.Client(args.url, token, timeout=args.timeout).info().model_id
    except client.BackendError as e:
        send({"event": "error", "message": str(e)})
        return 2

    from .bulk import process_file  # imports bpy

    options = {"root": str(root), "url": args.url, "token": token, "size": args.size, "samples": args.samples,
               "threshold": args.threshold, "dry_run": args.dry_run, "backup": True, "all_objects": False,
               "thumbs": None, "model_id": model_id, "timeout": args.timeout}
    s: dict[str, Any] = {"files": len(blends), "files_written": 0, "files_changed": 0, "files_unchanged": 0,
                         "files_skipped": 0, "files_failed": 0, "assets": 0, "embedded": 0, "up_to_date": 0,
                         "tags_added": 0, "tags_removed": 0, "dry_run": bool(args.dry_run), "root": str(root),
                         "model_id": model_id, "report": {}, "runner": "add-on",
                         "failures": [{"path": str(m), "error": "not imported: importing loose models needs the "
                                                                "asset2vec command"} for m in models]}
    p = {"files_done": 0, "assets_done": 0, "assets_total": 0, "failed": 0}

    def progress(message: str) -> None:
        elapsed = max(1e-9, time.monotonic() - t0)
        done = p["files_done"]
        send({"event": "progress", **p, "files_total": len(blends),
              "rate_per_hour": round(p["assets_done"] / elapsed * 3600, 1), "elapsed_s": round(elapsed, 2),
              "eta_s": round((len(blends) - done) * elapsed / done, 1) if done else None, "message": message})

    def on_event(ev: dict[str, Any]) -> None:
        kind = ev.get("ev")
        if kind == "assets":
            p["assets_total"] += int(ev.get("total", 0))
        elif kind in ("embedded", "skipped", "asset-failed"):
            p["assets_done"] += 1
        elif kind == "captured":
            s["embedded"] += 1
        progress(f"{Path(ev.get('path', '')).name}: {kind} {ev.get('asset', '')}".rstrip())

    progress(f"{len(blends)} file(s) to do")
    for blend in blends:
        res = process_file(blend, options, None, emit=on_event)
        status = res.get("status", "failed")
        p["files_done"] += 1
        if status == "failed":
            p["failed"] += 1
            s["files_failed"] += 1
            s["failures"].append({"path": str(blend), "error": res.get("error", "")})
        s["files_written"] += status == "written"
        s["files_unchanged"] += status == "unchanged"
        assets = res.get("assets", [])
        s["files_changed"] += any(a.get("status") in ("written", "proposed") for a in assets)
        for a in assets:
            proposed = a.get("status") == "proposed"  # a dry run's: counted as what the real run will write
            s["assets"] += 1
            s["tags_added"] += len(a.get("to_add" if proposed else "added") or [])
            s["tags_removed"] += len(a.get("to_remove" if proposed else "removed") or [])
            s["up_to_date"] += a.get("status") == "up-to-date"
            if a.get("status") == "failed" and status != "failed":
                s["failures"].append({"path": f"{blend}: {a.get('name')}", "error": a.get("error", "")})
        progress(f"{blend.name}: {status}")
    s["seconds"] = round(time.monotonic() - t0, 2)
    send({"event": "summary", **s})
    return 0


def main(argv: list[str]) -> int:
    """Entry point of the background process (see :func:`blender_addon.bulk_local.command`)."""
    out = _protocol_stream()  # JSON lines only: Blender's C prints go to stderr from now on
    try:
        return run(parse_args(argv), out)
    except SystemExit as e:  # argparse: a bad command line is the add-on's bug, reported as an error event
        out.write(json.dumps({"event": "error", "message": f"bad bulk arguments ({e})"}) + "\n")
        return 2
