"""Catalogue names unique across the files of a library (shared.naming)."""

from __future__ import annotations

from pathlib import Path

from shared.naming import asset_key


def test_asset_key_uses_the_file_stem_or_the_path_under_the_root(tmp_path: Path) -> None:
    assert asset_key(str(tmp_path / "a.blend"), "Chair") == "a/Chair"
    assert asset_key(str(tmp_path / "b.blend"), "Chair") == "b/Chair"  # no collision across files
    assert asset_key("", "Chair") == "unsaved/Chair"
    assert asset_key(str(tmp_path / "a.blend"), "Shelf__v000") == "a/Shelf__v000"
    lib = tmp_path / "lib"
    assert asset_key(str(lib / "props" / "seats.v2.blend"), "Chair", root=str(lib)) == "props/seats.v2/Chair"
    assert asset_key(str(tmp_path / "elsewhere.blend"), "Chair", root=str(lib)) == "elsewhere/Chair"
