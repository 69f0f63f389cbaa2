"""Similarity: shape vs texture spaces separate, exclusions work, the fast exact search equals brute force."""

from __future__ import annotations

import numpy as np
import pytest

from backend.library.errors import LibraryError
from backend.library.similarity import ExactIndex, SimilarityIndex, brute_force


def test_shape_and_texture_spaces(shape_x_colour) -> None:
    table, s_lab, c_lab = shape_x_colour
    row = table.index_of("s1_c2_0")
    shape_nn = SimilarityIndex(table, "shape").similar("s1_c2_0", k=11)
    # The 11 nearest by shape: every other asset of shape cluster 1, across all colours.
    assert all(s_lab[table.index_of(n.name)] == s_lab[row] for n in shape_nn)
    assert len({c_lab[table.index_of(n.name)] for n in shape_nn}) == 4
    tex_nn = SimilarityIndex(table, "texture").similar("s1_c2_0", k=11)
    assert all(c_lab[table.index_of(n.name)] == c_lab[row] for n in tex_nn)
    assert len({s_lab[table.index_of(n.name)] for n in tex_nn}) == 4
    both = SimilarityIndex(table, "both").similar("s1_c2_0", k=2)
    assert all(n.name.startswith("s1_c2_") for n in both)
    assert [n.distance for n in shape_nn] == sorted(n.distance for n in shape_nn)


def test_exclusions(shape_x_colour) -> None:
    table, _, _ = shape_x_colour
    idx = SimilarityIndex(table, "both")
    with_self = idx.similar("s0_c0_0", k=3, exclude_self=False)
    assert with_self[0].name == "s0_c0_0" and with_self[0].distance == pytest.approx(0, abs=1e-3)
    no_self = idx.similar("s0_c0_0", k=3)
    assert "s0_c0_0" not in [n.name for n in no_self]
    no_family = idx.similar("s0_c0_0", k=5, exclude_family=True)
    assert all(n.family != "fam_s0_c0" for n in no_family)
    with pytest.raises(LibraryError, match="did you mean"):
        idx.similar("s0_c0_O")


def test_size_feature_and_code_query(shape_x_colour) -> None:
    table, _, _ = shape_x_colour
    table.size[:] = 1.0
    table.size[table.index_of("s3_c3_2")] = 100.0  # a giant: size pushes it away
    plain = SimilarityIndex(table, "both").similar("s3_c3_0", k=2)
    sized = SimilarityIndex(table, "both", size_weight=3.0).similar("s3_c3_0", k=2)
    assert "s3_c3_2" in [n.name for n in plain] and "s3_c3_2" not in [n.name for n in sized]
    idx = SimilarityIndex(table, "shape")
    row = table.index_of("s2_c1_1")
    got = idx.similar_to_code(table.shape[row], table.texture[row], k=1)
    assert got[0].name == "s2_c1_1"


@pytest.mark.parametrize("n", [500, 120_000])
def test_exact_matches_brute_force(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 64)).astype(np.float32)
    index = ExactIndex(x)
    for q in (x[7], rng.normal(size=64).astype(np.float32), x[n - 1] + 0.01):
        rows, d = index.search(q, 10)
        ref_rows, ref_d = brute_force(x, q, 10)
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_allclose(d, ref_d, rtol=1e-3, atol=1e-3)
    mask = np.zeros(n, bool)
    mask[: n // 2] = True
    rows, _ = index.search(x[3], 10, exclude=mask)
    assert np.all(rows >= n // 2)
    ref_rows, _ = brute_force(x[n // 2:], x[3], 10)
    np.testing.assert_array_equal(rows, ref_rows + n // 2)


def test_both_space_can_weigh_in_the_appearance_feature() -> None:
    from backend.library.similarity import Featurizer

    rng = np.random.default_rng(0)
    shape, texture, app = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), rng.normal(size=(30, 6)) * 9
    plain = Featurizer.fit(shape, texture)
    assert plain.transform(shape, texture).shape == (30, 8)
    f = Featurizer.fit(shape, texture, appearance=app, appearance_weight=2.0)
    x = f.transform(shape, texture, appearance=app)
    assert x.shape == (30, 14)
    assert np.sqrt((x[:, :6] ** 2).sum(1).mean()) == pytest.approx(2.0, rel=1e-4)  # unit RMS times the weight
    with pytest.raises(LibraryError, match="appearance"):
        f.transform(shape, texture)
    with pytest.raises(LibraryError, match="appearance"):
        Featurizer.fit(shape, texture, appearance_weight=1.0)
    assert Featurizer.fit(shape, texture, space="shape", appearance=app, appearance_weight=1.0).appearance_weight == 0
