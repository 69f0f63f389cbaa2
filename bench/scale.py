#!/usr/bin/env python3
"""Studio scale (issue 20): ``asset2vec index`` on procedural libraries of growing size, plain and on Ray.

    .venv/bin/python -m bench.scale --work DIR [--sizes 100 400 1600] [--ray-sizes 100 400]
                                    [--preset cpu-small] [--capture-size 64] [--samples 16]

(from the repository root). ``DIR`` holds everything the run makes (the sample-library seeds, the libraries,
one home per run) and is reused: seeds already generated are kept; each index run starts from an empty home.

A library of N assets is made of whole .blend files of the sample-library generator
(``asset2vec sample-library``, one seed per folder, 72 assets in four files of 18; the parametric family
file is left out), taken seed after seed until N is reached: so N=100 gives 108 assets. The library has one
asset catalog file, at its top, so every asset's name is unique (``s001/chairs/Chair_00``). Each library is indexed
by ``asset2vec index`` in a child process of its own (``--child``), which records per stage its seconds and its
peak resident memory (RSS sampled every 0.1 s; the capture's Blender worker or Ray workers are other
processes, not counted), and at the end the process's peak RSS (``ru_maxrss``).

For the sizes in ``--ray-sizes`` the same library is indexed again with ``--ray`` on a local Ray instance
(as many workers as cores: 2 here) into a fresh home, and the two catalogues are compared: the same assets,
and the codes of each (the same seed) within a tolerance.

The JSON (``bench/results/scale.json``) holds the machine, every run, the per-asset time ratio of the
largest to the smallest library, and a projection to 10,000 assets: on this CPU (capture per asset measured
at the largest size, training from the steps rule and the measured seconds per step), on a GPU (training at
the seconds per step the GPU lease measured for the preset, ``docs/gpu_results``), and on a farm of N
capture nodes (capture time / N). Projections are labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ASSET_FILES = ("chairs.blend", "lamps.blend", "sofas.blend", "tables.blend")  # 18 assets each
#: Seconds per training step measured on the GPU lease (NVIDIA H200): docs/gpu_results/nerf_gpu_small.json
#: (cpu-small, 5859 steps in 45.0 s) and nerf_gpu_full.json (full preset at 64 px, 4112 steps in 90.0 s).
GPU_SECONDS_PER_STEP = {"cpu-small": 45.0 / 5859, "full": 90.0 / 4112}
PROJECT_TO = 10_000
FARM_NODES = (10, 50)


# -- libraries ------------------------------------------------------------------------------------------

def _asset2vec() -> list[str]:
    exe = Path(sys.executable).with_name("asset2vec")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "backend.cli"]


def seed_folder(work: Path, seed: int) -> Path:
    """The sample library of ``seed`` under ``work/seeds`` (generated once)."""
    folder = work / "seeds" / f"s{seed:03d}"
    if not (folder / "ground_truth.json").is_file():
        subprocess.run([*_asset2vec(), "sample-library", str(folder), "--seed", str(1000 + seed)], check=True,
                       stdout=subprocess.DEVNULL)
    return folder


def make_library(work: Path, n: int) -> tuple[Path, int]:
    """A library folder of at least ``n`` assets (whole files, hard links to the seeds'); returns it and its count."""
    lib = work / f"library-{n}"
    count, seed = 0, 0
    if lib.exists():
        shutil.rmtree(lib)
    while count < n:
        src = seed_folder(work, seed)
        truth = json.loads((src / "ground_truth.json").read_text())
        per_file: dict[str, int] = {}
        for rec in truth["assets"]:
            per_file[rec["blend"]] = per_file.get(rec["blend"], 0) + 1
        dest = lib / src.name
        dest.mkdir(parents=True)
        # One catalog file, at the library's top: a catalog file in each seed folder would make each a library
        # root of its own, and the seeds' assets would share names (``chairs/Chair_00``).
        if not (lib / "blender_assets.cats.txt").is_file():
            shutil.copy2(src / "blender_assets.cats.txt", lib)
        for name in ASSET_FILES:
            if count >= n:
                break
            os.link(src / name, dest / name)
            count += per_file[name]
        seed += 1
    return lib, count


# -- one index run, in a child process -----------------------------------------------------------------

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(lib: Path, home_dir: Path, preset: str, capture_size: int, samples: int, ray: bool,
          steps: int | None) -> dict[str, Any]:
    """Run ``index`` here; per-stage seconds and peak RSS (sampled), the summary and ``ru_maxrss``."""
    from backend.lifecycle.home import LibraryHome
    from backend.lifecycle.index import IndexOptions, index_library

    stage = ["start"]
    peaks: dict[str, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            peaks[stage[0]] = max(peaks.get(stage[0], 0), _rss_bytes())

    def on_progress(ev: dict[str, Any]) -> None:
        if ev["stage"] != stage[0]:
            stage[0] = ev["stage"]
            print(f"  [{time.strftime('%H:%M:%S')}] {ev['stage']}: {ev['message']}", file=sys.stderr, flush=True)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    summary = index_library(lib, LibraryHome.at(home_dir), IndexOptions(
        preset=preset, size=capture_size, samples=samples, ray_address="local" if ray else None, steps=steps,
        on_progress=on_progress))
    wall = time.monotonic() - t0
    stop.set()
    sampler.join()
    s = summary.as_dict()
    return {"wall_s": round(wall, 1), "seconds": s["seconds"], "assets": s["assets"], "captured": s["captured"],
            "failures": s["failures"][:5], "trained_steps": _trained_steps(home_dir, s["model_id"]),
            "heldout_psnr": s["heldout_psnr"], "model_id": s["model_id"],
            "training_plan": {k: (s.get("training_plan") or {}).get(k) for k in ("steps", "expected_seconds",
                                                                               "peak_memory_mb")},
            "peak_rss_mb_by_stage": {k: round(v / 2**20) for k, v in peaks.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _trained_steps(home_dir: Path, model_id: str) -> int | None:
    metrics = home_dir / "models" / model_id / "metrics.json"
    return json.loads(metrics.read_text()).get("step") if metrics.is_file() else None


def run_index(work: Path, lib: Path, tag: str, args: argparse.Namespace, ray: bool) -> dict[str, Any]:
    home = work / f"home-{tag}"
    if home.exists():
        shutil.rmtree(home)
    cmd = [sys.executable, "-m", "bench.scale", "--child", str(lib), str(home), "--preset", args.preset,
           "--capture-size", str(args.capture_size), "--samples", str(args.samples)] + (["--ray"] if ray else []) \
        + (["--steps", str(args.steps)] if args.steps else [])
    print(f"[{time.strftime('%H:%M:%S')}] index {lib.name} {'on Ray' if ray else 'plain'}", file=sys.stderr,
          flush=True)
    out = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    res["home"] = home.name
    return res


def compare_catalogues(home_a: Path, home_b: Path) -> dict[str, Any]:
    """The same assets? How far apart are the codes of each asset (max abs difference, and relative to the code norm)?"""
    import numpy as np

    from backend.library.catalogue import Catalogue

    tables = []
    for home in (home_a, home_b):
        with Catalogue(home / "catalogue.sqlite") as cat:
            t = cat.codes(cat.active_model())
            tables.append({n: np.concatenate([t.shape[i], t.texture[i]]) for i, n in enumerate(t.names)})
    a, b = tables
    common = sorted(set(a) & set(b))
    diffs = [float(np.abs(a[n] - b[n]).max()) for n in common]
    rel = [float(np.linalg.norm(a[n] - b[n]) / max(np.linalg.norm(a[n]), 1e-9)) for n in common]
    return {"assets_plain": len(a), "assets_ray": len(b), "same_assets": set(a) == set(b),
            "code_max_abs_diff": max(diffs, default=0.0), "code_rel_diff_max": max(rel, default=0.0)}


# -- projection -------------------------------------------------------------------------------------------

def project(runs: list[dict[str, Any]], preset: str) -> dict[str, Any]:
    """10,000 assets from the largest plain run: capture per asset x N; training from its steps rule."""
    big = max(runs, key=lambda r: r["assets"])
    n = big["assets"]
    sec = big["seconds"]
    capture = sec.get("capture", 0.0) / n
    train_s = sec.get("train", 0.0)
    steps = big.get("trained_steps") or 1
    per_step = train_s / steps
    steps_10k = round(steps * PROJECT_TO / n)  # steps grow in proportion to the library above the reference size
    rest = sum(v for k, v in sec.items() if k not in ("capture", "train")) / n
    cpu_train = steps_10k * per_step
    gpu_per_step = GPU_SECONDS_PER_STEP.get(preset)
    out: dict[str, Any] = {
        "assets": PROJECT_TO, "from_run": big["assets"], "kind": "projected from measured per-asset and per-step times",
        "capture_s_per_asset_measured": round(capture, 3), "train_s_per_step_measured": round(per_step, 4),
        "other_stages_s_per_asset_measured": round(rest, 3), "train_steps": steps_10k,
        "this_cpu_hours": round((capture + rest) * PROJECT_TO / 3600 + cpu_train / 3600, 2),
    }
    if gpu_per_step:
        out["gpu_training_hours"] = round(steps_10k * gpu_per_step / 3600, 2)
        out["gpu_training_source"] = "seconds per step measured on the GPU lease (NVIDIA H200), docs/gpu_results"
    for nodes in FARM_NODES:
        out[f"farm_{nodes}_nodes_capture_hours"] = round(capture * PROJECT_TO / nodes / 3600, 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, help="folder for seeds, libraries and homes (kept, reused)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600])
    ap.add_argument("--ray-sizes", type=int, nargs="*", default=[100, 400])
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--capture-size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--steps", type=int, help="training steps (default: the steps rule of the preset); a smoke run")
    ap.add_argument("--child", nargs=2, type=Path, metavar=("LIBRARY", "HOME"), help=argparse.SUPPRESS)
    ap.add_argument("--ray", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        res = child(*args.child, args.preset, args.capture_size, args.samples, args.ray, args.steps)
        print(json.dumps(res))
        return 0
    if args.work is None:
        ap.error("--work DIR is required")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    import torch

    report: dict[str, Any] = {"benchmark": "scale", **machine_info(), "torch_threads": torch.get_num_threads(),
                              "device": machine_info()["gpu"] or "cpu", "preset": args.preset,
                              "capture_size": args.capture_size, "capture_samples": args.samples, "runs": []}
    dest = RESULTS / "scale.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    for n in sorted(args.sizes):
        lib, count = make_library(work, n)
        plain = {"library": n, "ray": False, **run_index(work, lib, f"{n}-plain", args, ray=False)}
        plain["s_per_asset"] = round(plain["wall_s"] / count, 3)
        report["runs"].append(plain)
        print(json.dumps(plain), file=sys.stderr, flush=True)
        if n in args.ray_sizes:
            on_ray = {"library": n, "ray": True, **run_index(work, lib, f"{n}-ray", args, ray=True)}
            on_ray["s_per_asset"] = round(on_ray["wall_s"] / count, 3)
            on_ray["vs_plain"] = compare_catalogues(work / f"home-{n}-plain", work / f"home-{n}-ray")
            on_ray["capture_ratio_ray_to_plain"] = round(on_ray["seconds"]["capture"] / plain["seconds"]["capture"], 3)
            report["runs"].append(on_ray)
            print(json.dumps(on_ray), file=sys.stderr, flush=True)
        dest.write_text(json.dumps(report, indent=1))  # what is done so far survives a later failure
    plain_runs = [r for r in report["runs"] if not r["ray"]]
    small, big = min(plain_runs, key=lambda r: r["assets"]), max(plain_runs, key=lambda r: r["assets"])
    report["per_asset_ratio_largest_to_smallest"] = round(big["s_per_asset"] / small["s_per_asset"], 3)
    report["projection"] = project(plain_runs, args.preset)
    dest.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
