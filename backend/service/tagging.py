"""Tags on the served model: the tag classifiers (load, train), predictions for an embed, the review queue.

The classifiers belong to one served model (:class:`~backend.service.served.ServedState`); training
and review answers retrain them one at a time (a lock), while predictions for an embed read the
state's current classifiers.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.library.catalogue import Catalogue
from backend.library.errors import CatalogueBusy, LibraryError
from backend.library.review import (
    answer_and_retrain,
    ensure_predictions,
    fit_tag_model,
    predict_table,
    review_queue,
)
from backend.library.tags import TagModel, tag_status
from shared import api
from shared.bundle import AssetInfo

from .errors import NotFound, ServiceError
from .jobs import JobCancelled, ProgressFn

if TYPE_CHECKING:
    from .served import ServedModel, ServedState

log = logging.getLogger(__name__)

#: What ``POST /v1/train`` can train on a serving backend (decoder training is ``asset2vec train``).
TRAINABLE = ("tags",)


def fit_tags(catalogue: Catalogue, state: ServedState, target_precision: float | None = None
             ) -> tuple[TagModel, dict[str, Any]]:
    """Tag classifiers on one served model's codes (read once: a switch meanwhile cannot mix models); saved
    beside the model when it has a tag model path."""
    # Artist tags + review answers (rejections: negatives); the replaced model's target precision and
    # declared exclusive groups carry over unless ``target_precision`` (the server's setting) is given.
    model, report = fit_tag_model(catalogue, state.model_id, previous=state.tag_model,
                                  target_precision=target_precision)
    if not model.classifiers:
        raise LibraryError("no tag has enough examples to learn yet (see the report)")
    if state.tag_model_path is not None:
        model.save(state.tag_model_path)
    return model, report


def load_or_train_tags(catalogue: Catalogue, state: ServedState, target_precision: float | None = None
                       ) -> TagModel | None:
    """The saved tag model of a served model, or a new one trained from the catalogue's artist tags
    (None while no tag has enough examples)."""
    if state.tag_model_path is not None and state.tag_model_path.is_file():
        try:
            return TagModel.load(state.tag_model_path, expect_model=state.model_id)
        except CatalogueBusy:
            raise
        except LibraryError as e:  # e.g. an old pickled file (never unpickled): learn the tags again
            log.warning("retraining the tag classifiers: %s", e)
    try:
        model, _ = fit_tags(catalogue, state, target_precision)
    except LibraryError as e:
        log.warning("no tag predictions until artists tag more assets: %s", e)
        return None
    return model


def predict(catalogue: Catalogue, state: ServedState, aid: int, info: AssetInfo, shape: np.ndarray,
            texture: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """``(predicted, proposed)`` tags of a just-stored code; the prediction is stored in the catalogue.

    ``proposed``: the tags to write, computed once here (the add-on writes them back as they are): each at or
    over its tag's calibrated write threshold, at most one per exclusive group, not yet a tag of the asset
    (:meth:`TagModel.decide`; the asset's tags are the catalogue's artist tags, review acceptances included)."""
    model = state.tag_model
    if model is None:
        return {}, {}
    size = np.asarray(info.size, np.float32).reshape(1, 3)
    appearance = None
    if model.descriptor is not None:  # the upload's feature was stored with its code (Embedding.embed)
        from backend.features.library import descriptor_feature

        vectors, has = catalogue.appearance(descriptor_feature(model.descriptor), [aid])
        if not has.all():
            log.warning("no tag prediction for %s: its appearance feature could not be computed", info.name)
            return {}, {}
        appearance = vectors
    try:
        predicted = model.predict(shape[None], texture[None], size, appearance=appearance)[0]
    except LibraryError as e:  # e.g. a descriptor of another feature version: the tags need training again
        log.warning("no tag prediction for %s: %s", info.name, e)
        return {}, {}
    proposed = model.decide(predicted, _artist_tags(catalogue, aid, info)).write
    catalogue.set_predicted_tags(state.model_id, {aid: predicted})
    return predicted, proposed


def answer_tags(catalogue: Catalogue, state: ServedState, aid: int, info: AssetInfo, predicted: dict[str, float]
                ) -> dict[str, Any]:
    """The embed answer's per-tag facts (``api.EmbedResult`` fields): ``write_thresholds`` (per predicted tag; None:
    suggested only), ``suggested_tags``, ``tag_reasons`` and ``artist_tags`` (the catalogue's, review acceptances
    included: a later answer must never remove them from the artist's file)."""
    artist = _artist_tags(catalogue, aid, info)
    out: dict[str, Any] = {"artist_tags": sorted(artist)}
    model = state.tag_model
    if model is None or not predicted:
        return out
    decision = model.decide(predicted, artist)
    out.update(write_thresholds={t: _rounded(model.thresholds.get(t)) for t in sorted(predicted)},
               suggested_tags={t: round(float(p), 4) for t, p in decision.suggest.items()},
               tag_reasons=dict(decision.reasons))
    return out


def _artist_tags(catalogue: Catalogue, aid: int, info: AssetInfo) -> set[str]:
    """The asset's own tags: what it was sent with plus the catalogue's (imported lists, review acceptances)."""
    return set(info.tags) | catalogue.artist_tags([aid]).get(int(aid), set())


def _rounded(th: float | None) -> float | None:
    # Floored to the wire's 4 places: a probability at or over the threshold stays so once rounded for the wire.
    return None if th is None else float(np.floor(th * 1e4) / 1e4)


class Tagging:
    """Training the tag classifiers while serving, and the artist's review of their predictions."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self._lock = threading.Lock()  # one retraining of the classifiers at a time (train or review answer)

    def train(self, progress: ProgressFn, cancel: threading.Event) -> api.TrainResult:
        """Retrain the tag classifiers on the artists' tags and predict every catalogued asset again."""
        catalogue = self.served.catalogue
        progress(0.05, "training tag classifiers on the artists' tags")
        state = self.served.state
        with self._lock:
            model, report = fit_tags(catalogue, state, self.served.tag_target)
            if cancel.is_set():
                raise JobCancelled()
            progress(0.8, "predicting tags for the catalogue")
            table, preds = predict_table(catalogue, model, catalogue.codes(state.model_id))
            catalogue.set_predicted_tags(state.model_id, {int(i): p for i, p in zip(table.ids, preds, strict=True)})
            state.tag_model = model
            state.appearance = None
        trained = [t for t, r in report.items() if r.get("status") == "trained"]
        return api.TrainResult(what="tags", model_id=state.model_id, trained=trained, assets=len(table), report=report)

    def review_queue(self, limit: int = 10) -> api.ReviewQueue:
        """The tag predictions the classifiers are least sure of, most uncertain first, for the artist to answer;
        ``message`` says why the queue is empty (no tags yet, or everything answered)."""
        state = self.served.state
        catalogue = self.served.catalogue
        with self._lock:
            ensure_predictions(catalogue, state.tag_model)  # e.g. training assets, never predicted
        items = [_item(i) for i in review_queue(catalogue, state.model_id, limit, model=state.tag_model)]
        return api.ReviewQueue(model_id=state.model_id, items=items, message="" if items else self._empty(state))

    def _empty(self, state: ServedState) -> str:
        if state.tag_model is None or not state.tag_model.classifiers:
            return tag_status(self.served.catalogue, trained_tags=[])["message"] or "no tag predictions yet"
        return "nothing to review: every tag prediction is answered or already an artist tag"

    def review_answer(self, name: str, tag: str, accept: bool, limit: int = 10) -> api.ReviewResult:
        """Store the artist's answer, retrain the answered tag's classifier on it and refresh its predictions (the
        other classifiers stay as they are: :func:`backend.library.review.refit_answered_tag`).

        The result has the asset's new ``probability`` of the tag and the next ``queue`` items. An unknown
        asset is :class:`NotFound`.
        """
        state = self.served.state
        catalogue = self.served.catalogue
        try:
            catalogue.asset_by_name(name)
        except CatalogueBusy:
            raise  # the service answers 503 + Retry-After: retrying helps, not another request
        except LibraryError as e:
            raise NotFound(str(e)) from None
        with self._lock:
            use_size = state.tag_model.use_size if state.tag_model is not None else True
            try:
                model, summary = answer_and_retrain(catalogue, state.model_id, name, tag, accept, use_size=use_size,
                                                    previous=state.tag_model)
            except CatalogueBusy:
                raise  # the service answers 503 + Retry-After: retrying helps, not another request
            except LibraryError as e:
                raise ServiceError(str(e), 422) from None
            if model is not None:
                if state.tag_model_path is not None:
                    model.save(state.tag_model_path)
                state.tag_model = model
                state.appearance = None
        queue = self.review_queue(limit)
        return api.ReviewResult(
            name=summary["name"], tag=summary["tag"], accepted=summary["accepted"], model_id=state.model_id,
            previous_probability=summary["previous_probability"], probability=summary["probability"],
            retrained=summary["retrained"], message=summary.get("message", ""), queue=queue.items,
            queue_message=queue.message, thumbnail_url=api.thumbnail_url(summary["name"]))


def _item(row: dict[str, Any]) -> api.ReviewItem:
    return api.ReviewItem(name=row["name"], tag=row["tag"], probability=float(row["probability"]),
                          asset_id=int(row["asset_id"]), source_file=row.get("source_file") or "",
                          asset_name=row.get("asset_name") or "", learnt=bool(row.get("learnt", True)),
                          thumbnail_url=api.thumbnail_url(row["name"]))
