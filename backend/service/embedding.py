"""Embedding an uploaded bundle: its code (instant encoder or inversion), tags and neighbours; then refinement.

When the served model has an instant encoder, :meth:`Embedding.embed` answers from it in one pass
(``code_source: "encoder"``) and hands a refinement by inversion to the ``followups`` queue it is given
(``refine_job`` in the answer); without a queue the refinement runs inline and the refined answer is
returned. A code is only ever stored under the model that made it: if the served model is switched
while a code is fitted, it is fitted again with the new model (embed) or dropped (refinement).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from backend.library.errors import LibraryError
from backend.library.tags import DEFAULT_THRESHOLD
from backend.numbers import finite_or_none
from shared import api, rig
from shared.bundle import AssetInfo, Bundle

from .errors import ServiceError
from .jobs import JobCancelled, ProgressFn
from .served import ServedModel, ServedState
from .tagging import answer_tags, predict
from .uploads import store_bundle

log = logging.getLogger(__name__)


RefineFn = Callable[[ProgressFn, threading.Event], "api.EmbedResult | api.RefineDropped"]
#: ``submit(kind, fn) -> job id``: queues ``fn(progress, cancel)`` as a background job (the service's queue,
#: behind every waiting upload). Raises ``ServiceError`` when it cannot (queue full, shutting down).
Followups = Callable[[str, RefineFn], str]


class Embedding:
    """Fits, tags and places uploaded assets in the served model (jobs of the service's queue)."""

    def __init__(self, served: ServedModel, invert_steps: int | None = None, refine_steps: int | None = None,
                 neighbours_k: int = 10) -> None:
        self.served, self.invert_steps, self.refine_steps = served, invert_steps, refine_steps
        self.neighbours_k = neighbours_k

    def embed(self, bundle: Bundle, progress: ProgressFn, cancel: threading.Event,
              followups: Followups | None = None) -> api.EmbedResult:
        """Fit the code of a validated bundle, tag it, find its neighbours, store it (with a library home, its
        views too: the next model trains on them). See the module docstring for the instant path."""
        t0 = time.perf_counter()
        served, info = self.served, bundle.asset
        thumb = bundle.image_bytes(api.THUMBNAIL_VIEW)
        if served.home is not None:
            store_bundle(bundle, served.home.bundles)
        activations: list[tuple[dict[str, np.ndarray], str] | None] = []  # the upload's, computed at most once

        def views_activations(at: float = 0.9) -> tuple[dict[str, np.ndarray], str] | None:
            if not activations:  # ``at``: the job's progress fraction when they are computed here
                progress(at, f"pretrained features of {bundle.asset.name!r}")
                activations.append(_activations(bundle))
            return activations[0]

        while True:
            state = served.state
            shape, texture, psnr, source = self._fit(state, bundle, progress, cancel, views_activations)
            # The feature is stored whenever the activations were computed (the feature encoder reads them too) and
            # computed for the models that use it.
            got = views_activations() if served.uses_appearance(state) else (activations[0] if activations else None)
            feature = None if got is None else _appearance(got)
            if cancel.is_set():
                raise JobCancelled()
            progress(0.92, "storing the code and finding similar assets")
            with served.swap_lock:
                if state is not served.state:
                    continue  # the model was switched meanwhile: fit again with the new one
                with served.catalogue.transaction():
                    aid = served.catalogue.upsert_asset(info, thumbnail=thumb)
                    served.catalogue.set_artist_tags(aid, info.tags)  # the bundle's tags replace the stored ones
                    served.catalogue.set_codes(state.model_id, {aid: (shape, texture, psnr)}, source=source)
                    if feature is not None:
                        served.catalogue.set_appearance(feature[0], {aid: feature[1:]})
                served.invalidate(state)
            break

        result = self._answer(state, aid, info, shape, texture, psnr, source, t0)
        if source == "encoder":
            init = np.concatenate([shape, texture])

            def refine_job(p: ProgressFn, c: threading.Event) -> api.EmbedResult | api.RefineDropped:
                return self.refine(bundle, state.model_id, init, p, c)

            if followups is None:  # no queue to wait in (the engine used directly): refine now
                refined = refine_job(lambda f, m: progress(0.92 + 0.07 * f, m), cancel)
                if isinstance(refined, api.EmbedResult):
                    result = dataclasses.replace(refined, instant_seconds=result.seconds)
            else:
                try:
                    result.refine_job = followups("refine", refine_job)
                except ServiceError as e:  # queue full / shutting down: the encoder's code stays
                    log.warning("the code of %s stays the instant encoder's: %s", info.name, e)
                    result.refine_error = str(e)
        progress(1.0, "done")
        return result

    def _fit(self, state: ServedState, bundle: Bundle, progress: ProgressFn, cancel: threading.Event,
             views_activations: Callable[[float], tuple[dict[str, np.ndarray], str] | None]
             ) -> tuple[np.ndarray, np.ndarray, float | None, str]:
        """``(shape, texture, psnr, code_source)`` of the bundle under ``state``'s model: the instant encoder's
        code when it has one (and it can read the views, or ``views_activations()`` gives the pretrained
        activations it reads), else inversion."""
        name = bundle.asset.name
        encoder = self.served.encoder(state) if len(bundle.frames) == rig.NUM_VIEWS else None
        if encoder is not None:
            progress(0.1, f"encoding {name!r} (instant encoder)")
            try:
                shape, texture = _encode(encoder, bundle, views_activations)
                return shape, texture, None, "encoder"
            except (ValueError, RuntimeError) as e:  # e.g. views it cannot read (a ModelError): inversion still can
                log.warning("instant encoder failed on %s, fitting by inversion: %s", name, e)
        progress(0.02, f"fitting the code of {name!r}")
        with self.served.decoder_lock:
            inverted = state.run.invert(
                [bundle],
                steps=self.invert_steps,
                progress=lambda f, m: progress(0.02 + 0.88 * float(f), m or "fitting the code"),
                cancel=cancel,
            )[0]
        shape = np.asarray(inverted.shape, np.float32).reshape(-1)
        texture = np.asarray(inverted.texture, np.float32).reshape(-1)
        return shape, texture, float(inverted.psnr), "inversion"

    def refine(self, bundle: Bundle, model_id: str, init: np.ndarray, progress: ProgressFn,
               cancel: threading.Event) -> api.EmbedResult | api.RefineDropped:
        """Replace an asset's instant-encoder code of ``model_id`` by inversion started from it (``init [D]``).

        Returns the refined answer (``code_source: "inversion"``, ``refined_from: "encoder"``); when a fitted
        code of the same content is stored already (an earlier refinement of the same upload won), the answer
        from that code. Returns :class:`~shared.api.RefineDropped` when there is nothing to refine any more:
        the backend serves another model now (the switch fitted that model's own code), or the asset was
        embedded again with other content.
        """
        t0 = time.perf_counter()
        served, info = self.served, bundle.asset
        state = served.state
        if state.model_id != model_id:
            return _dropped(info.name, model_id, f"the backend switched to model {state.model_id} meanwhile")
        todo, why = self._refine_state(info, model_id)
        if todo != "refine":
            return self._stored_answer(state, info, t0) if todo == "done" else _dropped(info.name, model_id, why)
        progress(0.02, f"refining the code of {info.name!r}")
        with served.decoder_lock:
            inverted = state.run.invert(
                [bundle],
                steps=self._refine_steps(state.run),
                progress=lambda f, m: progress(0.02 + 0.9 * float(f), m or "refining the code"),
                cancel=cancel,
                init=np.asarray(init, np.float32).reshape(1, -1),
            )[0]
        if cancel.is_set():
            raise JobCancelled()
        shape = np.asarray(inverted.shape, np.float32).reshape(-1)
        texture = np.asarray(inverted.texture, np.float32).reshape(-1)
        progress(0.94, "storing the refined code and finding similar assets")
        with served.swap_lock:
            if state is not served.state:
                return _dropped(info.name, model_id, f"the backend switched to model {served.state.model_id} while "
                                                     "refining")
            todo, why = self._refine_state(info, model_id)
            if todo != "refine":
                return self._stored_answer(state, info, t0) if todo == "done" else _dropped(info.name, model_id, why)
            aid = served.catalogue.asset_by_name(info.name).id
            served.catalogue.set_codes(model_id, {aid: (shape, texture, float(inverted.psnr))}, source="inversion")
            served.invalidate(state)
        result = self._answer(state, aid, info, shape, texture, float(inverted.psnr), "inversion", t0)
        progress(1.0, "refined")
        result.refined_from = "encoder"
        return result

    def _refine_steps(self, run: Any) -> int | None:
        """Inversion steps of a refinement: ``refine_steps``, else a share of the embed's (it starts close)."""
        if self.refine_steps:
            return self.refine_steps
        from backend.training.inversion import REFINE_SHARE

        full = self.invert_steps or getattr(getattr(getattr(run, "config", None), "train", None), "inversion_steps",
                                            None)
        return max(1, round(full * REFINE_SHARE)) if full else None

    def _refine_state(self, info: AssetInfo, model_id: str) -> tuple[str, str]:
        """What a refinement of ``info``'s encoder code of ``model_id`` should do: ``("refine", "")`` (the stored
        code is still an encoder code of this content), ``("done", "")`` (a fitted code of this content is stored
        already) or ``("drop", why)``."""
        catalogue = self.served.catalogue
        try:
            row = catalogue.asset_by_name(info.name)
        except LibraryError:
            return "drop", "the asset is no longer in the catalogue"
        if info.content_hash and row.content_hash and info.content_hash != row.content_hash:
            return "drop", "the asset was embedded again with other content"
        code = catalogue.code_info(row.id, model_id)
        if code is None:
            return "drop", f"the asset has no code of model {model_id}"
        return ("refine", "") if code["source"] == "encoder" else ("done", "")

    def _stored_answer(self, state: ServedState, info: AssetInfo, t0: float) -> api.EmbedResult:
        """The answer from the asset's stored (already fitted) code of the served model."""
        table = self.served.codes(state)
        row = table.index_of(info.name)
        psnr = float(table.psnr[row]) if table.psnr is not None else None
        aid = int(table.ids[row])
        source = (self.served.catalogue.code_info(aid, state.model_id) or {}).get("source", "inversion")
        result = self._answer(state, aid, info, table.shape[row], table.texture[row], psnr, source, t0)
        result.refined_from = "encoder"
        return result

    def _answer(self, state: ServedState, aid: int, info: AssetInfo, shape: np.ndarray, texture: np.ndarray,
                psnr: float | None, source: str, t0: float) -> api.EmbedResult:
        """Predict tags and find neighbours of a just-stored code (``shape``/``texture [D]``); the embed answer."""
        served = self.served
        predicted, proposed = predict(served.catalogue, state, aid, info, shape, texture)
        neighbours = {}
        for space in api.SPACES:
            found = served.index(space, state).similar(info.name, k=self.neighbours_k, exclude_self=True,
                                                       copies=True)
            served.catalogue.set_neighbours(state.model_id, space, {aid: [(n.asset_id, n.distance) for n in found]})
            neighbours[space] = served.describe(found)
        return api.EmbedResult(
            name=info.name,
            source_file=info.source_blend,
            asset_name=info.asset_name,
            content_hash=info.content_hash,
            model_id=state.model_id,
            shape=[float(x) for x in shape],
            texture=[float(x) for x in texture],
            psnr=finite_or_none(psnr),
            code_source=source,  # "encoder": instant, refined by the job "refine_job"; "inversion": fitted
            seconds=round(time.perf_counter() - t0, 3),
            predicted_tags={t: round(float(p), 4) for t, p in predicted.items()},
            proposed_tags={t: round(float(p), 4) for t, p in proposed.items()},
            threshold=DEFAULT_THRESHOLD,
            **answer_tags(served.catalogue, state, aid, info, predicted),  # per-tag thresholds, the artist's tags
            neighbours=neighbours,
            retrain_advice=served.retrain_advice(state),
            thumbnail_url=api.thumbnail_url(info.name),
        )


def _activations(bundle: Bundle) -> tuple[dict[str, np.ndarray], str] | None:
    """``(per-view pretrained activations {layer: [V, C]}, views digest)`` of an upload (the feature encoder's input,
    and issue 15's descriptor feature: its tags and "both" neighbours), or None when they cannot be computed (logged;
    the code then comes by inversion, and a descriptor model predicts no tags for it)."""
    from backend.features.library import bundle_view_features

    try:
        return bundle_view_features(bundle, use_cache=False)
    except Exception as e:  # noqa: BLE001 - the code is what an embed must answer; the feature is a plus
        log.warning("no appearance feature for %s: %s", bundle.asset.name, e)
        return None


def _appearance(activations: tuple[dict[str, np.ndarray], str]) -> tuple[str, np.ndarray, str]:
    """``(feature name, vector, views digest)`` of an upload's activations: what the catalogue stores."""
    from backend.features.library import FEATURE, pooled_feature

    return FEATURE, pooled_feature(activations[0]), activations[1]


def _dropped(name: str, model_id: str, why: str) -> api.RefineDropped:
    log.info("not refining %s: %s", name, why)
    return api.RefineDropped(name=name, model_id=model_id, message=f"nothing to refine: {why}")


def _encode(encoder: Any, bundle: Bundle, views_activations: Callable[[float], tuple[dict[str, np.ndarray], str] | None]
            ) -> tuple[np.ndarray, np.ndarray]:
    """The instant encoder's code of one bundle (all 18 rig views): ``(shape [Ds], texture [Dt])`` float32.
    A feature encoder reads the upload's pretrained activations (``views_activations()``, computed once per embed)."""
    if getattr(encoder, "kind", "views") == "feature":
        got = views_activations(0.1)  # before the code: early in the job
        if got is None:
            raise ValueError("the upload has no pretrained activations for the feature encoder")
        z = encoder.encode_views([got[0]])[0]
    else:
        from backend.training.encoder import views_tensor

        z = encoder.encode(views_tensor([bundle], encoder.net.config["image_size"]))[0]
    return z[: encoder.shape_dim].copy(), z[encoder.shape_dim :].copy()
