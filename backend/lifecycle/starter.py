"""The starter model: a small, generic model built by a recorded recipe, so Embed works before any training.

``backend/starter/recipe.json`` (committed) says what the model is trained on and how. ``asset2vec
starter-model`` (run by ``python build.py demo`` and ``test``) builds it into ``backend/starter/model/``
(ignored by git, shipped in a built wheel as package data):

* the run folder: ``checkpoint.pt``, ``codes.npz``, ``config.json``, ``metrics.json``,
* ``tags.joblib``: tag classifiers learnt from the sample library's artist tags (as ``asset2vec tags
  train`` writes them, for the run's model id), on issue 15's descriptor (appearance + codes + size, the per-tag
  choice of :func:`backend.library.review.fit_tag_model`) when ``appearance.npz`` could be written,
* ``thumbnails.npz``: each training asset's captured thumbnail view (:mod:`backend.library.run_thumbnails`),
  stored with the codes when a home installs the model, so its thumbnails are the captured views, never decoder
  renders (a model built before this file existed gets it from the cached captures on the next build, without
  retraining),
* ``appearance.npz``: each training asset's pretrained appearance feature (:mod:`backend.features.library`),
  stored in the catalogue when a home installs the model, so its "both" space is issue 15's descriptor from the
  start (added from the cached captures to a model built before it existed),
* ``MODEL.json`` (what the library home reads: generic, trained on N assets) and ``MANIFEST.json``: the
  recipe and its digest, the exact commands, the training data and its digest, model id, held-out
  PSNR, software versions, creation time, ``"generic": true``.

Every step is skipped when its output is complete, so a killed build continues where it stopped.
Intermediate data (the sample library, captures, the run being trained) stays in a cache folder
(``.cache/starter/`` in a source checkout), never in the package; the finished model replaces the
output folder in one rename, so the output is either the old model or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.library.errors import LibraryError
from backend.library.run_thumbnails import THUMBNAILS_FILE, write_thumbnails
from shared.api import THUMBNAIL_VIEW

STARTER_DIR = Path(__file__).resolve().parents[1] / "starter"
RECIPE_FILE = STARTER_DIR / "recipe.json"
DEFAULT_OUT = STARTER_DIR / "model"
MANIFEST_FILE = "MANIFEST.json"
#: Files a built starter model must have (beside config.json and metrics.json).
REQUIRED = ("checkpoint.pt", "codes.npz", "tags.joblib", MANIFEST_FILE)
BUILD_HINT = "build it with `python build.py test` (or `python build.py demo`), or `asset2vec starter-model`"

Say = Callable[[str], None]


class StarterError(LibraryError):
    """The starter model is missing, stale or cannot be built; the message says what to do."""


# -- recipe -------------------------------------------------------------------------------------

def recipe_digest(recipe: dict[str, Any]) -> str:
    """sha256 of the recipe's canonical JSON (sorted keys, no spaces). ``build.py`` computes the same."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_recipe(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The recipe (default ``backend/starter/recipe.json``), checked for the fields the build needs."""
    path = Path(path or RECIPE_FILE)
    try:
        recipe = json.loads(path.read_text())
        for section, key in (("data", "sample_library_seed"), ("capture", "size"), ("capture", "samples"),
                             ("train", "preset"), ("train", "steps"), ("train", "seed")):
            recipe[section][key]  # noqa: B018  (presence check)
    except OSError as e:
        raise StarterError(f"cannot read the starter recipe {path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise StarterError(f"the starter recipe {path} is malformed ({e!r} missing or invalid)") from None
    return recipe


# -- the built model ----------------------------------------------------------------------------

def starter_manifest(run_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The built starter model's ``MANIFEST.json`` (default folder: ``backend/starter/model``)."""
    path = Path(run_dir or DEFAULT_OUT) / MANIFEST_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StarterError(f"no starter model in {path.parent}: {BUILD_HINT}") from None
    except (OSError, ValueError) as e:
        raise StarterError(f"the starter model's {path} is unreadable ({e}): rebuild it; {BUILD_HINT}") from None


def starter_run_dir(run_dir: str | os.PathLike[str] | None = None) -> Path:
    """The built starter run folder, checked complete and built from the current recipe.

    Raises :class:`StarterError` saying how to build it when it is missing, incomplete or built from
    another recipe digest.
    """
    folder = Path(run_dir or DEFAULT_OUT)
    manifest = starter_manifest(folder)
    want = recipe_digest(load_recipe())
    if manifest.get("recipe_digest") != want:
        raise StarterError(f"the starter model in {folder} was built from another recipe "
                           f"({str(manifest.get('recipe_digest'))[:12]}, {RECIPE_FILE.name} is now {want[:12]}): "
                           f"rebuild it; {BUILD_HINT}")
    missing = [f for f in REQUIRED if not (folder / f).is_file()]
    if missing:
        raise StarterError(f"the starter model in {folder} is incomplete (no {', '.join(missing)}): {BUILD_HINT}")
    return folder


def default_cache() -> Path:
    """``.cache/starter`` in a source checkout, else ``$XDG_CACHE_HOME/asset2vec/starter`` (``~/.cache``)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "backend").is_dir():
        return root / ".cache" / "starter"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "asset2vec" / "starter"


# -- building -----------------------------------------------------------------------------------

def build_starter(
    out: str | os.PathLike[str] | None = None,
    sh3d: str | os.PathLike[str] | None = None,
    force: bool = False,
    cache: str | os.PathLike[str] | None = None,
    command: str | None = None,
    say: Say = print,
) -> dict[str, Any]:
    """Build the starter model by the recipe into ``out`` (default ``backend/starter/model``); returns its manifest.

    ``sh3d``: a Sweet Home 3D catalogue folder (``catalog.json`` + OBJ models) trained on as well.
    Skips everything when ``out`` already holds a model of this recipe and data, unless ``force``
    (which retrains; the cached captures are reused). ``command`` is recorded as the build command.
    """
    t_start = time.perf_counter()
    recipe = load_recipe()
    digest = recipe_digest(recipe)
    out = Path(out or DEFAULT_OUT).resolve()
    cache = Path(cache or default_cache()).resolve()
    sh3d = Path(sh3d).resolve() if sh3d else None
    if sh3d is not None and not sh3d.is_dir():
        raise StarterError(f"--sh3d {sh3d}: no such folder (fetch it with shared/data/fetch_sh3d_default.py DIR)")
    seed, cap, tr = int(recipe["data"]["sample_library_seed"]), recipe["capture"], recipe["train"]
    data_key = f"sample-seed{seed}" + ("+sh3d" if sh3d else "")
    command = command or "asset2vec starter-model" + (f" --out {out}" if out != DEFAULT_OUT.resolve() else "") + (
        f" --sh3d {sh3d}" if sh3d else "")

    bundles = cache / f"bundles-{cap['size']}px-{cap['samples']}spp-{data_key}"
    if not force:
        current = _manifest_or_none(out)
        if current and current.get("recipe_digest") == digest and current.get("data", {}).get("key") == data_key \
                and all((out / f).is_file() for f in REQUIRED):
            say(f"starter model up to date in {out} (recipe {digest[:12]}, model {current.get('model_id')})")
            if not (out / THUMBNAILS_FILE).is_file():  # built before the thumbnails were shipped: add them
                current = _add_thumbnails(out, bundles, current, say)
            if not (out / APPEARANCE_FILE).is_file():  # built before the appearance features were shipped
                current = _add_appearance(out, bundles, current, say)
            return current
    _check_out_folder(out)

    stage = cache / f"run-{digest[:12]}-{data_key}"
    if force:
        shutil.rmtree(stage, ignore_errors=True)
    library = cache / f"sample-seed{seed}"
    commands: list[str] = []

    t0 = _step(say, f"1. Sample library (seed {seed}) -> {library}")
    commands.append(f"asset2vec sample-library CACHE/{library.name} --seed {seed}")
    if not (library / "ground_truth.json").is_file():
        from blender_addon.headless.sample_library import build_sample_library

        build_sample_library(library, seed=seed)
    sources = [{"kind": "sample-library", "seed": seed, "folder": f"CACHE/{library.name}"}]
    _done(say, t0, "ready")

    sh3d_lib = cache / "sh3d"
    if sh3d is not None:
        t0 = _step(say, f"1b. Sweet Home 3D catalogue {sh3d} -> {sh3d_lib}")
        catalog = sh3d / "catalog.json"
        argv = ["import-folder", str(sh3d), str(sh3d_lib)] + (["--catalogue", str(catalog)] if catalog.is_file() else [])
        commands.append(shlex.join(["asset2vec", *argv]).replace(str(sh3d_lib), "CACHE/sh3d"))
        marker = sh3d_lib / "source.txt"
        if not (marker.is_file() and marker.read_text() == str(sh3d) and (sh3d_lib / "import_report.json").is_file()):
            shutil.rmtree(sh3d_lib, ignore_errors=True)
            _import_folder(sh3d, sh3d_lib, catalog if catalog.is_file() else None)
            marker.write_text(str(sh3d))
        sources.append({"kind": "sweet-home-3d", "folder": str(sh3d), "catalogue": catalog.is_file()})
        _done(say, t0, "imported")

    t0 = _step(say, f"2. Capture 18 views per asset at {cap['size']} px, {cap['samples']} samples -> {bundles}")
    plain = cache / f"bundles-{cap['size']}px-{cap['samples']}spp-sample-seed{seed}" / "sample"
    if sh3d is not None and plain.is_dir() and not (bundles / "sample").exists():
        shutil.copytree(plain, bundles / "sample")  # the sample library's captures without sh3d: reuse them
    for src, sub in [(library, "sample"), *([(sh3d_lib, "sh3d")] if sh3d else [])]:
        argv = ["capture", str(src), "--out", str(bundles / sub), "--size", str(cap["size"]),
                "--samples", str(cap["samples"]), "--device", str(cap.get("device", "CPU"))]
        commands.append(shlex.join(["asset2vec", *argv]).replace(str(cache), "CACHE"))
        # The capture skips assets whose bundle is up to date.
        _capture(src, bundles / sub, cap, allow_partial=sub == "sh3d")
    _done(say, t0, f"{sum(1 for _ in bundles.rglob('transforms.json'))} bundles")

    t0 = _step(say, f"3. Train the decoder ({tr['preset']}, {tr['steps']} steps, seed {tr['seed']}) -> {stage}")
    threads = tr.get("threads")
    commands.append(f"asset2vec train CACHE/{bundles.name} --out RUN --preset {tr['preset']} --steps {tr['steps']}"
                    + (f" --threads {threads}" if threads else "") + f"  # TrainConfig.seed = {tr['seed']}"
                    + "".join(f", {k} = {v}" for k, v in tr.get("overrides", {}).items()))
    metrics = _train(bundles, stage, tr)
    _done(say, t0, f"step {metrics['step']}, held-out PSNR {metrics['heldout_psnr']:.2f} dB")

    t0 = _step(say, "4. Tag classifiers from the training assets' artist tags (and appearance features)")
    appearance = _write_appearance(stage, bundles, _run_names(stage), say)
    tg = recipe.get("tags", {})
    argv = ["tags", "train", "--run", str(stage), "--min-examples", str(tg.get("min_examples", 3))]
    argv += [] if tg.get("use_size", True) else ["--no-size"]
    commands.append(shlex.join(["asset2vec", *argv]).replace(str(stage), "RUN"))
    tags = _train_tags(stage, metrics["model_id"], min_examples=int(tg.get("min_examples", 3)),
                       use_size=bool(tg.get("use_size", True)))
    _done(say, t0, f"{len(tags)} tags: {', '.join(tags)}")

    enc = recipe.get("encoder")
    if enc:
        kind = str(enc.get("kind", "views"))
        cnn = f" --steps {enc['steps']}  # seed {enc['seed']}" if kind == "views" else ""
        t0 = _step(say, f"5. Instant encoder (kind {kind}): Embed answers at once")
        commands.append(f"asset2vec train-encoder CACHE/{bundles.name} --run RUN --kind {kind}{cnn}")
        _done(say, t0, _train_starter_encoder(stage, bundles, metrics["model_id"], enc))

    t0 = _step(say, f"6. Thumbnails, manifest, then publish -> {out}")
    manifest = _manifest(stage, recipe, digest, data_key, sources, command, commands, metrics, tags, cache,
                         time.perf_counter() - t_start, bundles, appearance)
    _publish(stage, out)
    for other in cache.glob("run-*"):  # runs of earlier recipes: never used again
        if other != stage:
            shutil.rmtree(other, ignore_errors=True)
    _done(say, t0, f"model {manifest['model_id']}, {_size(out) / 1e6:.1f} MB")
    say(f"\nstarter model built in {time.perf_counter() - t_start:.0f} s: {out}")
    return manifest


def _step(say: Say, title: str) -> float:
    say(f"\n== {title}")
    return time.perf_counter()


def _done(say: Say, t0: float, what: str) -> None:
    say(f"   {what} ({time.perf_counter() - t0:.1f} s)")


def _import_folder(src: Path, out: Path, catalogue: Path | None) -> None:
    """``asset2vec import-folder``: OBJ/glTF models into marked assets (some failing models are accepted)."""
    from blender_addon.headless.import_folder import FolderImportError, import_folder

    try:
        import_folder(src, out, catalogue)
    except FolderImportError as e:
        raise StarterError(f"importing {src} failed: {e}") from None


def _capture(src: Path, out: Path, cap: dict[str, Any], allow_partial: bool = False) -> None:
    """``asset2vec capture``: every marked asset of ``src``; failed assets are accepted when ``allow_partial``."""
    from blender_addon.headless import AddonError
    from blender_addon.headless.capture_library import capture_library

    try:
        summary = capture_library(src, out, size=int(cap["size"]), samples=int(cap["samples"]),
                                  device=str(cap.get("device", "CPU")))
    except AddonError as e:
        raise StarterError(f"capturing {src} failed: {e}") from None
    if summary.failed and (not allow_partial or not (summary.done or summary.skipped)):
        raise StarterError(f"capturing {src} failed for {len(summary.failed)} asset(s): {summary.failed[0]}")


def _manifest_or_none(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None


def _check_out_folder(out: Path) -> None:
    """Refuse to replace a folder that is not a starter model (the publish step replaces ``out`` whole)."""
    if out.is_file():
        raise StarterError(f"--out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise StarterError(f"--out {out} is not empty and holds no starter model ({MANIFEST_FILE}); "
                           f"choose a new or empty folder")


def _train(bundles: Path, stage: Path, tr: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume, or skip when finished) the run in ``stage``; returns its metrics.json."""
    import torch

    from backend.model.errors import ModelError
    from backend.training.trainer import train

    done = _json_or_none(stage / "metrics.json")
    if done and int(done.get("step", -1)) == int(tr["steps"]):
        return done
    (stage / "metrics.json").unlink(missing_ok=True)
    before = torch.get_num_threads()
    if tr.get("threads"):
        torch.set_num_threads(int(tr["threads"]))  # one thread: reproducible sums, and fastest on a loaded CPU
    try:
        train(bundles, stage, tr["preset"], resume=(stage / "checkpoint.pt").is_file(), steps=int(tr["steps"]),
              overrides={**tr.get("overrides", {}), "seed": int(tr["seed"])})
    except ModelError as e:
        raise StarterError(f"training the starter model failed: {e}") from None
    finally:
        torch.set_num_threads(before)
    return json.loads((stage / "metrics.json").read_text())


def _train_starter_encoder(stage: Path, bundles: Path, model_id: str, enc: dict[str, Any]) -> str:
    """Fit ``stage/encoder.pt`` of the recipe's kind (``feature`` or ``views``) unless it is already this model's."""
    from backend.model.errors import ModelError
    from backend.training.encoder import load_encoder, train_encoder

    try:
        load_encoder(stage, model_id)
        return "up to date"
    except ModelError:
        pass
    try:
        done = train_encoder(stage, bundles, minutes=60.0, steps=int(enc.get("steps", 300)),
                             seed=int(enc.get("seed", 0)), show_progress=False, kind=str(enc.get("kind", "views")))
    except ModelError as e:
        raise StarterError(f"training the starter's encoder failed: {e}") from None
    oof = "" if done.nearest_own_oof is None else f"; {done.nearest_own_oof:.0%} nearest their own out of fold"
    return f"{done.kind}: {done.steps} steps in {done.seconds:.1f} s{oof}"


def _run_names(run_dir: Path) -> list[str]:
    """The asset names of a run folder's codes (``codes.npz``), in the run's order."""
    import numpy as np

    with np.load(run_dir / "codes.npz", allow_pickle=False) as z:
        return [str(n) for n in z["names"]]


def _train_tags(stage: Path, model_id: str, min_examples: int, use_size: bool) -> list[str]:
    """Train the tag model as ``asset2vec tags train`` does unless ``stage/tags.joblib`` is already this model's
    (and on the descriptor, when the stage ships appearance features)."""
    from backend.library.tags import TagModel

    path = stage / "tags.joblib"
    try:
        model = TagModel.load(path, expect_model=model_id)
        if use_size and model.descriptor is None and (stage / APPEARANCE_FILE).is_file():
            raise LibraryError("codes-only tag model; the features are there now")  # (no descriptor without size)
    except (LibraryError, OSError):
        path.unlink(missing_ok=True)
        for f in stage.glob("catalogue.sqlite*"):  # a catalogue left by an earlier attempt: start clean
            f.unlink()
        model = _fit_starter_tags(stage, stage / "catalogue.sqlite", min_examples, use_size)
        if model.classifiers:
            model.save(path)
    if not model.classifiers:
        raise StarterError("the starter tag model learnt no tag (too few tagged assets in the recipe's data)")
    return sorted(model.classifiers)


def _fit_starter_tags(run_dir: Path, catalogue: Path, min_examples: int, use_size: bool) -> Any:
    """The tag model of the run in ``run_dir``, fitted through a build catalogue at ``catalogue`` holding the run's
    training codes, artist tags and (when ``run_dir`` ships them) appearance features."""
    from backend.features.library import import_run_appearance
    from backend.library.catalogue import Catalogue, import_run
    from backend.library.review import fit_tag_model
    from backend.training.run import load_run

    run = load_run(run_dir, "cpu")
    with Catalogue(catalogue, expect_model=run.model_id) as cat:
        table = import_run(cat, run)  # the run's training codes and artist tags
        import_run_appearance(cat, run)  # with every asset's feature, the model learns on the descriptor
        model, _ = fit_tag_model(cat, run.model_id, table, use_size=use_size, min_examples=min_examples)
    return model


def _json_or_none(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _manifest(stage: Path, recipe: dict[str, Any], digest: str, data_key: str, sources: list[dict[str, Any]],
              command: str, commands: list[str], metrics: dict[str, Any], tags: list[str], cache: Path,
              seconds: float, bundles: Path, appearance: dict[str, Any] | None) -> dict[str, Any]:
    """Write ``thumbnails.npz``, ``MANIFEST.json`` and ``MODEL.json`` into ``stage``; returns the manifest."""
    import sklearn
    import torch

    from backend.lifecycle.home import write_model_file
    from backend.training.run import load_run
    from shared.atomic import atomic_write

    run = load_run(stage, "cpu")
    lines = sorted(f"{a.name}\t{a.content_hash}\n" for a in run.assets)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        from importlib.metadata import version

        a2v = version("asset2vec")
    except Exception:  # noqa: BLE001  (not installed as a distribution: a plain checkout)
        a2v = "unknown"
    manifest = {
        "name": "Asset2Vec starter model",
        "generic": True,
        "about": "Generic: trained on the procedural sample library, not on your assets. Build a model from "
                 "your own library with `asset2vec index FOLDER` (or the add-on's Build model from library).",
        "model_id": run.model_id,
        "preset": run.preset,
        "recipe": recipe,
        "recipe_digest": digest,
        "command": command,
        "commands": commands,
        "cache": str(cache),
        "data": {
            "key": data_key,
            "sources": sources,
            "assets": len(run.names),
            "digest": hashlib.sha256("".join(lines).encode()).hexdigest(),
            "digest_of": "sha256 over the sorted lines '<asset name>\\t<content hash>\\n' of the training bundles",
        },
        "steps": metrics["step"],
        "train_seconds": round(float(metrics["seconds"]), 1),
        "heldout_psnr": round(float(metrics["heldout_psnr"]), 3),
        "heldout_psnr_silhouette": round(float(metrics["heldout_psnr_silhouette"]), 3),
        "train_psnr": round(float(metrics["train_psnr"]), 3),
        "tags": tags,
        "thumbnails": _write_thumbnails(stage, bundles, run.names),
        "appearance": appearance,
        "versions": {"asset2vec": a2v, "python": platform.python_version(), "torch": torch.__version__,
                     "numpy": __import__("numpy").__version__, "scikit-learn": sklearn.__version__},
        "created": created,
        "build_seconds": round(seconds, 1),
    }
    write_model_file(stage, {"model_id": run.model_id, "created": created, "generic": True, "starter": True,
                             "trained_on": len(run.names), "recipe_digest": digest})
    atomic_write(stage / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
    return manifest


def _starter_thumbnails(bundles: Path, names: Iterable[str]) -> dict[str, bytes]:
    """The thumbnail view's PNG bytes of each bundle under ``bundles`` whose asset is one of ``names``."""
    from backend.training.data import find_bundles
    from shared.bundle import BundleError, read_bundle

    wanted, out = set(names), {}
    for folder in find_bundles(bundles):
        try:
            b = read_bundle(folder)
            if b.asset.name in wanted:
                out[b.asset.name] = b.image_bytes(THUMBNAIL_VIEW)
        except (BundleError, OSError):
            continue  # an asset without its view: the service renders that one thumbnail through the decoder
    return out


def _write_thumbnails(folder: Path, bundles: Path, names: Iterable[str]) -> dict[str, Any]:
    """Write ``folder/thumbnails.npz`` from the captures; what the manifest says about it."""
    count = write_thumbnails(folder / THUMBNAILS_FILE, _starter_thumbnails(bundles, names))
    return {"file": THUMBNAILS_FILE, "view": THUMBNAIL_VIEW, "assets": count,
            "about": "each asset's captured thumbnail view (PNG), stored with its codes when a home installs "
                     "the model"}


APPEARANCE_FILE = "appearance.npz"  # backend.features.library.RUN_APPEARANCE_FILE (named here: no torch import)


def _write_appearance(folder: Path, bundles: Path, names: Iterable[str], say: Say) -> dict[str, Any] | None:
    """Write ``folder/appearance.npz``: each training asset's pretrained appearance feature (issue 15's descriptor),
    stored in a home's catalogue when it installs the model, so the "both" space and descriptor tags work from the
    start; what the manifest says about it (None when the backbone cannot run: the model works without)."""
    from backend.features import FeatureError
    from backend.features.library import FEATURE, bundle_feature, write_run_appearance
    from backend.training.data import find_bundles
    from shared.bundle import BundleError, read_bundle

    wanted, vectors = set(names), {}
    try:
        for path in find_bundles(bundles):
            try:
                b = read_bundle(path)
            except (BundleError, OSError):
                continue
            if b.asset.name in wanted:
                vectors[b.asset.name] = bundle_feature(b)[0]
        count = write_run_appearance(folder / APPEARANCE_FILE, vectors)
    except (FeatureError, OSError, RuntimeError) as e:
        say(f"   no appearance features in the starter model ({e}); it works without them")
        return None
    return {"file": APPEARANCE_FILE, "feature": FEATURE, "assets": count,
            "about": "each asset's pretrained multi-view appearance feature (float16), stored with its codes when a "
                     "home installs the model"}


def _add_appearance(out: Path, bundles: Path, manifest: dict[str, Any], say: Say) -> dict[str, Any]:
    """Add ``appearance.npz`` to a built model from the cached captures (no retraining); the updated manifest."""
    if not bundles.is_dir():
        say(f"   no appearance features: the captures are not cached in {bundles}")
        return manifest
    try:
        about = _write_appearance(out, bundles, _run_names(out), say)
        if about is None:
            return manifest
        manifest = {**manifest, "appearance": about}
        os.chmod(out / APPEARANCE_FILE, 0o644)  # package data: readable by all, like the published files
        _republish_manifest(out, manifest)
    except (OSError, ValueError, KeyError) as e:  # the model works without them: say so, never fail the build
        say(f"   could not add the appearance features to the starter model in {out} ({e})")
        return manifest
    say(f"   added the appearance features of {manifest['appearance']['assets']} assets ({APPEARANCE_FILE})")
    return manifest


def _add_thumbnails(out: Path, bundles: Path, manifest: dict[str, Any], say: Say) -> dict[str, Any]:
    """Add ``thumbnails.npz`` to a built model from the cached captures (no retraining); the updated manifest."""
    if not bundles.is_dir():
        say(f"   no thumbnails: the captures are not cached in {bundles} (thumbnails are rendered by the decoder; "
            f"`asset2vec starter-model --force` rebuilds with them)")
        return manifest
    try:
        manifest = {**manifest, "thumbnails": _write_thumbnails(out, bundles, _run_names(out))}
        os.chmod(out / THUMBNAILS_FILE, 0o644)  # package data: readable by all, like the published files
        _republish_manifest(out, manifest)
    except (OSError, ValueError, KeyError) as e:  # the model works without them: say so, never fail the build
        say(f"   could not add the thumbnails to the starter model in {out} ({e}): thumbnails are rendered by the "
            f"decoder")
        return manifest
    say(f"   added the captured thumbnails of {manifest['thumbnails']['assets']} assets ({THUMBNAILS_FILE})")
    return manifest


def _republish_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Rewrite a published model's ``MANIFEST.json`` after a file was added or refitted in place."""
    from shared.atomic import atomic_write

    atomic_write(out / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
    os.chmod(out / MANIFEST_FILE, 0o644)  # package data: readable by all, like the published files


def _shipped(stage: Path) -> list[Path]:
    """The stage's files that belong to the model (not the build's catalogue, not temporaries)."""
    return sorted(p for p in stage.iterdir()
                  if p.is_file() and not p.name.startswith((".", "catalogue.sqlite")))


def _publish(stage: Path, out: Path) -> None:
    """Replace ``out`` with a copy of the stage's model files (one rename; the old model is removed after)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = out.parent / f".{out.name}.new-{os.getpid()}", out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for f in _shipped(stage):
        shutil.copy2(f, tmp / f.name)
        os.chmod(tmp / f.name, 0o644)  # package data: readable by all, whatever the builder's umask
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    for leftover in out.parent.glob(f".{out.name}.*-*"):  # this publish's old copy, and any of a killed one
        shutil.rmtree(leftover, ignore_errors=True)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
