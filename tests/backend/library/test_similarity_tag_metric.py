"""The "both" space's tag-metric block (issue 15): a ridge from the other blocks to the library's own tags pulls
together assets that would get the same tags, learnt in the dual or the primal with the same answer, projected for
an upload from its features alone."""

from __future__ import annotations

import numpy as np
import pytest

from backend.library.code_table import CodeTable
from backend.library.errors import LibraryError
from backend.library.similarity import SimilarityIndex, tag_metric


def library(n: int = 80, seed: int = 0) -> tuple[CodeTable, np.ndarray, list[set[str] | None], np.ndarray]:
    """Appearance features whose loudest directions are noise; the kind (4 kinds) sits in a quiet direction the
    artist's tags name. A fifth of the assets are untagged."""
    rng = np.random.default_rng(seed)
    kind = np.arange(n) % 4
    dim = 40
    app = rng.normal(size=(n, dim)).astype(np.float32) * 3.0
    app[:, 0] += kind * 1.5  # the kind: a quiet signal among loud noise
    tags: list[set[str] | None] = [{f"kind{k}"} | ({"wood"} if i % 2 else set()) for i, k in enumerate(kind)]
    for i in range(0, n, 5):
        tags[i] = None  # untagged: not a negative
    table = CodeTable("m", np.arange(1, n + 1, dtype=np.int64), [f"a{i:03d}" for i in range(n)],
                      rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=(n, 8)).astype(np.float32),
                      np.ones((n, 3), np.float32))
    return table, app, tags, kind


def both(table: CodeTable, app: np.ndarray, tags: list | None = None, tag_weight: float = 0.0) -> SimilarityIndex:
    return SimilarityIndex(table, "both", appearance=app, appearance_weight=10.0, shape_weight=2.5,
                           texture_weight=1.0, size_weight=20.0, tags=tags, tag_weight=tag_weight)


def test_tag_block_pulls_together_what_the_tags_say() -> None:
    table, app, tags, kind = library()
    plain = both(table, app)
    tagged = both(table, app, tags, tag_weight=10.0)
    assert plain.featurizer.tag_map is None
    names = tagged.featurizer.tag_names
    assert names == ("kind0", "kind1", "kind2", "kind3", "wood")
    assert tagged.features.shape[1] == plain.features.shape[1] + len(names)
    p_plain = (kind[plain.neighbour_arrays(5)[0]] == kind[:, None]).mean()
    p_tagged = (kind[tagged.neighbour_arrays(5)[0]] == kind[:, None]).mean()
    assert p_tagged > p_plain + 0.15
    # an upload: its tag scores come from its features alone (the same row's features)
    row = 5  # an untagged asset
    x = tagged.featurizer.transform(table.shape[row:row + 1], table.texture[row:row + 1], table.size[row:row + 1],
                                    app[row:row + 1])
    assert np.allclose(x[0], tagged.features[row], atol=1e-4)
    found = tagged.similar_to_code(table.shape[row], table.texture[row], table.size[row], k=1, appearance=app[row])
    assert found[0].name == table.names[row]


def test_dual_and_primal_ridge_agree_and_rare_tags_are_left_out() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 12))
    tags = [{"a"} if i % 3 == 0 else {"b", "rare"} if i == 1 else {"b"} for i in range(30)]
    dual, names, scale = tag_metric(x, tags)  # 30 rows > 12 features: primal
    assert names == ["a", "b"] and dual.shape == (12, 2) and scale > 0
    wide = np.concatenate([x, np.zeros((30, 40))], axis=1)  # 30 rows < 52 features: dual
    dual_wide, _, _ = tag_metric(wide, tags)
    assert np.allclose(dual_wide[:12], dual, atol=1e-5) and np.allclose(dual_wide[12:], 0, atol=1e-6)
    assert tag_metric(x, [None] * 30) == (None, [], 1.0)
    assert tag_metric(x, [{"same"}] * 30)[0] is None  # no negatives: nothing to learn


def test_tag_block_only_in_both_space_and_with_matching_tags() -> None:
    table, app, tags, _ = library(n=20)
    shape_only = SimilarityIndex(table, "shape", tags=tags, tag_weight=10.0)
    assert shape_only.featurizer.tag_map is None
    assert both(table, app, tags, tag_weight=0.0).featurizer.tag_map is None
    with pytest.raises(LibraryError, match="tag sets"):
        both(table, app, tags[:-1], tag_weight=10.0)


def test_the_tag_metric_learns_at_most_the_most_frequent_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    """A studio vocabulary of thousands of tags must not make the "both" space thousands of numbers wide: the metric
    keeps the most frequent tags (every tag still has its classifier in the tag model)."""
    from backend.library import space_blocks

    monkeypatch.setattr(space_blocks, "TAG_METRIC_MAX_TAGS", 3)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 10))
    tags = [{f"t{j}" for j in range(8) if (i + j) % (j + 2) == 0} for i in range(60)]  # t0 most frequent, t7 least
    tag_map, names, _ = tag_metric(x, tags)
    assert tag_map is not None and tag_map.shape == (10, 3) and names == ["t0", "t1", "t2"]
