"""Per-tag linear classifiers on codes: learn the artists' tags, propose them for untagged assets.

For every tag with enough examples: standardised features (shape + texture codes, optionally
log metric size) -> logistic regression with balanced class weights; probabilities calibrated
(sigmoid, cross-validated) when there are enough examples of both classes. Cross-validated
precision / recall / average precision per tag are reported so a TD can see which tags the codes
really carry. Tags with too few positives or negatives are reported as skipped, never guessed.

Only assets the artists tagged at all are training examples (an untagged asset is unlabelled,
not a negative for every tag).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_score, recall_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from .errors import LibraryError

MIN_EXAMPLES = 3  # per class (positives and negatives) to train a tag at all
CALIBRATE_EXAMPLES = 10  # per class to afford a calibrated classifier (3-fold)
DEFAULT_THRESHOLD = 0.5
FORMAT_VERSION = 1


def features(shape: np.ndarray, texture: np.ndarray, size: np.ndarray | None = None) -> np.ndarray:
    """``[N, 2D (+3)]`` float64: codes, plus log of the metric size (m) when ``size`` is given."""
    parts = [np.asarray(shape, np.float64), np.asarray(texture, np.float64)]
    if size is not None:
        parts.append(np.log(np.maximum(np.asarray(size, np.float64), 0.01)))
    return np.concatenate(parts, axis=1)


def _base(seed: int) -> Pipeline:
    return make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", C=1.0, max_iter=5000, random_state=seed)
    )


@dataclass
class TagModel:
    """Per-tag classifiers for one decoder model (``model_id``); ``use_size`` adds log metric size."""

    model_id: str
    use_size: bool = True
    seed: int = 0
    classifiers: dict[str, Any] = field(default_factory=dict)
    report: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _x(self, shape: np.ndarray, texture: np.ndarray, size: np.ndarray | None) -> np.ndarray:
        if self.use_size and size is None:
            raise LibraryError("this tag model uses asset sizes; pass the sizes (metres) with the codes")
        return features(shape, texture, size if self.use_size else None)

    def fit(
        self,
        shape: np.ndarray,
        texture: np.ndarray,
        tag_sets: list[set[str] | None],
        size: np.ndarray | None = None,
        min_examples: int = MIN_EXAMPLES,
    ) -> dict[str, dict[str, Any]]:
        """Train one classifier per tag on the tagged assets; returns the per-tag report.

        ``tag_sets[i]`` is asset i's artist tags, or ``None`` if it was never tagged (ignored).
        Report entries: ``status`` ("trained" | "skipped"), ``positives``, ``negatives``, and for
        trained tags cross-validated ``precision``, ``recall``, ``average_precision``, ``calibrated``.
        """
        labelled = np.array([s is not None for s in tag_sets])
        if labelled.sum() == 0:
            raise LibraryError("no asset has artist tags: tag some assets in Blender first, then train")
        x = self._x(shape, texture, size)[labelled]
        sets = [s for s in tag_sets if s is not None]
        all_tags = sorted(set().union(*sets))
        if not all_tags:
            raise LibraryError("the tagged assets have no tags to learn")
        self.classifiers, self.report = {}, {}
        for tag in all_tags:
            y = np.array([tag in s for s in sets], dtype=int)
            pos, neg = int(y.sum()), int(len(y) - y.sum())
            entry: dict[str, Any] = {"positives": pos, "negatives": neg}
            if min(pos, neg) < min_examples:
                entry.update(status="skipped", reason=f"needs at least {min_examples} assets with and without "
                                                      f"the tag ({pos} with, {neg} without)")
                self.report[tag] = entry
                continue
            # One BLAS thread: these problems are tiny and multi-threaded BLAS thrashes on a busy CPU (10x slower).
            with warnings.catch_warnings(), threadpool_limits(1):
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = self._make(min(pos, neg))
                # Honest quality: out-of-fold probabilities of the same recipe.
                folds = StratifiedKFold(n_splits=min(5, pos, neg), shuffle=True, random_state=self.seed)
                p = cross_val_predict(clone(model), x, y, cv=folds, method="predict_proba")[:, 1]
                model.fit(x, y)
            pred = p >= DEFAULT_THRESHOLD
            entry.update(
                status="trained",
                calibrated=isinstance(model, CalibratedClassifierCV),
                precision=float(precision_score(y, pred, zero_division=0)),
                recall=float(recall_score(y, pred, zero_division=0)),
                average_precision=float(average_precision_score(y, p)),
                cv_accuracy=float((pred == y).mean()),
            )
            self.classifiers[tag] = model
            self.report[tag] = entry
        return self.report

    def _make(self, minority: int) -> Any:
        if minority >= CALIBRATE_EXAMPLES:
            return CalibratedClassifierCV(_base(self.seed), method="sigmoid", cv=3)
        return _base(self.seed)

    @property
    def tags(self) -> list[str]:
        return sorted(self.classifiers)

    def predict(self, shape: np.ndarray, texture: np.ndarray, size: np.ndarray | None = None) -> list[dict[str, float]]:
        """Probability of every trained tag for each code: ``[{tag: p}]`` (length N)."""
        if not self.classifiers:
            raise LibraryError("the tag model has no trained tags; train it first (asset2vec tags train)")
        x = self._x(shape, texture, size)
        with threadpool_limits(1):
            probs = {t: np.clip(m.predict_proba(x)[:, 1], 0.0, 1.0) for t, m in self.classifiers.items()}
        return [{t: float(p[i]) for t, p in probs.items()} for i in range(len(x))]

    @staticmethod
    def proposals(probs: dict[str, float], artist_tags: set[str] | None, threshold: float = DEFAULT_THRESHOLD
                  ) -> dict[str, float]:
        """Tags to add: probability >= threshold and not already an artist tag."""
        have = artist_tags or set()
        return {t: p for t, p in sorted(probs.items(), key=lambda kv: -kv[1]) if p >= threshold and t not in have}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically with joblib (model id and format version recorded)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        payload = {"format": FORMAT_VERSION, "model_id": self.model_id, "use_size": self.use_size, "seed": self.seed,
                   "classifiers": self.classifiers, "report": self.report}
        joblib.dump(payload, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], expect_model: str | None = None) -> TagModel:
        """Read a saved tag model; refuse one trained on another decoder model's codes."""
        path = Path(path)
        if not path.is_file():
            raise LibraryError(f"{path}: no tag model here; train one first (asset2vec tags train)")
        try:
            payload = joblib.load(path)
        except Exception as e:  # joblib/pickle raise many types for a damaged file
            raise LibraryError(f"{path}: not a readable tag model ({type(e).__name__}); train it again") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
            raise LibraryError(f"{path}: not an Asset2Vec tag model of format {FORMAT_VERSION}; train it again")
        if expect_model is not None and payload["model_id"] != expect_model:
            raise LibraryError(
                f"{path}: tag model was trained on codes of model {payload['model_id']}, not {expect_model}; "
                "retrain it with this run (asset2vec tags train)"
            )
        return cls(payload["model_id"], payload["use_size"], payload["seed"], payload["classifiers"],
                   payload["report"])
