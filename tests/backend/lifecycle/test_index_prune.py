"""``asset2vec index`` keeps the catalogue clean (issue 19): the library root it names assets by, and pruning.

Fast tests of the pipeline's own steps on real files and a real SQLite catalogue (the capture itself, which
needs Blender, is covered by the slow index tests): assets whose .blend is gone, or whose file opened
without them, lose their bundle and their catalogue row; files that could not be opened keep theirs.
"""

from __future__ import annotations

import json
from pathlib import Path

from backend.library.catalogue import Catalogue
from backend.lifecycle.home import LibraryHome
from backend.lifecycle.pruning import mark_library_root, prune_library
from shared import naming
from shared.bundle import AssetInfo


def test_index_marks_an_unmarked_library_so_the_panel_names_assets_alike(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "props").mkdir(parents=True)
    blend = lib / "props" / "seats.v2.blend"
    assert naming.catalogue_name(str(blend), "Chair").startswith("seats.v2@")  # no root known yet
    assert mark_library_root(lib) == lib and (lib / naming.STATE_DIR).is_dir()
    assert naming.catalogue_name(str(blend), "Chair") == "props/seats.v2/Chair"  # what the panel now says
    # A library with Blender's catalog file above the indexed folder is left as it is.
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    (other / naming.CATALOG_FILE).write_text("VERSION 1\n")
    assert mark_library_root(other / "sub") == other and not (other / "sub" / naming.STATE_DIR).exists()


def _bundle(home: LibraryHome, name: str, source_blend: str, **asset: str) -> Path:
    folder = home.bundles / naming.safe_folder_name(name)
    folder.mkdir(parents=True)
    (folder / "transforms.json").write_text(json.dumps({"asset": {"name": name, "source_blend": source_blend,
                                                                  **asset}}))
    return folder


def test_prune_forgets_assets_whose_file_or_object_is_gone(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    a, b, c, moved = lib / "a.blend", lib / "b.blend", lib / "c.blend", lib / "moved.blend"
    for f in (a, c, moved):  # c exists, but Blender could not open it this time
        f.write_bytes(b"BLENDER")
    home = LibraryHome.at(tmp_path / "home").create()
    elsewhere = str(tmp_path / "elsewhere" / "gone.blend")
    sources = {"a/Chair": str(a), "a/Old": str(a), "b/Lamp": str(b), "c/Crate": str(c), "gone/Vase": elsewhere,
               "unsaved/Cube": "", "b/Stool": str(b)}
    folders = {n: _bundle(home, n, s) for n, s in sources.items()}
    # b.blend's Stool was moved to moved.blend (same content): captured under its new name, not in the catalogue yet
    folders["moved/Stool"] = _bundle(home, "moved/Stool", str(moved), content_hash="h-stool", asset_name="Stool")
    with Catalogue(home.catalogue) as cat:
        ids = [cat.upsert_asset(AssetInfo(name=n, source_blend=s)) for n, s in {**sources, "a/Ghost": str(a)}.items()
               if n != "b/Stool"]
        ids.append(cat.upsert_asset(AssetInfo(name="b/Stool", source_blend=str(b), content_hash="h-stool",
                                              asset_name="Stool")))
        # a family variant is no marked asset of its file: kept while the file is there, gone with it
        ids += [cat.upsert_asset(AssetInfo(name="a/Table__v000", source_blend=str(a), family="Table")),
                cat.upsert_asset(AssetInfo(name="b/Table__v000", source_blend=str(b), family="Table"))]
        cat.set_codes("m", {i: ([1.0, 0.0], [0.0, 1.0], None) for i in ids})
        cat.add_artist_tags("a/Old", ["seat"])
        cat.record_review("b/Stool", "wood", True)
    pruned, moved_names = prune_library(lib.resolve(), home, {"opened": [str(a.resolve()), str(moved.resolve())],
                                                              "names": ["a/Chair", "moved/Stool"]})
    assert pruned == ["a/Ghost", "a/Old", "b/Lamp", "b/Table__v000"]
    assert moved_names == {"b/Stool": "moved/Stool"}
    assert sorted(n for n, f in folders.items() if f.exists()) == ["a/Chair", "c/Crate", "gone/Vase", "moved/Stool",
                                                                     "unsaved/Cube"]
    with Catalogue(home.catalogue) as cat:
        assert cat.asset_names() == ["a/Chair", "a/Table__v000", "c/Crate", "gone/Vase", "moved/Stool", "unsaved/Cube"]
        row = cat.asset_by_name("moved/Stool")  # the moved asset kept its code, tags and review answers
        assert row.source_blend == str(moved) and cat.code_info(row.id, "m") is not None
        assert cat.tags_of(row.id)["artist"] == ["wood"] and cat.reviews()[0]["name"] == "moved/Stool"
        assert cat.count("codes") == 6 and cat.integrity_ok()
