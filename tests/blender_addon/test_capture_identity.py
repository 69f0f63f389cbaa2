"""One identity per asset (issue 19), with real bpy: capture (index) and bulk-tag name an asset as the panel does.

The panel is given no library root; it finds one from the .blend (``shared.naming.catalogue_name``). The
index's capture of a SUBFOLDER of a marked library, bulk-tag's name for the same object and the panel's
name are the same string, so one asset is one catalogue row.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import bundle, naming
from tests.blender_addon.blender_helpers import box

pytestmark = pytest.mark.slow  # renders with Cycles


def test_capture_bulk_and_panel_agree_on_the_name(blender, tmp_path: Path) -> None:
    bpy = blender
    from blender_addon.headless.bulk import catalogue_name as bulk_name
    from blender_addon.headless.capture_library import capture_library

    lib = tmp_path / "lib"
    (lib / "props").mkdir(parents=True)
    (lib / naming.CATALOG_FILE).write_text("VERSION 1\n")  # Blender's asset library marker at the root
    blend = lib / "props" / "seats.v2.blend"
    bpy.ops.wm.read_factory_settings(use_empty=True)
    box("Chair").asset_mark()
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    panel = naming.catalogue_name(bpy.data.filepath, "Chair")  # what the add-on's Embed sends
    bulk = bulk_name(blend, lib / "props", bpy.data.objects["Chair"])  # bulk-tag of the subfolder
    assert panel == bulk == "props/seats.v2/Chair"

    out = tmp_path / "bundles"
    summary = capture_library(lib / "props", out, size=16, samples=1)  # index of the subfolder
    assert summary.done == 1 and summary.names == [panel] and summary.opened == [str(blend.resolve())]
    (folder,) = out.iterdir()
    assert bundle.read_bundle(folder).asset.name == panel


def test_index_prunes_only_what_is_gone_not_unmarked_objects_embedded_from_the_panel(blender, tmp_path: Path) -> None:
    """The capture reports every object of an opened file, so pruning keeps an unmarked object the panel embedded."""
    bpy = blender
    from backend.library.catalogue import Catalogue
    from backend.lifecycle.home import LibraryHome
    from backend.lifecycle.pruning import prune_library
    from blender_addon.headless.capture_library import capture_library

    lib = (tmp_path / "lib").resolve()
    lib.mkdir()
    (lib / naming.CATALOG_FILE).write_text("VERSION 1\n")
    blend = lib / "props.blend"
    bpy.ops.wm.read_factory_settings(use_empty=True)
    box("Chair").asset_mark()
    box("Crate", location=(3.0, 0.0, 0.0))  # embedded from the panel, never marked as an asset
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    home = LibraryHome.at(tmp_path / "home").create()
    with Catalogue(home.catalogue) as cat:  # the rows the panel's embeds left (same names, same source file)
        for obj in ("Chair", "Crate", "Ghost"):
            cat.upsert_asset(bundle.AssetInfo(name=naming.catalogue_name(str(blend), obj), source_blend=str(blend)))

    captured = capture_library(lib, home.bundles, size=16, samples=1)
    assert captured.names == ["props/Chair"] and {"props/Chair", "props/Crate"} <= set(captured.present)
    pruned, moved = prune_library(lib, home, vars(captured))
    assert pruned == ["props/Ghost"] and not moved  # Ghost is no object of the file; Crate is, unmarked
    with Catalogue(home.catalogue) as cat:
        assert cat.asset_names() == ["props/Chair", "props/Crate"]

    # The artist deletes the crate from the file: now it is gone, and the next index forgets it.
    bpy.data.objects.remove(bpy.data.objects["Crate"])
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    pruned, _ = prune_library(lib, home, vars(capture_library(lib, home.bundles, size=16, samples=1)))
    assert pruned == ["props/Crate"]
    with Catalogue(home.catalogue) as cat:
        assert cat.asset_names() == ["props/Chair"]
