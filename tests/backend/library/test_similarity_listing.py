"""What the library suggests (issue 19): unsaved embeds and family variants are answered but never another asset's
neighbour; near-identical copies count as one suggestion with their number of copies."""

from __future__ import annotations

import numpy as np

from backend.library.similarity import COPY_DISTANCE, SimilarityIndex, is_family_variant, is_listed
from tests.backend.library.library_support import make_table


def _library(extra: list[tuple[str, str, np.ndarray]]) -> tuple:
    """12 distinct assets (random codes) plus ``extra`` rows ``(name, family, code [64])``."""
    rng = np.random.default_rng(3)
    codes = [rng.normal(size=64) for _ in range(12)]
    names = [f"lib/Asset_{i:02d}" for i in range(12)]
    fams = [""] * 12
    for name, fam, code in extra:
        names.append(name)
        fams.append(fam)
        codes.append(code)
    x = np.array(codes, np.float32)
    return make_table(x[:, :32], x[:, 32:], names, fams), x


def test_which_assets_are_listed() -> None:
    assert is_listed("props/Chair") and is_listed("props/Table__v000")  # no family: an asset named so by hand
    assert not is_listed("unsaved/Chair")
    assert is_family_variant("props/Table__v003", "Table") and not is_listed("props/Table__v003", "Table")
    assert is_family_variant("unsaved/Shelf__v000", "Shelf")
    assert not is_family_variant("props/Table", "Table")  # the family's own object is an asset
    assert not is_family_variant("props/Chair_02", "fam_chairs")  # a family used as a group of assets
    assert not is_family_variant("props/Tablet__v001", "Table")  # another family's variant


def test_unsaved_embeds_and_variants_are_answered_but_never_suggested() -> None:
    rng = np.random.default_rng(9)
    base = rng.normal(size=64)
    table, x = _library(
        [
            ("lib/Query", "", base),
            ("unsaved/Twin", "", base + 1e-3),
            ("lib/Table__v000", "Table", base + 2e-3),
            ("lib/Near", "", base + 0.3),
        ]
    )
    for space in ("shape", "texture", "both"):
        index = SimilarityIndex(table, space)
        names = [n.name for n in index.similar("lib/Query", k=5)]
        assert "unsaved/Twin" not in names and "lib/Table__v000" not in names and names[0] == "lib/Near"
        # Every asset's neighbours (what `index` stores) leave them out too.
        listed = {
            table.names[table.ids.tolist().index(n)] for lst in index.all_neighbours(k=15).values() for n, _ in lst
        }
        assert not listed & {"unsaved/Twin", "lib/Table__v000"}
        # They are still answered: their own neighbours, without each other.
        assert [n.name for n in index.similar("unsaved/Twin", k=2)] == ["lib/Query", "lib/Near"]
        # Without the rule (listed_only=False) the twins are the nearest: the rule is what keeps them out.
        assert [n.name for n in SimilarityIndex(table, space, listed_only=False).similar("lib/Query", k=2)] == [
            "unsaved/Twin",
            "lib/Table__v000",
        ]


def test_copies_collapse_into_the_closest_with_a_count() -> None:
    rng = np.random.default_rng(11)
    base = rng.normal(size=64)
    chair = base + rng.normal(size=64) * 0.2
    same_texture = np.concatenate([rng.normal(size=32), chair[32:]])  # another shape, the chair's material
    table, _ = _library(
        [
            ("lib/Query", "", base),
            ("lib/Chair", "", chair),
            ("backup/Chair", "", chair + 1e-4),
            ("old/Chair", "", chair - 1e-4),
            ("lib/Other", "", same_texture),
        ]
    )
    index = SimilarityIndex(table, "both")
    plain = index.similar("lib/Query", k=4)
    assert {n.name for n in plain[:3]} == {"lib/Chair", "backup/Chair", "old/Chair"}
    found = index.similar("lib/Query", k=4, copies=True)
    assert len(found) == 4 and [n.rank for n in found] == [0, 1, 2, 3]  # still k suggestions
    assert found[0].name == plain[0].name and found[0].copies == 3 and found[0].distance == plain[0].distance
    assert all(n.copies == 1 for n in found[1:]) and not {n.name for n in found[1:]} & {"backup/Chair", "old/Chair"}
    # In texture space the chair and "lib/Other" share a material, yet they are no copies: the whole code decides.
    tex = SimilarityIndex(table, "texture").similar("lib/Chair", k=4, copies=True)
    assert "lib/Other" in [n.name for n in tex]
    # Copies are about the whole code: a pair just over the tolerance stays two suggestions.
    feats = index._copy_featurizer.transform(table.shape, table.texture)
    gap = np.linalg.norm(feats[table.index_of("lib/Chair")] - feats[table.index_of("backup/Chair")])
    assert gap < COPY_DISTANCE
    assert len(index.collapse_copies(plain[:3], tolerance=gap * 0.5)) == 3
    # A small library: asking for more than there is returns every distinct asset once (no endless search).
    everything = index.similar("lib/Query", k=50, copies=True)
    assert len(everything) == len(table) - 1 - 2
