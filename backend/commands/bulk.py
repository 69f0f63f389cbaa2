"""``asset2vec bulk-tag FOLDER``: tag every asset of a library folder, resumably and safely.

Thin wrapper over :func:`backend.bulk.driver.bulk_tag`. The backend is a running service
(``--backend URL``), one started in this process from ``--run RUN_DIR`` on loopback, or, with neither, the
one :func:`find_backend` finds: the local default (``asset2vec serve`` on this machine) or the one advertised on
the network (zeroconf).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from backend.cli import CommandError
from shared.client import DEFAULT_URL

RUN_ENV = "ASSET2VEC_RUN"
DEFAULT_TOKEN_ENV = "ASSET2VEC_TOKEN"


def register(sub: Any) -> None:
    p = sub.add_parser("bulk-tag", help="capture, embed and tag every asset of every .blend (and OBJ/glTF) in a folder",
                       description="Capture, embed and tag every asset under FOLDER in headless Blender workers. "
                                   "Resumable (a journal records every step; unchanged assets are skipped), safe "
                                   "(atomic saves with a .blend1 backup; bad files are reported and left untouched).")
    p.add_argument("folder", help="library folder (searched recursively for .blend, .obj, .gltf, .glb)")
    p.add_argument("--backend", metavar="URL",
                   help="a running backend, as `asset2vec serve` prints it (default: serve --run in this process; "
                        f"without --run: the one on this machine ({DEFAULT_URL}) if it answers, else the one "
                        "advertised on the network)")
    p.add_argument("--run", default=os.environ.get(RUN_ENV), metavar="RUN_DIR",
                   help=f"trained run to serve in this process when --backend is not given (default: ${RUN_ENV})")
    p.add_argument("--token-env", default=DEFAULT_TOKEN_ENV, metavar="VAR",
                   help=f"environment variable holding the backend's token (default {DEFAULT_TOKEN_ENV})")
    p.add_argument("--workers", type=int, default=1, help="Blender worker processes (default 1)")
    p.add_argument("--dry-run", action="store_true", help="change no file: only write the report of proposed changes")
    p.add_argument("--threshold", type=float, metavar="P",
                   help="add every predicted tag with probability >= P instead of the backend's decision (default: "
                        "the backend's calibrated per-tag thresholds and exclusive groups, which this overrides)")
    p.add_argument("--all-objects", action="store_true",
                   help="also tag unmarked top-level mesh objects (stored in their 'asset2vec' custom property)")
    p.add_argument("--no-backup", action="store_true", help="do not keep NAME.blend1 backups of changed files")
    p.add_argument("--report", metavar="DIR", help="report folder (default LIBRARY/.asset2vec/report, LIBRARY: the marked library root at or above FOLDER)")
    p.add_argument("--journal", metavar="PATH", help="journal file (default LIBRARY/.asset2vec/bulk-journal.sqlite)")
    p.add_argument("--size", type=int, default=64, help="capture size in pixels (default 64)")
    p.add_argument("--samples", type=int, default=8, help="Cycles samples per pixel (default 8)")
    p.add_argument("--device", choices=("AUTO", "CPU", "GPU"), default="AUTO", help="Cycles device (default AUTO)")
    p.add_argument("--invert-steps", type=int, help="with --run: inversion steps per asset (default: the preset's)")
    p.add_argument("--ray", action="store_true", help="run the per-file tasks as Ray tasks (pip install ray)")
    p.add_argument("--ray-address", help="with --ray: an existing Ray cluster (default: a local Ray instance)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress-json", action="store_true",
                   help="machine-readable progress for the Blender add-on: stdout carries only JSON lines, one "
                        '{"event": "progress", ...} per change, then {"event": "summary", ...} or '
                        '{"event": "error", "message"}; the human summary goes to stderr; implies --quiet')
    p.set_defaults(func=cmd_bulk_tag)


def _check(args: argparse.Namespace) -> None:
    if not Path(args.folder).is_dir():
        raise CommandError(f"{args.folder} is not a folder: give the library folder that holds the .blend files")
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CommandError("--threshold is a probability: give a value between 0 and 1")
    if not 16 <= args.size <= 1024:
        raise CommandError("--size must be between 16 and 1024 pixels")
    if args.samples < 1:
        raise CommandError("--samples must be at least 1")


def find_backend(token: str | None, local: str = DEFAULT_URL, discover_seconds: float = 2.0,
                 interfaces: list[str] | None = None) -> tuple[str, str]:
    """The backend to use when none was named: ``(url, how it was found)``.

    ``local`` (``asset2vec serve`` on this machine) if it answers ``/info``, else the one backend advertised over
    zeroconf (browsing ``interfaces``, default all). Several advertised ones, or none, is a :class:`CommandError`
    that says what was tried and how to name one.
    """
    from shared.client import BackendError, Client, discover

    try:
        Client(local, token, timeout=2.0).info()
        return local, f"using the backend on this machine at {local}"
    except BackendError as e:
        if e.status is not None:  # it answered but refused (token, version): never fall through to another machine
            raise CommandError(f"the backend on this machine at {local} refused: {e}") from None
        local_failure = str(e)
    print(f"no backend answers at {local}; looking for one on the network ({discover_seconds:.0f} s) ...",
          file=sys.stderr, flush=True)
    how_to = (f"start one with `asset2vec serve`, or pass --backend URL (as `asset2vec serve` prints it) or "
              f"--run RUN_DIR (or set ${RUN_ENV}) to serve a run in this process")
    try:
        found = discover(timeout=discover_seconds, interfaces=interfaces)
    except BackendError as e:
        raise CommandError(f"which backend? {local_failure}; and {e}: {how_to}") from None
    if not found:
        raise CommandError(f"which backend? none answers at {local} ({local_failure}) and none is advertised on the "
                           f"network: {how_to}")
    if len(found) > 1:
        listed = ", ".join(f"{d.name} at {d.url}" for d in found)
        raise CommandError(f"which backend? {len(found)} are advertised on the network ({listed}): pass --backend URL "
                           f"with the one to use")
    name, url, txt = found[0]
    return url, f"using the backend advertised on the network: {name} at {url} (model {txt.get('model', '?')})"


def _start_local(stack: ExitStack, run: str, invert_steps: int | None) -> str:
    """Serve ``run`` on a free loopback port from this process; returns its URL."""
    from backend.library.errors import LibraryError
    from backend.model.errors import ModelError
    from backend.service.engine import Engine
    from backend.service.errors import ServiceError
    from backend.service.server import Service

    print(f"loading run {run} ...", file=sys.stderr, flush=True)
    try:
        engine = Engine.open(run, invert_steps=invert_steps)
        stack.callback(engine.close)
        service = Service(engine, port=0, advertise=False).start_in_thread()
    except (ServiceError, LibraryError, ModelError, OSError) as e:
        raise CommandError(str(e)) from None
    stack.callback(service.stop)
    return service.url


def _emit_json(event: dict[str, Any]) -> None:
    """One JSON object per line on stdout, flushed at once (the add-on reads it as it comes)."""
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def cmd_bulk_tag(args: argparse.Namespace) -> int:
    if not args.progress_json:
        return _bulk_tag(args)
    try:
        return _bulk_tag(args)
    except CommandError as e:
        _emit_json({"event": "error", "message": str(e)})
        raise


def _bulk_tag(args: argparse.Namespace) -> int:
    from backend.bulk.driver import BulkError, BulkOptions, bulk_tag
    from backend.bulk.journal import JournalError
    from backend.bulk.workers import WorkerError
    from shared.client import BackendError, Client

    _check(args)
    token = os.environ.get(args.token_env, "").strip() or None
    with ExitStack() as stack:
        if args.backend:
            url = args.backend
        elif args.run:
            url = _start_local(stack, args.run, args.invert_steps)
        else:
            url, how = find_backend(token)
            print(how, file=sys.stderr, flush=True)
        try:
            client = Client(url, token)
            info = client.info()
        except BackendError as e:
            raise CommandError(str(e)) from None
        url = client.url  # normalised (the /v1 the server prints may be pasted): the workers get the base URL
        opts = BulkOptions(url=url, token=token, model_id=info.model_id, workers=args.workers,
                           dry_run=args.dry_run, threshold=args.threshold, all_objects=args.all_objects,
                           backup=not args.no_backup, size=args.size, samples=args.samples, device=args.device,
                           report_dir=Path(args.report) if args.report else None,
                           journal_path=Path(args.journal) if args.journal else None, ray=args.ray,
                           ray_address=args.ray_address, progress=not (args.quiet or args.progress_json),
                           on_progress=_emit_json if args.progress_json else None)
        try:
            s = bulk_tag(args.folder, opts)
        except (BulkError, JournalError, WorkerError) as e:
            raise CommandError(str(e)) from None
    out = sys.stderr if args.progress_json else sys.stdout  # stdout is only JSON lines then
    if args.progress_json:
        _emit_json({"event": "summary", "dry_run": args.dry_run, **s.as_dict()})
    verb = "would change" if args.dry_run else "wrote"
    would = "would be " if args.dry_run else ""
    print(f"{s.files} file(s): {verb} {s.files_changed}, {s.files_unchanged} unchanged, {s.files_skipped} skipped "
          f"(unchanged since the last run), {s.files_failed} failed; {s.assets} asset(s): {s.embedded} embedded, "
          f"{s.reused} reused from the journal, {s.up_to_date} up to date; {s.tags_added} tag(s) {would}added, "
          f"{s.tags_removed} {would}removed; {s.imported_models} model(s) imported; {s.seconds:.1f} s", file=out)
    print(f"report: {s.report.get('html', '')}", file=out)
    for f in s.failures:
        print(f"  failed: {f['path']}: {f['error']}", file=sys.stderr)
    return 1 if s.failures else 0
