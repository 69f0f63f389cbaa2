"""Drive a bulk-tag run: scan the folder, consult the journal, feed the workers, journal every event, report.

:func:`bulk_tag` is the plain function behind ``asset2vec bulk-tag``. It never touches a .blend
itself (that is the workers' job, in headless Blender); it decides what to do, records what was
done, and shows progress.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import Asset2VecError
from shared import naming, tempfolders
from shared.library_files import scan

from .journal import CAPTURED, EMBEDDED, WRITTEN, Journal
from .report import write_report
from .workers import Event, ProcessPool, RayPool

STATE_DIR = ".asset2vec"
TMP_PREFIX = ".a2v-tmp-"  # as blender_addon.headless.bulk.TMP_PREFIX (not imported: that module needs bpy)


class BulkError(Asset2VecError):
    """The run cannot start (no files, bad options); the message says what to do."""


@dataclass
class BulkOptions:
    """What a run does; see ``asset2vec bulk-tag --help`` for each option."""

    url: str
    token: str | None = None
    model_id: str = ""
    workers: int = 1
    dry_run: bool = False
    threshold: float | None = None
    all_objects: bool = False
    backup: bool = True
    size: int = 64
    samples: int = 8
    device: str = "AUTO"
    report_dir: Path | None = None
    journal_path: Path | None = None
    ray: bool = False
    ray_address: str | None = None
    progress: bool = True
    timeout: float = 60.0
    #: Called with a progress event dict (see :meth:`_Progress.event`) after every change, from the
    #: driver's threads (serialised); ``asset2vec bulk-tag --progress-json`` prints each as a JSON line.
    on_progress: Callable[[dict[str, Any]], None] | None = None


@dataclass
class Summary:
    """Counts of a run (also written into the report)."""

    files: int = 0
    files_written: int = 0
    #: Files this run writes (or, in a dry run, would write): the same number for a dry run and the real run after.
    files_changed: int = 0
    files_unchanged: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    assets: int = 0
    embedded: int = 0
    reused: int = 0
    up_to_date: int = 0
    #: Tags added (a dry run: that would be added) and removed again (added by an earlier answer, no longer proposed).
    tags_added: int = 0
    tags_removed: int = 0
    imported_models: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)
    report: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def unchanged_since_written(journal: Journal, path: Path, model_id: str) -> bool:
    """The file is exactly as our last run left it (size, mtime, sha256) and was tagged with this model."""
    row = journal.file(str(path))
    if row is None or row["status"] not in ("written", "unchanged") or row["model_id"] != model_id:
        return False
    st = path.stat()
    if (row["size"], row["mtime_ns"]) != (st.st_size, st.st_mtime_ns):
        return False
    return row["sha256"] == sha256_file(path)


class _Progress:
    """tqdm over files on stderr, with assets, rate and failures in the postfix; and/or progress events."""

    def __init__(self, total: int, enabled: bool, on_progress: Callable[[dict[str, Any]], None] | None = None,
                 skipped: int = 0) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="bulk-tag", unit="file", file=sys.stderr, dynamic_ncols=True)
        self.total, self.files, self.skipped = total, 0, skipped
        self.on_progress = on_progress
        self.assets = self.assets_total = self.failed = 0
        self.t0 = time.monotonic()

    def event(self, message: str = "") -> dict[str, Any]:
        """Where the run stands: files done/total, assets, failures, asset rate per hour, ETA in seconds
        (None until the first file of this run is done; skipped files do not count toward the rate)."""
        elapsed = max(1e-9, time.monotonic() - self.t0)
        worked = self.files - self.skipped
        eta = (self.total - self.files) * elapsed / worked if worked > 0 else None
        return {"event": "progress", "files_done": self.files, "files_total": self.total, "assets_done": self.assets,
                "assets_total": self.assets_total, "failed": self.failed,
                "rate_per_hour": round(self.assets / elapsed * 3600, 1), "elapsed_s": round(elapsed, 2),
                "eta_s": None if eta is None else round(eta, 1), "message": message}

    def update(self, files: int = 0, message: str = "") -> None:
        self.files += files
        if self.on_progress is not None:
            self.on_progress(self.event(message))
        if self.bar is None:
            return
        rate = self.assets / max(1e-9, time.monotonic() - self.t0) * 3600
        self.bar.set_postfix_str(f"assets {self.assets}/{self.assets_total}, {rate:.0f}/h, failed {self.failed}",
                                 refresh=False)
        self.bar.update(files)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def bulk_tag(root: str | Path, opts: BulkOptions) -> Summary:
    """Tag every asset under ``root``; returns the summary (the report is written to ``opts.report_dir``)."""
    t0 = time.monotonic()
    base = Path(root).resolve()
    if not base.is_dir():
        raise BulkError(f"{root} is not a folder: give the library folder that holds the .blend files")
    tempfolders.remove_stale()  # the temporary folders of killed runs (their workers are dead: nothing in use)
    # The state lives in the library's own .asset2vec/ when BASE is a subfolder of a marked library: a new one in
    # BASE would make BASE the root that asset names are relative to (shared.naming), renaming its assets.
    top = naming.find_library_root(base / "x.blend") or base
    state = top / STATE_DIR
    journal = Journal(opts.journal_path or state / "bulk-journal.sqlite")
    sub = "" if top == base else "-" + naming.safe_folder_name(base.relative_to(top).as_posix())
    report_dir = opts.report_dir or state / f"report{sub}"
    thumbs = report_dir / "thumbs"
    blends, models = scan(base)
    if not blends and not models:
        journal.close()
        raise BulkError(f"no .blend, .obj, .gltf or .glb files under {base}")
    summary = Summary()
    file_reports: dict[str, dict[str, Any]] = {}
    options = {"root": str(base), "url": opts.url, "token": opts.token, "size": opts.size, "samples": opts.samples,
               "threshold": opts.threshold, "dry_run": opts.dry_run, "backup": opts.backup,
               "all_objects": opts.all_objects, "thumbs": str(thumbs), "model_id": opts.model_id,
               "device": opts.device, "timeout": opts.timeout}
    logs = state / "logs"  # the workers' stderr (Blender's own messages), for diagnosing a failed file
    logs.mkdir(parents=True, exist_ok=True)
    pool: ProcessPool | RayPool = RayPool(opts.workers, opts.ray_address) if opts.ray else ProcessPool(opts.workers, logs)
    lock = threading.Lock()
    progress: _Progress | None = None
    try:
        new_models = [m for m in models if journal.imported(str(m)) != sha256_file(m)]
        if new_models and opts.dry_run:
            for m in new_models:
                summary.failures.append({"path": str(m), "error": "would be imported into a new .blend (dry run: "
                                                                  "not imported, not tagged)"})
        elif new_models:
            result = pool.request_one({"op": "import", "root": str(base), "models": [str(m) for m in new_models]},
                                      lambda ev: None)
            failed_sources = {f["source"] for f in result.get("failed", [])}
            for f in result.get("failed", []):
                summary.failures.append({"path": f["source"], "error": f"import failed: {f['error']}"})
            for m in new_models:
                if str(m) not in failed_sources and result.get("blends") is not None and "error" not in result:
                    journal.set_imported(str(m), sha256_file(m), ";".join(result["blends"]))
                    summary.imported_models += 1
            if result.get("error"):
                summary.failures.append({"path": str(base), "error": f"importing loose models failed: "
                                                                     f"{result['error']}"})
            blends = sorted(set(blends) | {Path(b) for b in result.get("blends", [])})

        todo = []
        for b in blends:
            if unchanged_since_written(journal, b, opts.model_id):
                summary.files_skipped += 1
                file_reports[str(b)] = {"path": str(b), "status": "skipped", "error": "",
                                        "assets": [{**a, "status": "up-to-date", "added": []}
                                                   for a in journal.reports(str(b))]}
            else:
                todo.append({"op": "file", "path": str(b), "options": options, "known": journal.known(str(b))})
        summary.files = len(blends)
        progress = _Progress(len(blends), opts.progress, opts.on_progress, skipped=summary.files_skipped)
        progress.update(summary.files_skipped, f"{len(todo)} file(s) to do, {summary.files_skipped} unchanged "
                                               f"since the last run")

        def on_event(ev: Event) -> None:
            kind, path = ev.get("ev"), ev.get("path", "")
            if kind == "captured":
                journal.set_asset(path, ev["asset"], ev.get("hash", ""), CAPTURED)
            elif kind == "embedded":
                journal.set_asset(path, ev["asset"], ev.get("hash", ""), EMBEDDED, ev.get("result"), ev.get("thumb"))
            elif kind == "skipped":
                journal.set_asset(path, ev["asset"], ev.get("hash", ""), WRITTEN)
            with lock:
                if kind == "assets":
                    progress.assets_total += int(ev.get("total", 0))
                elif kind in ("embedded", "skipped", "asset-failed"):
                    progress.assets += 1
                if kind == "captured":
                    summary.embedded += 1
                what = f"{ev.get('total', 0)} asset(s)" if kind == "assets" else f"{kind} {ev.get('asset', '')}"
                progress.update(message=f"{Path(path).name}: {what}".rstrip())

        def on_result(req: dict[str, Any], res: Event) -> None:
            path, status = req["path"], res.get("status", "failed")
            journal.set_file(path, status, res.get("stat"), opts.model_id, res.get("error", ""))
            for a in res.get("assets", []):
                journal.set_report(path, a["asset"], a)
            with lock:
                file_reports[path] = {"path": path, "status": status, "error": res.get("error", ""),
                                      "assets": res.get("assets", [])}
                if status == "failed":
                    progress.failed += 1
                    summary.files_failed += 1
                    summary.failures.append({"path": path, "error": res.get("error", "")})
                elif status == "written":
                    summary.files_written += 1
                elif status == "unchanged":
                    summary.files_unchanged += 1
                for a in res.get("assets", []):
                    if a.get("status") == "failed" and status != "failed":
                        summary.failures.append({"path": f"{path}: {a.get('name')}", "error": a.get("error", "")})
                progress.update(1, f"{Path(path).name}: {status}")

        stop = threading.Event()
        pool.run(todo, on_event, on_result, stop)
    finally:
        if progress is not None:
            progress.close()
        pool.close()
        journal.close()

    files = [file_reports.get(str(b), {"path": str(b), "status": "not done", "error": "", "assets": []})
             for b in blends]
    for f in files:
        summary.files_changed += any(a.get("status") in ("written", "proposed") for a in f["assets"])
        for a in f["assets"]:
            summary.assets += 1
            proposed = a.get("status") == "proposed"  # a dry run's: counted as what the real run will write
            summary.tags_added += len(a.get("to_add" if proposed else "added") or [])
            summary.tags_removed += len(a.get("to_remove" if proposed else "removed") or [])
            summary.up_to_date += a.get("status") == "up-to-date"
    summary.reused = max(0, sum(1 for f in files for a in f["assets"] if a.get("status") in ("written", "proposed"))
                         - summary.embedded)
    summary.seconds = round(time.monotonic() - t0, 2)
    paths = write_report(report_dir, {k: v for k, v in summary.as_dict().items() if k not in ("failures", "report")}
                         | {"dry_run": opts.dry_run, "root": str(base), "model_id": opts.model_id}, files)
    summary.report = {k: str(v) for k, v in paths.items()}
    return summary
