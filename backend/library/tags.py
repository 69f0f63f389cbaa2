"""Per-tag linear classifiers on codes: learn the artists' tags, propose them for untagged assets.

For every tag with enough examples: standardised features (shape + texture codes, optionally
log metric size) -> logistic regression with balanced class weights; probabilities calibrated
(sigmoid, cross-validated) when there are enough examples of both classes. Cross-validated
precision / recall / average precision per tag are reported so a TD can see which tags the codes
really carry. Tags with too few positives or negatives are reported as skipped, never guessed.

What is written into an artist's file is decided by :meth:`TagModel.decide` (:mod:`.tag_decisions`):
per tag a write threshold calibrated out of fold to a target precision (default 0.9; tags that never
reach it are suggestions only) and exclusive tag groups (at most one member written). The model is
saved as data only (:mod:`.tag_store`; no pickle is ever loaded).

Only assets the artists tagged at all are training examples (an untagged asset is unlabelled,
not a negative for every tag). Review answers (:mod:`.review`) add labels: an accepted tag is a
positive, a rejected one a negative even on an otherwise untagged asset (see :func:`tag_labels`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

from . import tag_store
from .errors import LibraryError
from .tag_decisions import (
    DEFAULT_TARGET_PRECISION,
    TagDecision,
    decide,
    learn_exclusive_groups,
    merge_groups,
    write_threshold,
)

MIN_EXAMPLES = 3  # per class (positives and negatives) to train a tag at all
CALIBRATE_EXAMPLES = 10  # per class to afford a calibrated classifier (3-fold)
DEFAULT_THRESHOLD = 0.5
FORMAT_VERSION = tag_store.FORMAT_VERSION
#: The tag model's file name in a run / home model folder (the format is data only despite the old suffix).
TAG_MODEL_FILE = "tags.joblib"

#: What every surface (CLI, service info, add-on panel, exploration page) says while no asset has a tag.
NO_TAGS_HELP = (
    "No asset has tags yet, so there are no tag predictions (neighbours, clusters and the exploration page "
    "work without them). Tags start two ways: tag a few assets in Blender and embed them (or run asset2vec "
    "index / bulk-tag on the library), or import a tag list (asset2vec tags import FILE.csv with name,tag "
    "rows); then train the classifiers (asset2vec tags train). From then on Review Tags (asset2vec tags "
    "review) asks about the assets the classifiers are least sure of."
)


def few_tags_help(min_examples: int = MIN_EXAMPLES) -> str:
    """Said when assets are tagged but no tag has enough examples to learn yet."""
    return (
        f"No tag has enough examples to learn yet (each needs at least {min_examples} assets with it and "
        f"{min_examples} without). Tag more assets: review a few suggestions (asset2vec tags review, or Review "
        "Tags in the Blender panel), or import a tag list (asset2vec tags import FILE.csv); then asset2vec tags train."
    )


FEW_TAGS_HELP = few_tags_help()


class NoTagsError(LibraryError):
    """Nothing to learn from: no asset has artist tags (the message is :data:`NO_TAGS_HELP`)."""

    def __init__(self, message: str = NO_TAGS_HELP) -> None:
        super().__init__(message)


def tag_status(catalogue: Any, trained_tags: list[str] | None = None) -> dict[str, Any]:
    """How far the library's tags are: ``{"tagged_assets": n, "tags": {tag: assets}, "message": str | None}``.

    ``message`` explains how tags start when no asset has an artist tag (:data:`NO_TAGS_HELP`); when
    ``trained_tags`` (a tag model's tags) is given and empty although assets are tagged, it says more
    examples are needed (:data:`FEW_TAGS_HELP`). ``catalogue``: a :class:`~.catalogue.Catalogue`.
    """
    by_asset = catalogue.artist_tags()
    counts: dict[str, int] = {}
    for tags in by_asset.values():
        for t in tags:
            counts[t] = counts.get(t, 0) + 1
    message = None
    if not by_asset:
        message = NO_TAGS_HELP
    elif trained_tags is not None and not trained_tags:
        message = FEW_TAGS_HELP
    return {"tagged_assets": len(by_asset), "tags": dict(sorted(counts.items())), "message": message}


def tag_labels(
    tag: str, tag_sets: Sequence[set[str] | None], rejected: Sequence[set[str]], partial: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray]:
    """The assets labelled for ``tag`` and their labels: ``(rows [M] int64, y [M] int 0/1)``.

    Positive: ``tag`` is an artist tag of the asset (review acceptances included). Negative: the
    artist rejected it in review, or the asset is fully tagged (artist tags not only from review
    answers) without it. Any other asset is unlabelled for ``tag`` and left out. An artist tag wins
    over a rejection (artist tags are never overruled).
    """
    rows, y = [], []
    for i, (s, rej, part) in enumerate(zip(tag_sets, rejected, partial, strict=True)):
        if s is not None and tag in s:
            rows.append(i)
            y.append(1)
        elif tag in rej or (s is not None and not part):
            rows.append(i)
            y.append(0)
    return np.asarray(rows, dtype=np.int64), np.asarray(y, dtype=int)


def features(shape: np.ndarray, texture: np.ndarray, size: np.ndarray | None = None) -> np.ndarray:
    """``[N, 2D (+3)]`` float64: codes, plus log of the metric size (m) when ``size`` is given."""
    parts = [np.asarray(shape, np.float64), np.asarray(texture, np.float64)]
    if size is not None:
        parts.append(np.log(np.maximum(np.asarray(size, np.float64), 0.01)))
    return np.concatenate(parts, axis=1)


def _base(seed: int, standardise: bool = True) -> Pipeline:
    clf = LogisticRegression(class_weight="balanced", C=1.0, max_iter=5000, random_state=seed)
    return make_pipeline(StandardScaler(), clf) if standardise else make_pipeline(clf)


@dataclass
class TagModel:
    """Per-tag classifiers for one decoder model (``model_id``); ``use_size`` adds log metric size.

    With ``descriptor`` (a fitted :class:`backend.features.descriptor.Descriptor`'s ``to_json()``), the classifiers
    learn from the descriptor's classifier features (pretrained appearance + codes + size, block-weighted, used
    unstandardised) instead of the plain codes; ``fit``/``predict`` then need the assets' ``appearance`` features
    (pooled as the descriptor says). On Scopia this lifts tag mAP from 0.47 (CNN + size) to about 0.50. Each tag is
    then trained on the descriptor and on the codes and keeps the better out of fold (``sources``; see
    :attr:`per_tag_inputs`): on the sample library the codes carry the material tags better (mAP 0.921 descriptor
    only, 0.958 codes only, 0.974 per-tag choice; docs/quality_descriptor.md).
    """

    model_id: str
    use_size: bool = True
    seed: int = 0
    classifiers: dict[str, Any] = field(default_factory=dict)
    report: dict[str, dict[str, Any]] = field(default_factory=dict)
    descriptor: dict[str, Any] | None = None
    #: Out-of-fold precision a tag must reach to be written; per-tag write thresholds (None: suggest only).
    target_precision: float = DEFAULT_TARGET_PRECISION
    thresholds: dict[str, float | None] = field(default_factory=dict)
    #: Exclusive tag groups: learnt from the library plus ``declared_groups`` (from a tag list).
    exclusive_groups: list[list[str]] = field(default_factory=list)
    declared_groups: list[list[str]] = field(default_factory=list)
    #: With a descriptor: which inputs each tag's classifier reads, "descriptor" or "codes" (codes + size,
    #: standardised): the one with the better out-of-fold average precision when cross-validated (a tag the codes
    #: carry better, e.g. a material on a library the codes were trained on, keeps the codes). Default "descriptor".
    sources: dict[str, str] = field(default_factory=dict)
    #: False: a descriptor model's tags all read the descriptor (no per-tag choice; benchmarks of the descriptor alone).
    per_tag_inputs: bool = True

    def source(self, tag: str) -> str:
        """The inputs ``tag``'s classifier reads: "descriptor" or "codes"."""
        if self.descriptor is None:
            return "codes"
        return self.sources.get(tag, "descriptor")

    def _inputs(self, shape: np.ndarray, texture: np.ndarray, size: np.ndarray | None,
                appearance: np.ndarray | None = None, wanted: Sequence[str] = ("codes", "descriptor")
                ) -> dict[str, np.ndarray]:
        """The input matrices ``{"codes": ..., "descriptor": ...}`` this model can use (of ``wanted``)."""
        if self.use_size and size is None:
            raise LibraryError("this tag model uses asset sizes; pass the sizes (metres) with the codes")
        out = {}
        if "codes" in wanted or self.descriptor is None:
            out["codes"] = features(shape, texture, size if self.use_size else None)
        if self.descriptor is not None and "descriptor" in wanted:
            out["descriptor"] = self._x(shape, texture, size, appearance)
        return out

    def _x(self, shape: np.ndarray, texture: np.ndarray, size: np.ndarray | None,
           appearance: np.ndarray | None = None) -> np.ndarray:
        if self.use_size and size is None:
            raise LibraryError("this tag model uses asset sizes; pass the sizes (metres) with the codes")
        if self.descriptor is None:
            return features(shape, texture, size if self.use_size else None)
        if appearance is None:
            raise LibraryError(f"this tag model uses the appearance feature {self.descriptor.get('feature_key')}; "
                               "pass it with the codes")
        from backend.features.descriptor import Descriptor, log_size

        blocks = {"appearance": appearance, "shape": shape, "texture": texture}
        if size is not None:
            blocks["size"] = log_size(size)
        try:
            return Descriptor.from_json(self.descriptor).classifier_features(blocks).astype(np.float64)
        except (ValueError, KeyError) as e:
            raise LibraryError(f"the tag model's descriptor does not fit these features ({e}); retrain the tags") from None

    def fit(
        self,
        shape: np.ndarray,
        texture: np.ndarray,
        tag_sets: list[set[str] | None],
        size: np.ndarray | None = None,
        min_examples: int = MIN_EXAMPLES,
        rejected: Sequence[set[str] | None] | None = None,
        partial: Sequence[bool] | None = None,
        cross_validate: bool = True,
        appearance: np.ndarray | None = None,
        target_precision: float | None = None,
        declared_groups: Sequence[Sequence[str]] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Train one classifier per tag on the labelled assets; returns the per-tag report.

        ``tag_sets[i]`` is asset i's artist tags, or ``None`` if it was never tagged. ``rejected[i]``:
        tags the artist said asset i does not have (review answers). ``partial[i]``: asset i's tags
        are only confirmed review answers, not a full tagging. Labels per tag: see :func:`tag_labels`.
        ``cross_validate=False`` skips the out-of-fold scores (10x faster; a review answer retrains only its tag:
        :meth:`refit`). Report entries: ``status`` ("trained" | "skipped"), ``positives``,
        ``negatives``, ``cross_validated``, and for trained tags ``calibrated`` and (when cross-validated)
        ``precision``, ``recall``, ``average_precision``, ``cv_accuracy`` (at 0.5), and the write decision:
        ``write_threshold`` (None: suggest only), ``write_precision`` / ``write_recall`` / ``write_support``
        (out of fold at that threshold). Without cross-validation no tag gets a write threshold (see
        :meth:`keep_calibration`). ``target_precision`` / ``declared_groups`` replace the model's settings.
        """
        if target_precision is not None:
            if not 0.0 < float(target_precision) <= 1.0:
                raise LibraryError(f"the target precision must be in (0, 1], got {target_precision}")
            self.target_precision = float(target_precision)
        if declared_groups is not None:
            self.declared_groups = merge_groups(declared_groups)
        n = len(tag_sets)
        rejected_sets = [set(r or ()) for r in rejected] if rejected is not None else [set() for _ in range(n)]
        partial_flags = [bool(f) for f in partial] if partial is not None else [False] * n
        if len(rejected_sets) != n or len(partial_flags) != n:
            raise LibraryError(f"tag labels of {n} assets, but {len(rejected_sets)} rejection sets and "
                               f"{len(partial_flags)} partial flags")
        if all(s is None for s in tag_sets) and not any(rejected_sets):
            raise NoTagsError()
        x_all = self._inputs(shape, texture, size, appearance)
        all_tags = sorted(set().union(*(s for s in tag_sets if s is not None), *rejected_sets))
        if not all_tags:
            raise LibraryError("the tagged assets have no tags to learn")
        self.classifiers, self.report, self.thresholds = {}, {}, {}
        if cross_validate:
            self.sources = {}  # chosen anew; without cross-validation the given choices stay
        self.exclusive_groups = merge_groups(self.declared_groups, learn_exclusive_groups(tag_sets, partial_flags))
        for tag in all_tags:
            self._fit_tag(tag, x_all, tag_sets, rejected_sets, partial_flags, min_examples, cross_validate)
        return self.report

    def refit(
        self,
        tags: Sequence[str],
        shape: np.ndarray,
        texture: np.ndarray,
        tag_sets: list[set[str] | None],
        size: np.ndarray | None = None,
        min_examples: int = MIN_EXAMPLES,
        rejected: Sequence[set[str] | None] | None = None,
        partial: Sequence[bool] | None = None,
        appearance: np.ndarray | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Retrain only the classifiers of ``tags`` (cross-validated: their write thresholds are calibrated anew) on
        the given labels; every other tag's classifier, threshold and report stay exactly as they are. The exclusive
        groups are learnt again from the labels (plus the declared ones). For a review answer, which changes only the
        answered tag's labels (see :func:`tag_labels`). Returns the report entries of ``tags``."""
        n = len(tag_sets)
        rejected_sets = [set(r or ()) for r in rejected] if rejected is not None else [set() for _ in range(n)]
        partial_flags = [bool(f) for f in partial] if partial is not None else [False] * n
        if len(rejected_sets) != n or len(partial_flags) != n:
            raise LibraryError(f"tag labels of {n} assets, but {len(rejected_sets)} rejection sets and "
                               f"{len(partial_flags)} partial flags")
        x_all = self._inputs(shape, texture, size, appearance)
        self.exclusive_groups = merge_groups(self.declared_groups, learn_exclusive_groups(tag_sets, partial_flags))
        for tag in tags:
            self.classifiers.pop(tag, None)
            self.sources.pop(tag, None)
            self.thresholds.pop(tag, None)
            self._fit_tag(tag, x_all, tag_sets, rejected_sets, partial_flags, min_examples, True)
        return {t: self.report[t] for t in tags}

    def _fit_tag(self, tag: str, x_all: dict[str, np.ndarray], tag_sets: Sequence[set[str] | None],
                 rejected_sets: Sequence[set[str]], partial_flags: Sequence[bool], min_examples: int,
                 cross_validate: bool) -> None:
        """Train one tag's classifier into ``classifiers``/``thresholds``/``report`` (or report it skipped); with a
        descriptor and cross-validation, on the descriptor and on the codes, keeping the better out of fold."""
        if self.descriptor is None:
            self._fit_tag_on(tag, "codes", x_all["codes"], tag_sets, rejected_sets, partial_flags, min_examples,
                             cross_validate)
            return
        if not cross_validate or not self.per_tag_inputs:
            src = self.source(tag)
            self._fit_tag_on(tag, src, x_all[src], tag_sets, rejected_sets, partial_flags, min_examples, False)
            return
        fitted = {}
        for src in ("descriptor", "codes"):
            self._fit_tag_on(tag, src, x_all[src], tag_sets, rejected_sets, partial_flags, min_examples, True)
            fitted[src] = (self.classifiers.pop(tag, None), self.thresholds.pop(tag, None), self.report.pop(tag))
        if fitted["descriptor"][0] is None:  # skipped: too few examples (the same for both)
            self.report[tag] = fitted["descriptor"][2]
            return
        ap = {src: float(f[2]["average_precision"]) for src, f in fitted.items()}
        best = "codes" if ap["codes"] > ap["descriptor"] else "descriptor"
        self.classifiers[tag], self.thresholds[tag], self.report[tag] = fitted[best]
        self.report[tag]["average_precision_other"] = ap["codes" if best == "descriptor" else "descriptor"]
        self.sources[tag] = best

    def _fit_tag_on(self, tag: str, src: str, x_all: np.ndarray, tag_sets: Sequence[set[str] | None],
                    rejected_sets: Sequence[set[str]], partial_flags: Sequence[bool], min_examples: int,
                    cross_validate: bool) -> None:
        """Train one tag's classifier on the inputs ``src`` ("codes" | "descriptor")."""
        rows, y = tag_labels(tag, tag_sets, rejected_sets, partial_flags)
        x = x_all[rows]
        pos, neg = int(y.sum()), int(len(y) - y.sum())
        entry: dict[str, Any] = {"positives": pos, "negatives": neg, "cross_validated": cross_validate,
                                 "features": src}
        if min(pos, neg) < min_examples:
            entry.update(status="skipped", reason=f"needs at least {min_examples} assets with and without "
                                                  f"the tag ({pos} with, {neg} without)")
            self.report[tag] = entry
            return
        # One BLAS thread: these problems are tiny and multi-threaded BLAS thrashes on a busy CPU (10x slower).
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = self._make(min(pos, neg), standardise=src == "codes")
            if cross_validate:
                # Honest quality: out-of-fold probabilities of the same recipe.
                folds = StratifiedKFold(n_splits=min(5, pos, neg), shuffle=True, random_state=self.seed)
                p = cross_val_predict(clone(model), x, y, cv=folds, method="predict_proba")[:, 1]
            model.fit(x, y)
        if not cross_validate:
            entry.update(status="trained", calibrated=isinstance(model, CalibratedClassifierCV),
                         write_threshold=None)
            self.classifiers[tag] = model
            self.thresholds[tag] = None
            self.report[tag] = entry
            return
        pred = p >= DEFAULT_THRESHOLD
        w = write_threshold(y, p, self.target_precision)
        entry.update(
            status="trained",
            calibrated=isinstance(model, CalibratedClassifierCV),
            precision=float(precision_score(y, pred, zero_division=0)),
            recall=float(recall_score(y, pred, zero_division=0)),
            average_precision=float(average_precision_score(y, p)),
            cv_accuracy=float((pred == y).mean()),
            write_threshold=w["threshold"],
            write_precision=w["precision"],
            write_recall=w["recall"],
            write_support=w["support"],
        )
        self.thresholds[tag] = w["threshold"]
        self.classifiers[tag] = model
        self.report[tag] = entry

    def keep_calibration(self, previous: TagModel | None) -> None:
        """Carry ``previous``'s target, write thresholds and declared groups over to a model retrained without
        cross-validation (after a review answer), for the tags both have; new tags stay suggestions only."""
        if previous is None:
            return
        self.target_precision = previous.target_precision
        self.declared_groups = merge_groups(previous.declared_groups, self.declared_groups)
        self.exclusive_groups = merge_groups(self.exclusive_groups, previous.declared_groups)
        for tag in self.classifiers:
            if self.thresholds.get(tag) is None and previous.thresholds.get(tag) is not None:
                self.thresholds[tag] = previous.thresholds[tag]
                prev = previous.report.get(tag, {})
                self.report[tag].update({k: prev.get(k) for k in ("write_threshold", "write_precision",
                                                                    "write_recall", "write_support")},
                                        calibration_from="the last cross-validated training")

    def decide(self, predicted: dict[str, float], existing: set[str] | None = None) -> TagDecision:
        """Which of an asset's predicted tags to write and which to suggest (see :func:`.tag_decisions.decide`):
        written at or over the tag's calibrated threshold, at most one per exclusive group (the most
        probable; a group member the asset already has blocks the others)."""
        return decide(predicted, existing or set(), self.thresholds, self.exclusive_groups)

    def _make(self, minority: int, standardise: bool = True) -> Any:
        base = _base(self.seed, standardise=standardise)
        if minority >= CALIBRATE_EXAMPLES:
            return CalibratedClassifierCV(base, method="sigmoid", cv=3)
        return base

    @property
    def tags(self) -> list[str]:
        return sorted(self.classifiers)

    def predict(self, shape: np.ndarray, texture: np.ndarray, size: np.ndarray | None = None,
                appearance: np.ndarray | None = None, tags: Sequence[str] | None = None) -> list[dict[str, float]]:
        """Probability of every trained tag (or of the trained ones of ``tags``) for each code: ``[{tag: p}]``."""
        if not self.classifiers:
            raise LibraryError("the tag model has no trained tags; train it first (asset2vec tags train)")
        wanted = self.classifiers if tags is None else {t: self.classifiers[t] for t in tags if t in self.classifiers}
        x = self._inputs(shape, texture, size, appearance, wanted={self.source(t) for t in wanted} or {"codes"})
        with threadpool_limits(1):
            probs = {t: np.clip(m.predict_proba(x[self.source(t)])[:, 1], 0.0, 1.0) for t, m in wanted.items()}
        return [{t: float(p[i]) for t, p in probs.items()} for i in range(len(shape))]

    @staticmethod
    def proposals(probs: dict[str, float], artist_tags: set[str] | None, threshold: float = DEFAULT_THRESHOLD
                  ) -> dict[str, float]:
        """Tags to add: probability >= threshold and not already an artist tag."""
        have = artist_tags or set()
        return {t: p for t, p in sorted(probs.items(), key=lambda kv: -kv[1]) if p >= threshold and t not in have}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically as data only (arrays + JSON, :mod:`.tag_store`); model id and format recorded."""
        meta = {"model_id": self.model_id, "use_size": self.use_size, "seed": self.seed, "report": self.report,
                "descriptor": self.descriptor, "target_precision": self.target_precision,
                "thresholds": {t: self.thresholds.get(t) for t in sorted(self.classifiers)},
                "exclusive_groups": self.exclusive_groups, "declared_groups": self.declared_groups,
                "sources": {t: self.source(t) for t in sorted(self.classifiers)}}
        return tag_store.save(path, meta, self.classifiers)

    @classmethod
    def load(cls, path: str | os.PathLike[str], expect_model: str | None = None) -> TagModel:
        """Read a saved tag model without unpickling; refuse one trained on another decoder model's codes.

        An old pickled (joblib) tag model raises :class:`LibraryError` saying to retrain the tags.
        """
        meta, classifiers = tag_store.load(path)
        model_id = str(meta.get("model_id"))
        if expect_model is not None and model_id != expect_model:
            raise LibraryError(
                f"{path}: tag model was trained on codes of model {model_id}, not {expect_model}; "
                "retrain it with this run (asset2vec tags train)"
            )
        try:
            th = {str(t): (None if v is None else float(v)) for t, v in dict(meta.get("thresholds") or {}).items()}
            return cls(model_id, bool(meta["use_size"]), int(meta["seed"]), dict(classifiers), dict(meta["report"]),
                       meta.get("descriptor"), float(meta.get("target_precision", DEFAULT_TARGET_PRECISION)),
                       {t: th.get(t) for t in classifiers}, merge_groups(meta.get("exclusive_groups") or []),
                       merge_groups(meta.get("declared_groups") or []),
                       {str(t): str(v) for t, v in dict(meta.get("sources") or {}).items()})
        except (KeyError, TypeError, ValueError) as e:
            raise LibraryError(f"{path}: a damaged tag model ({type(e).__name__}); {tag_store.RETRAIN_HINT}") from None
