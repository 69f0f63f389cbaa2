"""The engine behind the HTTP API: a small facade over the service's parts.

    served.py      ServedModel: the served model's state (codes, indexes, info, neighbours), switch, restore
    embedding.py   Embedding: embed an uploaded bundle (instant encoder or inversion), refine, answer
    tagging.py     Tagging: tag classifiers (train), the review queue and answers
    building.py    Builder: a new model built in the background (index_library in a spawned child process:
                   bpy capture needs a process of its own), then switched to
    thumbnails.py  Thumbnails: stored or rendered asset thumbnails
    uploads.py     Upload: a bundle validated once, in memory; stored once in a library home

Jobs call :meth:`Engine.embed`, :meth:`Engine.train` and :meth:`Engine.build` from a queue's worker
thread; queries answer from request threads. Every answer is a :mod:`shared.api` object. The
backend never touches the artist's files: everything it stores lives in the run folder (catalogue,
tag model) or, serving a library home (:meth:`Engine.open_home`), in the home.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from backend.library.catalogue import Catalogue
from backend.library.errors import CatalogueBusy, LibraryError
from backend.library.forget import forget_assets
from backend.library.tags import TagModel
from shared import api
from shared.bundle import Bundle

from .building import Builder
from .embedding import Embedding, Followups
from .errors import NotFound, ServiceError
from .jobs import ProgressFn
from .served import CATALOGUE_FILE, TAG_MODEL_FILE, ServedModel, open_home, open_run
from .tagging import TRAINABLE, Tagging
from .thumbnails import Thumbnails

__all__ = ["CATALOGUE_FILE", "TAG_MODEL_FILE", "Engine", "Followups"]


class Engine:
    """A served model + its catalogue (+ a tag model, + a library home), serving embeddings and queries.

    ``run``: a ``TrainedRun`` (``model_id``, ``preset``, ``names``, codes, ``invert``, ``render``).
    ``catalogue``: holds the run's codes (imported if missing) and every embedded asset.
    ``tag_model_path``: where the tag classifiers live (trained from the artists' tags when missing).
    ``invert_steps``: inversion steps (None: the preset's); ``instant``: answer from the run's instant
    encoder when it has one, then refine; ``home``: a library home (models can be built and switched).
    """

    def __init__(self, run: Any, catalogue: Catalogue, tag_model_path: str | Path | None = None,
                 invert_steps: int | None = None, neighbours_k: int = 10, device: str | None = None,
                 generic: bool = False, home: Any = None, instant: bool = True, refine_steps: int | None = None,
                 tag_target: float | None = None) -> None:
        self._init(ServedModel(run, catalogue, tag_model_path, device=device, generic=generic, home=home,
                               instant=instant, invert_steps=invert_steps, tag_target=tag_target),
                   refine_steps, neighbours_k)

    def _init(self, served: ServedModel, refine_steps: int | None = None, neighbours_k: int = 10) -> None:
        self.served = served
        self.embedding = Embedding(served, served.invert_steps, refine_steps, neighbours_k)
        self.tagging = Tagging(served)
        self.builder = Builder(served)
        self.thumbnails = Thumbnails(served)

    @classmethod
    def _of(cls, served: ServedModel, refine_steps: int | None) -> Engine:
        engine = cls.__new__(cls)
        engine._init(served, refine_steps)
        return engine

    @classmethod
    def open(cls, run_dir: str | Path, catalogue_path: str | Path | None = None, invert_steps: int | None = None,
             device: str | None = None, generic: bool = False, instant: bool = True,
             refine_steps: int | None = None, tag_target: float | None = None) -> Engine:
        """Serve ``run_dir`` with its catalogue (default ``RUN_DIR/catalogue.sqlite``)."""
        return cls._of(open_run(run_dir, catalogue_path, device=device, generic=generic, instant=instant,
                                invert_steps=invert_steps, tag_target=tag_target), refine_steps)

    @classmethod
    def open_home(cls, home: Any, invert_steps: int | None = None, device: str | None = None, instant: bool = True,
                  refine_steps: int | None = None, tag_target: float | None = None,
                  ray_address: str | None = None) -> Engine:
        """Serve a library home's active model; a home without any model gets the generic starter model.
        ``ray_address``: models are built with their capture and appearance features on that Ray cluster
        (``"local"``: a Ray instance started here), as ``asset2vec index --ray``."""
        engine = cls._of(open_home(home, device=device, instant=instant, invert_steps=invert_steps,
                                   tag_target=tag_target), refine_steps)
        engine.builder.ray_address = ray_address
        return engine

    def close(self) -> None:
        """Close the catalogue (called on server shutdown)."""
        self.served.close()

    # -- what is served ---------------------------------------------------------------------------

    @property
    def catalogue(self) -> Catalogue:
        return self.served.catalogue

    @property
    def home(self) -> Any:
        return self.served.home

    @property
    def run(self) -> Any:
        return self.served.state.run

    @property
    def model_id(self) -> str:
        return self.served.state.model_id

    @property
    def tag_model(self) -> TagModel | None:
        return self.served.state.tag_model

    @property
    def tag_model_path(self) -> Path | None:
        return self.served.state.tag_model_path

    @property
    def generic(self) -> bool:
        return self.served.state.generic

    @property
    def device(self) -> str:
        return self.served.device

    @property
    def trainable(self) -> tuple[str, ...]:
        """What ``POST /v1/train`` may ask for."""
        return self.served.trainable

    @property
    def neighbours_k(self) -> int:
        return self.embedding.neighbours_k

    @neighbours_k.setter
    def neighbours_k(self, k: int) -> None:
        self.embedding.neighbours_k = k

    # -- queries ----------------------------------------------------------------------------------

    def info(self) -> api.ModelInfo:
        return self.served.info()

    def neighbours(self, name: str, space: str = "both", k: int = 10) -> api.NeighbourList:
        return self.served.neighbours(name, space, k)

    def thumbnail(self, name: str) -> bytes:
        return self.thumbnails.thumbnail(name)

    def forget(self, name: str) -> api.Forgotten:
        """Take ``name`` out of the catalogue (and, serving a library home, its stored views): what
        ``asset2vec catalogue remove NAME`` does. An unknown name is a 404 with close matches. Never touches the
        artist's files."""
        bundles = Path(self.home.bundles) if self.home is not None else None
        with self.served.swap_lock:  # not while a job stores a code of it
            try:
                forget_assets(self.catalogue, [name], bundles)
            except CatalogueBusy:
                raise  # 503 + Retry-After: nothing was removed, retrying helps
            except LibraryError as e:
                raise NotFound(str(e)) from None
            self.served.invalidate()
        left = self.catalogue.count("assets")
        return api.Forgotten(name=name, assets=left,
                             message=f"forgot {name!r}: it is out of the catalogue ({left} asset(s) left); embedding "
                                     "it again brings it back")

    def models(self) -> api.ModelsList:
        return self.served.models()

    def review_queue(self, limit: int = 10) -> api.ReviewQueue:
        return self.tagging.review_queue(limit)

    def review_answer(self, name: str, tag: str, accept: bool, limit: int = 10) -> api.ReviewResult:
        return self.tagging.review_answer(name, tag, accept, limit)

    # -- jobs -------------------------------------------------------------------------------------

    def embed(self, bundle: Bundle, progress: ProgressFn, cancel: threading.Event,
              followups: Followups | None = None) -> api.EmbedResult:
        """Embed a validated bundle; ``followups`` queues the instant answer's refinement (None: inline)."""
        return self.embedding.embed(bundle, progress, cancel, followups)

    def train(self, request: api.TrainRequest, progress: ProgressFn, cancel: threading.Event
              ) -> api.TrainResult | api.BuildResult:
        """Retrain what can be retrained while serving: the tag classifiers (``"tags"``), and with a library
        home a new decoder on every stored asset (``"decoder"``, see :meth:`build`)."""
        if request.what == "decoder" and self.home is not None:
            return self.builder.build(None, request, progress, cancel)
        if request.what not in TRAINABLE:
            raise ServiceError(
                f"cannot train {request.what!r} on a running backend (only {', '.join(TRAINABLE)}); train the "
                f"decoder with `asset2vec train BUNDLES --out RUN_DIR` and serve the new run"
            )
        return self.tagging.train(progress, cancel)

    def build(self, request: api.IndexRequest, progress: ProgressFn, cancel: threading.Event) -> api.BuildResult:
        """Build a new model from the library folder ``request.folder`` while this one serves, then switch to it."""
        return self.builder.build(request.folder, request, progress, cancel)

    # -- models (library homes) -------------------------------------------------------------------

    def switch(self, model_id: str, progress: ProgressFn | None = None, cancel: threading.Event | None = None
               ) -> api.ModelInfo:
        return self.served.switch(model_id, progress, cancel)

    def restore(self, model_id: str | None = None) -> api.ModelInfo:
        return self.served.restore(model_id)
