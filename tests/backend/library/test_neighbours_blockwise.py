"""Studio scale (issue 20): stored neighbours are computed block-wise, with the answer of one query per row."""

from __future__ import annotations

import numpy as np
import pytest

from backend.library.catalogue import Catalogue
from backend.library.similarity import SimilarityIndex, topk_rows
from shared.bundle import AssetInfo
from tests.backend.library.library_support import make_table


def _table(n: int, seed: int = 0, dup_every: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 64)).astype(np.float32)
    if dup_every:
        x[dup_every::dup_every] = x[0]  # exact copies: ties broken by row, like the per-row search
    names = [f"lib/A{i:05d}" for i in range(n)]
    fams = [f"fam{i % 7}" if i % 3 == 0 else "" for i in range(n)]
    # Unlisted rows: embeds of unsaved files and family variants are answered but never suggested.
    for i in range(0, n, 11):
        names[i] = f"unsaved/A{i:05d}"
    for i in range(5, n, 13):
        names[i] = f"lib/{fams[i] or 'famX'}__v{i:03d}"
        fams[i] = fams[i] or "famX"
    return make_table(x[:, :32], x[:, 32:], names, fams)


def _same(a: dict, b: dict) -> None:
    """The same neighbours in the same order. Exact ties (copies) are ordered by row in the block-wise answer and
    in argpartition's (arbitrary) order in the per-row one, so within a tie only the set is compared."""
    assert a.keys() == b.keys()
    for aid in a:
        np.testing.assert_allclose([d for _, d in a[aid]], [d for _, d in b[aid]], rtol=1e-4, atol=1e-3)
        assert [n for _, n in sorted((round(d, 3), n) for n, d in a[aid])] == \
            [n for _, n in sorted((round(d, 3), n) for n, d in b[aid])], aid
        assert a[aid] == sorted(a[aid], key=lambda nd: (nd[1], nd[0]))  # nearest first, exact ties by row


@pytest.mark.parametrize("space", ["shape", "texture", "both"])
@pytest.mark.parametrize("exclude_family", [False, True])
def test_blockwise_equals_rowwise(space: str, exclude_family: bool) -> None:
    index = SimilarityIndex(_table(300, seed=1, dup_every=50), space)
    old = index.all_neighbours_rowwise(10, exclude_family)
    # Tiny blocks (many block boundaries) and one block for everything give the same answer.
    _same(index.all_neighbours(10, exclude_family, block_bytes=300 * 4 * 7), old)
    _same(index.all_neighbours(10, exclude_family), old)


def test_blockwise_sampled_threshold_on_wide_rows() -> None:
    """Above the direct width the per-row sampled threshold selects candidates: still the exact top k."""
    index = SimilarityIndex(_table(9000, seed=2), "both")
    rows = np.arange(0, 9000, 97)
    nb_rows, nb_dist = index.neighbour_arrays(10, rows=rows, block_bytes=9000 * 4 * 16)
    for j, r in enumerate(rows):
        found = index.similar(index.table.names[r], 10)
        assert [int(index.table.ids[c]) for c in nb_rows[j]] == [n.asset_id for n in found]
        np.testing.assert_allclose(nb_dist[j], [n.distance for n in found], rtol=1e-4, atol=1e-4)


def test_fewer_listed_than_k_pads() -> None:
    table = _table(12, seed=3)
    index = SimilarityIndex(table, "both")
    _same(index.all_neighbours(50), index.all_neighbours_rowwise(50))


def test_topk_rows_ties_and_infinities() -> None:
    d = np.array([[3, 1, 1, np.inf, 0], [np.inf, np.inf, 2, np.inf, np.inf]], np.float32)
    cols, vals = topk_rows(d, 3)
    assert cols.tolist() == [[4, 1, 2], [2, -1, -1]]
    assert vals[0].tolist() == [0, 1, 1] and np.isinf(vals[1, 1:]).all()


def test_set_neighbours_in_one_batch_on_a_real_file(tmp_path) -> None:
    table = _table(200, seed=4)
    with Catalogue(tmp_path / "catalogue.sqlite") as cat:
        ids = [cat.upsert_asset(AssetInfo(name=n)) for n in table.names]
        table.ids = np.asarray(ids, np.int64)
        nb = SimilarityIndex(table, "shape").all_neighbours(10)
        cat.set_neighbours("m", "shape", nb)
        cat.set_neighbours("m", "shape", nb)  # replacing keeps one list per asset
        assert cat.count("neighbours") == sum(len(v) for v in nb.values())
        first = table.names[1]
        stored = cat.neighbours_of(first, "m", "shape")
        assert [s["asset_id"] for s in stored] == [n for n, _ in nb[int(table.ids[1])]]


def _stored(cat: Catalogue, sql: str) -> list[tuple]:
    return [tuple(r) for r in cat._query(sql)]


def test_batched_stores_write_the_same_rows(tmp_path) -> None:
    from backend.library.batched import store_neighbours, store_predicted_tags
    from backend.library.tags import TagModel

    table = _table(240, seed=5)
    table.model_id = "m"
    rows = {}
    for how in ("one_shot", "batched"):
        with Catalogue(tmp_path / f"{how}.sqlite") as cat:
            ids = [cat.upsert_asset(AssetInfo(name=n)) for n in table.names]
            table.ids = np.asarray(ids, np.int64)
            cat.set_codes("m", {a: (table.shape[i], table.texture[i], None) for i, a in enumerate(ids)})
            tag_sets = [({"red"} if table.shape[i, 0] > 0 else {"blue"}) if i % 2 else None for i in range(len(table))]
            model = TagModel("m", use_size=False)
            model.fit(table.shape, table.texture, tag_sets, cross_validate=False)
            index = SimilarityIndex(table, "both")
            if how == "one_shot":
                cat.set_neighbours("m", "both", index.all_neighbours(10, exclude_family=True))
                preds = model.predict(table.shape, table.texture)
                cat.set_predicted_tags("m", {int(a): p for a, p in zip(table.ids, preds, strict=True)})
            else:
                assert store_neighbours(cat, "m", "both", index, 10, exclude_family=True, batch=37) == len(table)
                assert store_predicted_tags(cat, model, table, batch=50) == len(table)
            rows[how] = (
                _stored(cat, "SELECT asset_id, rank, neighbour_id, round(distance, 5) FROM neighbours ORDER BY 1, 2"),
                _stored(cat, "SELECT asset_id, tag, round(probability, 6) FROM tags WHERE source = 'predicted' "
                             "ORDER BY 1, 2"),
            )
    assert rows["one_shot"][0] == rows["batched"][0] and len(rows["batched"][0]) == 10 * len(table)
    assert rows["one_shot"][1] == rows["batched"][1] and len(rows["batched"][1]) == 2 * len(table)
