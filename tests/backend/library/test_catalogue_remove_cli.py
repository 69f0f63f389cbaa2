"""``asset2vec catalogue remove NAME... | --missing | --unsaved``: on a real home's catalogue, no model loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.cli import main
from backend.library.catalogue import Catalogue
from backend.lifecycle.home import LibraryHome
from shared.bundle import AssetInfo


@pytest.fixture
def home(tmp_path: Path) -> LibraryHome:
    home = LibraryHome.at(tmp_path / "home").create()
    blend = tmp_path / "chairs.blend"
    blend.write_bytes(b"BLENDER")
    with Catalogue(home.catalogue) as cat:
        ids = [cat.upsert_asset(AssetInfo(name="chairs/Chair", source_blend=str(blend))),
               cat.upsert_asset(AssetInfo(name="chairs/Stool", source_blend=str(blend))),
               cat.upsert_asset(AssetInfo(name="gone/Lamp", source_blend=str(tmp_path / "gone.blend"))),
               cat.upsert_asset(AssetInfo(name="unsaved/Cube"))]
        cat.set_codes("m", {i: ([1.0, 0.0], [0.0, 1.0], None) for i in ids})
    return home


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main(["catalogue", "remove", *(str(a) for a in argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _names(home: LibraryHome) -> list[str]:
    with Catalogue(home.catalogue) as cat:
        return cat.asset_names()


def test_remove_by_name_missing_and_unsaved(home: LibraryHome, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--missing", "--unsaved", "--run", home.root, "--dry-run")
    assert code == 0 and "would remove 2 asset(s)" in out and "gone/Lamp" in out and "unsaved/Cube" in out
    assert len(_names(home)) == 4  # a dry run changes nothing
    code, out, _ = _run(capsys, "--missing", "--unsaved", "--run", home.root, "--json")
    assert code == 0 and json.loads(out)["removed"] == ["gone/Lamp", "unsaved/Cube"]
    code, out, _ = _run(capsys, "chairs/Stool", "--catalogue", home.catalogue)
    assert code == 0 and "removed 1 asset(s)" in out and "1 left" in out
    assert _names(home) == ["chairs/Chair"]


def test_unknown_names_are_refused_with_close_matches(home: LibraryHome, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "chairs/Chiar", "chairs/Stool", "--run", home.root)
    assert code == 2 and "no asset named 'chairs/Chiar'" in err and "did you mean 'chairs/Chair'" in err
    assert "Nothing was removed" in err and "Traceback" not in err
    assert len(_names(home)) == 4
    code, _, err = _run(capsys, "chairs/Chiar", "--run", home.root, "--dry-run")
    assert code == 2 and "did you mean" in err
    code, _, err = _run(capsys, "--run", home.root)
    assert code == 2 and "say what to remove" in err
    code, _, err = _run(capsys, "x/Y", "--run", home.root.parent / "nohome")
    assert code == 2 and "no catalogue here" in err


def test_removing_from_a_home_forgets_the_stored_views_too(home: LibraryHome,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Otherwise the next ``index`` would embed the removed asset again (and the next model train on it)."""
    from shared.naming import safe_folder_name

    views = {n: home.bundles / safe_folder_name(n) for n in ("unsaved/Cube", "chairs/Chair")}
    for folder in views.values():
        folder.mkdir(parents=True)
        (folder / "transforms.json").write_text("{}")
    code, _, _ = _run(capsys, "--unsaved", "--run", home.root, "--dry-run")
    assert code == 0 and views["unsaved/Cube"].is_dir()  # a dry run keeps them
    code, _, _ = _run(capsys, "--unsaved", "--run", home.root)
    assert code == 0 and not views["unsaved/Cube"].exists() and views["chairs/Chair"].is_dir()
