"""The tag review queue: ask the artist about the predictions the classifiers are least sure of.

Every answer is stored in the catalogue (``reviews``; an accepted tag also becomes an artist tag)
and the answered tag's classifier is retrained on it (the only one whose labels it changes; see
:func:`refit_answered_tag`), so the next prediction, and the next question, already reflect it.
A library thereby needs few hand-tagged assets to get good tags.

Training labels (see :func:`training_labels` and :func:`backend.library.tags.tag_labels`):

* positives: artist tags, accepted answers included;
* negatives: explicit rejections (even on an asset with no other tag), and assets tagged by the
  artist (tags not only from review answers) that lack the tag;
* anything else is unlabelled (an asset known only through a few answers is not a negative for
  every tag nobody asked about).

The queue asks only about tags the classifiers learnt (issue 17: a tag seen on one asset, like
"mine-wood", is never asked about; it joins the vocabulary once artists tag enough assets with it),
and first about the predictions closest to the decision that will be made with them: a tag's calibrated
write threshold, or 0.5 for a suggestion-only tag. :func:`new_tag_questions` (asking about tags too rare
to learn) is still there for callers that want it (``new_tags=True``).

Plain functions (no bpy, no torch): the CLI (``asset2vec tags review``), the service
(``/v1/review``) and the benchmark (``bench/lifecycle.py``) call them.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalogue import Catalogue, CodeTable
from .errors import LibraryError
from .tag_decisions import SUGGEST_THRESHOLD
from .tags import MIN_EXAMPLES, TagModel, features, tag_labels

log = logging.getLogger(__name__)

#: Questions shown at once by default.
DEFAULT_LIMIT = 10


@dataclass
class TrainingLabels:
    """Row-aligned labels for :meth:`TagModel.fit`: ``tag_sets`` (None = never tagged), ``rejected``, ``partial``."""

    tag_sets: list[set[str] | None]
    rejected: list[set[str]]
    partial: list[bool]  # True: the asset's tags are only accepted review answers (not a full tagging)

    def fit_kwargs(self) -> dict[str, Any]:
        return {"rejected": self.rejected, "partial": self.partial}


def training_labels(catalogue: Catalogue, asset_ids: np.ndarray | list[int]) -> TrainingLabels:
    """Artist tags, review rejections and which assets are only partially labelled, per asset id."""
    ids = [int(a) for a in asset_ids]
    tag_sets = catalogue.artist_tag_sets(ids)
    answers = catalogue.review_answers(ids)
    rejected = [{t for t, ok in a.items() if not ok} for a in answers]
    accepted = [{t for t, ok in a.items() if ok} for a in answers]
    partial = [s is not None and s <= acc for s, acc in zip(tag_sets, accepted, strict=True)]
    return TrainingLabels(tag_sets, rejected, partial)


def fit_tag_model(
    catalogue: Catalogue,
    model_id: str,
    table: CodeTable | None = None,
    use_size: bool = True,
    min_examples: int = MIN_EXAMPLES,
    seed: int = 0,
    cross_validate: bool = True,
    target_precision: float | None = None,
    declared_groups: list[list[str]] | None = None,
    previous: TagModel | None = None,
    descriptor: bool = True,
) -> tuple[TagModel, dict[str, dict[str, Any]]]:
    """A new tag model trained on the catalogue's artist tags and review answers (codes of ``model_id``).

    Raises :class:`LibraryError` when nothing is labelled; tags with too few examples are reported as skipped.
    ``target_precision`` / ``declared_groups`` default to ``previous``'s (the tag model being replaced), else
    the defaults; without ``cross_validate`` the write thresholds are carried over from ``previous``.

    With ``descriptor`` (and ``use_size``), when every asset of ``table`` has a stored appearance feature
    (:mod:`backend.features.library`, filled by ``asset2vec index`` and the service's Embed), the classifiers learn
    from issue 15's descriptor (appearance + codes + size; the fitted descriptor is stored with the model); else
    from the codes (+ size), as before.
    """
    table = table if table is not None else catalogue.codes(model_id)
    labels = training_labels(catalogue, table.ids)
    model = TagModel(model_id, use_size=use_size, seed=seed)
    appearance = library_appearance(catalogue, table) if descriptor and use_size else None
    if appearance is not None:
        from backend.features.library import fit_descriptor

        model.descriptor = fit_descriptor(table, appearance)
    if previous is not None:
        model.target_precision = previous.target_precision
        model.declared_groups = list(previous.declared_groups)
        if not cross_validate and model.descriptor is not None:
            model.sources = dict(previous.sources)  # which inputs each tag reads: chosen by the last cross-validation
    report = model.fit(table.shape, table.texture, labels.tag_sets, table.size, min_examples=min_examples,
                       cross_validate=cross_validate, target_precision=target_precision,
                       declared_groups=declared_groups, appearance=appearance, **labels.fit_kwargs())
    if not cross_validate:
        model.keep_calibration(previous)
    return model, report


def predict_catalogue(catalogue: Catalogue, model: TagModel, asset_ids: list[int] | None = None) -> int:
    """Predict tags for the catalogue's assets with codes of ``model.model_id`` (or only ``asset_ids``); store them.

    Returns the number of assets predicted (0 when the model has no trained tag).
    """
    if not model.classifiers:
        return 0
    table = catalogue.codes(model.model_id)
    if asset_ids is not None:
        wanted = {int(a) for a in asset_ids}
        table = table.subset([i for i, a in enumerate(table.ids) if int(a) in wanted])
        if not len(table):
            return 0
    table, probs = predict_table(catalogue, model, table)
    catalogue.set_predicted_tags(model.model_id, {int(a): p for a, p in zip(table.ids, probs, strict=True)})
    return len(table)


def library_appearance(catalogue: Catalogue, table: CodeTable) -> np.ndarray | None:
    """The stored appearance feature of every asset of ``table`` (``[N, D]``), or None when some asset has none."""
    if catalogue.count("appearance") == 0:  # no feature stored at all: keep torch out of codes-only libraries
        return None
    from backend.features.library import table_appearance

    return table_appearance(catalogue, table)


def tag_inputs(catalogue: Catalogue, model: TagModel, table: CodeTable) -> tuple[CodeTable, np.ndarray | None]:
    """What ``model`` predicts from, for ``table``'s assets: ``(table, None)`` for a codes-only model; for a
    descriptor model the assets that have its appearance feature stored and their features (an asset without one,
    e.g. whose feature failed, gets no prediction from it: logged)."""
    if model.descriptor is None:
        return table, None
    from backend.features.library import descriptor_feature

    vectors, has = catalogue.appearance(descriptor_feature(model.descriptor), table.ids)
    if not has.all():
        log.warning("%d asset(s) have no appearance feature: no tag prediction for them (e.g. %s); run asset2vec "
                    "index", int((~has).sum()), table.names[int(np.flatnonzero(~has)[0])])
        table = table.subset(np.flatnonzero(has).tolist())
    return table, (vectors if len(table) else None)


def predict_table(catalogue: Catalogue, model: TagModel, table: CodeTable, tags: list[str] | None = None
                  ) -> tuple[CodeTable, list[dict[str, float]]]:
    """``(predicted rows of table, [{tag: p}])``: ``model``'s predictions with its inputs (:func:`tag_inputs`)."""
    table, appearance = tag_inputs(catalogue, model, table)
    if not len(table):
        return table, []
    return table, model.predict(table.shape, table.texture, table.size if model.use_size else None,
                                appearance=appearance, tags=tags)


def ensure_predictions(catalogue: Catalogue, model: TagModel | None) -> int:
    """Predict the assets that have a code of the model but no prediction yet; returns how many."""
    if model is None or not model.classifiers:
        return 0
    missing = catalogue.unpredicted_ids(model.model_id)
    return predict_catalogue(catalogue, model, missing) if missing else 0


#: Stored predictions considered for re-ranking by decision boundary (the closest to 0.5 first).
QUEUE_CANDIDATES = 20000


def review_queue(catalogue: Catalogue, model_id: str, limit: int = DEFAULT_LIMIT,
                 exclude: list[tuple[int, str]] | tuple = (), new_tags: bool = False,
                 model: TagModel | None = None) -> list[dict[str, Any]]:
    """The ``(asset, tag)`` questions whose answers change most what is written, most uncertain first.

    Only the classifiers' stored predictions of learnt tags (``learnt`` True): a tag with fewer examples
    than the classifiers need is never asked about (issue 17). With the current tag ``model``, only its
    tags are asked about and each prediction is ranked by its distance to the tag's write threshold (0.5
    for a suggestion-only tag); without it, by ``|probability - 0.5|``. ``new_tags`` adds questions
    about tags too rare to learn (:func:`new_tag_questions`, ``learnt`` False; off by default). Pairs
    already answered or already artist tags are left out, and ``exclude`` (``(asset_id, tag)``, e.g.
    skipped). Items: ``name``, ``asset_id``, ``tag``, ``probability``, ``source_file``, ``asset_name``,
    ``learnt``, ``boundary``.
    """
    if limit < 1:
        raise LibraryError(f"the review queue needs a limit of at least 1, got {limit}")
    fetch = limit if model is None else max(limit, QUEUE_CANDIDATES)
    items = [{**it, "learnt": True} for it in catalogue.uncertain_predictions(model_id, fetch, exclude)]
    if model is not None:
        items = [it for it in items if it["tag"] in model.classifiers]
    for it in items:
        th = model.thresholds.get(it["tag"]) if model is not None else None
        it["boundary"] = SUGGEST_THRESHOLD if th is None else float(th)
    if new_tags:
        items += [{**it, "boundary": SUGGEST_THRESHOLD} for it in new_tag_questions(catalogue, model_id,
                                                                                    exclude=exclude)]
    items.sort(key=lambda it: (abs(it["probability"] - it["boundary"]), it["name"], it["tag"]))
    return items[:limit]


def new_tag_questions(catalogue: Catalogue, model_id: str, per_tag: int = 2, min_examples: int = MIN_EXAMPLES,
                      exclude: list[tuple[int, str]] | tuple = ()) -> list[dict[str, Any]]:
    """Questions about tags the artist uses but the classifiers cannot learn yet (too few examples).

    For each such tag, the ``per_tag`` unlabelled assets most likely to be positives (or, when the
    tag lacks negatives, most likely to be negatives), by a similarity vote of their ``k`` nearest
    labelled assets in standardised code (+ log size) space: ``p = (sum w*y + 0.5) / (sum w + 1)``,
    ``w = exp(-d^2 / 2 s^2)`` with ``s`` the library's median nearest-neighbour distance. This
    provisional probability orders them among the classifiers' predictions.
    """
    try:
        table = catalogue.codes(model_id)
    except LibraryError:  # no codes of this model yet: nothing to compare
        return []
    labels = training_labels(catalogue, table.ids)
    used = set().union(*(s for s in labels.tag_sets if s is not None))
    cold = sorted(used - catalogue.predicted_tag_names(model_id))
    if not cold or len(table) < 2:
        return []
    x = features(table.shape, table.texture, table.size)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    probe = np.random.default_rng(0).permutation(len(x))[:2000]  # a sample is plenty for a median
    scale = float(np.median(_knn(x[probe], x, 2)[0][:, 1])) or 1.0
    skip = {(int(a), t) for a, t in exclude}
    out: list[dict[str, Any]] = []
    for tag in cold:
        rows, y = tag_labels(tag, labels.tag_sets, labels.rejected, labels.partial)
        pos, neg = int(y.sum()), int(len(y) - y.sum())
        if pos == 0 or min(pos, neg) >= min_examples:
            continue
        free = np.setdiff1d(np.arange(len(table)), rows)
        free = np.array([i for i in free if (int(table.ids[i]), tag) not in skip], dtype=np.int64)
        if not len(free):
            continue
        k = min(5, len(rows))
        dist, idx = _knn(x[free], x[rows], k)
        w = np.exp(-(dist**2) / (2 * scale**2))
        p = ((w * y[idx]).sum(1) + 0.5) / (w.sum(1) + 1.0)
        # Short of positives: ask the likeliest; short of negatives only: ask the least likely.
        best = np.argsort(-p if pos < min_examples else p, kind="stable")[:per_tag]
        for b in best:
            row = catalogue.asset_by_name(table.names[free[b]])
            out.append({"name": row.name, "asset_id": row.id, "tag": tag, "probability": float(p[b]),
                        "source_file": row.source_blend, "asset_name": row.asset_name, "learnt": False})
    return out


def record_answer(catalogue: Catalogue, asset: int | str, tag: str, accepted: bool) -> None:
    """Store an answer; an accepted tag becomes an artist tag, a rejection never removes one."""
    catalogue.record_review(asset, tag, accepted)


def probability_of(catalogue: Catalogue, model_id: str, asset: int | str, tag: str) -> float | None:
    """The stored predicted probability of ``tag`` for ``asset`` under ``model_id`` (None if not predicted)."""
    return catalogue.tags_of(asset, model_id)["probabilities"].get(tag)


def answer_and_retrain(
    catalogue: Catalogue,
    model_id: str,
    name: str,
    tag: str,
    accepted: bool,
    use_size: bool = True,
    min_examples: int = MIN_EXAMPLES,
    seed: int = 0,
    previous: TagModel | None = None,
) -> tuple[TagModel | None, dict[str, Any]]:
    """Store an answer, retrain what it changes and refresh the stored predictions of ``model_id``.

    Returns ``(new tag model or None, summary)``; the summary has ``name``, ``tag``, ``accepted``,
    ``previous_probability``, ``probability`` (after retraining; None if the tag is not learnt),
    ``retrained`` and a ``message``. When retraining is not possible yet (too few examples) the answer
    is still stored and the model is None.

    With ``previous`` (the tag model being replaced, of ``model_id``), an answer changes only the answered tag's
    labels, so only that tag's classifier is retrained, cross-validated (its write threshold is calibrated anew)
    and predicted again; every other classifier, threshold and stored prediction stays as it is, and the exclusive
    groups are learnt again (:func:`refit_answered_tag`). Without it, every classifier is retrained without
    cross-validation and every tag is a suggestion only until the next ``tags train``.
    """
    catalogue.asset_by_name(name)  # an unknown name raises LibraryError with close matches
    tag = (tag or "").strip()
    before = probability_of(catalogue, model_id, name, tag)
    record_answer(catalogue, name, tag, accepted)
    summary: dict[str, Any] = {"name": name, "tag": tag, "accepted": bool(accepted),
                               "previous_probability": before, "probability": None, "retrained": False}
    if previous is not None and previous.model_id == model_id and previous.classifiers and _refittable(catalogue, previous):
        model = refit_answered_tag(catalogue, previous, tag, min_examples=min_examples)
        summary.update(retrained=True, probability=probability_of(catalogue, model_id, name, tag))
        summary["message"] = _change_message(summary)
        return model, summary
    try:
        model, _ = fit_tag_model(catalogue, model_id, use_size=use_size, min_examples=min_examples, seed=seed,
                                 cross_validate=False, previous=previous)
    except LibraryError as e:
        summary["message"] = f"answer stored; the tag classifiers cannot be trained yet: {e}"
        return None, summary
    if not model.classifiers:
        summary["message"] = "answer stored; no tag has enough examples to learn yet"
        return None, summary
    predict_catalogue(catalogue, model)
    summary.update(retrained=True, probability=probability_of(catalogue, model_id, name, tag))
    summary["message"] = _change_message(summary)
    return model, summary


def refit_answered_tag(catalogue: Catalogue, previous: TagModel, tag: str, min_examples: int = MIN_EXAMPLES
                       ) -> TagModel:
    """A copy of ``previous`` with only ``tag``'s classifier retrained on the catalogue's current labels (and its
    stored predictions replaced); ``previous`` itself is never changed (the service may be reading it)."""
    model = dataclasses.replace(previous, classifiers=dict(previous.classifiers), report=dict(previous.report),
                                thresholds=dict(previous.thresholds), exclusive_groups=list(previous.exclusive_groups),
                                declared_groups=list(previous.declared_groups), sources=dict(previous.sources))
    # A descriptor model learns from the assets that have its appearance feature (the stored descriptor is kept:
    # it is the library's normalisation, not refitted for one answer).
    table, appearance = tag_inputs(catalogue, model, catalogue.codes(model.model_id))
    labels = training_labels(catalogue, table.ids)
    size = table.size if model.use_size else None
    model.refit([tag], table.shape, table.texture, labels.tag_sets, size, min_examples=min_examples,
                appearance=appearance, **labels.fit_kwargs())
    if tag in model.classifiers:
        probs = model.predict(table.shape, table.texture, size, appearance=appearance, tags=[tag])
        catalogue.set_tag_predictions(model.model_id, tag, {int(a): p[tag] for a, p in zip(table.ids, probs,
                                                                                            strict=True)})
    elif tag in previous.classifiers:  # no longer learnable: its old predictions go
        catalogue.set_tag_predictions(model.model_id, tag, {})
    return model


def _refittable(catalogue: Catalogue, model: TagModel) -> bool:
    """Whether one tag of ``model`` can be retrained in place: a codes-only model always; a descriptor model when
    its appearance features are stored for the catalogue's assets (else the whole model is trained anew)."""
    if model.descriptor is None:
        return True
    try:
        table, appearance = tag_inputs(catalogue, model, catalogue.codes(model.model_id))
    except LibraryError:
        return False
    return appearance is not None and len(table) > 0


def _change_message(summary: dict[str, Any]) -> str:
    verb = "accepted" if summary["accepted"] else "rejected"
    p0, p1 = summary["previous_probability"], summary["probability"]
    return f"{verb} {summary['tag']!r} for {summary['name']}; retrained: probability {_pct(p0)} -> {_pct(p1)}"


def _pct(p: float | None) -> str:
    return "-" if p is None else f"{p:.0%}"


def _knn(query: np.ndarray, points: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean ``k`` nearest ``points [M, D]`` of each ``query [Q, D]``: ``(dist [Q, k], index [Q, k])``, nearest first.

    Plain numpy in chunks of queries (bounded memory; sklearn's per-call thread start-up costs more here).
    """
    k = min(k, len(points))
    pp = (points**2).sum(1)
    dists, idxs = [], []
    for s0 in range(0, len(query), chunk):
        q = query[s0 : s0 + chunk]
        d2 = np.maximum((q**2).sum(1)[:, None] + pp[None, :] - 2.0 * q @ points.T, 0.0)
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < len(points) else np.tile(np.arange(k), (len(q), 1))
        d = np.take_along_axis(d2, part, 1)
        order = np.argsort(d, axis=1, kind="stable")
        idxs.append(np.take_along_axis(part, order, 1))
        dists.append(np.sqrt(np.take_along_axis(d, order, 1)))
    return np.concatenate(dists), np.concatenate(idxs)
