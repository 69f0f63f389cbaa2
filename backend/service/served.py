"""The served model: which model answers, its codes and indexes, and switching it atomically.

Everything that depends on the served model lives in one :class:`ServedState`; a switch replaces
that one reference, and every query reads it once, so no answer ever mixes two models' codes. With a
library home the served model can be switched (:meth:`ServedModel.switch`, :meth:`ServedModel.restore`):
assets embedded into the old model are fitted into the new one first, from their views kept in the home.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.library.catalogue import Catalogue, CodeTable, import_run
from backend.library.errors import CatalogueBusy, LibraryError
from backend.library.similarity import Neighbour as Found
from backend.library.similarity import SimilarityIndex, both_space_args
from backend.library.tags import TAG_MODEL_FILE, TagModel, tag_status
from backend.numbers import finite_or_none
from shared import api
from shared.bundle import read_bundle
from shared.naming import safe_folder_name

from .errors import Busy, NotFound, ServiceError
from .jobs import ProgressFn
from .tagging import TRAINABLE, load_or_train_tags

log = logging.getLogger(__name__)

#: Same file names as the library CLI (backend.commands.library), so CLI and service share catalogue and tag model
#: (TAG_MODEL_FILE comes from backend.library.tags).
CATALOGUE_FILE = "catalogue.sqlite"
#: The instant encoder of a run (``backend.training.encoder.ENCODER_FILE``, named here to keep torch out).
ENCODER_FILE = "encoder.pt"
#: What ``POST /v1/train`` can train on a backend serving a library home (a new decoder, built in the background).
TRAINABLE_HOME = ("tags", "decoder")


@dataclass
class ServedState:
    """Everything that depends on the served model; replaced as a whole by a switch."""

    run: Any  # a TrainedRun: model_id, preset, names, codes, invert(), render()
    model_id: str
    generic: bool
    tag_model_path: Path | None
    tag_model: TagModel | None = None
    indexes: dict[str, SimilarityIndex] = field(default_factory=dict)
    #: Whether this model's answers use the appearance feature (a descriptor tag model, or every asset has one:
    #: the "both" space uses it); None: not known yet (:meth:`ServedModel.uses_appearance`).
    appearance: bool | None = None


class ServedModel:
    """The served model's state over the catalogue (+ a library home): queries, codes, switching.

    ``swap_lock`` guards the swap against a job storing a code (it re-checks the state under it);
    ``decoder_lock`` serialises every use of the decoder (inversion, rendering).
    """

    def __init__(self, run: Any, catalogue: Catalogue, tag_model_path: str | Path | None = None,
                 device: str | None = None, generic: bool = False, home: Any = None, instant: bool = True,
                 invert_steps: int | None = None, tag_target: float | None = None) -> None:
        self.catalogue, self.home, self.instant, self.invert_steps = catalogue, home, instant, invert_steps
        #: Precision a tag must reach out of fold to be written (None: the tag model's own, default 0.9).
        self.tag_target = tag_target
        self.device = device or str(getattr(run, "device", "") or _default_device())
        self.trainable = TRAINABLE_HOME if home is not None else TRAINABLE
        self._state = ServedState(run, str(run.model_id), generic, Path(tag_model_path) if tag_model_path else None)
        self.swap_lock = threading.RLock()  # a model switch vs. a job storing its code
        self.decoder_lock = threading.Lock()  # the decoder: inversion and rendering, one at a time
        self._switch_lock = threading.Lock()  # one model switch at a time
        self._index_lock = threading.Lock()
        self._encoder_warned: set[str] = set()
        self._ensure_catalogue()
        self._state.tag_model = load_or_train_tags(catalogue, self._state, tag_target)
        self.warm_appearance(self._state)

    @property
    def state(self) -> ServedState:
        """The served model's state; read it once per answer."""
        return self._state

    def close(self) -> None:
        self.catalogue.close()

    def _ensure_catalogue(self) -> None:
        """Import the run's training codes when the catalogue has none of this model yet."""
        state = self._state
        self.catalogue.check_model(state.model_id)
        if not self.code_count(state):
            log.info("importing %d training assets of model %s into the catalogue", len(state.run.names),
                     state.model_id)
            import_run(self.catalogue, state.run)
        _import_appearance(self.catalogue, state.run)

    # -- codes and indexes ----------------------------------------------------------------------

    def codes(self, state: ServedState | None = None) -> CodeTable:
        return self.catalogue.codes((state or self._state).model_id)

    def code_count(self, state: ServedState | None = None) -> int:
        model_id = (state or self._state).model_id
        return next((m["codes"] for m in self.catalogue.models() if m["model_id"] == model_id), 0)

    def index(self, space: str, state: ServedState | None = None) -> SimilarityIndex:
        state = state or self._state
        with self._index_lock:
            index = state.indexes.get(space)
            if index is None:
                table = self.codes(state)
                # "both": issue 15's descriptor blocks (appearance + codes + size) when every asset has its feature.
                extra = both_space_args(self.catalogue, table) if space == "both" else {}
                index = state.indexes[space] = SimilarityIndex(table, space, **extra)
            return index

    def uses_appearance(self, state: ServedState | None = None) -> bool:
        """Whether an embed into ``state``'s model needs the upload's appearance feature: its tag model learnt from
        the descriptor, or every asset of the model has a stored feature (its "both" space uses them)."""
        state = state or self._state
        if state.appearance is None:
            if state.tag_model is not None and state.tag_model.descriptor is not None:
                state.appearance = True
            elif self.catalogue.count("appearance") == 0:
                state.appearance = False
            else:
                from backend.features.library import FEATURE

                have, total = self.catalogue.appearance_coverage(state.model_id, FEATURE)
                state.appearance = total > 0 and have == total
        return state.appearance

    def warm_appearance(self, state: ServedState | None = None) -> None:
        """Load the appearance backbone now (about a second) when the served model uses it, so the first embed does
        not wait for it; a backbone that cannot load is logged (embeds then answer without the feature)."""
        if not self.uses_appearance(state):
            return
        from backend.features import FeatureError, load_backbone
        from backend.features.multiview import DEFAULT_SPEC

        try:
            load_backbone(DEFAULT_SPEC.backbone, DEFAULT_SPEC.input_size)
        except FeatureError as e:
            log.warning("embeds answer without the appearance feature: %s", e)

    def invalidate(self, state: ServedState | None = None) -> None:
        """Forget the similarity indexes and whether the model uses the appearance feature (a code was stored)."""
        with self._index_lock:
            (state or self._state).indexes.clear()
            (state or self._state).appearance = None

    def encoder(self, state: ServedState) -> Any | None:
        """The served model's instant encoder (``backend.training.encoder.Encoder`` or ``FeatureEncoder``), or None:
        turned off (``serve --no-instant``), none trained for this model, or unreadable (warned once)."""
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

    # -- queries --------------------------------------------------------------------------------

    def info(self) -> api.ModelInfo:
        """What the backend serves. ``tags_help``: how tags start, while there is no tag to predict."""
        state = self._state  # read once: a switch meanwhile cannot mix two models' facts
        tags = list(state.tag_model.tags) if state.tag_model else []
        row = next((m for m in self.catalogue.models() if m["model_id"] == state.model_id), None)
        return api.ModelInfo(
            model_id=state.model_id,
            preset=str(getattr(state.run, "preset", "")),
            device=self.device,
            generic=state.generic,
            heldout_psnr=finite_or_none(getattr(state.run, "heldout_psnr", None)),
            assets=row["codes"] if row else 0,
            tags=tags,
            tags_help=None if tags else tag_status(self.catalogue, trained_tags=tags)["message"],
            trainable=list(self.trainable),
            model=api.ModelSummary(model_id=state.model_id, created=row["created"] if row else None,
                                   info=row["info"] if row else {}),
            previous_model=self.catalogue.previous_model(),
            retrain_advice=self.retrain_advice(state),
            instant_embed=self.encoder(state) is not None,
        )

    def retrain_advice(self, state: ServedState | None = None) -> str | None:
        from backend.lifecycle.advice import retrain_advice

        return retrain_advice(self.catalogue, (state or self._state).run)

    def neighbours(self, name: str, space: str = "both", k: int = 10) -> api.NeighbourList:
        """The ``k`` nearest catalogued assets to ``name`` in one space, with distances."""
        if space not in api.SPACES:
            raise ServiceError(f"space must be one of {', '.join(api.SPACES)}, got {space!r}")
        state = self._state
        try:
            found = self.index(space, state).similar(name, k=k, exclude_self=True, copies=True)
        except CatalogueBusy:
            raise  # the service answers 503 + Retry-After: retrying helps, not another request
        except LibraryError as e:
            raise NotFound(str(e)) from None
        return api.NeighbourList(name=name, space=space, model_id=state.model_id, neighbours=self.describe(found),
                                 thumbnail_url=api.thumbnail_url(name))

    def describe(self, found: list[Found]) -> list[api.Neighbour]:
        """Neighbours with what linking them needs: source .blend and Blender name, distance, rank, family,
        and their artist tags (accepted review answers are artist tags), so the add-on can filter by tag."""
        if not found:
            return []
        rows, kept = [], []
        for n in found:
            try:
                rows.append(self.catalogue.asset_by_name(n.name))
                kept.append(n)
            except CatalogueBusy:
                raise
            except LibraryError:  # removed by another process (`catalogue remove`, `index` pruning): rebuild later
                self.invalidate()
        tags = self.catalogue.artist_tags(r.id for r in rows)  # one query per list, for these assets only
        out = []
        for n, row in zip(kept, rows, strict=True):
            out.append(api.Neighbour(name=n.name, distance=round(float(n.distance), 6), rank=n.rank,
                                     source_file=row.source_blend, asset_name=row.asset_name, family=n.family,
                                     category=n.category, thumbnail_url=api.thumbnail_url(n.name),
                                     tags=sorted(tags.get(row.id, ())), copies=n.copies))
        return out

    def models(self) -> api.ModelsList:
        """The models this backend knows (a home's): which is active, which the previous one."""
        return api.ModelsList(active=self._state.model_id, previous=self.catalogue.previous_model(),
                              models=[api.ModelEntry.from_json(m) for m in self.catalogue.models()])

    # -- switching (library homes) ----------------------------------------------------------------

    def switch(self, model_id: str, progress: ProgressFn | None = None, cancel: threading.Event | None = None
               ) -> api.ModelInfo:
        """Serve another model of the home, atomically: queries answer from the old model until the swap.

        Assets embedded into the old model that the new one has no code for (uploads stored in the
        home) are fitted with the new model first, while the old one keeps serving.
        """
        if self.home is None:
            raise ServiceError("this backend serves a single run (--run); model switching needs a library home")
        if model_id not in self.home.model_ids():  # never a path: only the home's own model folders
            raise NotFound(f"no model {model_id[:80]!r} in this library home (GET {api.API_PREFIX}/models lists them)")
        if not self._switch_lock.acquire(blocking=False):
            raise Busy("another model switch is in progress; try again when it has finished")
        try:
            return self._switch(model_id, progress or (lambda f, m: None), cancel)
        finally:
            self._switch_lock.release()

    def _switch(self, model_id: str, progress: ProgressFn, cancel: threading.Event | None) -> api.ModelInfo:
        from backend.lifecycle.home import catalogue_fields, read_model_file
        from backend.training.run import load_run

        assert self.home is not None
        run_dir = self.home.run_dir(model_id)
        if model_id == self._state.model_id:
            # Same model (e.g. new assets fitted into it by another process): refresh what was derived from it.
            with self.swap_lock:
                self.invalidate()
                self._state.tag_model = load_or_train_tags(self.catalogue, self._state, self.tag_target)
            return self.info()
        run = load_run(run_dir, **({"device": self.device} if self.device else {}))
        info = read_model_file(run_dir)
        if not any(m["model_id"] == model_id and m["codes"] for m in self.catalogue.models()):
            import_run(self.catalogue, run, activate=False)
        _import_appearance(self.catalogue, run)
        unmovable: set[str] = set()
        while True:
            with self.swap_lock:
                missing = [n for n in self._missing_codes(model_id) if n not in unmovable]
                if not missing:
                    state = ServedState(run, model_id, bool(info.get("generic")), run_dir / TAG_MODEL_FILE)
                    state.tag_model = load_or_train_tags(self.catalogue, state, self.tag_target)  # ready at once
                    self.catalogue.register_model(model_id, run.preset, active=True, info=catalogue_fields(info))
                    self._state = state  # the switch: one reference, read once per query
                    break
            unmovable |= self._fit_missing(run, missing, progress, cancel)
        self.warm_appearance(state)  # outside the swap lock: queries never wait for the backbone
        log.info("now serving model %s", model_id)
        return self.info()

    def restore(self, model_id: str | None = None) -> api.ModelInfo:
        """Switch back to ``model_id`` (default: the model that was active before this one)."""
        target = model_id or self.catalogue.previous_model()
        if target is None:
            raise ServiceError("there is no previous model to restore", 409)
        return self.switch(target)

    def _missing_codes(self, model_id: str) -> list[str]:
        """Assets with a code of the served model but none of ``model_id``."""
        have = set(self.catalogue.codes(model_id).names)
        return [n for n in self.codes().names if n not in have]

    def _fit_missing(self, run: Any, names: list[str], progress: ProgressFn, cancel: threading.Event | None
                     ) -> set[str]:
        """Fit codes of the new model for ``names`` from their stored views; returns the names that have none."""
        assert self.home is not None
        bundles = []
        for name in names:
            try:
                bundles.append(read_bundle(self.home.bundles / safe_folder_name(name)))
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


def open_run(run_dir: str | Path, catalogue_path: str | Path | None = None, device: str | None = None,
             generic: bool = False, instant: bool = True, invert_steps: int | None = None,
             tag_target: float | None = None) -> ServedModel:
    """Serve ``run_dir`` with its catalogue (default ``RUN_DIR/catalogue.sqlite``)."""
    from backend.training.run import load_run  # torch: imported only when serving a real run

    run_dir = Path(run_dir)
    run = load_run(run_dir, **({"device": device} if device else {}))
    catalogue = Catalogue(catalogue_path or run_dir / CATALOGUE_FILE, expect_model=run.model_id)
    try:
        return ServedModel(run, catalogue, run_dir / TAG_MODEL_FILE, device=device, generic=generic,
                           instant=instant, invert_steps=invert_steps, tag_target=tag_target)
    except BaseException:
        catalogue.close()
        raise


def open_home(home: Any, device: str | None = None, instant: bool = True,
              invert_steps: int | None = None, tag_target: float | None = None) -> ServedModel:
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
        if not any(m["model_id"] == model_id and m["codes"] for m in catalogue.models()):
            import_run(catalogue, run)
        _import_appearance(catalogue, run)
        catalogue.register_model(model_id, run.preset, active=True, info=catalogue_fields(info))
        return ServedModel(run, catalogue, run.run_dir / TAG_MODEL_FILE, device=device,
                           generic=bool(info.get("generic")), home=home, instant=instant, invert_steps=invert_steps,
                           tag_target=tag_target)
    except BaseException:
        catalogue.close()
        raise


def _import_appearance(catalogue: Catalogue, run: Any) -> None:
    """Store the appearance features a run ships (the starter model's ``appearance.npz``) for its assets."""
    if not (Path(getattr(run, "run_dir", "") or ".") / "appearance.npz").is_file():  # no torch import without it
        return
    from backend.features.library import import_run_appearance

    try:
        n = import_run_appearance(catalogue, run)
    except (LibraryError, OSError) as e:
        log.warning("the model's shipped appearance features are not used: %s", e)
        return
    if n:
        log.info("stored the shipped appearance features of %d assets of model %s", n, run.model_id)


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"
