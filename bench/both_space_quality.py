#!/usr/bin/env python3
"""Retrieval quality of the product's "both" similarity space, the appearance block whole or PCA-projected.

    .venv/bin/python -m bench.both_space_quality --bundles DIR --run RUN [--ground-truth GT.json] [--label NAME]
                                                 [--bundles ... --run ...]... [--dims 0 256 128 64]
                                                 [--out bench/results/both_space_quality.json]

The space is built by the product's own code: :func:`backend.features.library.both_space`'s weights and
:class:`backend.library.similarity.SimilarityIndex` over a code table of the run's codes and sizes, with each
asset's stored appearance feature (EfficientNet-Lite1, mean+max over the 18 views, read from the bundle's feature
cache and rounded to float16 as the catalogue stores it). As ``bench/quality.py``: the assets whose category has
2+ members, same-category precision@10 over them, same-visual-class precision@10 over the assets with a visual
class (``bench/visual_classes.py``); with ``--ground-truth`` (the sample library) also precision@10 of the
ground truth's family, colour and material. The neighbours are :meth:`SimilarityIndex.neighbour_arrays`' (what
``asset2vec index`` stores); visual/ground-truth p@10 rank the classed assets among themselves.

``--tag-weights``: the same space with a tag-metric block (a ridge from the other blocks to the library's own
tags; :func:`backend.library.similarity.tag_metric`) at each weight, learnt out of fold (5 folds; a query's own
tags never shape the space it is scored in; weight 0 scores the plain space the same way).

Variants: ``--dims`` (0 = the whole 2,560-number block, before; k = its first k principal directions over the
library), and ``pooled_256``: the basis fitted on every given library together (more assets than directions, as
in a big library), each library then searched with it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402
from bench.visual_classes import visual_classes  # noqa: E402


def load_library(bundles_dir: Path, run_dir: Path, gt: Path | None) -> dict[str, Any]:
    from backend.features.descriptor import DEFAULT_LAYERS, DEFAULT_VIEW_POOL
    from backend.features.multiview import DEFAULT_SPEC, asset_features
    from backend.library import quality as Q
    from backend.training.data import find_bundles, read_bundles
    from backend.training.run import load_run

    found = {b.asset.name: b for b in read_bundles(find_bundles(bundles_dir))}
    run = load_run(run_dir, device="cpu")
    cats = [a.category for a in run.assets]
    keep = Q.usable_labels(cats) & np.array([n in found for n in run.names])
    idx = np.flatnonzero(keep)
    assets = [run.assets[i] for i in idx]
    short = [a.asset_name or a.name.rsplit("/", 1)[-1] for a in assets]
    labels: dict[str, list[str | None]] = {"category": [cats[i] for i in idx], "visual": visual_classes(short)}
    if gt is not None:
        truth = {a["name"]: a for a in json.loads(gt.read_text())["assets"]}
        t = [truth.get(n) for n in short]
        labels["gt_family"] = [a.get("family") if a else None for a in t]
        labels["gt_color"] = [a["texture"].get("color") if a else None for a in t]
        labels["gt_material"] = [a["texture"].get("material") if a else None for a in t]
    feats = asset_features([found[run.names[i]] for i in idx], DEFAULT_SPEC, DEFAULT_LAYERS, DEFAULT_VIEW_POOL)
    return {"names": [run.names[i] for i in idx], "shape": run.shape_codes[idx].astype(np.float32),
            "texture": run.texture_codes[idx].astype(np.float32),
            "size": np.array([a.size for a in assets], np.float32),
            "appearance": feats.astype(np.float16).astype(np.float32),  # as the catalogue stores it
            "labels": labels, "tags": [list(a.tags) for a in assets]}


def code_table(lib: dict[str, Any]) -> Any:
    from backend.library.code_table import CodeTable

    n = len(lib["names"])
    return CodeTable("bench", np.arange(1, n + 1, dtype=np.int64), list(lib["names"]), lib["shape"], lib["texture"],
                     lib["size"], [""] * n, [str(c) for c in lib["labels"]["category"]])


def precision_from_features(x: np.ndarray, labels: list[str | None], k: int = 10) -> tuple[float, int]:
    from backend.library import quality as Q

    keep = np.array([v is not None for v in labels])
    if keep.sum() <= k:
        return float("nan"), int(keep.sum())
    y = np.array([str(v) for v in labels], dtype=object)[keep]
    return Q.precision_at_k(x[keep], y, k), int(keep.sum())


def score_index(index: Any, lib: dict[str, Any], k: int = 10) -> dict[str, Any]:
    rows, _ = index.neighbour_arrays(k)
    y = np.asarray([str(c) for c in lib["labels"]["category"]], dtype=object)
    out: dict[str, Any] = {"category_p@10": float((y[rows] == y[:, None]).mean()), "width": int(index.features.shape[1])}
    for name, labels in lib["labels"].items():
        if name == "category":
            continue
        p, m = precision_from_features(index.features, labels, k)
        if m > k:
            out[f"{name}_p@10"], out[f"{name}_assets"] = p, m
    return out


def both_index(lib: dict[str, Any], dims: int, basis: np.ndarray | None = None, tag_weight: float = 0.0,
               tags: list | None = None) -> Any:
    """The product's "both" index of a library (``both_space``'s weights), optionally with a given PCA basis or a
    tag-metric block learnt from ``tags`` (per asset, None = untagged)."""
    from backend.features.descriptor import DEFAULT_WEIGHTS
    from backend.library.similarity import SimilarityIndex

    w = DEFAULT_WEIGHTS
    table = code_table(lib)
    kwargs = {"appearance": lib["appearance"], "appearance_weight": w["appearance"], "shape_weight": w["shape"],
              "texture_weight": w["texture"], "size_weight": w["size"], "appearance_dims": dims,
              "tags": tags, "tag_weight": tag_weight}
    index = SimilarityIndex(table, "both", **kwargs)
    if basis is not None:  # the same index, its appearance projected with another basis
        from backend.library.similarity import ExactIndex

        index.featurizer.appearance_basis = basis
        index.features = index.featurizer.transform(table.shape, table.texture, table.size, lib["appearance"])
        index.index = ExactIndex(index.features)
    return index


def oof_scores(lib: dict[str, Any], dims: int, tag_weight: float, k: int = 10) -> dict[str, Any]:
    """p@10 of every label with the tag metric learnt out of fold (5 folds: the queries' own tags unseen; the
    library's tags only, an untagged asset is None), as ``bench/quality.py`` scores the descriptor's."""
    from backend.library import quality as Q

    tags = [t if t else None for t in lib["tags"]]
    out: dict[str, Any] = {}
    cache: dict[tuple[int, ...], np.ndarray] = {}

    def embed(train: np.ndarray) -> np.ndarray:
        key = tuple(np.sort(np.asarray(train)).tolist())
        if key not in cache:
            known = set(key)
            masked = [t if i in known else None for i, t in enumerate(tags)]
            index = both_index(lib, dims, tag_weight=tag_weight, tags=masked)
            cache[key] = index.features
            out["width"] = int(index.features.shape[1])
            out["tags_learnt"] = len(index.featurizer.tag_names)
        return cache[key]

    for name, labels in lib["labels"].items():
        if sum(v is not None for v in labels) > k:
            out[f"{name}_p@10"] = Q.oof_precision_at_k(embed, labels, k)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", type=Path, action="append", required=True)
    ap.add_argument("--run", type=Path, action="append", required=True)
    ap.add_argument("--ground-truth", action="append", default=[], help="ground_truth.json, or 'none'")
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--dims", type=int, nargs="+", default=[0, 256, 128, 64])
    ap.add_argument("--tag-weights", type=float, nargs="*", default=[0.0, 5.0, 10.0],
                    help="tag-metric block weights scored out of fold (on PCA-256)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "both_space_quality.json")
    args = ap.parse_args(argv)
    from backend.library.similarity import pca_basis

    libs = {}
    for i, (b, r) in enumerate(zip(args.bundles, args.run, strict=True)):
        label = args.label[i] if i < len(args.label) else b.name
        gt = args.ground_truth[i] if i < len(args.ground_truth) else "none"
        libs[label] = load_library(b, r, None if gt == "none" else Path(gt))
        print(f"[{label}] {len(libs[label]['names'])} assets", flush=True)
    pooled = np.concatenate([lib["appearance"] for lib in libs.values()])
    pooled_basis = pca_basis(pooled - pooled.mean(0), 256)
    result: dict[str, Any] = {"benchmark": "both_space_quality", "machine": machine_info(), "libraries": {}}
    for label, lib in libs.items():
        res: dict[str, Any] = {"assets": len(lib["names"]), "variants": {}}
        variants: list[tuple[str, int, np.ndarray | None]] = [(f"pca_{d}" if d else "full", d, None)
                                                                for d in args.dims]
        variants.append((f"pooled_256 (basis from {len(pooled)} assets of all libraries)", 0, pooled_basis))
        for name, dims, basis in variants:
            t0 = time.perf_counter()
            index = both_index(lib, dims, basis)
            s = score_index(index, lib)
            s["seconds"] = round(time.perf_counter() - t0, 3)
            res["variants"][name] = s
            print(f"  [{label}] {name:52s} " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                          for k, v in s.items()), flush=True)
        for tw in args.tag_weights:
            name = f"pca_256 + tag metric {tw:g} (out of fold)"
            t0 = time.perf_counter()
            s = oof_scores(lib, 256, tw)
            s["seconds"] = round(time.perf_counter() - t0, 3)
            res["variants"][name] = s
            print(f"  [{label}] {name:52s} " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                          for k, v in s.items()), flush=True)
        result["libraries"][label] = res
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
