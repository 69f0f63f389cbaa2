"""The "both" space's appearance block as its first principal directions (issue 15 at scale): the basis, the
projection of library rows and of an upload's feature, and that the neighbours stay those of the whole feature."""

from __future__ import annotations

import numpy as np
import pytest

from backend.library import similarity as S
from backend.library import space_blocks as B
from backend.library.code_table import CodeTable
from backend.library.errors import LibraryError
from backend.library.similarity import Featurizer, SimilarityIndex, pca_basis


def clustered(n: int = 120, dim: int = 300, clusters: int = 6, seed: int = 0) -> tuple[CodeTable, np.ndarray,
                                                                                       np.ndarray]:
    """A table whose appearance features (``dim`` wide, non-negative) carry 6 clusters; codes are noise."""
    rng = np.random.default_rng(seed)
    lab = np.arange(n) % clusters
    centres = np.abs(rng.normal(size=(clusters, dim))) * 2
    app = (centres[lab] + 0.3 * np.abs(rng.normal(size=(n, dim)))).astype(np.float32)
    table = CodeTable("m", np.arange(1, n + 1, dtype=np.int64), [f"a{i:03d}" for i in range(n)],
                      rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=(n, 8)).astype(np.float32),
                      rng.uniform(0.2, 2, size=(n, 3)).astype(np.float32))
    return table, app, lab


def kwargs(app: np.ndarray, dims: int) -> dict:
    return {"appearance": app, "appearance_weight": 10.0, "shape_weight": 2.5, "texture_weight": 1.0,
            "size_weight": 20.0, "appearance_dims": dims}


@pytest.mark.parametrize("rows", [200, 900])  # the exact (Gram) path and the randomized one
def test_pca_basis_is_orthonormal_deterministic_and_spans_a_low_rank_library(rows: int) -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(rows, 12)) @ rng.normal(size=(12, 700))).astype(np.float32)  # rank 12
    x -= x.mean(0)
    b = pca_basis(x, 40)
    assert b.shape[0] == 700 and 12 <= b.shape[1] <= 40
    assert np.allclose(b.T @ b, np.eye(b.shape[1]), atol=1e-4)
    assert np.array_equal(b, pca_basis(x, 40))  # seeded: the same library gives the same basis
    kept = ((x @ b) ** 2).sum() / (x ** 2).sum()
    assert kept == pytest.approx(1.0, abs=1e-4)  # 12 directions hold everything
    top = pca_basis(x, 3)
    _, _, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    # the first 3 directions are the exact ones (up to rotation within the span)
    assert np.linalg.norm(vt[:3] @ top.astype(np.float64), ord=2) == pytest.approx(1.0, abs=1e-3)
    assert np.linalg.svd(vt[:3] @ top.astype(np.float64), compute_uv=False).min() > 0.999
    with pytest.raises(LibraryError, match="at least 1"):
        pca_basis(x, 0)


def test_randomized_path_on_many_rows_fits_on_a_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(B, "PCA_FIT_ROWS", 600)
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(3000, 10)) @ rng.normal(size=(10, 200)) + 0.01 * rng.normal(size=(3000, 200)))
    x = (x - x.mean(0)).astype(np.float32)
    b = pca_basis(x, 10, max_rows=B.PCA_FIT_ROWS)
    assert b.shape == (200, 10)
    assert ((x @ b) ** 2).sum() / (x ** 2).sum() > 0.999


def test_projected_index_keeps_the_neighbours_and_projects_an_upload() -> None:
    table, app, lab = clustered()
    full = SimilarityIndex(table, "both", **kwargs(app, 0))
    pca = SimilarityIndex(table, "both", **kwargs(app, 16))
    assert full.features.shape[1] == 300 + 8 + 8 + 3
    assert pca.features.shape[1] == 16 + 8 + 8 + 3 and pca.featurizer.appearance_basis.shape == (300, 16)
    rf, _ = full.neighbour_arrays(5)
    rp, _ = pca.neighbour_arrays(5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(rf, rp, strict=True)])
    assert recall >= 0.9
    assert (lab[rp] == lab[:, None]).mean() >= (lab[rf] == lab[:, None]).mean() - 0.02
    # distances approximate the whole feature's from below (the projection drops the least varying directions)
    d_full = np.linalg.norm(full.features[:20, None] - full.features[None, :20], axis=-1)
    d_pca = np.linalg.norm(pca.features[:20, None] - pca.features[None, :20], axis=-1)
    assert (d_pca <= d_full * 1.0001 + 1e-4).all() and np.median(d_pca[d_full > 0] / d_full[d_full > 0]) > 0.8
    # an upload passes its whole feature: it is projected with the library's basis (the same row's features)
    row = 7
    found = pca.similar_to_code(table.shape[row], table.texture[row], table.size[row], k=3, appearance=app[row])
    assert found[0].name == table.names[row] and found[0].distance == pytest.approx(0, abs=1e-3)
    assert np.allclose(pca.featurizer.transform(table.shape[row:row + 1], table.texture[row:row + 1],
                                                table.size[row:row + 1], app[row:row + 1])[0],
                       pca.features[row], atol=1e-4)
    # block-wise all-neighbours equals one query per row in the projected space too
    blockwise, rowwise = pca.all_neighbours(5), pca.all_neighbours_rowwise(5)
    assert {i: [a for a, _ in v] for i, v in blockwise.items()} == {i: [a for a, _ in v] for i, v in rowwise.items()}


def test_no_projection_when_it_changes_nothing_or_is_off() -> None:
    table, app, _ = clustered(n=30)
    for dims in (0, 29, 64, 300, 1000):  # off, as many directions as the library has, or wider than the feature
        f = Featurizer.fit(table.shape, table.texture, table.size, **kwargs(app, dims))
        assert f.appearance_basis is None
    f = Featurizer.fit(table.shape, table.texture, table.size, space="shape", **kwargs(app, 8))
    assert f.appearance_basis is None and f.appearance_weight == 0  # appearance only in "both"
    with pytest.raises(LibraryError, match="appearance_dims"):
        Featurizer.fit(table.shape, table.texture, table.size, **kwargs(app, -1))
    # one direction fewer than the library spans: the distances between its assets barely move
    whole = SimilarityIndex(table, "both", **kwargs(app, 0)).features
    f = Featurizer.fit(table.shape, table.texture, table.size, **kwargs(app, 28))
    x = f.transform(table.shape, table.texture, table.size, app)

    def dist(z: np.ndarray) -> np.ndarray:
        return np.sqrt(((z[:, None, :].astype(np.float64) - z[None, :, :]) ** 2).sum(-1))

    assert np.allclose(dist(x), dist(whole), rtol=2e-3, atol=1e-3)


def test_an_index_rebuilt_after_an_embed_reuses_the_basis(monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import OrderedDict

    monkeypatch.setattr(B, "_BASES", OrderedDict())
    table, app, _ = clustered(n=200)
    first = SimilarityIndex(table.subset(np.arange(199)), "both", **kwargs(app[:199], 16))
    grown = SimilarityIndex(table, "both", **kwargs(app, 16))  # one more asset (an Embed): the same directions
    assert grown.featurizer.appearance_basis is first.featurizer.appearance_basis
    assert grown.featurizer.appearance_mean.shape == (300,)  # centring and scale are the library's own
    centred = app - app.mean(0)
    fresh = S.pca_basis(centred, 16)
    kept = ((centred @ grown.featurizer.appearance_basis) ** 2).sum() / ((centred @ fresh) ** 2).sum()
    assert kept > 0.995  # nearly all the variance a fresh fit keeps
    # another selection of dims, a library 10 % different, or other features (a new backbone): fitted again
    assert SimilarityIndex(table, "both", **kwargs(app, 12)).featurizer.appearance_basis.shape == (300, 12)
    half = SimilarityIndex(table.subset(np.arange(180)), "both", **kwargs(app[:180], 16))
    assert half.featurizer.appearance_basis is not first.featurizer.appearance_basis
    other = SimilarityIndex(table, "both", **kwargs(app * 2 + 1, 16))
    assert other.featurizer.appearance_basis is not first.featurizer.appearance_basis
    assert len(B._BASES) <= B._BASES_KEPT
