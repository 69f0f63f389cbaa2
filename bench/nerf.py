#!/usr/bin/env python3
"""Benchmark the latent NeRF on a folder of bundles (+ optional ground truth): quality, speed, disentanglement.

    python -m bench.nerf BUNDLES [--ground-truth DIR/ground_truth.json] [--minutes 5] [--unseen 6]
                         [--compare-uniform] [--threads 2]

Trains ``--preset`` (default cpu-small) for ``--minutes`` on all bundles but ``--unseen`` of them,
then reports: training time, samples/s, train and held-out-view PSNR (full image on white and
inside the silhouette), inversion time and PSNR for the unseen assets, and, with ground truth,
linear probes (standardised codes, logistic regression, 5-fold cross-validation) of every shape
attribute and of colour/material from the shape half, the texture half and the whole code.
``--compare-uniform`` trains a second run for the same time with 32 samples per ray uniformly in
the unit sphere (no visual hull) for the brief's calibration comparison. Prints and writes JSON
to ``bench/results/nerf.json``.
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

import numpy as np

from bench.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def probe(x: np.ndarray, labels: list, folds: int = 5) -> dict:
    """Cross-validated accuracy of a linear classifier on standardised ``x [N, D]``, with the majority-class rate."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = [i for i, v in enumerate(labels) if v is not None]
    y = np.array([str(labels[i]) for i in keep])
    values, counts = np.unique(y, return_counts=True)
    if len(values) < 2 or counts.min() < 2:
        return {"n": len(keep), "skipped": "fewer than 2 classes with 2 examples"}
    k = int(min(folds, counts.min()))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    acc = cross_val_score(clf, x[keep], y, cv=StratifiedKFold(k, shuffle=True, random_state=0))
    return {"n": len(keep), "classes": len(values), "accuracy": float(acc.mean()), "chance": float(counts.max() / len(y))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", type=Path)
    ap.add_argument("--ground-truth", type=Path, default=None)
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--unseen", type=int, default=6, help="assets kept out of training and inverted afterwards")
    ap.add_argument("--compare-uniform", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "nerf.json")
    ap.add_argument("--keep", type=Path, default=None, help="keep the trained run(s) in this folder")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a TrainConfig field of the main run (tuning), e.g. --set rays_per_batch=1024")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from backend.training.data import find_bundles, read_bundles
    from backend.training.run import load_run
    from backend.training.trainer import pick_device, train

    paths = find_bundles(args.bundles)
    every = max(len(paths) // max(args.unseen, 1), 1) if args.unseen else 0
    unseen = paths[every // 2 :: every][: args.unseen] if args.unseen else []
    seen = [p for p in paths if p not in unseen]
    work = Path(tempfile.mkdtemp(prefix="a2v-bench-nerf-"))
    for p in seen:  # a training library folder without the unseen assets
        shutil.copytree(p, work / "library" / p.name)
    device = pick_device(args.device)
    result: dict = {
        "benchmark": "nerf",
        "machine": platform.node(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "preset": args.preset,
        "library_size": len(seen),
        "unseen_assets": len(unseen),
        "minutes_budget": args.minutes,
    }
    runs = {"hull": {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}}
    result["overrides"] = runs["hull"]
    if args.compare_uniform:
        runs["uniform"] = {"sampling": "uniform", "samples_per_ray": 32, "empty_points": 0}
    for label, overrides in runs.items():
        t0 = time.perf_counter()
        s = train(work / "library", work / f"run-{label}", args.preset, steps=10**9, minutes=args.minutes,
                  device=args.device, overrides=overrides)
        result[f"train_{label}"] = {
            "wall_seconds": time.perf_counter() - t0,
            "train_seconds": s.seconds,
            "steps": s.step,
            "image_size": s.image_size,
            "samples_per_second": s.samples_per_second,
            "rays_kept_fraction": s.rays_kept_fraction,
            "train_psnr": s.train_psnr,
            "heldout_psnr": s.heldout_psnr,
            "heldout_psnr_silhouette": s.heldout_psnr_silhouette,
            "final_loss": s.loss,
        }
        print(json.dumps({label: result[f"train_{label}"]}, indent=1), flush=True)

    run = load_run(work / "run-hull", args.device)
    result["image_size"] = run.config.train.image_size
    if unseen:
        bundles = read_bundles(unseen)
        t0 = time.perf_counter()
        inv = run.invert(bundles)
        wall = time.perf_counter() - t0
        result["inversion"] = {
            "assets": len(bundles),
            "steps": run.config.train.inversion_steps,
            "wall_seconds": wall,
            "seconds_per_asset": wall / len(bundles),
            "psnr_mean": float(np.mean([r.psnr for r in inv])),
            "psnr": {b.asset.name: r.psnr for b, r in zip(bundles, inv, strict=True)},
        }
        print(json.dumps({"inversion": result["inversion"]}, indent=1), flush=True)

    if args.ground_truth:
        truth = {a["name"]: a for a in json.loads(args.ground_truth.read_text())["assets"]}
        names = [n for n in run.names if n in truth]
        idx = [run.names.index(n) for n in names]
        halves = {"shape": run.shape_codes[idx], "texture": run.texture_codes[idx]}
        halves["both"] = np.concatenate([halves["shape"], halves["texture"]], axis=1)
        probes: dict = {"assets": len(names)}
        attrs = [("shape", k) for k in truth[names[0]]["shape"]] + [("texture", k) for k in truth[names[0]]["texture"]]
        attrs.append(("", "family"))
        for group, key in attrs:
            labels = [truth[n][group][key] if group else truth[n][key] for n in names]
            probes[f"{group or 'asset'}.{key}"] = {h: probe(x, labels) for h, x in halves.items()}
        result["probes"] = probes
        print(json.dumps({"probes": probes}, indent=1), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"written to {args.out}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for r in work.glob("run-*"):
            shutil.copytree(r, args.keep / r.name, dirs_exist_ok=True)
        print(f"runs kept in {args.keep}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
