"""The library home: one folder holding everything the backend learns about a studio's library.

Layout (nothing in it is ever the artist's own file)::

    HOME/
      catalogue.sqlite      assets, codes per model, tags, review answers, neighbours, active model
      bundles/<asset>/      the 18 captured views of every asset (the training data of the next model)
      bundles/.unreadable/  stored bundles a rebuild could not read, set aside with the reason (never trained on)
      models/<model_id>/    one trained run per model (checkpoint.pt, codes.npz, metrics.json, tags.joblib,
                            MODEL.json); a model folder appears only once its training finished
      training/             the run being trained (resumable; renamed into models/ when done)
      explore/index.html    the exploration page of the active model
      index-state.json      what `asset2vec index` was doing (resume after a kill)

Which model serves is the catalogue's *active* model: switching is one SQLite transaction.
``$ASSET2VEC_HOME`` (default ``~/.asset2vec``) is the home when no ``--home`` is given.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import Asset2VecError
from shared.atomic import atomic_write
from shared.bundle import TRANSFORMS
from shared.naming import safe_folder_name

HOME_ENV = "ASSET2VEC_HOME"
CATALOGUE_FILE = "catalogue.sqlite"
MODEL_FILE = "MODEL.json"
STATE_FILE = "index-state.json"
#: Where :meth:`LibraryHome.set_aside_unreadable` moves bundles (hidden: no reader of ``bundles/`` sees them).
UNREADABLE_DIR = ".unreadable"
#: The reason a bundle was set aside, written inside it.
UNREADABLE_REASON = "UNREADABLE.txt"
#: Left in a stored bundle whose every view decoded (:meth:`LibraryHome.set_aside_unreadable` checks it once).
READABLE_MARKER = ".readable"


class HomeError(Asset2VecError):
    """The home folder cannot be used; the message says what to do."""


def default_home() -> Path:
    """``$ASSET2VEC_HOME``, else ``~/.asset2vec``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".asset2vec").expanduser()


@dataclass(frozen=True)
class LibraryHome:
    """Paths of one library home (see the module docstring); ``create()`` makes the folders."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str] | None = None) -> LibraryHome:
        return cls(Path(root).expanduser().resolve() if root else default_home().resolve())

    def create(self) -> LibraryHome:
        if self.root.exists() and not self.root.is_dir():
            raise HomeError(f"{self.root} is a file; the library home must be a folder")
        for d in (self.root, self.bundles, self.models):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def catalogue(self) -> Path:
        return self.root / CATALOGUE_FILE

    @property
    def bundles(self) -> Path:
        return self.root / "bundles"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def training(self) -> Path:
        return self.root / "training"

    @property
    def explore(self) -> Path:
        return self.root / "explore"

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    def run_dir(self, model_id: str) -> Path:
        return self.models / model_id

    def model_ids(self) -> list[str]:
        """Models whose training finished (a ``models/<id>/`` folder with a checkpoint)."""
        if not self.models.is_dir():
            return []
        return sorted(p.name for p in self.models.iterdir() if (p / "checkpoint.pt").is_file())

    def is_home(self) -> bool:
        return self.catalogue.is_file() and self.models.is_dir()

    def set_aside_unreadable(self) -> list[str]:
        """Move the stored bundles a model cannot be trained on (a damaged file, a view that does not decode)
        into ``bundles/.unreadable/`` with the reason, so a rebuild skips them instead of failing on them.

        Returns one line per bundle set aside, naming the asset's folder and why (never a server path).
        """
        from backend.training.data import unreadable_reason

        skipped: list[str] = []
        if not self.bundles.is_dir():
            return skipped
        for transforms in sorted(self.bundles.glob(f"*/{TRANSFORMS}")):
            folder = transforms.parent
            # Hidden folders are not bundles yet (an upload being stored, .incoming-*): no reader sees them. A
            # bundle checked before carries a marker (storing a bundle replaces its folder, marker and all), so
            # each one is decoded once, not on every index run.
            if folder.name.startswith(".") or (folder / READABLE_MARKER).is_file():
                continue
            if (reason := unreadable_reason(folder)) is None:
                with contextlib.suppress(OSError):  # a read-only home is checked again next time, nothing worse
                    (folder / READABLE_MARKER).touch()
                continue
            # An upload of the same asset may have replaced the folder while it was read (the service stores
            # uploads during a build): what is there now must fail too before it is moved.
            if unreadable_reason(folder) is None:
                continue
            dest = self.bundles / UNREADABLE_DIR / folder.name
            try:
                shutil.rmtree(dest, ignore_errors=True)  # an older bad copy of the same asset
                dest.parent.mkdir(exist_ok=True)
                os.replace(folder, dest)
                (dest / UNREADABLE_REASON).write_text(reason + "\n")
            except OSError as e:
                reason += f"; it could not be set aside ({e.strerror or e}), so the rebuild may fail on it"
            skipped.append(f"{folder.name}: stored views skipped, not trained on: {reason}. Embed or index the "
                           f"asset again to store new views")
        return skipped

    # -- index state ------------------------------------------------------------------------

    def read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write(self.state_file, json.dumps(state, indent=1).encode())


def write_model_file(run_dir: Path, info: dict[str, Any]) -> None:
    """``MODEL.json`` beside a run: what it was trained on, when, whether it is generic."""
    atomic_write(run_dir / MODEL_FILE, json.dumps(info, indent=1).encode())


def read_model_file(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / MODEL_FILE).read_text())
    except (OSError, ValueError):
        return {}


def catalogue_fields(info: dict[str, Any]) -> dict[str, Any]:
    """The parts of a MODEL.json the catalogue keeps about a model (shown by ``models`` and the add-on)."""
    return {k: v for k, v in info.items() if k in ("created", "generic", "trained_on", "folder")}


def install_run(home: LibraryHome, run_dir: Path, model_id: str, info: dict[str, Any]) -> Path:
    """Copy a finished run (e.g. the starter model) into ``home/models/<model_id>`` (atomic rename)."""
    dest = home.run_dir(model_id)
    if (dest / "checkpoint.pt").is_file():
        return dest
    tmp = home.models / f".installing-{model_id}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run_dir, tmp)
    write_model_file(tmp, {**read_model_file(run_dir), **info})
    os.replace(tmp, dest)
    return dest


def resolve_run(path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """``(run_dir, catalogue or None)`` for a run folder or a library home (its active model).

    Lets every ``--run`` option also take a home: the catalogue then is the home's one.
    """
    p = Path(path)
    home = LibraryHome(p)
    if not home.is_home():
        return p, None
    from backend.library.catalogue import Catalogue

    with Catalogue(home.catalogue, create=False) as cat:
        active = cat.active_model()
    if not active:
        raise HomeError(f"{p}: no active model yet; build one with `asset2vec index FOLDER --home {p}`")
    return home.run_dir(active), home.catalogue


def store_bundle_files(bundles_dir: Path, name: str, transforms: dict[str, Any], images: dict[str, bytes]) -> Path:
    """Write one asset's bundle into ``bundles_dir/<safe name>/`` (``transforms.json`` + the view PNGs keyed by
    their validated relative paths), replacing an older copy atomically: a reader sees the old folder or the new
    one, never a mix. The one writer of stored bundles (the service's uploads, ``index --ray``). Returns the folder.
    """
    dest = bundles_dir / safe_folder_name(name)
    tmp = bundles_dir / f".incoming-{dest.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, png in images.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(png)
    (tmp / TRANSFORMS).write_text(json.dumps(transforms, indent=1))
    old = bundles_dir / f".old-{dest.name}"
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
