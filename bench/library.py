#!/usr/bin/env python3
"""Benchmark the library side: are the codes useful, and is search fast?

    .venv/bin/python -m bench.library --run RUN_DIR [--catalogue PATH] [--bundles DIR] [--codes 1000000]

* Quality (needs a run; ``--bundles`` adds the pixel baseline): 5-fold cross-validated category
  accuracy (logistic regression on standardised features) and same-category precision@10 (and @1,
  telling for small libraries where a category has fewer than 10 other members) of nearest neighbours, for the codes (both halves, shape only, texture only, both + log size) and
  for a 64-component PCA of the raw pixels of the same 18 views (composited on white, 32 px).
* Speed: exact top-10 latency over ``--codes`` random 64-number codes (and 32-number shape codes),
  single queries, median / p95, checked against brute force.

Prints a summary and writes ``bench/results/library.json`` with machine, CPU, cores and device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from backend.library.catalogue import Catalogue, CodeTable, import_run
from backend.library.quality import cv_accuracy, pca_features, precision_at_k, view_arrays
from backend.library.similarity import ExactIndex, Featurizer, brute_force

ROOT = Path(__file__).resolve().parents[1]

PIXEL_SIZE = 32


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The load average says whether other work shared the CPU (latency is memory-bandwidth bound).
    return {"machine": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "device": "cpu",
            "load_average_1min": os.getloadavg()[0], "python": platform.python_version(), "numpy": np.__version__}


# -- quality ------------------------------------------------------------------------------------

def pixel_features(table: CodeTable, bundles: Path, n_components: int = 64) -> np.ndarray:
    """PCA-64 of the 18 views of every asset (RGB on white, ``PIXEL_SIZE`` px), rows in table order."""
    from shared.bundle import read_bundle

    found = {}
    for tj in bundles.rglob("transforms.json"):
        b = read_bundle(tj.parent)
        found[b.asset.name] = b
    missing = [n for n in table.names if n not in found]
    if missing:
        raise SystemExit(f"--bundles {bundles}: no bundle for {len(missing)} assets (e.g. {missing[:3]})")
    colour, _ = view_arrays([found[n] for n in table.names], PIXEL_SIZE)
    return pca_features(colour, n_components)


def quality(table: CodeTable, bundles: Path | None) -> dict[str, Any]:
    y = np.asarray(table.categories)
    keep = np.array([bool(c) for c in y])
    cats, counts = np.unique(y[keep], return_counts=True)
    keep &= np.isin(y, cats[counts >= 2])  # a category of one asset cannot be cross-validated
    if keep.sum() < 10:
        return {"skipped": f"only {int(keep.sum())} assets with a category shared by 2+ assets"}
    t = table.subset(np.flatnonzero(keep))
    y = y[keep]
    logsize = np.log(np.maximum(t.size, 0.01))
    feats = {
        "codes_both": Featurizer.fit(t.shape, t.texture, t.size, "both").transform(t.shape, t.texture),
        "codes_shape": Featurizer.fit(t.shape, t.texture, t.size, "shape").transform(t.shape, t.texture),
        "codes_texture": Featurizer.fit(t.shape, t.texture, t.size, "texture").transform(t.shape, t.texture),
        "codes_both_size": Featurizer.fit(t.shape, t.texture, t.size, "both", size_weight=1.0).transform(
            t.shape, t.texture, t.size),
    }
    if bundles is not None:
        px = pixel_features(t, bundles)
        px = (px - px.mean(0)) / (np.sqrt(((px - px.mean(0)) ** 2).sum(1).mean()) + 1e-12)
        feats["pixels_pca64"] = px
        feats["pixels_pca64_size"] = np.hstack([px, (logsize - logsize.mean(0)) / (logsize.std() + 1e-9) / 3])
    out: dict[str, Any] = {"assets": int(len(t)), "categories": int(len(np.unique(y)))}
    for name, x in feats.items():
        out[name] = {"cv_category_accuracy": cv_accuracy(x, y), "precision_at_10": precision_at_k(x, y, 10),
                     "precision_at_1": precision_at_k(x, y, 1)}
        print(f"  {name:20s} accuracy {out[name]['cv_category_accuracy']:.3f}   "
              f"precision@10 {out[name]['precision_at_10']:.3f}   precision@1 {out[name]['precision_at_1']:.3f}")
    out["chance_accuracy"] = float(np.max(np.unique(y, return_counts=True)[1]) / len(y))
    return out


# -- speed --------------------------------------------------------------------------------------

def latency(n: int, dim: int, queries: int = 50, k: int = 10, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    t0 = time.perf_counter()
    index = ExactIndex(x)
    build = time.perf_counter() - t0
    qs = [x[rng.integers(n)] + rng.normal(size=dim).astype(np.float32) * 0.1 for _ in range(queries)]
    index.search(qs[0], k)  # warm-up (page faults of the buffers)
    times = []
    for q in qs:
        t0 = time.perf_counter()
        index.search(q, k)
        times.append(time.perf_counter() - t0)
    exact = all(np.array_equal(index.search(q, k)[0], brute_force(x, q, k)[0]) for q in qs[:3])
    ms = np.array(times) * 1e3
    return {"codes": n, "dim": dim, "k": k, "queries": queries, "build_s": build,
            "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "min_ms": float(ms.min()),
            "exact_vs_brute_force": bool(exact)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=None, help="trained run folder (quality part)")
    ap.add_argument("--catalogue", type=Path, default=None, help="catalogue (default RUN_DIR/catalogue.sqlite)")
    ap.add_argument("--bundles", type=Path, default=None, help="bundle folder for the PCA-64 pixel baseline")
    ap.add_argument("--codes", type=int, default=1_000_000, help="library size for the latency test")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "library.json")
    args = ap.parse_args()

    result: dict[str, Any] = {"benchmark": "library", **machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime())}
    if args.run is not None:
        from backend.training.run import load_run

        run = load_run(args.run)
        with Catalogue(args.catalogue or args.run / "catalogue.sqlite", expect_model=run.model_id) as cat:
            has = any(m["model_id"] == run.model_id and m["codes"] for m in cat.models())
            table = cat.codes(run.model_id) if has else import_run(cat, run)
        print(f"quality on {len(table)} assets of model {run.model_id} ({run.preset}):")
        result.update(run=str(args.run), model_id=run.model_id, preset=run.preset,
                      heldout_psnr=run.heldout_psnr, quality=quality(table, args.bundles))
    print(f"latency, exact top-10 over {args.codes:,} codes (single queries):")
    result["latency"] = []
    for dim in (64, 32, 67):
        r = latency(args.codes, dim)
        result["latency"].append(r)
        print(f"  dim {dim:3d}: median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
              f"exact={r['exact_vs_brute_force']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
