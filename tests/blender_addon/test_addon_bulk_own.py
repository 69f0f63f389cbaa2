"""Bulk Tag Folder without the backend package (issue 19): no ``asset2vec`` command installed, so the panel runs
the add-on's own headless bulk run (:mod:`blender_addon.headless.bulk_folder`) against a token-protected backend
served on loopback, as an artist with only the extension would against a studio server. torch is made impossible
to import in that process, so the run shows it needs none.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.service.engine import Engine
from backend.service.server import Service
from blender_addon import bulk_job, bulk_ui, preferences
from tests.blender_addon.addon_support import TOKEN, configure, support
from tests.blender_addon.bulk_support import check_updated, hashes, make_library, read_assets

pytestmark = pytest.mark.slow  # renders with Cycles in a background process; serves the tiny trained run


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    engine = Engine.open(support.fresh_run_copy(tmp_path_factory.mktemp("bulk_own") / "run"), invert_steps=4)
    svc = Service(engine, port=0, token=TOKEN, advertise=False).start_in_thread()
    yield svc
    svc.stop()
    engine.close()


def test_bulk_tag_folder_needs_only_the_addon_and_a_backend_url(addon, backend, tmp_path, monkeypatch):
    bpy = addon
    lib = tmp_path / "library"
    good = make_library(bpy, lib, 2, bad=False)
    (lib / "corrupt.blend").write_bytes(b"not a blend file" * 64)
    original = hashes(lib)
    no_torch = tmp_path / "no_torch"
    (no_torch / "torch").mkdir(parents=True)
    (no_torch / "torch" / "__init__.py").write_text("raise ImportError('torch is not installed here')\n")
    monkeypatch.setenv("PYTHONPATH", str(no_torch))  # the run's process cannot import torch
    monkeypatch.setenv("PATH", str(tmp_path))  # and no asset2vec command on PATH
    preferences.register()  # make_library reset Blender: the add-on's preferences entry again
    prefs = configure(backend.url, TOKEN)
    prefs.capture_size, prefs.capture_samples, prefs.asset2vec_command = 32, 2, ""
    settings = bpy.context.window_manager.asset2vec_bulk
    settings.folder, settings.dry_run = str(lib), False
    settings.use_threshold, settings.threshold = True, 0.0  # every predicted tag is written

    assert bpy.ops.asset2vec.bulk_tag() == {"FINISHED"}
    job = bulk_ui.current()
    assert any("bulk_folder" in part for part in job.command) and TOKEN not in " ".join(job.command)
    job = bulk_ui.pump(timeout=180)
    assert job.state == bulk_job.DONE, (job.message, job._stderr_tail(10))
    assert job.summary["runner"] == "add-on" and job.summary["files_written"] == len(good)
    assert job.summary["tags_added"] > 0 and job.summary["embedded"] == sum(map(len, good.values()))
    assert [Path(f["path"]).name for f in job.failures] == ["corrupt.blend"]
    assert job.last_event["files_done"] == job.last_event["files_total"] == len(good) + 1
    assert "wrote 2" in job.message and "1 failed" in job.message
    after = hashes(lib)
    assert after["corrupt.blend"] == original["corrupt.blend"]
    for name, assets in good.items():
        assert after[name] != original[name] and (lib / f"{name}1").is_file()  # saved with Blender's backup
        found = read_assets(bpy, lib / name)
        assert sorted(found) == sorted(assets)
        for asset in found.values():
            check_updated(asset)  # predicted tags recorded, the artist's tags intact

    # Run again: every asset already holds its answer for this content and model, so no file is rewritten.
    preferences.register()  # read_assets reset Blender: preferences and panel settings again
    configure(backend.url, TOKEN).asset2vec_command = ""
    bpy.context.window_manager.asset2vec_bulk.folder = str(lib)
    assert bpy.ops.asset2vec.bulk_tag() == {"FINISHED"}
    job = bulk_ui.pump(timeout=120)
    assert job.state == bulk_job.DONE, job.message
    assert job.summary["files_written"] == 0 and job.summary["up_to_date"] == sum(map(len, good.values()))
    assert hashes(lib) == after
