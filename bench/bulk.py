#!/usr/bin/env python3
"""Benchmark bulk-tag: assets per hour, capture included, with 1 and 2 Blender worker processes.

    .venv/bin/python -m bench.bulk                          # tiny synthetic cpu-small run trained here
    .venv/bin/python -m bench.bulk --run RUN_DIR --assets 24 --workers 1 2

(from the repository root: it builds its library with the tests' helpers, ``tests.blender_addon.bulk_support``).

A library of generated .blend files (one or two marked boxes each, artist tags) is tagged from
scratch for each worker count against a backend served on loopback from this process: capture at
``--size`` px (default 64) with ``--samples`` Cycles samples, upload, inversion on the backend
(the preset's inversion steps unless ``--invert-steps``), write-back and the atomic save. The seconds
the backend spent inverting are reported next to the wall time (``backend_busy_s``), so the share of
capture vs inversion is visible.

The backend inverts one asset at a time (a single job queue), so on a CPU-only machine the
inversion bounds the rate; more workers overlap capture with inversion. Results are printed and
written to ``bench/results/bulk.json`` with machine, CPU, core count and device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
_HOME = tempfile.mkdtemp(prefix="asset2vec-bench-blender-")
for _var, _sub in (("BLENDER_USER_CONFIG", "config"), ("BLENDER_USER_SCRIPTS", "scripts"),
                   ("BLENDER_USER_EXTENSIONS", "extensions"), ("BLENDER_USER_DATAFILES", "datafiles")):
    os.environ.setdefault(_var, os.path.join(_HOME, _sub))




def synthetic_run(work: Path, steps: int) -> Path:
    """A tiny cpu-small run on 8 synthetic assets: the decoder's quality does not change the inversion's cost."""
    from backend.training.trainer import train
    from tests.backend import synthetic

    items = [(k, c) for k in ("ball", "crate") for c in ("red", "green", "blue", "yellow")]
    synthetic.make_library(work / "library", items, size=32)
    print(f"training a tiny synthetic cpu-small run ({steps} steps) ...", file=sys.stderr)
    train(work / "library", work / "run", preset="cpu-small", steps=steps, show_progress=False)
    return work / "run"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="trained run (default: a tiny synthetic cpu-small run trained here)")
    ap.add_argument("--assets", type=int, default=12, help="approximate number of assets in the library (default 12)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure (default 1 2)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--invert-steps", type=int, help="inversion steps per asset (default: the preset's)")
    ap.add_argument("--train-steps", type=int, default=30)
    args = ap.parse_args()

    import bpy
    import torch

    from backend.bulk.driver import BulkOptions, bulk_tag
    from backend.service.engine import Engine
    from backend.service.server import Service
    from tests.blender_addon.bulk_support import make_library

    work = Path(tempfile.mkdtemp(prefix="asset2vec-bench-bulk-"))
    try:
        src_run = Path(args.run) if args.run else synthetic_run(work, args.train_steps)
        run = work / "served_run"
        shutil.copytree(src_run, run, ignore=shutil.ignore_patterns("catalogue.sqlite*", "tags.joblib"))
        engine = Engine.open(run, invert_steps=args.invert_steps)
        busy = [0.0]
        embed = engine.embed

        def timed_embed(*a, **kw):  # the backend's busy time: the sum of its embed jobs
            t = time.perf_counter()
            try:
                return embed(*a, **kw)
            finally:
                busy[0] += time.perf_counter() - t

        engine.embed = timed_embed
        svc = Service(engine, port=0, advertise=False).start_in_thread()
        info = engine.info()
        n_files = max(1, round(args.assets * 3 / 4))  # every third file holds two assets
        results = []
        for workers in args.workers:
            lib = work / f"library_{workers}"
            make_library(bpy, lib, n_files, bad=False)
            bpy.ops.wm.read_factory_settings(use_empty=True)
            engine_before = busy[0]
            t0 = time.perf_counter()
            s = bulk_tag(lib, BulkOptions(url=svc.url, model_id=info.model_id, workers=workers, size=args.size,
                                          samples=args.samples, progress=True))
            wall = time.perf_counter() - t0
            results.append({"workers": workers, "files": s.files, "assets": s.assets, "embedded": s.embedded,
                            "failed": s.files_failed, "wall_s": round(wall, 2),
                            "assets_per_hour": round(s.assets / wall * 3600, 1),
                            "backend_busy_s": round(busy[0] - engine_before, 2)})
            print(json.dumps(results[-1]), file=sys.stderr)
        svc.stop()
        engine.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "benchmark": "bulk",
        "machine": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(info.device or "cpu"),
        "cycles_device": "CPU",
        "python": platform.python_version(),
        "run": args.run or f"synthetic (8 assets, {args.train_steps} training steps)",
        "preset": info.preset,
        "capture_size": args.size,
        "capture_samples": args.samples,
        "invert_steps": args.invert_steps or "preset",
        "target_assets_per_hour": 600,
        "results": results,
    }
    print(json.dumps(out, indent=1))
    dest = ROOT / "bench" / "results" / "bulk.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
