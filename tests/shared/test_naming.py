"""Catalogue names: unique across the files of a library, and one identity per asset (shared.naming)."""

from __future__ import annotations

from pathlib import Path

from shared.naming import (
    CATALOG_FILE,
    STATE_DIR,
    asset_key,
    catalogue_name,
    find_library_root,
    is_unsaved,
)


def test_asset_key_uses_the_file_stem_or_the_path_under_the_root(tmp_path: Path) -> None:
    assert asset_key(str(tmp_path / "a.blend"), "Chair") == "a/Chair"
    assert asset_key(str(tmp_path / "b.blend"), "Chair") == "b/Chair"  # no collision across files
    assert asset_key("", "Chair") == "unsaved/Chair"
    assert asset_key(str(tmp_path / "a.blend"), "Shelf__v000") == "a/Shelf__v000"
    lib = tmp_path / "lib"
    assert asset_key(str(lib / "props" / "seats.v2.blend"), "Chair", root=str(lib)) == "props/seats.v2/Chair"
    assert asset_key(str(tmp_path / "elsewhere.blend"), "Chair", root=str(lib)) == "elsewhere/Chair"


def test_library_root_is_the_nearest_marked_folder(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "props" / "deep").mkdir(parents=True)
    blend = lib / "props" / "seats.v2.blend"
    assert find_library_root(blend) is None
    (lib / CATALOG_FILE).write_text("VERSION 1\n")  # Blender's asset library marker
    assert find_library_root(blend) == lib
    assert find_library_root(lib / "props" / "deep" / "x.blend") == lib
    (lib / "props" / STATE_DIR).mkdir()  # bulk-tag's journal folder: a nearer root
    assert find_library_root(blend) == lib / "props"
    (tmp_path / "notadir").mkdir()
    (tmp_path / "notadir" / STATE_DIR).write_text("a file, not a folder")
    assert find_library_root(tmp_path / "notadir" / "x.blend") is None
    assert find_library_root("") is None


def test_the_users_home_is_never_a_library_root(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "user"
    (home / STATE_DIR).mkdir(parents=True)  # ~/.asset2vec is the default library home, not a library marker
    monkeypatch.setenv("HOME", str(home))
    assert Path.home() == home
    assert find_library_root(home / "Desktop" / "test.blend") is None


def test_catalogue_name_is_one_identity_from_panel_bulk_and_index(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "props").mkdir(parents=True)
    (lib / CATALOG_FILE).write_text("VERSION 1\n")
    blend = lib / "props" / "seats.v2.blend"
    panel = catalogue_name(str(blend), "Chair")  # the panel knows no root
    bulk = catalogue_name(str(blend), "Chair", default_root=str(lib / "props"))  # bulk-tag of a subfolder
    index = catalogue_name(blend, "Chair", default_root=lib)
    assert panel == bulk == index == "props/seats.v2/Chair"
    assert catalogue_name("", "Chair") == "unsaved/Chair" and is_unsaved("unsaved/Chair")
    assert not is_unsaved("props/unsaved/Chair")


def test_a_blend_outside_any_root_gets_a_stable_id_from_its_absolute_path(tmp_path: Path) -> None:
    a, b = tmp_path / "x" / "seats.v2.blend", tmp_path / "y" / "seats.v2.blend"
    name_a = catalogue_name(str(a), "Chair")
    assert name_a == catalogue_name(str(a), "Chair")  # stable
    assert name_a != catalogue_name(str(b), "Chair")  # two files of one name never collide
    stem, asset = name_a.split("/")
    assert asset == "Chair" and stem.startswith("seats.v2@") and len(stem) == len("seats.v2@") + 8
    # a given library folder is the fallback root when nothing is marked
    assert catalogue_name(str(a), "Chair", default_root=str(tmp_path)) == "x/seats.v2/Chair"
    # ... but a marked root always wins over it
    (tmp_path / "x" / STATE_DIR).mkdir(parents=True)
    assert catalogue_name(str(a), "Chair", default_root=str(tmp_path)) == "seats.v2/Chair"
