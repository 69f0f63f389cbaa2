#!/usr/bin/env python3
"""Click to tags in Blender, timed: the Embed button on sample chairs, at each view size, median of N clicks,
against a fresh library home (the starter model, as `asset2vec serve` serves it to a new user) and, with
``--library``, against a library model (`asset2vec index` of the sample library, a short training).

Each click is driven the way Blender's timer drives it (the session's ``tick``), and timed in phases:

- ``capture_s``: click → the bundle is zipped and queued (main-thread slices: set-up, 18 views, transforms);
- ``answer_s``: → the backend's answer is in (upload, instant encoder, tags, neighbours);
- ``tags_s``: → the tags, neighbours and preview are written into the asset: *click to tags*;
- ``after_capture_s``: ``tags_s - capture_s``, upload to tags (what the backend and the write-back add);
- ``thumbnails_s``: → the neighbours' thumbnails are on disk (fetched after the tags, the list fills in);
- ``max_step_s``: the longest main-thread step (what Blender's UI waits for at most).

The backend refines every instant answer in the background; the bench cancels that job after each click so
the next click finds the backend idle (a click's own time is measured, not a queue). The add-on's thumbnail cache
is emptied before each click (the backend serves the captured views it stores: the starter model ships its
assets' views, `index` stores the library's).

    .venv/bin/python -m bench.panel_timing [--sizes 64 128] [--repeats 10] [--samples 16] [--library | --library-home HOME]

Writes ``bench/results/panel_timing.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def click(bpy: Any, obj: Any) -> dict[str, float]:
    """Press Embed on ``obj`` and step the session's timer until the tags are written; the phases' times."""
    from blender_addon import embed_job, session

    sess = session.get()
    for png in sess.thumbnails.folder.glob("*.png"):  # each click fetches its neighbours' thumbnails afresh
        png.unlink()
    bpy.context.view_layer.objects.active = obj
    bpy.context.scene.asset2vec.capture_target = "OBJECT"
    t0 = time.perf_counter()
    assert bpy.ops.asset2vec.embed() == {"FINISHED"}
    steps = [time.perf_counter() - t0]
    job = embed_job.current()
    marks: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while job.running or sess.fetches:  # the thumbnails come after the tags
        if time.monotonic() > deadline:
            raise SystemExit(f"embed did not finish: {job.message}")
        t = time.perf_counter()
        interval = sess.tick()
        now = time.perf_counter()
        steps.append(now - t)
        if "capture_s" not in marks and job._next == len(job.plan):
            marks["capture_s"] = now - t0
        if "answer_s" not in marks and len(job._results) == len(job.plan):
            marks["answer_s"] = now - t0
        if "tags_s" not in marks and not job.running:
            if job.state != embed_job.DONE:
                raise SystemExit(f"embed failed: {job.message}")
            marks["tags_s"] = now - t0
        time.sleep(interval or 0.0)
    marks["thumbnails_s"] = time.perf_counter() - t0
    marks.setdefault("answer_s", marks["tags_s"])
    marks["after_capture_s"] = marks["tags_s"] - marks["capture_s"]
    missing = [n.name for r in job._results.values() for n in r.all_neighbours()
               if not sess.thumbnails.path(n.name).is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} neighbour thumbnail(s) did not come, e.g. {missing[0]!r}")
    marks["max_step_s"] = max(steps)
    marks["main_thread_s"] = sum(steps)
    # Let the backend go idle for the next click: stop its refinement of this answer.
    from blender_addon import preferences
    from shared.client import BackendError, Client

    client = Client(preferences.connection()[0])
    for result in job._results.values():
        if result.refine_job:
            try:
                client.cancel_job(result.refine_job)
            except BackendError:
                pass
    sess.drop_refinement(job.target.key)
    return marks


def index_library(library: Path, home: Path, steps: int) -> dict[str, Any]:
    """A library model: `asset2vec index` of ``library`` into ``home`` with a short training (the sample
    library's 64 px captures cached by the starter build are reused when present: same files, same content)."""
    from backend.lifecycle.starter import default_cache

    cached = default_cache() / "bundles-64px-16spp-sample-seed0" / "sample"
    if cached.is_dir():
        shutil.copytree(cached, home / "bundles")
    t0 = time.perf_counter()
    argv = [sys.executable, "-m", "backend.cli", "index", str(library), "--home", str(home), "--steps", str(steps),
            "--encoder-minutes", "0.25", "--no-explore", "--progress-json"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    summary = next((e for e in events if e.get("event") == "summary"), None)
    if done.returncode != 0 or summary is None:
        raise SystemExit(f"asset2vec index failed:\n{done.stdout[-1000:]}{done.stderr[-2000:]}")
    return {"index_seconds": round(time.perf_counter() - t0, 1), "steps": steps, "assets": summary.get("assets"),
            "captured": summary.get("captured"), "capture_up_to_date": summary.get("capture_up_to_date"),
            "heldout_psnr": summary.get("heldout_psnr"), "encoder": summary.get("encoder")}


def time_model(bpy: Any, engine: Any, chairs: list[str], sizes: list[int], samples: int) -> dict[str, Any]:
    """Serve ``engine`` and click each chair at each size; medians and maxima per phase and size."""
    from backend.service.server import Service
    from blender_addon import preferences

    per_size: dict[str, Any] = {}
    with Service(engine, port=0, advertise=False) as svc:
        prefs = preferences.get()
        prefs.backend_url = svc.url
        prefs.capture_size, prefs.capture_samples = sizes[0], samples
        click(bpy, bpy.data.objects[chairs[0]])  # warm-up (first Cycles session, first request), not counted
        for size in sizes:
            prefs.capture_size = size
            runs = [click(bpy, bpy.data.objects[name]) for name in chairs]
            per_size[str(size)] = {
                key: {
                    "median": round(statistics.median(r[key] for r in runs), 3),
                    "max": round(max(r[key] for r in runs), 3),
                }
                for key in runs[0]
            }
            print(
                f"{engine.model_id[:8]} {size} px: "
                + ", ".join(f"{k} {v['median']:.2f} (max {v['max']:.2f})" for k, v in per_size[str(size)].items()),
                flush=True,
            )
    return per_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="view sizes in pixels")
    parser.add_argument("--repeats", type=int, default=10, help="clicks per size (different chairs)")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples (the add-on's default: 16)")
    parser.add_argument("--library", action="store_true",
                        help="also time a library model (asset2vec index of the sample library, short training)")
    parser.add_argument("--library-steps", type=int, default=150, help="training steps of that library model")
    parser.add_argument("--library-home", type=Path, default=None,
                        help="time this library home's model instead of indexing one (a copy is used)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="asset2vec-panel-timing-"))
    for var, sub in (
        ("BLENDER_USER_CONFIG", "config"),
        ("BLENDER_USER_SCRIPTS", "scripts"),
        ("BLENDER_USER_EXTENSIONS", "extensions"),
    ):
        os.environ.setdefault(var, str(work / f"blender-{sub}"))
    import bpy

    import blender_addon
    from backend.lifecycle.home import LibraryHome, read_model_file
    from backend.service.engine import Engine
    from blender_addon.headless.sample_library import build_sample_library

    truth = build_sample_library(work / "library", seed=0)
    chairs = [a["name"] for a in truth["assets"] if a["blend"] == "chairs.blend"][: args.repeats]
    models: dict[str, Any] = {}
    homes = {"starter": work / "home"}
    if args.library_home is not None:
        homes["library"] = work / "library-home"
        shutil.copytree(args.library_home, homes["library"])
        models["library"] = {"built": "beforehand, by asset2vec index (a copy of that home is timed)"}
    elif args.library:
        homes["library"] = work / "library-home"
        built = index_library(work / "library", homes["library"], args.library_steps)
        print(f"library model: {built}", flush=True)
        models["library"] = {"built": built}
    bpy.ops.wm.open_mainfile(filepath=str(work / "library" / "chairs.blend"))
    blender_addon.register()
    for kind, home in homes.items():
        engine = Engine.open_home(LibraryHome.at(home))
        try:
            seconds = time_model(bpy, engine, chairs, args.sizes, args.samples)
        finally:
            engine.close()
        about = {k: v for k, v in read_model_file(engine.served.state.run.run_dir).items()
                 if k in ("generic", "trained_on", "preset", "steps", "heldout_psnr")}
        models[kind] = {**models.get(kind, {}), "model_id": engine.model_id, **about, "seconds": seconds}
    blender_addon.unregister()

    report = {
        "machine": platform.node(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "device": "cpu (Cycles CPU capture)",
        "samples": args.samples,
        "clicks_per_size": len(chairs),
        "models": models,
        "phases": "capture_s: click -> bundle queued; answer_s: -> backend answer in; tags_s: -> tags, neighbours "
        "and preview written (click to tags); after_capture_s: tags_s - capture_s; thumbnails_s: -> neighbours' "
        "thumbnails on disk (after the tags); max_step_s: longest main-thread step; main_thread_s: "
        "main-thread time in all",
    }
    print(json.dumps(report, indent=1))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "panel_timing.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
