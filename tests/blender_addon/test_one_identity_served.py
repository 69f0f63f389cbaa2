"""One identity per asset end to end (issue 19): the same object embedded from the panel, then bulk-tagged, is one
row of the served backend's catalogue, and the index's capture names its bundle (the name ``index`` stores its
codes under) exactly so. Real bpy, a backend served on loopback, real bulk-tag worker processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.bulk.driver import bulk_tag
from blender_addon import embed_job, preferences, writeback
from shared import bundle, metadata, naming
from tests.blender_addon.addon_support import configure, run_embed
from tests.blender_addon.blender_helpers import box
from tests.blender_addon.bulk_support import bulk_options

pytestmark = pytest.mark.slow  # renders with Cycles; serves the tiny trained run


def test_panel_bulk_tag_and_index_make_one_catalogue_row(addon, backend, engine, tmp_path: Path) -> None:
    bpy = addon
    from blender_addon.headless.capture_library import capture_library

    lib = tmp_path / "lib"
    (lib / "props").mkdir(parents=True)
    (lib / naming.CATALOG_FILE).write_text("VERSION 1\n")  # the library root, as Blender's asset library marks it
    blend = lib / "props" / "seats.v2.blend"
    chair = box("Chair", size=(0.5, 0.5, 0.9), color=(0.6, 0.3, 0.1))
    chair.asset_mark()
    bpy.context.view_layer.objects.active = chair
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    before = set(engine.catalogue.asset_names())
    name = "props/seats.v2/Chair"

    summary = bulk_tag(lib / "props", bulk_options(backend, backup=False))  # bulk-tag of a subfolder uploads it
    assert summary.files_failed == 0 and summary.embedded == 1, summary.failures
    assert set(engine.catalogue.asset_names()) - before == {name}
    assert not (lib / "props" / naming.STATE_DIR).exists()  # its journal is the library's: no new root in props/

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    preferences.register()  # read_factory_settings reset Blender: the add-on's preferences entry again
    configure(backend.url)
    chair = bpy.data.objects["Chair"]
    bpy.context.view_layer.objects.active = chair
    job = run_embed(bpy)  # the panel uploads it again: the same name
    assert job.state == embed_job.DONE, job.message
    assert writeback.read_metadata(chair)[metadata.ASSET_NAME] == name
    assert set(engine.catalogue.asset_names()) - before == {name}

    out = tmp_path / "bundles"
    captured = capture_library(lib, out, size=16, samples=1)  # what `asset2vec index LIB` captures
    assert captured.names == [name]
    (folder,) = out.iterdir()
    assert bundle.read_bundle(folder).asset.name == name  # index stores its codes under this name: the same row
    rows = [n for n in engine.catalogue.asset_names() if n.endswith("/Chair")]
    assert rows == [name]
