"""Import of OBJ/glTF folders: Y-up centimetre OBJs stand on Z-up in metres, catalogue tags, atomic output."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.blender_addon.blender_helpers import box

TALL_OBJ = """mtllib tall.mtl
o Body
v -20 0 -10
v 20 0 -10
v 20 180 -10
v -20 180 -10
v -20 0 10
v 20 0 10
v 20 180 10
v -20 180 10
usemtl wood
f 1 2 3 4
f 5 8 7 6
f 1 5 6 2
f 2 6 7 3
f 3 7 8 4
f 5 1 4 8
o Knob
v -5 90 10
v 5 90 10
v 5 100 14
usemtl wood
f 9 10 11
"""
TALL_MTL = "newmtl wood\nKd 0.6 0.3 0.1\n"


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _make_sources(bpy, src):
    (src / "001-tall").mkdir(parents=True)
    (src / "001-tall" / "tall.obj").write_text(TALL_OBJ)
    (src / "001-tall" / "tall.mtl").write_text(TALL_MTL)
    (src / "002-junk").mkdir()
    (src / "002-junk" / "junk.obj").write_text("this is not geometry\n")
    # A glTF (metres, its own convention) exported by Blender itself.
    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = box("Crate", size=(0.5, 0.5, 0.3))
    obj.select_set(True)
    (src / "003-crate").mkdir()
    bpy.ops.export_scene.gltf(filepath=str(src / "003-crate" / "crate.glb"), export_format="GLB")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    catalogue = [
        {"key": "001-tall", "obj": "tall.obj", "name": "Tall Cabinet", "category": "Living room",
         "tags": ["Storage", "Tall"], "width": "40", "depth": "20", "height": "180"},
    ]
    (src / "catalog.json").write_text(json.dumps(catalogue))


def test_import_folder_makes_upright_metric_marked_assets(blender, tmp_path):
    bpy = blender
    from blender_addon.headless.import_folder import REPORT, import_folder
    from blender_addon.headless.sample_library import read_catalog_file

    src, out = tmp_path / "src", tmp_path / "out"
    _make_sources(bpy, src)
    before = _digest(src)
    report = import_folder(src, out, src / "catalog.json")
    assert _digest(src) == before  # sources are only read
    assert json.loads((out / REPORT).read_text()) == report
    assert [f["source"].endswith("junk.obj") for f in report["failed"]] == [True]
    assert "no mesh" in report["failed"][0]["error"]
    by_name = {a["name"]: a for a in report["assets"]}
    assert set(by_name) == {"Tall Cabinet", "crate"}  # no catalogue record: named after the file
    assert by_name["Tall Cabinet"]["size"] == pytest.approx([0.4, 0.2, 1.8], abs=1e-3)
    assert by_name["crate"]["size"] == pytest.approx([0.5, 0.5, 0.3], abs=1e-3)
    assert sorted(report["blends"]) == ["Living_room.blend", "Uncategorised.blend"]
    assert not list(out.glob(".*.tmp*"))  # no temporary files left

    bpy.ops.wm.open_mainfile(filepath=str(out / "Living_room.blend"))
    (ob,) = [o for o in bpy.data.objects if o.asset_data is not None]
    assert ob.name == "Tall Cabinet" and ob.type == "MESH"
    assert [t.name for t in ob.asset_data.tags] == ["Storage", "Tall"]
    assert read_catalog_file(out)[ob.asset_data.catalog_id] == "Living room"
    # Both OBJ parts were joined; it stands on the ground (Z up), centred.
    assert len(ob.data.polygons) == 7
    zs = [(ob.matrix_world @ v.co).z for v in ob.data.vertices]
    assert min(zs) == pytest.approx(0.0, abs=1e-5) and max(zs) == pytest.approx(1.8, abs=1e-3)
    assert ob.data.materials[0] is not None


def test_import_folder_errors(blender, tmp_path):
    from blender_addon.headless.import_folder import FolderImportError, import_folder

    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderImportError, match="no .obj, .gltf or .glb files"):
        import_folder(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(FolderImportError, match="not a folder"):
        import_folder(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.obj").write_text(TALL_OBJ)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FolderImportError, match="not valid JSON"):
        import_folder(tmp_path / "one", tmp_path / "out", tmp_path / "bad.json")
