"""The glue between HTTP and the model/library: invert codes, predict tags, find neighbours.

:class:`Engine` wraps a trained run (:func:`backend.training.run.load_run`) and the asset
catalogue (:class:`backend.library.catalogue.Catalogue`). Jobs call :meth:`Engine.embed` and
:meth:`Engine.train` from the queue's single worker thread; :meth:`Engine.neighbours` and
:meth:`Engine.thumbnail` answer directly from request threads (the catalogue is thread-safe; any
use of the decoder is serialised by a lock so a thumbnail render never races an inversion).

The backend never touches the artist's files: uploads are unpacked into a private temporary
folder, and everything it stores lives in its own folders: the run folder (catalogue, tag model)
or, serving a library home (:meth:`Engine.open_home`), the home (catalogue, uploaded views in
``bundles/``, one folder per model). With a home the served model can be switched atomically
(:meth:`Engine.switch`, :meth:`Engine.rebuild` in the background, :meth:`Engine.restore`): every
query reads the served state once, so no answer mixes two models.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.library.catalogue import Catalogue, CodeTable, import_run
from backend.library.errors import LibraryError
from backend.library.review import answer_and_retrain, ensure_predictions, review_queue, training_labels
from backend.library.similarity import SimilarityIndex
from backend.library.tags import DEFAULT_THRESHOLD, TagModel, tag_status
from shared import rig
from shared.bundle import Bundle, read_bundle

from .errors import NotFound, ServiceError
from .jobs import JobCancelled

log = logging.getLogger(__name__)

SPACES = ("shape", "texture", "both")
#: The rig view used as an asset's thumbnail: middle ring (35 degrees down), a three-quarter view.
THUMBNAIL_VIEW = 7
THUMBNAIL_SIZE = 96
#: Same file names as the library CLI (backend.commands.library), so CLI and service share catalogue and tag model.
CATALOGUE_FILE = "catalogue.sqlite"
TAG_MODEL_FILE = "tags.joblib"
#: A refinement starts from the encoder's code, so it takes this share of the inversion steps (6 held-out assets
#: of the starter model: 50 steps from the encoder's code reached 29.2 dB, the full 150 from the mean code 28.9 dB).
REFINE_SHARE = 1 / 3
#: The instant encoder of a run (``backend.training.encoder.ENCODER_FILE``, named here to keep torch out).
ENCODER_FILE = "encoder.pt"
#: What ``POST /v1/train`` can train on a serving backend (decoder training is ``asset2vec train``).
TRAINABLE = ("tags",)
#: ... and on a backend serving a library home (a new decoder, built in the background, then switched to).
TRAINABLE_HOME = ("tags", "decoder")
#: A decoder retrained on fewer stored assets than this would be worse than the one serving.
MIN_RETRAIN_ASSETS = 8

ProgressFn = Callable[[float, str], None]
#: ``submit(kind, fn) -> job id``: queues ``fn(progress, cancel)`` as a background job (set by the app).
FollowupFn = Callable[[str, Callable[[ProgressFn, threading.Event], dict[str, Any]]], str]


@dataclass
class _Served:
    """Everything that depends on the served model. A model switch replaces this one object, and every
    query reads it once, so no answer ever mixes two models' codes."""

    run: Any
    model_id: str
    generic: bool
    tag_model_path: Path | None
    tag_model: TagModel | None = None
    indexes: dict[str, SimilarityIndex] = field(default_factory=dict)


class Engine:
    """A trained run + its catalogue (+ a tag model), serving embeddings and queries.

    ``run``: a ``TrainedRun`` (fields ``model_id``, ``preset``, ``names``, ``shape_codes``, ...,
    methods ``invert`` and ``render``). ``catalogue``: holds the run's codes (imported if missing)
    and every embedded asset. ``tag_model_path``: where the tag classifiers live (trained from
    the catalogue's artist tags when missing). ``invert_steps``: inversion steps (None: preset).
    """

    def __init__(
        self,
        run: Any,
        catalogue: Catalogue,
        tag_model_path: str | Path | None = None,
        invert_steps: int | None = None,
        neighbours_k: int = 10,
        device: str | None = None,
        generic: bool = False,
        home: Any = None,
        instant: bool = True,
        refine_steps: int | None = None,
    ) -> None:
        self.catalogue, self.home = catalogue, home
        # Instant embedding: a model with an encoder answers from it, then inversion refines the code.
        self.instant, self.refine_steps = instant, refine_steps
        #: Queues a refinement as a job of the service's queue (the app sets it); None: refine inline.
        self.submit_followup: FollowupFn | None = None
        self._encoder_warned: set[str] = set()
        self.trainable = TRAINABLE  # what POST /v1/train may ask for
        if home is not None:
            self.trainable = TRAINABLE_HOME
        self.invert_steps, self.neighbours_k = invert_steps, neighbours_k
        self.device = device or str(getattr(run, "device", "") or _default_device())
        self._state = _Served(run, str(run.model_id), generic, Path(tag_model_path) if tag_model_path else None)
        self._swap_lock = threading.RLock()  # a model switch vs. an embed storing its code
        self._switch_lock = threading.Lock()  # one model switch at a time
        self._model_lock = threading.Lock()  # the decoder: inversion and rendering, one at a time
        self._index_lock = threading.Lock()
        self._review_lock = threading.Lock()  # one review answer retrains the tag classifiers at a time
        self._ensure_catalogue()
        self.tag_model = self._load_or_train_tags()

    # The served model's parts, read from the current state (a switch replaces them all at once).
    @property
    def run(self) -> Any:
        return self._state.run

    @property
    def model_id(self) -> str:
        return self._state.model_id

    @property
    def generic(self) -> bool:
        return self._state.generic

    @property
    def tag_model_path(self) -> Path | None:
        return self._state.tag_model_path

    @property
    def tag_model(self) -> TagModel | None:
        return self._state.tag_model

    @tag_model.setter
    def tag_model(self, model: TagModel | None) -> None:
        self._state.tag_model = model

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        catalogue_path: str | Path | None = None,
        invert_steps: int | None = None,
        device: str | None = None,
        generic: bool = False,
        instant: bool = True,
        refine_steps: int | None = None,
    ) -> Engine:
        """Load ``run_dir`` and its catalogue (default ``RUN_DIR/catalogue.sqlite``).

        ``instant``: answer from the run's instant encoder when it has one (then refine in the background).
        """
        from backend.training.run import load_run  # torch: imported only when serving a real run

        run_dir = Path(run_dir)
        kwargs = {"device": device} if device else {}
        run = load_run(run_dir, **kwargs)
        catalogue = Catalogue(catalogue_path or run_dir / CATALOGUE_FILE, expect_model=run.model_id)
        return cls(run, catalogue, run_dir / TAG_MODEL_FILE, invert_steps=invert_steps, device=device,
                   generic=generic, instant=instant, refine_steps=refine_steps)

    def close(self) -> None:
        """Close the catalogue (called on server shutdown)."""
        self.catalogue.close()

    # -- set-up -------------------------------------------------------------------------------

    def _ensure_catalogue(self) -> None:
        """Import the run's training codes when the catalogue has none of this model yet."""
        self.catalogue.check_model(self.model_id)
        if not self._code_count():
            log.info("importing %d training assets of model %s into the catalogue", len(self.run.names), self.model_id)
            import_run(self.catalogue, self.run)

    def _load_or_train_tags(self, state: _Served | None = None) -> TagModel | None:
        """The saved tag model of a served model, or a new one trained from the catalogue's artist tags."""
        state = state or self._state
        if state.tag_model_path is not None and state.tag_model_path.is_file():
            return TagModel.load(state.tag_model_path, expect_model=state.model_id)
        try:
            model, _ = self._fit_tags(state)
        except LibraryError as e:
            log.warning("no tag predictions until artists tag more assets: %s", e)
            return None
        return model

    def _fit_tags(self, state: _Served | None = None) -> tuple[TagModel, dict[str, Any]]:
        """Tag classifiers on one served model's codes (read once: a switch meanwhile cannot mix models)."""
        state = state or self._state
        table = self._codes(state)
        labels = training_labels(self.catalogue, table.ids)  # artist tags + review answers (rejections: negatives)
        model = TagModel(state.model_id)
        report = model.fit(table.shape, table.texture, labels.tag_sets, table.size, **labels.fit_kwargs())
        if not model.classifiers:
            raise LibraryError("no tag has enough examples to learn yet (see the report)")
        if state.tag_model_path is not None:
            model.save(state.tag_model_path)
        return model, report

    # -- queries ------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What the backend serves (JSON-able). ``tags_help``: how tags start, while there is no tag to predict."""
        state = self._state  # read once: a switch meanwhile cannot mix two models' facts
        tags = state.tag_model.tags if state.tag_model else []
        return {
            "model_id": state.model_id,
            "preset": str(getattr(state.run, "preset", "")),
            "device": self.device,
            "generic": state.generic,
            "heldout_psnr": _finite_or_none(getattr(state.run, "heldout_psnr", None)),
            "assets": self._code_count(state),
            "tags": tags,
            "tags_help": None if tags else tag_status(self.catalogue, trained_tags=tags)["message"],
            "trainable": list(self.trainable),
            "model": self._model_info(state),
            "previous_model": self.catalogue.previous_model(),
            "retrain_advice": self.retrain_advice(state),
            "instant_embed": self._encoder(self._state) is not None,
        }

    def _encoder(self, state: _Served) -> Any | None:
        """The served model's instant encoder (``backend.training.encoder.Encoder``), or None: turned off
        (``serve --no-instant``), none trained for this model, or unreadable (warned once)."""
        run_dir = getattr(state.run, "run_dir", None)
        if not self.instant or run_dir is None or not (Path(run_dir) / ENCODER_FILE).is_file():
            return None
        from backend.model.errors import ModelError
        from backend.training.encoder import load_encoder  # torch: only when the run has an encoder

        try:
            return load_encoder(run_dir, state.model_id)  # cached while the file is unchanged
        except ModelError as e:
            if str(e) not in self._encoder_warned:
                self._encoder_warned.add(str(e))
                log.warning("embedding by inversion only: %s", e)
            return None

    def _model_info(self, state: _Served) -> dict[str, Any]:
        row = next((m for m in self.catalogue.models() if m["model_id"] == state.model_id), None)
        return {"model_id": state.model_id, "created": row["created"] if row else None,
                "info": row["info"] if row else {}}

    def _code_count(self, state: _Served | None = None) -> int:
        model_id = (state or self._state).model_id
        return next((m["codes"] for m in self.catalogue.models() if m["model_id"] == model_id), 0)

    def _codes(self, state: _Served | None = None) -> CodeTable:
        return self.catalogue.codes((state or self._state).model_id)

    def _index(self, space: str, state: _Served | None = None) -> SimilarityIndex:
        state = state or self._state
        with self._index_lock:
            index = state.indexes.get(space)
            if index is None:
                index = state.indexes[space] = SimilarityIndex(self._codes(state), space)
            return index

    def _invalidate(self, state: _Served | None = None) -> None:
        with self._index_lock:
            (state or self._state).indexes.clear()

    def neighbours(self, name: str, space: str = "both", k: int = 10) -> dict[str, Any]:
        """The ``k`` nearest catalogued assets to ``name`` in one space, with distances."""
        if space not in SPACES:
            raise ServiceError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
        state = self._state
        try:
            found = self._index(space, state).similar(name, k=k, exclude_self=True)
        except LibraryError as e:
            raise NotFound(str(e)) from None
        return {"name": name, "space": space, "model_id": state.model_id, "neighbours": self._describe(found)}

    def _describe(self, found: list[Any]) -> list[dict[str, Any]]:
        """Neighbours as JSON: name, source .blend and asset name (for linking), distance, rank, family."""
        out = []
        for n in found:
            row = self.catalogue.asset_by_name(n.name)
            out.append({
                "name": n.name,
                "distance": round(float(n.distance), 6),
                "rank": n.rank,
                "file": row.source_blend,
                "asset_name": row.asset_name,
                "family": n.family,
                "category": n.category,
            })
        return out

    def thumbnail(self, name: str) -> bytes:
        """The asset's PNG thumbnail: the stored view, or rendered once by the decoder and stored."""
        try:
            png = self.catalogue.thumbnail(name)
        except LibraryError as e:
            raise NotFound(str(e)) from None
        if png:
            return png
        state = self._state
        table = self._codes(state)
        try:
            row = table.index_of(name)
        except LibraryError as e:
            raise NotFound(f"{name!r} has no thumbnail and no code of model {state.model_id} to render one") from e
        with self._model_lock:
            rgba = state.run.render(
                table.shape[row : row + 1], table.texture[row : row + 1], views=[rig.views()[THUMBNAIL_VIEW]],
                image_size=THUMBNAIL_SIZE,
            )[0, 0]
        png = _png(rgba)
        self.catalogue.set_thumbnail(name, png)
        return png

    # -- jobs ---------------------------------------------------------------------------------

    def embed(self, upload: bytes, bundle: Bundle, progress: ProgressFn, cancel: threading.Event) -> dict[str, Any]:
        """Fit the code of an uploaded (already validated) bundle, tag it, find its neighbours, store it.

        When the served model has an instant encoder, the code comes from it in one pass (source
        ``"encoder"``; the answer has ``code_source: "encoder"`` and ``refine_job``) and a refinement by
        inversion is queued (:meth:`refine`) that replaces it; without a queue (``submit_followup`` unset)
        the refinement runs here and the refined answer is returned. Otherwise the code is inverted.
        With a library home the views are also kept in ``HOME/bundles`` (the next model trains on them).
        If the served model is switched while the code is being fitted, it is fitted again with the new
        model, so the answer and the stored code always belong to the model that serves.
        """
        t0 = time.perf_counter()
        info = bundle.asset
        with tempfile.TemporaryDirectory(prefix="asset2vec-upload-") as tmp:
            # The run reads views through Bundle.image_bytes, which needs the archive on disk (private temp dir).
            path = Path(tmp) / "bundle.zip"
            path.write_bytes(upload)
            local = read_bundle(path)
            thumb = local.image_bytes(THUMBNAIL_VIEW)
            if self.home is not None:
                store_bundle(path, self.home.bundles, info.name)
            while True:
                state = self._state
                encoder = self._encoder(state) if len(local.frames) == rig.NUM_VIEWS else None
                encoded = None
                if encoder is not None:
                    progress(0.1, f"encoding {info.name!r} (instant encoder)")
                    try:
                        encoded = _encode(encoder, local)
                    except (ValueError, RuntimeError) as e:  # e.g. views it cannot read: inversion still can
                        log.warning("instant encoder failed on %s, fitting by inversion: %s", info.name, e)
                if encoded is not None:
                    shape, texture = encoded
                    psnr, source = None, "encoder"
                else:
                    progress(0.02, f"fitting the code of {info.name!r}")
                    with self._model_lock:
                        inverted = state.run.invert(
                            [local],
                            steps=self.invert_steps,
                            progress=lambda f, m: progress(0.02 + 0.88 * float(f), m or "fitting the code"),
                            cancel=cancel,
                        )[0]
                    shape = np.asarray(inverted.shape, np.float32).reshape(-1)
                    texture = np.asarray(inverted.texture, np.float32).reshape(-1)
                    psnr, source = float(inverted.psnr), "inversion"
                if cancel.is_set():
                    raise JobCancelled()
                progress(0.92, "storing the code and finding similar assets")
                with self._swap_lock:
                    if state is not self._state:
                        continue  # the model was switched meanwhile: fit again with the new one
                    with self.catalogue.transaction():
                        aid = self.catalogue.upsert_asset(info, thumbnail=thumb)
                        self.catalogue.set_artist_tags(aid, info.tags)  # the bundle's tags replace the stored ones
                        self.catalogue.set_codes(state.model_id, {aid: (shape, texture, psnr)}, source=source)
                    self._invalidate(state)
                break

        result = self._answer(state, aid, info, shape, texture, psnr, source, t0)
        if source == "encoder":
            init = np.concatenate([shape, texture])

            def refine_job(p: ProgressFn, c: threading.Event) -> dict[str, Any]:
                return self.refine(upload, bundle, state.model_id, init, p, c)

            if self.submit_followup is None:  # no queue to wait in (the engine used directly): refine now
                refined = refine_job(lambda f, m: progress(0.92 + 0.07 * f, m), cancel)
                if not refined.get("dropped"):
                    result = {**refined, "instant_seconds": result["seconds"]}
            else:
                try:
                    result["refine_job"] = self.submit_followup("refine", refine_job)
                except ServiceError as e:  # queue full / shutting down: the encoder's code stays
                    log.warning("the code of %s stays the instant encoder's: %s", info.name, e)
                    result["refine_error"] = str(e)
        progress(1.0, "done")
        return result

    def refine(self, upload: bytes, bundle: Bundle, model_id: str, init: np.ndarray, progress: ProgressFn,
               cancel: threading.Event) -> dict[str, Any]:
        """Replace an asset's instant-encoder code of ``model_id`` by inversion started from it (``init [D]``).

        Returns the refined answer (as :meth:`embed`'s, ``code_source: "inversion"``, ``refined_from:
        "encoder"``); when a fitted code of the same content is stored already (an earlier refinement of the
        same upload won), the answer from that code. Returns ``{"name", "model_id", "dropped": True,
        "message"}`` when there is nothing to refine any more: the backend serves another model now (the
        switch fitted that model's own code), or the asset was embedded again with other content. A code
        is only ever stored under the model that made it.
        """
        t0 = time.perf_counter()
        info = bundle.asset
        state = self._state
        if state.model_id != model_id:
            return self._dropped(info.name, model_id, f"the backend switched to model {state.model_id} meanwhile")
        todo, why = self._refine_state(info, model_id)
        if todo != "refine":
            return self._stored_answer(state, info, t0) if todo == "done" else self._dropped(info.name, model_id, why)
        with tempfile.TemporaryDirectory(prefix="asset2vec-refine-") as tmp:
            path = Path(tmp) / "bundle.zip"
            path.write_bytes(upload)
            local = read_bundle(path)
            progress(0.02, f"refining the code of {info.name!r}")
            with self._model_lock:
                inverted = state.run.invert(
                    [local],
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
        with self._swap_lock:
            if state is not self._state:
                return self._dropped(info.name, model_id, f"the backend switched to model {self.model_id} while "
                                                          "refining")
            todo, why = self._refine_state(info, model_id)
            if todo != "refine":
                return self._stored_answer(state, info, t0) if todo == "done" else \
                    self._dropped(info.name, model_id, why)
            aid = self.catalogue.asset_by_name(info.name).id
            self.catalogue.set_codes(model_id, {aid: (shape, texture, float(inverted.psnr))}, source="inversion")
            self._invalidate(state)
        result = self._answer(state, aid, info, shape, texture, float(inverted.psnr), "inversion", t0)
        progress(1.0, "refined")
        return {**result, "refined_from": "encoder"}

    def _refine_steps(self, run: Any) -> int | None:
        """Inversion steps of a refinement: ``refine_steps``, else a share of the embed's (it starts close)."""
        if self.refine_steps:
            return self.refine_steps
        full = self.invert_steps or getattr(getattr(getattr(run, "config", None), "train", None), "inversion_steps",
                                            None)
        return max(1, round(full * REFINE_SHARE)) if full else None

    def _refine_state(self, info: Any, model_id: str) -> tuple[str, str]:
        """What a refinement of ``info``'s encoder code of ``model_id`` should do: ``("refine", "")`` (the stored
        code is still an encoder code of this content), ``("done", "")`` (a fitted code of this content is stored
        already) or ``("drop", why)``."""
        try:
            row = self.catalogue.asset_by_name(info.name)
        except LibraryError:
            return "drop", "the asset is no longer in the catalogue"
        if info.content_hash and row.content_hash and info.content_hash != row.content_hash:
            return "drop", "the asset was embedded again with other content"
        code = self.catalogue.code_info(row.id, model_id)
        if code is None:
            return "drop", f"the asset has no code of model {model_id}"
        return ("refine", "") if code["source"] == "encoder" else ("done", "")

    def _stored_answer(self, state: _Served, info: Any, t0: float) -> dict[str, Any]:
        """The answer from the asset's stored (already fitted) code of the served model."""
        table = self._codes(state)
        row = table.index_of(info.name)
        psnr = float(table.psnr[row]) if table.psnr is not None else None
        aid = int(table.ids[row])
        source = (self.catalogue.code_info(aid, state.model_id) or {}).get("source", "inversion")
        result = self._answer(state, aid, info, table.shape[row], table.texture[row], psnr, source, t0)
        return {**result, "refined_from": "encoder"}

    @staticmethod
    def _dropped(name: str, model_id: str, why: str) -> dict[str, Any]:
        log.info("not refining %s: %s", name, why)
        return {"name": name, "model_id": model_id, "dropped": True, "message": f"nothing to refine: {why}"}

    def _answer(self, state: _Served, aid: int, info: Any, shape: np.ndarray, texture: np.ndarray,
                psnr: float | None, source: str, t0: float) -> dict[str, Any]:
        """Predict tags and find neighbours of a just-stored code (``shape``/``texture [D]``); the embed answer."""
        predicted: dict[str, float] = {}
        proposed: dict[str, float] = {}
        if state.tag_model is not None:
            size = np.asarray(info.size, np.float32).reshape(1, 3)
            predicted = state.tag_model.predict(shape[None], texture[None], size)[0]
            proposed = TagModel.proposals(predicted, set(info.tags), DEFAULT_THRESHOLD)
            self.catalogue.set_predicted_tags(state.model_id, {aid: predicted})

        neighbours = {}
        for space in SPACES:
            found = self._index(space, state).similar(info.name, k=self.neighbours_k, exclude_self=True)
            self.catalogue.set_neighbours(state.model_id, space, {aid: [(n.asset_id, n.distance) for n in found]})
            neighbours[space] = self._describe(found)
        return {
            "name": info.name,
            "source_file": info.source_blend,
            "asset_name": info.asset_name,
            "content_hash": info.content_hash,
            "model_id": state.model_id,
            "shape": [float(x) for x in shape],
            "texture": [float(x) for x in texture],
            "psnr": _finite_or_none(psnr),
            "code_source": source,  # "encoder": instant, refined by the job "refine_job"; "inversion": fitted
            "seconds": round(time.perf_counter() - t0, 3),
            "predicted_tags": {t: round(p, 4) for t, p in predicted.items()},
            "proposed_tags": {t: round(p, 4) for t, p in proposed.items()},
            "threshold": DEFAULT_THRESHOLD,
            "neighbours": neighbours,
            "retrain_advice": self.retrain_advice(state),
        }

    def train(self, options: dict[str, Any], progress: ProgressFn, cancel: threading.Event) -> dict[str, Any]:
        """Retrain what can be retrained while serving: the tag classifiers (``{"what": "tags"}``), and
        with a library home a new decoder on every stored asset (``{"what": "decoder"}``, see :meth:`rebuild`)."""
        what = options.get("what", "tags")
        if what == "decoder" and self.home is not None:
            return self.rebuild(None, options, progress, cancel)
        if what not in TRAINABLE:
            raise ServiceError(
                f"cannot train {what!r} on a running backend (only {', '.join(TRAINABLE)}); train the decoder with "
                f"`asset2vec train BUNDLES --out RUN_DIR` and serve the new run"
            )
        progress(0.05, "training tag classifiers on the artists' tags")
        state = self._state
        with self._review_lock:  # a review answer retrains too; one at a time
            model, report = self._fit_tags(state)
            if cancel.is_set():
                raise JobCancelled()
            progress(0.8, "predicting tags for the catalogue")
            table = self._codes(state)
            preds = model.predict(table.shape, table.texture, table.size)
            self.catalogue.set_predicted_tags(state.model_id, {int(i): p for i, p in zip(table.ids, preds, strict=True)})
            state.tag_model = model
        trained = [t for t, r in report.items() if r.get("status") == "trained"]
        return {"what": "tags", "model_id": state.model_id, "trained": trained, "assets": len(table), "report": report}


    # -- tag review ---------------------------------------------------------------------------------

    def review_queue(self, limit: int = 10) -> dict[str, Any]:
        """The tag predictions the classifiers are least sure of, most uncertain first, for the artist to answer.

        ``{"model_id", "items": [{"name", "asset_id", "tag", "probability", "source_file", "asset_name"}],
        "message"}``; ``message`` says why the queue is empty (no tags yet, or everything answered).
        """
        state = self._state
        with self._review_lock:
            ensure_predictions(self.catalogue, state.tag_model)  # e.g. training assets, never predicted
        items = review_queue(self.catalogue, state.model_id, limit)
        return {"model_id": state.model_id, "items": items, "message": "" if items else self._review_empty(state)}

    def _review_empty(self, state: _Served) -> str:
        if state.tag_model is None or not state.tag_model.classifiers:
            return tag_status(self.catalogue, trained_tags=[])["message"] or "no tag predictions yet"
        return "nothing to review: every tag prediction is answered or already an artist tag"

    def review_answer(self, name: str, tag: str, accept: bool, limit: int = 10) -> dict[str, Any]:
        """Store the artist's answer, retrain the tag classifiers on it and refresh every prediction.

        Returns the answer's summary (``probability``: the asset's new probability of the tag), the
        next ``queue`` items and ``queue_message``. An unknown asset is :class:`NotFound`.
        """
        state = self._state
        try:
            self.catalogue.asset_by_name(name)
        except LibraryError as e:
            raise NotFound(str(e)) from None
        with self._review_lock:
            use_size = state.tag_model.use_size if state.tag_model is not None else True
            try:
                model, summary = answer_and_retrain(self.catalogue, state.model_id, name, tag, accept, use_size=use_size)
            except LibraryError as e:
                raise ServiceError(str(e), 422) from None
            if model is not None:
                if state.tag_model_path is not None:
                    model.save(state.tag_model_path)
                state.tag_model = model
        queue = self.review_queue(limit)
        return {**summary, "model_id": state.model_id, "queue": queue["items"], "queue_message": queue["message"]}

    # -- model lifecycle (library homes) ------------------------------------------------------------

    @classmethod
    def open_home(cls, home: Any, invert_steps: int | None = None, device: str | None = None, instant: bool = True,
                  refine_steps: int | None = None) -> Engine:
        """Serve a library home's active model; a home without any model gets the generic starter model."""
        from backend.lifecycle.home import catalogue_fields, install_run, read_model_file
        from backend.training.run import load_run

        home.create()
        catalogue = Catalogue(home.catalogue)
        try:
            model_id = catalogue.active_model()
            if model_id is None:
                from backend.lifecycle.starter import starter_run_dir

                starter = load_run(starter_run_dir(), device="cpu")
                model_id = starter.model_id
                log.info("no model in %s yet: installing the generic starter model %s", home.root, model_id)
                install_run(home, starter.run_dir, model_id, {"model_id": model_id, "generic": True,
                                                               "trained_on": len(starter.names),
                                                               "folder": "the built-in sample library"})
            run = load_run(home.run_dir(model_id), **({"device": device} if device else {}))
            info = read_model_file(run.run_dir)
            if not catalogue.models() or not any(m["model_id"] == model_id and m["codes"] for m in catalogue.models()):
                import_run(catalogue, run)
            catalogue.register_model(model_id, run.preset, active=True, info=catalogue_fields(info))
        except BaseException:
            catalogue.close()
            raise
        return cls(run, catalogue, run.run_dir / TAG_MODEL_FILE, invert_steps=invert_steps, device=device,
                   generic=bool(info.get("generic")), home=home, instant=instant, refine_steps=refine_steps)

    def models(self) -> dict[str, Any]:
        """The models this backend knows (a home's): which is active, which the previous one."""
        return {"active": self.model_id, "previous": self.catalogue.previous_model(), "models": self.catalogue.models()}

    def retrain_advice(self, state: _Served | None = None) -> str | None:
        from backend.lifecycle.advice import retrain_advice

        return retrain_advice(self.catalogue, (state or self._state).run)

    def switch(self, model_id: str, progress: ProgressFn | None = None, cancel: threading.Event | None = None
               ) -> dict[str, Any]:
        """Serve another model of the home, atomically: queries answer from the old model until the swap.

        Assets embedded into the old model that the new one has no code for (uploads stored in the
        home) are fitted with the new model first, while the old one keeps serving.
        """

        if self.home is None:
            raise ServiceError("this backend serves a single run (--run); model switching needs a library home")
        if model_id not in self.home.model_ids():  # never a path: only the home's own model folders
            raise NotFound(f"no model {model_id!r} in {self.home.models}")
        if not self._switch_lock.acquire(blocking=False):
            raise ServiceError("another model switch is in progress; try again when it has finished", 409)
        try:
            return self._switch(model_id, progress or (lambda f, m: None), cancel)
        finally:
            self._switch_lock.release()

    def _switch(self, model_id: str, progress: ProgressFn, cancel: threading.Event | None) -> dict[str, Any]:
        from backend.lifecycle.home import catalogue_fields, read_model_file
        from backend.training.run import load_run

        assert self.home is not None
        run_dir = self.home.run_dir(model_id)
        if model_id == self.model_id:
            # Same model (e.g. new assets fitted into it by a child process): refresh what was derived from it.
            with self._swap_lock:
                self._invalidate()
                self.tag_model = self._load_or_train_tags()
            return self.info()
        run = load_run(run_dir, **({"device": self.device} if self.device else {}))
        info = read_model_file(run_dir)
        if not any(m["model_id"] == model_id and m["codes"] for m in self.catalogue.models()):
            import_run(self.catalogue, run, activate=False)
        unmovable: set[str] = set()
        while True:
            with self._swap_lock:
                missing = [n for n in self._missing_codes(model_id) if n not in unmovable]
                if not missing:
                    state = _Served(run, model_id, bool(info.get("generic")), run_dir / TAG_MODEL_FILE)
                    state.tag_model = self._load_or_train_tags(state)  # ready before the first query
                    self.catalogue.register_model(model_id, run.preset, active=True, info=catalogue_fields(info))
                    self._state = state  # the switch: one reference, read once per query
                    break
            unmovable |= self._fit_missing(run, missing, progress, cancel)
        log.info("now serving model %s", model_id)
        return self.info()

    def restore(self, model_id: str | None = None) -> dict[str, Any]:
        """Switch back to ``model_id`` (default: the model that was active before this one)."""
        target = model_id or self.catalogue.previous_model()
        if target is None:
            raise ServiceError("there is no previous model to restore", 409)
        return self.switch(target)

    def _missing_codes(self, model_id: str) -> list[str]:
        """Assets with a code of the served model but none of ``model_id``."""
        have = set(self.catalogue.codes(model_id).names)
        return [n for n in self._codes().names if n not in have]

    def _fit_missing(self, run: Any, names: list[str], progress: ProgressFn, cancel: threading.Event | None
                     ) -> set[str]:
        """Fit codes of the new model for ``names`` from their stored views; returns the names that have none."""
        from backend.lifecycle.home import safe_folder_name

        assert self.home is not None
        bundles = []
        for name in names:
            folder = self.home.bundles / safe_folder_name(name)
            try:
                bundles.append(read_bundle(folder))
            except Exception as e:  # noqa: BLE001 - any unreadable bundle: that asset stays with the old model
                log.warning("cannot fit %s with the new model: no readable stored views (%s)", name, e)
        for start in range(0, len(bundles), 8):
            batch = bundles[start : start + 8]
            progress(start / max(len(bundles), 1), f"fitting {len(bundles)} recently embedded asset(s) to the new model")
            results = run.invert(batch, steps=self.invert_steps, cancel=cancel)
            with self.catalogue.transaction():
                for b, r in zip(batch, results, strict=True):
                    aid = self.catalogue.upsert_asset(b.asset)
                    self.catalogue.set_codes(run.model_id, {aid: (np.asarray(r.shape), np.asarray(r.texture),
                                                                  float(r.psnr))}, source="inversion")
        # Assets without stored views cannot move; they get a code of the new model when next embedded.
        return set(names) - {b.asset.name for b in bundles}

    def rebuild(self, folder: str | None, options: dict[str, Any], progress: ProgressFn, cancel: threading.Event
                ) -> dict[str, Any]:
        """Build a new model (``asset2vec index`` in a child process) while this one serves, then switch to it.

        ``folder``: a library folder on this machine to capture first (None: retrain on the stored assets).
        """
        import json
        import os
        import signal
        import subprocess
        import sys

        if self.home is None:
            raise ServiceError("this backend serves a single run (--run); building models needs a library home")
        if folder is None and sum(1 for _ in self.home.bundles.glob("*/transforms.json")) < MIN_RETRAIN_ASSETS:
            raise ServiceError(f"too few assets to train a model on (fewer than {MIN_RETRAIN_ASSETS} embedded); "
                               "build one from a library folder instead", 409)
        # Always a new model ("--retrain"): building from a folder while a library model serves must not
        # fit the folder's assets into the served model behind its back.
        cmd = [sys.executable, "-m", "backend.cli", "index", "--home", str(self.home.root), "--no-activate",
               "--progress-json", "--retrain"]
        for key in ("steps", "minutes", "size", "samples"):
            if options.get(key) is not None:
                value = options[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise ServiceError(f"{key} must be a positive number, got {value!r}", 422)
                cmd += [f"--{key}", str(int(value) if key != "minutes" else float(value))]
        if self.device:
            cmd += ["--device", self.device]
        if folder:
            cmd += ["--", str(Path(folder).expanduser().resolve())]
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        progress(0.0, "starting")
        log_path = self.home.root / "index.log"  # the child's own messages, for a failure's details
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=root, env=env)

        def stop_on_cancel() -> None:  # SIGTERM: the child stops at its next checkpoint, keeping its work
            while proc.poll() is None:
                if cancel.wait(0.5):
                    proc.send_signal(signal.SIGTERM)
                    return

        threading.Thread(target=stop_on_cancel, daemon=True).start()
        summary: dict[str, Any] | None = None
        error = "the index process ended without a result"
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "progress":
                eta = f", about {event['eta_s']:.0f} s left" if event.get("eta_s") else ""
                progress(0.95 * float(event["fraction"]),
                         f"[{event['stage_index']}/{event['stages']}] {event['stage']}: {event['message']}{eta}")
            elif event.get("event") == "summary":
                summary = event
            elif event.get("event") == "error":
                error = event.get("message", error)
        code = proc.wait()
        if cancel.is_set():
            raise JobCancelled()
        if code != 0 or summary is None:
            raise ServiceError(f"building the model failed: {error}{_log_tail(log_path)}", 500)
        progress(0.96, f"switching to model {summary['model_id']}")
        self.switch(summary["model_id"], cancel=cancel)
        return {k: v for k, v in summary.items() if k != "event"} | {"serving": self.model_id}


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return f" (log {path}: {' | '.join(tail)})" if tail else ""


def store_bundle(archive: Path, bundles_dir: Path, name: str) -> Path:
    """Unpack a validated bundle archive into ``bundles_dir/<safe name>/`` (replacing an older copy atomically)."""
    import os
    import shutil
    import zipfile

    from backend.lifecycle.home import safe_folder_name

    dest = bundles_dir / safe_folder_name(name)
    tmp = bundles_dir / f".incoming-{dest.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            target = (tmp / member).resolve()
            if not target.is_relative_to(tmp.resolve()) or member.endswith("/"):
                continue  # validated archives hold only views/NN.png and transforms.json; never escape tmp
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(member))
    old = bundles_dir / f".old-{dest.name}"
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def _encode(encoder: Any, bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """The instant encoder's code of one bundle (all 18 rig views): ``(shape [Ds], texture [Dt])`` float32."""
    from backend.training.encoder import views_tensor

    z = encoder.encode(views_tensor([bundle], encoder.net.config["image_size"]))[0]
    return z[: encoder.shape_dim].copy(), z[encoder.shape_dim :].copy()


def _png(rgba: np.ndarray) -> bytes:
    """PNG bytes of a straight RGBA float image ``[H, W, 4]`` in [0, 1]."""
    from PIL import Image

    arr = np.clip(np.round(np.asarray(rgba, np.float32) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return round(v, 4) if np.isfinite(v) else None


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"
