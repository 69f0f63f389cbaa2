"""Bulk Tag Folder from the sidebar: the real operators on real bpy launch the real ``asset2vec bulk-tag
--progress-json`` as a subprocess against a live, token-protected backend on loopback (the tiny trained run), and
the add-on follows it with the same steps the session's ``bpy.app.timers`` callback takes (:func:`bulk_ui.pump`).

One small library (3 good .blend files with 4 assets + a corrupt one): dry run (no file changes), real run (good
files tagged, artist tags intact, the corrupt one reported, report button); Cancel mid-run (process and its
Blender workers gone, every file original or fully updated); a missing ``asset2vec`` command.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.service.engine import Engine
from backend.service.server import Service
from bench import panel_preview
from blender_addon import bulk_job, bulk_ui, preferences, session
from tests.blender_addon.addon_support import TOKEN, configure, support
from tests.blender_addon.bulk_support import check_updated, child_pids, hashes, is_alive, make_library, read_assets

pytestmark = pytest.mark.slow  # renders with Cycles in Blender worker subprocesses; serves the tiny trained run

ASSET2VEC = str(Path(sys.executable).parent / "asset2vec")  # the project's installed console script



@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The tiny trained run served with a token (so the token really has to reach the subprocess)."""
    engine = Engine.open(support.fresh_run_copy(tmp_path_factory.mktemp("bulk_ui") / "run"), invert_steps=4)
    svc = Service(engine, port=0, token=TOKEN, advertise=False).start_in_thread()
    yield svc
    svc.stop()
    engine.close()


def _setup(bpy, backend: Service, folder: Path, *, dry_run: bool = False) -> None:
    preferences.register()  # building the library reset Blender (read_factory_settings): the add-on entry again
    prefs = configure(backend.url, TOKEN)
    prefs.capture_size, prefs.capture_samples = 32, 2
    prefs.asset2vec_command = ASSET2VEC
    settings = bpy.context.window_manager.asset2vec_bulk
    settings.folder, settings.dry_run = str(folder), dry_run
    settings.use_threshold, settings.threshold = True, 0.0  # every predicted tag is added: tags really get written


def _draw(bpy) -> panel_preview.Recorder:
    rec = panel_preview.Recorder()
    bulk_ui.ASSET2VEC_PT_bulk.draw(type("Panel", (), {"layout": rec})(), bpy.context)
    return rec


def _buttons(rec) -> list[str]:
    return [it[3] for it in rec.flat() if it[0] == "button"]


def _library(bpy, root: Path, n_good: int) -> dict[str, list[str]]:
    good = make_library(bpy, root, n_good, bad=False)
    (root / "corrupt.blend").write_bytes(bytes(random.Random(3).randrange(256) for _ in range(4096)))
    return good


def test_panel_dry_run_then_real_run_tags_good_files_and_reports_the_corrupt_one(addon, backend, tmp_path):
    bpy = addon
    lib = tmp_path / "library"
    good = _library(bpy, lib, 3)
    n_assets = sum(len(a) for a in good.values())
    original = hashes(lib)
    _setup(bpy, backend, lib, dry_run=True)

    # Dry run: the panel shows progress and Cancel while it runs; no file changes.
    assert bpy.ops.asset2vec.bulk_tag() == {"FINISHED"}
    job = bulk_ui.current()
    assert job is not None and job.state == bulk_job.RUNNING
    assert "--dry-run" in job.command and TOKEN not in " ".join(job.command)
    assert session.timer_registered() and session.get().tick() == session.TIMER_INTERVAL
    running = _draw(bpy)
    assert any(it[0] == "progress" for it in running.flat()) and _buttons(running) == ["asset2vec.bulk_cancel"]
    job = bulk_ui.pump(timeout=90)
    assert job.state == bulk_job.DONE, job.message
    assert hashes(lib) == original
    assert job.summary["dry_run"] and job.summary["files_written"] == 0 and job.summary["embedded"] == n_assets
    assert job.last_event["files_done"] == job.last_event["files_total"] == len(good) + 1
    assert job.last_event["assets_done"] == n_assets and job.last_event["failed"] == 1
    assert [Path(f["path"]).name for f in job.failures] == ["corrupt.blend"]
    assert "would change 3" in job.message and session.get().tick() is None  # the timer stops with the job

    # Real run: the dry run's embeddings are reused, every good file is tagged, the corrupt one is reported.
    bpy.context.window_manager.asset2vec_bulk.dry_run = False
    assert bpy.ops.asset2vec.bulk_tag() == {"FINISHED"}
    job = bulk_ui.pump(timeout=90)
    assert job.state == bulk_job.DONE, job.message
    assert job.summary["files_written"] == len(good) and job.summary["tags_added"] > 0
    assert [Path(f["path"]).name for f in job.failures] == ["corrupt.blend"]
    after = hashes(lib)
    assert after["corrupt.blend"] == original["corrupt.blend"]
    for name, assets in good.items():
        assert after[name] != original[name]
        found = read_assets(bpy, lib / name)
        assert sorted(found) == sorted(assets)
        for asset in found.values():
            check_updated(asset)  # predicted tags recorded, artist tags intact

    # The panel (drawn after re-registering nothing: the job is session state) shows the summary, the failure and
    # the report button, whose URL is the report's index.html.
    done = _draw(bpy)
    texts = " ".join(done.texts())
    assert "wrote 3" in texts and "1 failed" in texts and "corrupt.blend" in texts
    assert _buttons(done) == ["asset2vec.bulk_tag", "asset2vec.bulk_open_report"]
    url = bulk_ui.report_url(job)
    assert url.startswith("file://") and url.endswith("index.html") and Path(job.report_html).is_file()


def test_panel_cancel_stops_the_run_and_leaves_every_file_whole(addon, backend, tmp_path):
    bpy = addon
    lib = tmp_path / "library"
    good = make_library(bpy, lib, 6, bad=False)
    original = hashes(lib)
    _setup(bpy, backend, lib)
    assert bpy.ops.asset2vec.bulk_tag() == {"FINISHED"}
    job = bulk_ui.current()
    deadline = time.monotonic() + 90
    workers: set[int] = set()
    while job.last_event.get("files_done", 0) < 1:  # cancel part-way: after the first file is written
        assert job.step(), job.message
        assert time.monotonic() < deadline, "no file was done in time"
        workers |= set(child_pids(job.proc.pid))
        time.sleep(0.05)
    workers |= set(child_pids(job.proc.pid))
    assert workers, "bulk-tag should run its Blender worker as a child process"
    assert bpy.ops.asset2vec.bulk_cancel() == {"FINISHED"}
    job = bulk_ui.pump(timeout=30)
    assert job.state == bulk_job.CANCELLED and "run again to continue" in job.message
    assert job.proc.poll() is not None
    deadline = time.monotonic() + 10
    while any(is_alive(w) for w in workers):
        assert time.monotonic() < deadline, "a Blender worker outlived the cancelled run"
        time.sleep(0.05)
    assert "run again to continue" in " ".join(_draw(bpy).texts())

    partial = hashes(lib)
    updated = 0
    for name, assets in good.items():
        found = read_assets(bpy, lib / name)
        assert sorted(found) == sorted(assets)
        if partial[name] == original[name]:
            assert all(not a["meta"] for a in found.values())
            continue
        updated += 1
        for asset in found.values():
            check_updated(asset)
    assert 1 <= updated < len(good), "the cancel should have happened part-way"


def test_missing_command_and_folder_give_clear_reports(addon, tmp_path, monkeypatch):
    bpy = addon
    with pytest.raises(RuntimeError, match="no report yet"):
        bpy.ops.asset2vec.bulk_open_report()
    prefs = preferences.get()
    settings = bpy.context.window_manager.asset2vec_bulk
    settings.folder = str(tmp_path)
    prefs.asset2vec_command = str(tmp_path / "nowhere" / "asset2vec")
    with pytest.raises(RuntimeError, match="asset2vec command set in the add-on's preferences does not exist"):
        bpy.ops.asset2vec.bulk_tag()
    prefs.asset2vec_command = ""
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without asset2vec
    assert bpy.ops.asset2vec.bulk_tag() == {"FINISHED"}  # not installed: the add-on's own run (test_addon_bulk_own)
    job = bulk_ui.pump(timeout=60)
    assert job.state == bulk_job.FAILED and job.message.startswith("no .blend files under"), job.message
    box = [it for it in _draw(bpy).flat() if it[0] == "label" and it[2] == "ERROR"]
    assert box and box[0][1].startswith("no .blend files under")

    prefs.asset2vec_command = ASSET2VEC
    settings.folder = str(tmp_path / "missing")
    with pytest.raises(RuntimeError, match="is not a folder"):
        bpy.ops.asset2vec.bulk_tag()
    settings.folder = ""
    with pytest.raises(RuntimeError, match="pick the library folder"):
        bpy.ops.asset2vec.bulk_tag()


def test_cli_error_reaches_the_panel_and_json_lines_parse(addon, tmp_path):
    """An empty folder: the CLI's own error (a JSON ``error`` event) becomes the job's message."""
    bpy = addon
    configure(f"http://127.0.0.1:{support.free_port()}")
    req = bulk_job.BulkRequest(folder=str(tmp_path), url=bpy.context.preferences.addons[preferences.ADDON_ID]
                               .preferences.backend_url)
    job = bulk_ui.start(ASSET2VEC, req)
    job = bulk_ui.pump(timeout=60)
    assert job.state == bulk_job.FAILED and job.returncode == 2
    assert job.message.startswith("no Asset2Vec backend is running"), job.message
    assert bulk_job.parse_line('{"event": "progress", "files_done": 1}') == {"event": "progress", "files_done": 1}
    assert bulk_job.parse_line("Read blend: /x.blend") is None and bulk_job.parse_line('{"no": 1}') is None
    assert [bulk_job.format_eta(s) for s in (None, 12.4, 200, 3900)] == [
        "ETA ...", "ETA 12 s", "ETA 3 min 20 s", "ETA 1 h 05 min"]
