"""bulk-tag end to end: real headless Blender workers, real .blend files, a live backend on loopback.

One library of 22 .blend files (17 good, with 23 assets, one of them zstd-compressed; a corrupt one, one with
a valid header and garbage after it, a truncated one, one from a "newer" Blender, a read-only one) plus a loose
OBJ model: dry run
(changes nothing, reports everything), a real run (tags every good asset, reports the bad files,
which stay byte-identical), a second run (re-embeds nothing), an edit (only that asset is
re-embedded). A separate library checks a SIGKILL part-way through the CLI and the resume.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.bulk.driver import bulk_tag
from backend.service.server import Service
from shared import metadata as M
from tests.blender_addon.bulk_support import (
    ARTIST_TAGS,
    BAD,
    READ_ONLY,
    bulk_options,
    check_updated,
    child_pids,
    hashes,
    is_alive,
    live_backend,
    make_library,
    read_assets,
)

pytestmark = pytest.mark.slow  # renders with Cycles in Blender worker subprocesses

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from live_backend(tmp_path_factory)


def test_bulk_dry_run_write_skip_and_incremental(blender, backend, tmp_path):
    bpy = blender
    lib = tmp_path / "library"
    good = make_library(bpy, lib, 17, obj=True)
    writable = {name: assets for name, assets in good.items() if name != READ_ONLY}
    n_assets = sum(len(a) for a in writable.values())
    original = hashes(lib)

    # Dry run: every good asset gets a proposal, the bad files are reported, nothing changes.
    dry = bulk_tag(lib, bulk_options(backend, dry_run=True, workers=2))
    assert hashes(lib) == original
    assert dry.files_written == 0 and dry.embedded == n_assets
    failed = {Path(f["path"]).name for f in dry.failures}
    assert failed == {*BAD, READ_ONLY, "cube.obj"}, dry.failures
    report = json.loads(Path(dry.report["json"]).read_text())
    proposed = [a for f in report["files"] for a in f["assets"] if a["status"] == "proposed"]
    assert len(proposed) == n_assets
    assert all(a["to_add"] and not set(a["to_add"]) & set(ARTIST_TAGS) for a in proposed)
    assert all(0.0 <= p <= 1.0 for a in proposed for p in a["to_add"].values())
    assert all(a["neighbours"]["shape"] and Path(a["thumb"]).is_file() for a in proposed)
    with open(dry.report["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(r["asset_status"] == "proposed" for r in rows) == n_assets
    html = Path(dry.report["html"]).read_text()
    assert html.count("<img ") == n_assets and "read-only" in html

    # Real run: the dry run's embeddings are reused; only the imported OBJ is new.
    run = bulk_tag(lib, bulk_options(backend, workers=2))
    assert {Path(f["path"]).name for f in run.failures} == {*BAD, READ_ONLY}
    assert run.imported_models == 1 and run.embedded == 1 and run.files_written == len(writable) + 1
    after = hashes(lib)
    for name in (*BAD, READ_ONLY):
        assert after[name] == original[name], f"{name} was changed"
    for name, assets in writable.items():
        assert after[name] != original[name]
        assert after[f"{name}1"] == original[name], "the .blend1 backup is not the original"
        found = read_assets(bpy, lib / name)
        assert sorted(found) == sorted(assets)
        for asset in found.values():
            check_updated(asset)
    assert (lib / "prop_01.blend").read_bytes()[:4] == b"\x28\xb5\x2f\xfd", "a compressed file stays compressed"
    imported = [n for n in after if n.startswith("asset2vec_import_") and n.endswith(".blend")]
    assert len(imported) == 1 and not any(n.startswith(".a2v-tmp") for n in after)

    # Second run: nothing re-embedded, nothing rewritten.
    again = bulk_tag(lib, bulk_options(backend, workers=2))
    assert again.embedded == 0 and again.files_written == 0 and again.imported_models == 0
    assert again.files_skipped == len(writable) + 1
    assert hashes(lib) == after

    # Edit one asset of a two-asset file: only it is re-embedded, the other stays as it was.
    name = next(n for n, a in writable.items() if len(a) == 2)
    bpy.ops.wm.open_mainfile(filepath=str(lib / name), load_ui=False)
    bpy.data.objects[writable[name][0]].data.vertices[0].co.x += 0.25
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    edited = bulk_tag(lib, bulk_options(backend))
    assert edited.embedded == 1 and edited.files_written == 1 and edited.up_to_date >= 1
    found = read_assets(bpy, lib / name)
    for asset in found.values():
        check_updated(asset)


def _journal_written(journal: Path) -> int:
    if not journal.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1.0) as db:
            return db.execute("SELECT COUNT(*) FROM files WHERE status='written'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _cli(lib: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "backend.cli", "bulk-tag", str(lib), "--backend", url, "--size", "32", "--samples",
            "2", "--threshold", "0", "--quiet", *extra]


def test_bulk_killed_and_resumed(blender, backend, tmp_path):
    bpy = blender
    lib = tmp_path / "library"
    good = make_library(bpy, lib, 8, bad=False)
    original = hashes(lib)
    journal = lib / ".asset2vec" / "bulk-journal.sqlite"
    proc = subprocess.Popen(_cli(lib, backend.url), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _journal_written(journal) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no file was written in time"
        time.sleep(0.05)
    workers = child_pids(proc.pid)
    assert workers, "the driver should run its Blender worker as a child process"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The worker dies with the driver (PR_SET_PDEATHSIG): no orphan keeps saving files behind the resume's back.
    deadline = time.monotonic() + 10
    while any(is_alive(w) for w in workers):
        assert time.monotonic() < deadline, "a Blender worker outlived the killed driver"
        time.sleep(0.05)

    # Every file is either exactly the original or fully updated.
    partial = hashes(lib)
    updated = 0
    for name, assets in good.items():
        if partial[name] == original[name]:
            assert all(not a["meta"] for a in read_assets(bpy, lib / name).values())
            continue
        updated += 1
        found = read_assets(bpy, lib / name)
        assert sorted(found) == sorted(assets)
        for asset in found.values():
            check_updated(asset)
    assert 2 <= updated < len(good), "the kill should have happened part-way"

    done = subprocess.run(_cli(lib, backend.url, "--workers", "2"), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "failed" not in done.stderr
    final = hashes(lib)
    for name, assets in good.items():
        found = read_assets(bpy, lib / name)
        assert sorted(found) == sorted(assets)
        for asset in found.values():
            check_updated(asset)
            assert asset["meta"][M.MODEL_ID] == backend.engine.info().model_id
        if partial[name] != original[name]:
            assert final[name] == partial[name], f"{name} was written before the kill and must not be rewritten"
    with sqlite3.connect(journal) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM assets GROUP BY state").fetchall())
    assert states == {"written": sum(len(a) for a in good.values())}


def test_bulk_cli_errors(tmp_path, capsys):
    from backend.cli import main

    assert main(["bulk-tag", str(tmp_path / "missing"), "--backend", "http://127.0.0.1:9"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["bulk-tag", str(tmp_path)]) == 2
    assert "--backend URL" in capsys.readouterr().err
    assert main(["bulk-tag", str(tmp_path), "--backend", "http://127.0.0.1:9"]) == 2
    assert "no Asset2Vec backend is running" in capsys.readouterr().err


def test_bulk_all_objects_tags_unmarked_meshes_through_the_custom_property(blender, backend, tmp_path):
    from blender_addon import writeback
    from tests.blender_addon.blender_helpers import box

    bpy = blender
    lib = tmp_path / "library"
    lib.mkdir()
    marked = box("Marked", size=(0.5, 0.5, 0.5))
    marked.asset_mark()
    box("Loose", size=(0.3, 0.6, 0.9), location=(2, 0, 0))
    bpy.ops.wm.save_as_mainfile(filepath=str(lib / "scene.blend"))
    bpy.ops.wm.read_factory_settings(use_empty=True)

    only_marked = bulk_tag(lib, bulk_options(backend, dry_run=True))
    assert only_marked.assets == 1
    s = bulk_tag(lib, bulk_options(backend, all_objects=True, backup=False))
    assert s.assets == 2 and s.files_written == 1 and s.embedded == 1  # "Marked" was embedded by the dry run
    assert not (lib / "scene.blend1").exists()
    bpy.ops.wm.open_mainfile(filepath=str(lib / "scene.blend"), load_ui=False)
    loose = bpy.data.objects["Loose"]
    assert loose.asset_data is None, "an unmarked object is not marked by bulk-tag"
    assert len(writeback.read_metadata(loose)[M.CODE_SHAPE]) == 32


def test_compressed_file_from_a_newer_blender_is_refused_after_opening(monkeypatch):
    # A compressed file's header hides its version; the version Blender read must be checked after opening.
    from types import SimpleNamespace

    from blender_addon.errors import BlendFileError
    from blender_addon.headless import blend_files as B

    opened = []
    fake = SimpleNamespace(
        ops=SimpleNamespace(wm=SimpleNamespace(open_mainfile=lambda **kw: opened.append(kw))),
        data=SimpleNamespace(version=(99, 1, 0)),
        app=SimpleNamespace(version=(4, 2, 0), version_string="4.2.0"),
    )
    monkeypatch.setattr(B, "bpy", fake)
    with pytest.raises(BlendFileError, match=r"saved by Blender 99\.1, newer than this Blender 4\.2\.0"):
        B.load_blend(Path("/lib/compressed.blend"))
    assert opened
    fake.data.version = (4, 2, 3)
    B.load_blend(Path("/lib/compressed.blend"))  # same major.minor: fine


def test_safe_save_through_a_symlink_keeps_the_link(blender, tmp_path):
    from blender_addon.headless import bulk as B

    bpy = blender
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    real = real_dir / "props.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(real))
    link = link_dir / "props.blend"
    link.symlink_to(real)
    before = link.stat()
    bpy.ops.wm.open_mainfile(filepath=str(link))
    bpy.context.scene.collection.objects.link(bpy.data.objects.new("Added", None))
    B.safe_save(link, before)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert (real_dir / "props.blend1").is_file() and not (link_dir / "props.blend1").exists()
    bpy.ops.wm.open_mainfile(filepath=str(real))
    assert "Added" in bpy.data.objects
