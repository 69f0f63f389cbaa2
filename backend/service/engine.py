"""The glue between HTTP and the model/library: invert codes, predict tags, find neighbours.

:class:`Engine` wraps a trained run (:func:`backend.training.run.load_run`) and the asset
catalogue (:class:`backend.library.catalogue.Catalogue`). Jobs call :meth:`Engine.embed` and
:meth:`Engine.train` from the queue's single worker thread; :meth:`Engine.neighbours` and
:meth:`Engine.thumbnail` answer directly from request threads (the catalogue is thread-safe; any
use of the decoder is serialised by a lock so a thumbnail render never races an inversion).

The backend never touches the artist's files: uploads are unpacked into a private temporary
folder, and everything it stores lives in the run folder (catalogue, tag model).
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backend.library.catalogue import Catalogue, CodeTable, import_run
from backend.library.errors import LibraryError
from backend.library.similarity import SimilarityIndex
from backend.library.tags import DEFAULT_THRESHOLD, TagModel
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
#: What ``POST /v1/train`` can train on a serving backend (decoder training is ``asset2vec train``).
TRAINABLE = ("tags",)

ProgressFn = Callable[[float, str], None]


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
    ) -> None:
        self.run, self.catalogue = run, catalogue
        self.trainable = TRAINABLE  # what POST /v1/train may ask for
        self.model_id: str = run.model_id
        self.invert_steps, self.neighbours_k, self.generic = invert_steps, neighbours_k, generic
        self.device = device or str(getattr(run, "device", "") or _default_device())
        self.tag_model_path = Path(tag_model_path) if tag_model_path else None
        self._model_lock = threading.Lock()  # the decoder: inversion and rendering, one at a time
        self._index_lock = threading.Lock()
        self._indexes: dict[str, SimilarityIndex] = {}
        self._ensure_catalogue()
        self.tag_model = self._load_or_train_tags()

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        catalogue_path: str | Path | None = None,
        invert_steps: int | None = None,
        device: str | None = None,
        generic: bool = False,
    ) -> Engine:
        """Load ``run_dir`` and its catalogue (default ``RUN_DIR/catalogue.sqlite``)."""
        from backend.training.run import load_run  # torch: imported only when serving a real run

        run_dir = Path(run_dir)
        kwargs = {"device": device} if device else {}
        run = load_run(run_dir, **kwargs)
        catalogue = Catalogue(catalogue_path or run_dir / CATALOGUE_FILE, expect_model=run.model_id)
        return cls(run, catalogue, run_dir / TAG_MODEL_FILE, invert_steps=invert_steps, device=device,
                   generic=generic)

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

    def _load_or_train_tags(self) -> TagModel | None:
        """The saved tag model of this run, or a new one trained from the catalogue's artist tags."""
        if self.tag_model_path is not None and self.tag_model_path.is_file():
            return TagModel.load(self.tag_model_path, expect_model=self.model_id)
        try:
            model, _ = self._fit_tags()
        except LibraryError as e:
            log.warning("no tag predictions until artists tag more assets: %s", e)
            return None
        return model

    def _fit_tags(self) -> tuple[TagModel, dict[str, Any]]:
        table = self._codes()
        tag_sets = self.catalogue.artist_tag_sets(table.ids)
        model = TagModel(self.model_id)
        report = model.fit(table.shape, table.texture, tag_sets, table.size)
        if not model.classifiers:
            raise LibraryError("no tag has enough examples to learn yet (see the report)")
        if self.tag_model_path is not None:
            model.save(self.tag_model_path)
        return model, report

    # -- queries ------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What the backend serves (JSON-able)."""
        return {
            "model_id": self.model_id,
            "preset": str(getattr(self.run, "preset", "")),
            "device": self.device,
            "generic": self.generic,
            "heldout_psnr": _finite_or_none(getattr(self.run, "heldout_psnr", None)),
            "assets": self._code_count(),
            "tags": self.tag_model.tags if self.tag_model else [],
            "trainable": list(TRAINABLE),
        }

    def _code_count(self) -> int:
        return next((m["codes"] for m in self.catalogue.models() if m["model_id"] == self.model_id), 0)

    def _codes(self) -> CodeTable:
        return self.catalogue.codes(self.model_id)

    def _index(self, space: str) -> SimilarityIndex:
        with self._index_lock:
            index = self._indexes.get(space)
            if index is None:
                index = self._indexes[space] = SimilarityIndex(self._codes(), space)
            return index

    def _invalidate(self) -> None:
        with self._index_lock:
            self._indexes.clear()

    def neighbours(self, name: str, space: str = "both", k: int = 10) -> dict[str, Any]:
        """The ``k`` nearest catalogued assets to ``name`` in one space, with distances."""
        if space not in SPACES:
            raise ServiceError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
        try:
            found = self._index(space).similar(name, k=k, exclude_self=True)
        except LibraryError as e:
            raise NotFound(str(e)) from None
        return {"name": name, "space": space, "model_id": self.model_id, "neighbours": self._describe(found)}

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
        table = self._codes()
        try:
            row = table.index_of(name)
        except LibraryError as e:
            raise NotFound(f"{name!r} has no thumbnail and no code of model {self.model_id} to render one") from e
        with self._model_lock:
            rgba = self.run.render(
                table.shape[row : row + 1], table.texture[row : row + 1], views=[rig.views()[THUMBNAIL_VIEW]],
                image_size=THUMBNAIL_SIZE,
            )[0, 0]
        png = _png(rgba)
        self.catalogue.set_thumbnail(name, png)
        return png

    # -- jobs ---------------------------------------------------------------------------------

    def embed(self, upload: bytes, bundle: Bundle, progress: ProgressFn, cancel: threading.Event) -> dict[str, Any]:
        """Invert the code of an uploaded (already validated) bundle, tag it, find its neighbours, store it."""
        t0 = time.perf_counter()
        info = bundle.asset
        with tempfile.TemporaryDirectory(prefix="asset2vec-upload-") as tmp:
            # The run reads views through Bundle.image_bytes, which needs the archive on disk (private temp dir).
            path = Path(tmp) / "bundle.zip"
            path.write_bytes(upload)
            local = read_bundle(path)
            thumb = local.image_bytes(THUMBNAIL_VIEW)
            progress(0.02, f"fitting the code of {info.name!r}")
            with self._model_lock:
                inverted = self.run.invert(
                    [local],
                    steps=self.invert_steps,
                    progress=lambda f, m: progress(0.02 + 0.88 * float(f), m or "fitting the code"),
                    cancel=cancel,
                )[0]
        if cancel.is_set():
            raise JobCancelled()
        progress(0.92, "storing the code and finding similar assets")
        shape = np.asarray(inverted.shape, np.float32).reshape(-1)
        texture = np.asarray(inverted.texture, np.float32).reshape(-1)
        with self.catalogue.transaction():
            aid = self.catalogue.upsert_asset(info, thumbnail=thumb)
            self.catalogue.set_artist_tags(aid, info.tags)  # the bundle's tags replace the stored ones
            self.catalogue.set_codes(self.model_id, {aid: (shape, texture, float(inverted.psnr))}, source="inversion")
        self._invalidate()

        predicted: dict[str, float] = {}
        proposed: dict[str, float] = {}
        if self.tag_model is not None:
            size = np.asarray(info.size, np.float32).reshape(1, 3)
            predicted = self.tag_model.predict(shape[None], texture[None], size)[0]
            proposed = TagModel.proposals(predicted, set(info.tags), DEFAULT_THRESHOLD)
            self.catalogue.set_predicted_tags(self.model_id, {aid: predicted})

        neighbours = {}
        for space in SPACES:
            found = self._index(space).similar(info.name, k=self.neighbours_k, exclude_self=True)
            self.catalogue.set_neighbours(self.model_id, space, {aid: [(n.asset_id, n.distance) for n in found]})
            neighbours[space] = self._describe(found)
        progress(1.0, "done")
        return {
            "name": info.name,
            "source_file": info.source_blend,
            "asset_name": info.asset_name,
            "content_hash": info.content_hash,
            "model_id": self.model_id,
            "shape": [float(x) for x in shape],
            "texture": [float(x) for x in texture],
            "psnr": _finite_or_none(inverted.psnr),
            "seconds": round(time.perf_counter() - t0, 3),
            "predicted_tags": {t: round(p, 4) for t, p in predicted.items()},
            "proposed_tags": {t: round(p, 4) for t, p in proposed.items()},
            "threshold": DEFAULT_THRESHOLD,
            "neighbours": neighbours,
        }

    def train(self, options: dict[str, Any], progress: ProgressFn, cancel: threading.Event) -> dict[str, Any]:
        """Retrain what can be retrained while serving: the tag classifiers (``{"what": "tags"}``)."""
        what = options.get("what", "tags")
        if what not in TRAINABLE:
            raise ServiceError(
                f"cannot train {what!r} on a running backend (only {', '.join(TRAINABLE)}); train the decoder with "
                f"`asset2vec train BUNDLES --out RUN_DIR` and serve the new run"
            )
        progress(0.05, "training tag classifiers on the artists' tags")
        model, report = self._fit_tags()
        if cancel.is_set():
            raise JobCancelled()
        progress(0.8, "predicting tags for the catalogue")
        table = self._codes()
        preds = model.predict(table.shape, table.texture, table.size)
        self.catalogue.set_predicted_tags(self.model_id, {int(i): p for i, p in zip(table.ids, preds, strict=True)})
        self.tag_model = model
        trained = [t for t, r in report.items() if r.get("status") == "trained"]
        return {"what": "tags", "model_id": self.model_id, "trained": trained, "assets": len(table), "report": report}


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
