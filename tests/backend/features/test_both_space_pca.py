"""The product's "both" space at scale: ``both_space`` on a real SQLite catalogue projects the stored appearance
features onto the library's first principal directions (``BOTH_APPEARANCE_DIMS``), the neighbours stay those of
the whole feature, and an upload's whole feature is projected with the same basis."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.features import library as FL
from backend.library.catalogue import Catalogue
from backend.library.similarity import SimilarityIndex
from shared.bundle import AssetInfo


def catalogue_with_features(path: Path, n: int = 48, dim: int = 200, kinds: int = 4) -> np.ndarray:
    """``n`` assets of model m1 with random codes and ``dim``-wide stored features in ``kinds`` clusters."""
    rng = np.random.default_rng(0)
    centres = np.abs(rng.normal(size=(kinds, dim))) * 2
    with Catalogue(path) as cat:
        cat.register_model("m1")
        codes, vectors = {}, {}
        for i in range(n):
            aid = cat.upsert_asset(AssetInfo(name=f"lib/kind{i % kinds}_{i:02d}", size=(0.5, 0.5, 1.0)))
            codes[aid] = (rng.normal(size=8), rng.normal(size=8), None)
            vectors[aid] = (centres[i % kinds] + 0.2 * np.abs(rng.normal(size=dim)), f"d{i}")
        cat.set_codes("m1", codes, source="training")
        cat.set_appearance(FL.FEATURE, vectors)
    return centres


def test_both_space_projects_the_stored_features_and_keeps_the_neighbours(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.sqlite"
    catalogue_with_features(path)
    with Catalogue(path) as cat:
        table = cat.codes("m1")
        args = FL.both_space(cat, table)
        assert args["appearance_dims"] == FL.BOTH_APPEARANCE_DIMS == 256
        # 48 assets < 256 directions: nothing to drop, the whole feature (as before)
        assert SimilarityIndex(table, "both", **args).features.shape[1] == 200 + 8 + 8 + 3
        whole = SimilarityIndex(table, "both", **FL.both_space(cat, table, appearance_dims=0))
        small = SimilarityIndex(table, "both", **FL.both_space(cat, table, appearance_dims=12))
        stored, _ = cat.appearance(FL.FEATURE, table.ids)
    assert small.features.shape[1] == 12 + 8 + 8 + 3
    kind = np.array([int(n.split("kind")[1][0]) for n in table.names])
    rw, _ = whole.neighbour_arrays(5)
    rs, _ = small.neighbour_arrays(5)
    assert (kind[rs] == kind[:, None]).mean() >= (kind[rw] == kind[:, None]).mean() - 0.02
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(rw, rs, strict=True)]) >= 0.8
    # the service's Embed passes the upload's whole (stored) feature: projected with the library's basis
    row = 5
    found = small.similar_to_code(table.shape[row], table.texture[row], table.size[row], k=3, appearance=stored[row])
    assert found[0].name == table.names[row]
    assert [n.name for n in small.similar(table.names[row], k=4)] == [table.names[c] for c in rs[row][:4]]


def test_both_space_learns_its_tag_metric_from_the_artist_tags_only(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.sqlite"
    catalogue_with_features(path)
    with Catalogue(path) as cat:
        table = cat.codes("m1")
        for i, (aid, name) in enumerate(zip(table.ids, table.names, strict=True)):
            if i % 3:  # a third of the library untagged
                cat.set_artist_tags(int(aid), [name.split("/")[1].split("_")[0]])  # kind0..kind3
        cat.set_predicted_tags("m1", {int(a): {"predicted-only": 0.9} for a in table.ids[::2]})
        args = FL.both_space(cat, table)
        assert args["tag_weight"] == 10.0 and sum(t is None for t in args["tags"]) == 16
        index = SimilarityIndex(table, "both", **args)
        assert index.featurizer.tag_names == ("kind0", "kind1", "kind2", "kind3")  # never a predicted tag
        assert index.features.shape[1] == 200 + 8 + 8 + 3 + 4
        off = FL.both_space(cat, table, tag_weight=0)
    assert "tags" not in off and SimilarityIndex(table, "both", **off).featurizer.tag_map is None
    kind = np.array([int(n.split("kind")[1][0]) for n in table.names])
    rows, _ = index.neighbour_arrays(5)
    assert (kind[rows] == kind[:, None]).mean() >= 0.95
