"""The Blender-side CLI commands, run in-process through ``backend.cli.main``."""

from __future__ import annotations

import json

import pytest

from backend.cli import main
from shared import bundle
from tests.blender_addon.blender_helpers import box

pytestmark = pytest.mark.slow  # renders with Cycles


def test_capture_command_renders_marked_assets_and_skips_up_to_date_ones(blender, sample_library, tmp_path, capsys):
    out = tmp_path / "views"
    blend = str(sample_library / "lamps.blend")
    args = ["capture", blend, "--asset", "Lamp_03", "--out", str(out), "--size", "32", "--samples", "2"]
    assert main(args) == 0
    b = bundle.read_bundle(out / "Lamp_03", expected_size=32)
    truth = {a["name"]: a for a in json.loads((sample_library / "ground_truth.json").read_text())["assets"]}
    assert b.asset.category == "Lighting/Lamps"
    assert b.asset.tags == truth["Lamp_03"]["tags"]
    assert [round(v, 4) for v in b.asset.size] == truth["Lamp_03"]["size"]
    assert b.asset.source_blend.endswith("lamps.blend")
    assert "captured 1 asset(s), 0 up to date" in capsys.readouterr().out
    assert main(args) == 0
    assert "captured 0 asset(s), 1 up to date" in capsys.readouterr().out


def test_capture_command_errors_are_clear(blender, sample_library, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.blend"
    corrupt.write_bytes(b"BLENDER-v500" + b"\x00garbage" * 50)
    assert main(["capture", str(corrupt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "asset2vec: error:" in err and "cannot open it" in err and "Traceback" not in err
    newer = tmp_path / "future.blend"
    newer.write_bytes(b"BLENDER17-01v0901" + b"\x00" * 64)
    assert main(["capture", str(newer), "--out", str(tmp_path / "o")]) == 2
    assert "saved by Blender 9.1, newer than this Blender" in capsys.readouterr().err
    text = tmp_path / "notes.blend"
    text.write_text("hello")
    assert main(["capture", str(text), "--out", str(tmp_path / "o")]) == 2
    assert "not a .blend file" in capsys.readouterr().err
    assert main(["capture", str(sample_library / "chairs.blend"), "--asset", "Nope", "--out", str(tmp_path)]) == 2
    assert "no object or collection named 'Nope'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["capture", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no .blend files" in capsys.readouterr().err
    assert main(["import-folder", str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    assert "no .obj, .gltf or .glb files" in capsys.readouterr().err


def test_capture_family_command(blender, sample_library, tmp_path, capsys):
    out = tmp_path / "fam"
    assert main(["capture-family", str(sample_library / "families.blend"), "--asset", "ParametricTable", "-n", "2",
                 "--out", str(out), "--size", "32", "--samples", "2"]) == 0
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["Parametric_Table__v000", "Parametric_Table__v001"]
    b = bundle.read_bundle(out / folders[1])
    assert b.asset.family == "Parametric Table" and "Table/Width" in b.asset.parameters
    assert main(["capture-family", str(sample_library / "chairs.blend"), "--asset", "Chair_00", "-n", "2",
                 "--out", str(out)]) == 2
    assert "no family parameters" in capsys.readouterr().err


def test_sample_library_command(blender, tmp_path, capsys):
    assert main(["sample-library", str(tmp_path / "lib"), "--seed", "3"]) == 0
    assert "72 assets" in capsys.readouterr().out
    assert json.loads((tmp_path / "lib" / "ground_truth.json").read_text())["seed"] == 3


def test_capture_command_on_a_folder_isolates_broken_files(blender, sample_library, tmp_path, capsys):
    import shutil

    src = tmp_path / "lib"
    src.mkdir()
    shutil.copy(sample_library / "families.blend", src / "families.blend")
    (src / "broken.blend").write_bytes(b"BLENDER-v500" + b"\x00" * 64)
    out = tmp_path / "views"
    assert main(["capture", str(src), "--out", str(out), "--size", "32", "--samples", "2"]) == 1
    assert [p.name for p in out.iterdir()] == ["families__ParametricTable"]
    bundle.read_bundle(out / "families__ParametricTable")
    captured = capsys.readouterr()
    assert "captured 1 asset(s), 0 up to date, 1 failed" in captured.out
    assert "broken.blend" in captured.err and "Traceback" not in captured.err


def test_capture_folder_names_assets_uniquely_across_files(blender, tmp_path, capsys):
    bpy = blender
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    for path in (lib / "a.blend", lib / "sub" / "b.blend"):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        box("Chair").asset_mark()
        bpy.ops.wm.save_as_mainfile(filepath=str(path))
    out = tmp_path / "views"
    assert main(["capture", str(lib), "--out", str(out), "--size", "32", "--samples", "1"]) == 0
    names = sorted(bundle.read_bundle(f).asset.name for f in out.iterdir())
    assert names == ["a/Chair", "sub/b/Chair"]
