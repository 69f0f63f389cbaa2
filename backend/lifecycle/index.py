"""``asset2vec index FOLDER``: from a folder of .blend files to a tagged, searchable library in one step.

Stages, each resumable after a kill (the work is checkpointed where it is done):

1. **capture** — every marked asset's 18 views into ``HOME/bundles``, in a headless Blender worker
   process, or one Ray task per .blend with ``ray_address`` (:mod:`.ray_capture`) (up-to-date bundles
   are skipped by content hash; a file that crashed Blender twice is skipped and reported);
2. **train** — a new decoder on every bundle of the home, in ``HOME/training`` (checkpoints;
   resumed), then its instant encoder (seconds to a minute: the service then embeds at once),
   renamed to ``HOME/models/<model_id>`` when done. Skipped when a library model is
   active and no retrain is asked: new assets then get codes by inversion;
3. **embed** — the run's training codes into the catalogue, then inversion (in committed batches)
   of every bundle that has no code of the model yet or whose asset changed;
4. **tags** — classifiers from the tags artists already gave (and their review answers);
5. **neighbours** — stored suggestions in shape, texture and both spaces;
6. **activate** — the new model becomes the active one (one transaction), the old one stays
   restorable; then the exploration page is written.

The catalogue is shared with a running backend; until step 6 nothing it serves changes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from backend.numbers import finite_or_none
from shared.api import SPACES, THUMBNAIL_VIEW

from .home import LibraryHome, catalogue_fields, read_model_file, write_model_file
from .progress import STAGES, PipelineCancelled, PipelineError, ProgressFn, StageProgress
from .pruning import mark_library_root, prune_library

log = logging.getLogger(__name__)

#: Stored suggestions per asset and space.
NEIGHBOURS_K = 10
#: A file that was being captured when the process died this many times is skipped.
MAX_CAPTURE_ATTEMPTS = 2
#: The instant encoder trains for this share of the decoder's training time, within these bounds (seconds).
ENCODER_SHARE, ENCODER_MIN_S, ENCODER_MAX_S = 0.25, 5.0, 60.0

@dataclass
class IndexOptions:
    """What ``asset2vec index`` does; see its ``--help`` for each option."""

    preset: str = "cpu-small"
    steps: int | None = None
    minutes: float | None = None
    size: int = 64
    samples: int = 16
    capture_device: str = "AUTO"
    device: str | None = None
    retrain: bool = False
    activate: bool = True
    invert_steps: int | None = None
    batch: int = 8
    checkpoint_every: int | None = None
    explore: bool = True
    encoder: bool = True  # train the new model's instant encoder
    encoder_minutes: float | None = None  # None: a share of the decoder's training time (ENCODER_SHARE)
    #: Out-of-fold precision a tag must reach to be written (None: the replaced tag model's, else 0.9).
    target_precision: float | None = None
    #: Capture on a Ray cluster, one task per .blend: its address ("auto", "ray://host:10001"), or "local" (a Ray
    #: instance started here); None: one headless Blender worker process on this machine.
    ray_address: str | None = None
    on_progress: ProgressFn | None = None
    cancel: threading.Event | None = None


@dataclass
class IndexSummary:
    """What a run did (printed by the CLI, returned by the service's job)."""

    home: str
    folder: str | None = None
    model_id: str = ""
    previous_model: str | None = None
    trained: bool = False
    activated: bool = False
    assets: int = 0
    captured: int = 0
    capture_up_to_date: int = 0
    failures: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)  # assets whose .blend is gone or no longer has them
    moved: dict[str, str] = field(default_factory=dict)  # old name -> new name (same content, moved or renamed)
    inverted: int = 0
    from_encoder: int = 0  # of the inverted: started from the instant encoder's code (a short refinement)
    heldout_psnr: float | None = None
    encoder: dict[str, Any] | None = None  # the new model's instant encoder: steps, seconds, nearest_own (or error)
    training_plan: dict[str, Any] | None = None  # projected before training: steps, seconds, peak memory
    tags: list[str] = field(default_factory=list)
    tags_help: str | None = None
    retrain_advice: str | None = None
    explore: str | None = None
    catalogue: dict[str, Any] | None = None  # its size: db_bytes, bytes_per_asset, parts_per_asset
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def index_library(folder: str | os.PathLike[str] | None, home: LibraryHome, opts: IndexOptions) -> IndexSummary:
    """Run the pipeline on ``folder`` (None: only the bundles already in the home, e.g. a retrain)."""
    home.create()
    with _exclusive(home):
        return _index(folder, home, opts)


@contextmanager
def _exclusive(home: LibraryHome) -> Iterator[None]:
    """One index run per home at a time (two would train into the same folder)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one run at a time is then the user's job
        yield
        return
    with open(home.root / ".index.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PipelineError(f"another `asset2vec index` (or a backend building a model) is working on "
                                f"{home.root}; wait for it to finish or stop it") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _index(folder: str | os.PathLike[str] | None, home: LibraryHome, opts: IndexOptions) -> IndexSummary:
    from backend.library.catalogue import BATCH_TIMEOUT_S, Catalogue

    summary = IndexSummary(home=str(home.root))
    src = Path(folder).expanduser().resolve() if folder is not None else None
    if src is not None:
        if not src.is_dir():
            raise PipelineError(f"{folder}: not a folder; give the library folder that holds the .blend files")
        if home.root == src or home.root.is_relative_to(src) and not _hidden_inside(home.root, src):
            raise PipelineError(f"the home {home.root} is inside the library {src}; choose a home elsewhere "
                                "(--home) or a hidden folder like FOLDER/.asset2vec")
        summary.folder = str(src)
    with Catalogue(home.catalogue, busy_timeout=BATCH_TIMEOUT_S) as cat:
        active = cat.active_model()
        active_info = next((m["info"] for m in cat.models() if m["model_id"] == active), {})
        summary.previous_model = active
    train_needed = opts.retrain or active is None or bool(active_info.get("generic"))
    stages = [s for s in STAGES if (s != "capture" or src is not None) and (s != "train" or train_needed)]
    progress = StageProgress(stages, opts.on_progress, opts.cancel)

    if src is not None:
        t0 = time.monotonic()
        progress.start("capture", f"capturing the assets of {src}")
        mark_library_root(src)
        captured = _capture(src, home, opts, progress, summary)
        summary.pruned, summary.moved = prune_library(src, home, captured)
        summary.seconds["capture"] = round(time.monotonic() - t0, 1)

    # A stored bundle no model can read (damaged, or written by an older release) is skipped and reported.
    summary.failures += home.set_aside_unreadable()
    if not any(home.bundles.glob("*/transforms.json")):
        raise PipelineError(f"no captured assets in {home.bundles}: index a folder with marked assets "
                            "(`asset2vec index FOLDER`)")
    if train_needed:
        t0 = time.monotonic()
        progress.start("train", "training the decoder on the library")
        model_id = _train(home, opts, progress, summary)
        summary.trained = True
        summary.seconds["train"] = round(time.monotonic() - t0, 1)
    else:
        model_id = str(active)
    summary.model_id = model_id

    from backend.training.run import load_run

    run = load_run(home.run_dir(model_id), device=opts.device)
    summary.heldout_psnr = finite_or_none(run.heldout_psnr, digits=3)
    with Catalogue(home.catalogue, busy_timeout=BATCH_TIMEOUT_S) as cat:
        t0 = time.monotonic()
        progress.start("embed", "storing codes")
        _embed(run, cat, home, opts, progress, summary)
        summary.seconds["embed"] = round(time.monotonic() - t0, 1)

        progress.start("features", "pretrained appearance features of new assets")
        _appearance_features(cat, home, summary, progress, opts.ray_address)

        t0 = time.monotonic()
        progress.start("tags", "learning tags from the artists' tags")
        _tags(run, cat, home, summary, opts.target_precision, progress=progress)
        summary.seconds["tags"] = round(time.monotonic() - t0, 1)

        t0 = time.monotonic()
        progress.start("neighbours", "finding similar assets")
        _neighbours(cat, model_id, progress)
        summary.seconds["neighbours"] = round(time.monotonic() - t0, 1)

        t0 = time.monotonic()
        progress.start("activate", "switching to the new model" if opts.activate else "finishing")
        if opts.activate and cat.active_model() != model_id:
            cat.activate_model(model_id)
        summary.activated = cat.active_model() == model_id
        from .advice import retrain_advice

        summary.retrain_advice = retrain_advice(cat, run)
        if opts.explore and summary.activated:
            summary.explore = _explore(run, cat, home, progress)
        summary.assets = len(cat.codes(model_id))
        summary.catalogue = {k: v for k, v in cat.size_report().items() if k in ("db_bytes", "bytes_per_asset", "parts_per_asset")}
        summary.seconds["activate"] = round(time.monotonic() - t0, 1)
    state = {k: v for k, v in home.read_state().items() if k not in ("built", "built_names")}
    home.write_state({**state, "finished": _now(), "model_id": model_id})
    progress.update(1, 1, f"done: model {model_id}, {summary.assets} assets")
    return summary


def _hidden_inside(path: Path, root: Path) -> bool:
    """True when ``path`` lies under a hidden folder of ``root`` (skipped by the capture's scan)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- stages ---------------------------------------------------------------------------------------

def _capture(src: Path, home: LibraryHome, opts: IndexOptions, progress: StageProgress,
             summary: IndexSummary) -> dict[str, Any]:
    """Capture ``src`` into the home's bundles (on Ray with ``opts.ray_address``); fill the summary's counts."""
    if opts.ray_address is not None:
        from .ray_capture import RayCaptureError, capture_on_ray

        try:
            result = capture_on_ray(src, home, opts.ray_address, size=opts.size, samples=opts.samples,
                                    device=opts.capture_device, max_attempts=MAX_CAPTURE_ATTEMPTS,
                                    on_progress=progress.update, cancel=opts.cancel)
        except RayCaptureError as e:
            raise PipelineError(str(e)) from None
        if result["status"] == "cancelled":
            raise PipelineCancelled("index stopped during capture; run it again to continue")
    else:
        result = _capture_in_worker(src, home, opts, progress)
    if result.get("status") != "done":
        raise PipelineError(str(result.get("error") or "the capture failed"))
    summary.captured, summary.capture_up_to_date = int(result["done"]), int(result["skipped"])
    summary.failures += list(result["failed"])
    if not summary.captured and not summary.capture_up_to_date:
        failed = summary.failures
        raise PipelineError(f"no asset of {src} could be captured"
                            + (f": {failed[0]}" if failed else " (mark assets with Mark as Asset)"))
    return result


def _capture_in_worker(src: Path, home: LibraryHome, opts: IndexOptions, progress: StageProgress) -> dict[str, Any]:
    """Capture ``src`` into the home's bundles in a headless Blender worker process.

    bpy never runs in this process: a backend builds models from a worker thread, and bpy only runs on
    its main thread. The file the worker has open is recorded before it is opened; when the worker
    dies on it (Blender crashed), a new worker continues, and a file that crashed Blender
    :data:`MAX_CAPTURE_ATTEMPTS` times is skipped and reported. A killed run remembers the counts.
    """
    from backend.bulk.workers import WorkerError, WorkerProcess

    state = home.read_state()
    attempts: dict[str, int] = state.get("capture_attempts", {})
    current: list[str] = []  # the file the worker has open (at most one)

    def record(stage: str) -> None:
        home.write_state({**state, "stage": stage, "folder": str(src), "capture_attempts": attempts})

    def on_event(event: dict[str, Any]) -> None:
        if event.get("ev") == "file":
            # The file opened before this one finished without killing Blender: forget its attempt.
            if current:
                attempts.pop(current[0], None)
            current[:] = [str(event["path"])]
            attempts[current[0]] = attempts.get(current[0], 0) + 1
            record("capture")
        elif event.get("ev") == "asset":
            progress.update(event["done"], event["total"], f"captured {event['done']}/{event['total']} assets")

    logs = home.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess(logs / "capture-worker.log")
    request = {"op": "capture", "src": str(src), "out": str(home.bundles), "size": opts.size,
               "samples": opts.samples, "device": opts.capture_device}
    try:
        while True:
            crashed = sorted(f for f, n in attempts.items() if n >= MAX_CAPTURE_ATTEMPTS)
            current.clear()
            result = worker.request({**request, "skip_files": crashed}, on_event)
            if not result.get("crashed"):
                break
            if not current:  # died before opening any file: not one file's fault
                raise PipelineError(f"the Blender capture worker crashed ({result['error']}); see {logs}")
            # Blender died on current[0]: its attempt stays counted; a new worker continues.
    except WorkerError as e:
        raise PipelineError(str(e)) from None
    except BaseException:
        # A Python-level stop (cancel, Ctrl-C, an error) is not a Blender crash: forget this file's attempt.
        worker.kill()
        if current:
            attempts.pop(current[0], None)
            record("capture")
        raise
    worker.stop()
    if current:
        attempts.pop(current[0], None)
    record("captured")
    return result


def _bundle_names(home: LibraryHome) -> list[str]:
    from backend.training.data import find_bundles, read_bundles

    return sorted(b.asset.name for b in read_bundles(find_bundles(home.bundles)))


def _train(home: LibraryHome, opts: IndexOptions, progress: StageProgress, summary: IndexSummary) -> str:
    from backend.model.errors import ModelError
    from backend.training.plan import plan_training
    from backend.training.trainer import TrainingStopped, train

    staging = home.training
    names = _bundle_names(home)
    state = home.read_state()
    built = state.get("built")
    if built and (home.run_dir(built) / "checkpoint.pt").is_file() and state.get("built_names") == names:
        return str(built)  # trained by an earlier run that was stopped after training: not again
    if (staging / "codes.npz").is_file():
        with np.load(staging / "codes.npz") as z:
            trained_names = sorted(str(n) for n in z["names"])
        if trained_names != names:
            # The library changed since that training started: its checkpoint cannot be resumed.
            shutil.rmtree(staging)
    if not (staging / "metrics.json").is_file():
        def on_step(step: int, total: int, sec_per_step: float) -> None:
            if opts.cancel is not None and opts.cancel.is_set():
                raise TrainingStopped()
            progress.update(step, total, f"training step {step}/{total}", eta_s=(total - step) * sec_per_step)

        overrides = {"checkpoint_every": opts.checkpoint_every} if opts.checkpoint_every else None
        if not (staging / "checkpoint.pt").is_file():  # a new run (a resumed one keeps its checkpoint's steps)
            plan = plan_training(len(names), preset=opts.preset, device=opts.device, steps=opts.steps,
                                 overrides=overrides)
            summary.training_plan = plan.to_json()
            progress.update(0, plan.steps, plan.summary(), eta_s=plan.expected_seconds, plan=summary.training_plan)
        try:
            train(home.bundles, staging, preset=opts.preset, resume=True, steps=opts.steps, minutes=opts.minutes,
                  device=opts.device, show_progress=False, on_step=on_step, overrides=overrides)
        except TrainingStopped:
            raise PipelineCancelled("index stopped during training (checkpoint kept); run it again to continue") \
                from None
        except ModelError as e:
            raise PipelineError(str(e)) from None
    metrics = json.loads((staging / "metrics.json").read_text())
    model_id = str(metrics["model_id"])
    if opts.encoder:
        summary.encoder = _train_encoder(staging, model_id, home, opts, progress, metrics)
    write_model_file(staging, {"model_id": model_id, "created": _now(), "generic": False,
                               "trained_on": metrics.get("assets"), "folder": summary.folder,
                               "preset": metrics.get("preset"), "steps": metrics.get("step"),
                               "heldout_psnr": metrics.get("heldout_psnr")})
    dest = home.run_dir(model_id)
    if dest.exists():  # a half-finished earlier rename cannot exist (rename is atomic); an old copy can
        shutil.rmtree(dest)
    os.replace(staging, dest)
    home.write_state({**home.read_state(), "built": model_id, "built_names": names})
    return model_id


def _train_encoder(run_dir: Path, model_id: str, home: LibraryHome, opts: IndexOptions, progress: StageProgress,
                   metrics: dict[str, Any]) -> dict[str, Any]:
    """Train the new model's instant encoder in its run folder (kept when already there, e.g. after a kill).

    A failure is reported in the summary, not raised: the model still embeds, by inversion only.
    """
    from backend.model.errors import ModelError
    from backend.training.encoder import load_encoder, train_encoder

    try:
        load_encoder(run_dir, model_id)
        return {"kept": True}
    except Exception:  # noqa: BLE001 - none yet, or half-written when a kill landed: train it (again)
        pass
    total = int(metrics.get("step") or 1)  # the train stage's progress stays at the decoder's last step
    if opts.encoder_minutes is not None:
        budget = opts.encoder_minutes * 60
    else:
        budget = min(max(ENCODER_SHARE * float(metrics.get("seconds") or 0.0), ENCODER_MIN_S), ENCODER_MAX_S)
    t0 = time.monotonic()

    def on_step(fraction: float, loss: float) -> None:
        left = (time.monotonic() - t0) / fraction * (1 - fraction) if fraction > 0 else budget
        what = "appearance features" if math.isnan(loss) else f"loss {loss:.3f}"  # NaN: the feature kind's step
        progress.update(total, total, f"training the instant encoder: {fraction:.0%} ({what})", eta_s=left)

    progress.update(total, total, "training the instant encoder", eta_s=budget)
    if opts.ray_address is not None:  # the feature encoder reads the views' features: compute them on the cluster
        _features_on_ray_first(home, opts.ray_address, lambda d, n, m: progress.update(total, total, m))
    try:
        done = train_encoder(run_dir, home.bundles, minutes=budget / 60, show_progress=False, on_step=on_step)
    except ModelError as e:
        return {"error": f"no instant encoder (embedding works by inversion): {e}"}
    # skipped: assets whose activations failed (their codes still come by inversion)
    return {"kind": done.kind, "steps": done.steps, "seconds": round(done.seconds, 1), "loss": round(done.loss, 4),
            "nearest_own": round(done.nearest_own, 3),
            **({} if done.nearest_own_oof is None else {"nearest_own_oof": round(done.nearest_own_oof, 3)}),
            **({"skipped": done.skipped} if done.skipped else {})}


def _embed(run: Any, cat: Any, home: LibraryHome, opts: IndexOptions, progress: StageProgress,
           summary: IndexSummary) -> None:
    from backend.library.catalogue import import_run
    from backend.training.data import find_bundles, read_bundles
    from backend.training.run import Cancelled

    info = read_model_file(run.run_dir)
    if not any(m["model_id"] == run.model_id and m["codes"] for m in cat.models()):
        thumbs = {}
        for b in read_bundles(find_bundles(home.bundles)):
            if b.asset.name in run.names:
                thumbs[b.asset.name] = b.image_bytes(THUMBNAIL_VIEW)
        import_run(cat, run, thumbnails=thumbs, activate=False)
    cat.register_model(run.model_id, run.preset, active=False, info=catalogue_fields(info))

    have = set(cat.codes(run.model_id).names)
    todo = []
    for b in read_bundles(find_bundles(home.bundles)):
        name = b.asset.name
        if name not in have:
            todo.append(b)
            continue
        stored = cat.asset_by_name(name).content_hash
        if b.asset.content_hash and stored and b.asset.content_hash != stored:
            todo.append(b)  # the asset changed since its code was made
    if todo and opts.ray_address is not None:  # the instant encoder reads their activations: on the cluster
        _features_on_ray_first(home, opts.ray_address, lambda d, n, m: progress.update(0, len(todo), m))
    for start in range(0, len(todo), opts.batch):
        batch = todo[start : start + opts.batch]
        progress.update(start, len(todo), f"fitting codes of new assets {start + 1}-{start + len(batch)} of {len(todo)}")
        init, steps = _first_pass(run, batch, opts.invert_steps)
        try:
            results = run.invert(batch, steps=steps, cancel=opts.cancel, init=init)
        except Cancelled:
            raise PipelineCancelled("index stopped while fitting codes; run it again to continue") from None
        with cat.transaction():  # one committed batch: a kill loses at most this batch
            codes = {}
            for b, r in zip(batch, results, strict=True):
                aid = cat.upsert_asset(b.asset, thumbnail=b.image_bytes(THUMBNAIL_VIEW))
                cat.set_artist_tags(aid, b.asset.tags)
                codes[aid] = (np.asarray(r.shape).reshape(-1), np.asarray(r.texture).reshape(-1), float(r.psnr))
            cat.set_codes(run.model_id, codes, source="inversion")
        summary.inverted += len(batch)
        summary.from_encoder += len(batch) if init is not None else 0
    progress.update(len(todo), len(todo), f"{len(todo)} new asset(s) fitted")


def _features_on_ray_first(home: LibraryHome, address: str, on_progress: Callable[[int, int, str], None]) -> None:
    """Fill the bundles' feature caches on Ray before the encoder reads them. Failures are left to the feature
    stage, which reports them (and computes what is missing on the head)."""
    try:
        from backend.training.data import find_bundles, read_bundles

        from .ray_features import features_on_ray

        features_on_ray(read_bundles(find_bundles(home.bundles)), address, on_progress)
    except Exception as e:  # noqa: BLE001 - the encoder then computes the features on the head
        log.warning("appearance features on Ray before the encoder: %s", e)


def _appearance_features(cat: Any, home: LibraryHome, summary: IndexSummary, progress: StageProgress,
                         ray_address: str | None = None) -> None:
    """Store the pretrained appearance feature of every bundle of the home whose views changed (issue 15's
    descriptor: :mod:`backend.features.library`; ~0.5 CPU-s per new asset, cached next to the bundle and in the
    catalogue). With ``ray_address`` the missing per-view features are computed by Ray tasks first
    (:mod:`.ray_features`). An asset whose feature fails is reported in ``summary.failures``; tags and the "both"
    space then use the codes only (they use the descriptor only when every asset has its feature)."""
    t0 = time.monotonic()
    try:
        from backend.features.library import store_library_features
        from backend.training.data import find_bundles, read_bundles

        bundles = read_bundles(find_bundles(home.bundles))
        if ray_address is not None:
            from .ray_features import features_on_ray

            summary.failures += features_on_ray(bundles, ray_address, progress.update)
        report = store_library_features(cat, bundles, progress.update)
    except PipelineCancelled:
        raise
    except Exception as e:  # noqa: BLE001 - the features are an improvement: never a reason to fail the index
        summary.failures.append(f"appearance features: {type(e).__name__}: {e}; tags and similar assets use the "
                                "codes only")
        return
    finally:
        summary.seconds["features"] = round(time.monotonic() - t0, 1)
    by_reason: dict[str, list[str]] = {}
    for name, why in sorted(report.failed.items()):
        by_reason.setdefault(why, []).append(name)
    for why, names in by_reason.items():  # one line per reason (a backbone that cannot load fails every asset)
        who = names[0] if len(names) == 1 else f"{len(names)} assets ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        summary.failures.append(f"{who}: no appearance feature ({why}); tags and similar assets in 'both' space "
                                "use the codes only until every asset has one")


def _first_pass(run: Any, batch: list[Any], invert_steps: int | None) -> tuple[np.ndarray | None, int | None]:
    """Where the inversion of new assets starts and how long it runs: the model's instant encoder gives each
    asset its code in one pass, so a short refinement (:data:`REFINE_SHARE` of the inversion steps, as the
    service's refinement) finishes it; without an encoder, the full inversion from the mean code.
    ``--invert-steps`` fixes the steps either way. Returns ``(init [B, 64] or None, steps)``."""
    from backend.model.errors import ModelError
    from backend.training.encoder import encode_bundles
    from backend.training.inversion import REFINE_SHARE

    full = invert_steps or int(run.config.train.inversion_steps)
    try:
        shape, texture = encode_bundles(run, batch)
    except ModelError:  # no (or a stale) encoder: inversion from the mean code
        return None, full
    init = np.concatenate([shape, texture], axis=1).astype(np.float32)
    return init, invert_steps or max(1, round(full * REFINE_SHARE))


def _tags(run: Any, cat: Any, home: LibraryHome | None, summary: IndexSummary,
          target_precision: float | None = None, progress: StageProgress | None = None) -> None:
    from backend.library.batched import store_predicted_tags
    from backend.library.errors import LibraryError
    from backend.library.review import fit_tag_model
    from backend.library.tags import NO_TAGS_HELP, TAG_MODEL_FILE, NoTagsError, TagModel, few_tags_help

    table = cat.codes(run.model_id)
    path = run.run_dir / TAG_MODEL_FILE
    # The tag policy being replaced (target precision, declared exclusive groups) stays: this model's own tag model,
    # else (a new model) the previously active model's. Only the policy: thresholds are calibrated anew.
    candidates = [(path, run.model_id)]
    if home is not None and summary.previous_model and summary.previous_model != run.model_id:
        candidates.append((home.run_dir(summary.previous_model) / TAG_MODEL_FILE, summary.previous_model))
    previous = None
    for file, model_id in candidates:
        try:
            previous = TagModel.load(file, expect_model=model_id) if file.is_file() else None
        except LibraryError:
            previous = None  # an old pickled or damaged file: never read, retrained from scratch here
        if previous is not None:
            break
    try:
        # The artists' tags and their review answers (rejections are negatives).
        model, _ = fit_tag_model(cat, run.model_id, table, previous=previous, target_precision=target_precision)
    except NoTagsError:
        summary.tags_help = NO_TAGS_HELP
        return
    except LibraryError as e:
        summary.tags_help = f"{e}. {NO_TAGS_HELP}"
        return
    if not model.classifiers:
        summary.tags_help = few_tags_help()
        return
    model.save(path)
    store_predicted_tags(cat, model, table)  # in batches: bounded memory at 100,000 assets
    summary.tags = model.tags
    if progress is not None:
        progress.update(1, 1, f"{len(model.tags)} tag(s) learnt from "
                              + ("the descriptor (appearance + codes + size)" if model.descriptor else "the codes"))


def _neighbours(cat: Any, model_id: str, progress: StageProgress) -> None:
    from backend.library.batched import store_neighbours
    from backend.library.similarity import SimilarityIndex, both_space_args

    # Embeds of unsaved files are never a library asset's neighbour (nor get stored suggestions).
    table = cat.codes(model_id, include_unsaved=False)
    k = min(NEIGHBOURS_K, max(len(table) - 1, 1))
    for i, space in enumerate(SPACES):
        # "both": issue 15's descriptor blocks (appearance + codes + size) when every asset has its feature.
        extra = both_space_args(cat, table) if space == "both" else {}
        progress.update(i, 3, f"similar assets in {space} space" + (" (with appearance)" if extra else ""))
        store_neighbours(cat, model_id, space, SimilarityIndex(table, space, **extra), k)  # in batches


def _explore(run: Any, cat: Any, home: LibraryHome, progress: StageProgress) -> str | None:
    from backend.library.report import explore_library

    table = cat.codes(run.model_id)
    if len(table) < 3:
        return None
    explore_library(run, cat, table, home.explore, progress=lambda msg: progress.update(0, 0, msg))
    return str(home.explore / "index.html")
