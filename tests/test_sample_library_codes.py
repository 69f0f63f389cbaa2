"""End to end on the real sample library: capture with Cycles, train the latent NeRF, then check that the
codes know what the ground truth says, and in the right half.

This is the project's integration test: the .blend files, the Cycles capture, the trainer, the catalogue and
the tag classifiers are all real. The run is the shipped starter model: ``python build.py test`` builds it from
the current code before the tests (``asset2vec starter-model``: the whole seed-0 sample library captured with
Cycles at 64 px, 600 cpu-small steps), so these checks hold for what a fresh install serves. Thresholds are set
well below what a full demo run reaches (see bench/nerf.py) yet far above chance.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="module")
def sample_run() -> Any:
    """The starter model's run (fails with how to build it when missing, never skips)."""
    from backend.lifecycle.starter import starter_run_dir
    from backend.training.run import load_run

    return load_run(starter_run_dir(), device="cpu")


def _bare(name: str) -> str:
    """The asset's name in ground_truth.json: folder captures name assets ``<file>/<asset>``."""
    return name.rsplit("/", 1)[-1]


def _labels(run: Any, truth: dict[str, Any], half: str, key: str) -> tuple[np.ndarray, list[Any]]:
    """Row indices into the run's codes and the ground-truth label of each, for assets where ``key`` applies."""
    by_name = {a["name"]: a for a in truth["assets"]}
    rows, labels = [], []
    for i, info in enumerate(run.assets):
        gt = by_name.get(_bare(info.name))
        value = None if gt is None else (gt["family"] if key == "family" else gt[half].get(key))
        if value is not None:
            rows.append(i)
            labels.append(value)
    return np.asarray(rows), labels


def _probe(x: np.ndarray, y: list[Any]) -> float:
    """5-fold (or fewer, for small classes) cross-validated accuracy of a linear probe on held-out assets."""
    folds = min(5, min(Counter(y).values()))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    return float(cross_val_score(model, x, y, cv=cv).mean())


def test_training_reconstructs_held_out_views(sample_run: Any) -> None:
    # A constant grey background-only guess scores about 10-12 dB on these views.
    assert sample_run.heldout_psnr > 18.0


@pytest.mark.parametrize(("half", "key", "other_max"), [("shape", "family", 0.6), ("texture", "color", 0.45)])
def test_each_half_predicts_its_own_attributes_and_not_the_other(
    sample_run: Any, sample_truth: dict[str, Any], half: str, key: str, other_max: float
) -> None:
    rows, y = _labels(sample_run, sample_truth, "texture" if key == "color" else "shape", key)
    assert len(rows) >= 60
    own = sample_run.shape_codes if half == "shape" else sample_run.texture_codes
    other = sample_run.texture_codes if half == "shape" else sample_run.shape_codes
    chance = max(Counter(y).values()) / len(y)
    own_acc, other_acc = _probe(own[rows], y), _probe(other[rows], y)
    assert own_acc >= 0.85, f"{key} from the {half} half: {own_acc:.2f} (chance {chance:.2f})"
    assert other_acc <= other_max, f"{key} leaks into the other half: {other_acc:.2f} (chance {chance:.2f})"


def test_tag_classifiers_recover_ground_truth_on_held_out_assets(
    sample_run: Any, sample_truth: dict[str, Any]
) -> None:
    """Train the product's tag model on the artists' tags of 3/4 of the library; predict the rest."""
    from backend.library.tags import TagModel

    by_name = {a["name"]: a for a in sample_truth["assets"]}
    rows = [i for i, a in enumerate(sample_run.assets) if _bare(a.name) in by_name]
    rng = np.random.default_rng(0)
    held = set(rng.choice(rows, size=len(rows) // 4, replace=False).tolist())
    train_rows = [i for i in rows if i not in held]
    test_rows = sorted(held)
    tag_sets = [set(by_name[_bare(sample_run.assets[i].name)]["tags"]) for i in train_rows]
    sizes = np.asarray([sample_run.assets[i].size for i in range(len(sample_run.assets))], np.float32)
    model = TagModel(sample_run.model_id)
    model.fit(sample_run.shape_codes[train_rows], sample_run.texture_codes[train_rows], tag_sets, sizes[train_rows])
    probs = model.predict(sample_run.shape_codes[test_rows], sample_run.texture_codes[test_rows], sizes[test_rows])
    checked = {"chair", "table", "sofa", "lamp", "red", "blue", "green", "yellow", "black", "white"}
    correct = total = 0
    for i, p in zip(test_rows, probs, strict=True):
        truth_tags = set(by_name[_bare(sample_run.assets[i].name)]["tags"])
        for tag in checked & set(p):
            correct += (p[tag] >= 0.5) == (tag in truth_tags)
            total += 1
    assert total >= 100
    assert correct / total >= 0.85, f"held-out tag accuracy {correct / total:.2f}"
