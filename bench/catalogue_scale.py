#!/usr/bin/env python3
"""A catalogue and pages at studio scale (issue 20, item 3): synthetic catalogues of 10,000 and 100,000 assets.

    .venv/bin/python -m bench.catalogue_scale --work DIR [--sizes 10000 100000] [--thumbnails BUNDLES_DIR]
                                              [--rowwise-rows 2000] [--rowwise-full 10000]
                                              [--old-explore-max 10000] [--explore-cap 2000]
                                              [--out bench/results/catalogue_scale.json]

For each size N (each in its own process, so the peak memory is that size's) a catalogue file is made under
``--work`` (never a default temporary folder: ``--work`` is required) and measured:

* **insert**: N assets with a thumbnail each and their 32 + 32 number codes, written as ``asset2vec index`` writes
  them (``upsert_asset`` + ``set_codes``, one transaction per batch of 1,000). The codes are random around 60
  cluster centres; categories have a long tail (a few big, many small); some assets are family variants or
  unsaved embeds (never suggested). Thumbnails: ~5 KB RGBA 64-px PNGs like the captured ones (a pool of 256
  generated disks with noise, reused; or real views read from ``--thumbnails``, a folder of view bundles);
* **neighbours**: k = 10 in the three spaces, block-wise (:meth:`SimilarityIndex.all_neighbours`) and stored
  (``set_neighbours``), seconds per space split into compute and write; the former path (one ``similar`` query
  per asset, :meth:`SimilarityIndex.all_neighbours_rowwise`) on every asset up to ``--rowwise-full`` assets, above
  that timed on ``--rowwise-rows`` evenly spread assets and extrapolated to N (``rowwise_is_extrapolated`` in the
  JSON), with the answers compared on those rows;
* **tags**: a tag model (5 tags, 2,000 tagged assets) stored for every asset in batches
  (:func:`backend.library.batched.store_predicted_tags`);
* **explore**: the exploration page (``explore_library``, cap 2,000 shown) built with an analytic disk renderer (the
  page's decoder renders are a fixed number whatever N; a trained decoder adds the same constant): seconds, bytes
  of ``index.html``, ``explore.json``, the maps and of the whole folder; up to ``--old-explore-max`` assets also the
  page as it was before this change (``git show HEAD:backend/library/{report,explore}.py``) for comparison;
* **size**: :meth:`Catalogue.size_report` after a WAL checkpoint: bytes per asset and per part;
* **peak RSS** of the size's process (``ru_maxrss``) after each stage.

Writes ``--out`` with the machine info (``bench.machine``).

``--both-only`` measures only the product's "both" space at each size (its own ``--out``, default
``bench/results/both_space_scale.json``): a synthetic 2,560-number appearance feature per asset (60 clusters, a
decaying spectrum, non-negative like pooled CNN activations) next to the codes and sizes, the index built with
:func:`backend.features.library.both_space`'s weights, the appearance block whole (``appearance_dims=0``, 2,627
numbers a row, before) and as its first 256 principal directions (323 numbers, after): index build seconds (the
PCA fit included; the faster of two builds) and the index's memory, all-neighbours (k = 10, :meth:`SimilarityIndex.neighbour_arrays`) on every row up to
``--both-full`` rows, above that timed on ``--both-rows`` evenly spread rows and extrapolated to N, one
``similar_to_code`` query with an upload's feature, and the share of the whole-feature neighbours the PCA space
finds (recall@10, on the timed rows).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402

SPACES = ("shape", "texture", "both")
K = 10
INSERT_BATCH = 1000


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


class DiskRenderer:
    """An analytic renderer (no decoder): a disk whose radius follows shape[0] and colour texture[:3]."""

    def render(self, shape: np.ndarray, texture: np.ndarray, views: Any = None, image_size: int = 64) -> np.ndarray:
        shape, texture = np.asarray(shape), np.asarray(texture)
        v = len(views) if views is not None else 18
        yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size - 0.5
        out = np.zeros((len(shape), v, image_size, image_size, 4), np.float32)
        for i in range(len(shape)):
            radius = 0.15 + 0.3 / (1 + np.exp(-shape[i, 0]))
            out[i, :, :, :, :3] = 1 / (1 + np.exp(-texture[i, :3]))
            out[i, :, :, :, 3] = (xx ** 2 + yy ** 2 <= radius ** 2)
        return out


def thumbnail_pool(bundles: Path | None, n: int = 256, seed: int = 0) -> list[bytes]:
    """PNG thumbnails: real views from a folder of bundles, else generated 64-px disks with noise (~5 KB)."""
    from PIL import Image

    if bundles is not None:
        pngs = sorted(p for p in bundles.rglob("*.png"))[: n * 4]
        if not pngs:
            raise SystemExit(f"--thumbnails {bundles}: no PNG views found")
        out = []
        for p in pngs[::max(1, len(pngs) // n)][:n]:
            with Image.open(p) as im:
                buf = io.BytesIO()
                im.convert("RGBA").resize((64, 64)).save(buf, format="PNG")
                out.append(buf.getvalue())
        return out
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 64 - 0.5
    out = []
    for _ in range(n):
        r = rng.uniform(0.3, 0.48)
        alpha = (xx ** 2 + yy ** 2 <= r ** 2)
        shade = rng.uniform(0, 1, 3) * (1 - 0.5 * (xx + 0.5))[..., None] + rng.normal(0, 0.05, (64, 64, 3))
        rgb = shade * alpha[..., None]  # transparent outside the object, as captured views are
        img = np.dstack([np.clip(rgb, 0, 1) * 255, alpha * 255]).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img, "RGBA").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def synthetic_library(n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(60, 64)) * 2.0
    lab = rng.integers(0, 60, size=n)
    codes = (centres[lab] + rng.normal(size=(n, 64))).astype(np.float32)
    n_cat = 40
    p = 1.0 / np.arange(1, n_cat + 1) ** 1.3  # a long tail: a few big categories, many small ones
    cats = rng.choice(n_cat, size=n, p=p / p.sum())
    names, families, categories = [], [], []
    for i in range(n):
        fam = f"fam{i % 500}" if i % 10 == 0 else ""
        if i % 20 == 0:
            names.append(f"lib/{fam}__v{i:06d}")  # a family variant: answered, never suggested
        elif i % 97 == 0:
            names.append(f"unsaved/A{i:06d}")  # an unsaved embed: answered, never suggested
        else:
            names.append(f"lib/cat{cats[i]:02d}/A{i:06d}")
        families.append(fam)
        categories.append(f"cat{cats[i]:02d}")
    return {"codes": codes, "names": names, "families": families, "categories": categories,
            "size": rng.uniform(0.2, 2.0, size=(n, 3)).astype(np.float32)}


def load_old_explore() -> tuple[Any, str] | None:
    """``report`` and ``explore`` as committed at HEAD (before this change), as modules, and the commit."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        srcs = {m: subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:backend/library/{m}.py"],
                                  capture_output=True, text=True, check=True).stdout for m in ("explore", "report")}
    except (OSError, subprocess.CalledProcessError):
        return None
    mods = {}
    for m in ("explore", "report"):
        spec = importlib.util.spec_from_loader(f"backend.library._bench_old_{m}", loader=None)
        mod = importlib.util.module_from_spec(spec)
        mod.__package__ = "backend.library"
        exec(compile(srcs[m], f"HEAD:backend/library/{m}.py", "exec"), mod.__dict__)  # noqa: S102
        mods[m] = mod
    mods["report"].explore = mods["explore"]  # the old page with the old analyses
    return mods["report"], commit


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_size(n: int, work: Path, thumbs_dir: Path | None, rowwise_rows: int, old_explore_max: int,
             explore_cap: int, rowwise_full: int = 10_000) -> dict[str, Any]:
    from backend.library.batched import store_predicted_tags
    from backend.library.catalogue import Catalogue
    from backend.library.report import explore_library
    from backend.library.similarity import SimilarityIndex
    from backend.library.tags import TagModel
    from shared.bundle import AssetInfo

    folder = work / f"catalogue_{n}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "catalogue.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    res: dict[str, Any] = {"assets": n, "peak_rss_mb": {}}
    lib = synthetic_library(n)
    pool = thumbnail_pool(thumbs_dir)
    res["thumbnail_bytes_mean"] = round(float(np.mean([len(b) for b in pool])), 1)
    res["thumbnails"] = str("real views (--thumbnails)" if thumbs_dir else "generated 64-px PNG disks with noise")
    model_id = "bench-model"
    with Catalogue(path, busy_timeout=30) as cat:
        t0 = time.perf_counter()
        cat.register_model(model_id, preset="bench")
        for s in range(0, n, INSERT_BATCH):
            with cat.transaction():
                codes = {}
                for i in range(s, min(s + INSERT_BATCH, n)):
                    info = AssetInfo(name=lib["names"][i], family=lib["families"][i], category=lib["categories"][i],
                                     size=tuple(float(v) for v in lib["size"][i]))
                    aid = cat.upsert_asset(info, thumbnail=pool[i % len(pool)])
                    codes[aid] = (lib["codes"][i, :32], lib["codes"][i, 32:], None)
                cat.set_codes(model_id, codes, source="training")
        res["insert_s"] = round(time.perf_counter() - t0, 2)
        res["insert_ms_per_asset"] = round(1000 * res["insert_s"] / n, 3)
        res["peak_rss_mb"]["insert"] = peak_rss_mb()
        print(f"[{n}] insert {res['insert_s']} s", flush=True)

        t0 = time.perf_counter()
        table = cat.codes(model_id, include_unsaved=False)
        res["read_codes_s"] = round(time.perf_counter() - t0, 2)
        nb: dict[str, Any] = {"k": K, "table_rows": len(table), "spaces": {}}
        for space in SPACES:
            t0 = time.perf_counter()
            index = SimilarityIndex(table, space)
            found = index.all_neighbours(K)
            t1 = time.perf_counter()
            cat.set_neighbours(model_id, space, found)
            t2 = time.perf_counter()
            # The former path (one query per asset) on evenly spread rows, extrapolated to the whole table.
            rows = np.linspace(0, len(table) - 1, len(table) if len(table) <= rowwise_full
                               else min(rowwise_rows, len(table))).astype(int)
            t3 = time.perf_counter()
            old = {int(table.ids[r]): [(m.asset_id, m.distance) for m in index.similar(table.names[r], K)] for r in rows}
            t4 = time.perf_counter()
            same = sum(int([a for a, _ in old[i]] == [a for a, _ in found[i]]) for i in old)
            nb["spaces"][space] = {
                "blockwise_compute_s": round(t1 - t0, 2), "store_s": round(t2 - t1, 2),
                "rowwise_measured_rows": len(rows), "rowwise_measured_s": round(t4 - t3, 2),
                "rowwise_extrapolated_s": round((t4 - t3) * len(table) / len(rows), 1),
                "rowwise_is_extrapolated": len(rows) < len(table),
                "speedup_compute": round((t4 - t3) * len(table) / len(rows) / max(t1 - t0, 1e-9), 1),
                "same_neighbours_as_rowwise": f"{same}/{len(rows)}",
            }
            print(f"[{n}] neighbours {space}: {nb['spaces'][space]}", flush=True)
            del found, old
        nb["blockwise_total_s"] = round(sum(v["blockwise_compute_s"] + v["store_s"] for v in nb["spaces"].values()), 1)
        nb["rowwise_total_s"] = round(sum(v["rowwise_extrapolated_s"] for v in nb["spaces"].values()), 1)
        res["neighbours"] = nb
        res["peak_rss_mb"]["neighbours"] = peak_rss_mb()

        t0 = time.perf_counter()
        full = cat.codes(model_id)
        rng = np.random.default_rng(1)
        tagged = rng.choice(len(full), size=min(2000, len(full)), replace=False)
        x = full.shape[tagged]
        tag_sets: list[set[str] | None] = [None] * len(full)
        for j, r in enumerate(tagged):
            tag_sets[r] = {f"tag{t}" for t in range(5) if x[j, t] > 0} or {"plain"}
        model = TagModel(model_id, use_size=False)
        model.fit(full.shape, full.texture, tag_sets, cross_validate=False)
        t1 = time.perf_counter()
        predicted = store_predicted_tags(cat, model, full)
        t2 = time.perf_counter()
        res["tags"] = {"fit_s": round(t1 - t0, 2), "predict_store_s": round(t2 - t1, 2), "assets": predicted,
                       "tags": len(model.classifiers), "batch": "backend.library.batched.PREDICT_BATCH"}
        res["peak_rss_mb"]["tags"] = peak_rss_mb()
        print(f"[{n}] tags {res['tags']}", flush=True)

        out = folder / "explore"
        t0 = time.perf_counter()
        data = explore_library(DiskRenderer(), cat, full, out, image_size=32, max_shown=explore_cap)
        t1 = time.perf_counter()
        res["explore"] = {
            "seconds": round(t1 - t0, 1), "cap": explore_cap, "shown": data["shown"],
            "index_html_bytes": (out / "index.html").stat().st_size,
            "explore_json_bytes": (out / "explore.json").stat().st_size,
            "map_png_bytes": {sp: (out / f"map_{sp}.png").stat().st_size for sp in ("shape", "texture")},
            "map_points_csv_bytes": (out / "map_points.csv").stat().st_size,
            "folder_bytes": folder_bytes(out),
            "folder_bytes_without_csv": folder_bytes(out) - (out / "map_points.csv").stat().st_size,
        }
        res["peak_rss_mb"]["explore"] = peak_rss_mb()
        print(f"[{n}] explore {res['explore']}", flush=True)
        if n <= old_explore_max:
            old = load_old_explore()
            if old is not None:
                report_old, commit = old
                out_old = folder / "explore_before"
                t0 = time.perf_counter()
                report_old.explore_library(DiskRenderer(), cat, full, out_old, image_size=32)
                t1 = time.perf_counter()
                res["explore_before"] = {"commit": commit, "seconds": round(t1 - t0, 1),
                                         "index_html_bytes": (out_old / "index.html").stat().st_size,
                                         "explore_json_bytes": (out_old / "explore.json").stat().st_size,
                                         "folder_bytes": folder_bytes(out_old)}
                res["peak_rss_mb"]["explore_before"] = peak_rss_mb()
                print(f"[{n}] explore before {res['explore_before']}", flush=True)

        cat._query("PRAGMA wal_checkpoint(TRUNCATE)")
        res["size"] = cat.size_report()
    res["peak_rss_mb"]["end"] = peak_rss_mb()
    print(f"[{n}] size {res['size']['bytes_per_asset']} B/asset {res['size']['parts_per_asset']}", flush=True)
    return res


def synthetic_appearance(n: int, labels: np.ndarray, dim: int = 2560, seed: int = 0) -> np.ndarray:
    """Appearance-like features ``[n, dim]`` float32: a cluster centre per label plus per-asset variation on a
    decaying spectrum of directions, made non-negative (pooled activations)."""
    rng = np.random.default_rng(seed)
    rank = 400
    basis = rng.normal(size=(rank, dim)).astype(np.float32) / np.sqrt(dim)
    spectrum = (1.0 / np.arange(1, rank + 1) ** 0.7).astype(np.float32)
    centres = rng.normal(size=(int(labels.max()) + 1, rank)).astype(np.float32) * spectrum * 3.0
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 10_000):  # bounded temporary memory
        lab = labels[s:s + 10_000]
        z = centres[lab] + rng.normal(size=(len(lab), rank)).astype(np.float32) * spectrum
        x = z @ basis * 10.0 + 0.05 * rng.normal(size=(len(lab), dim)).astype(np.float32)
        out[s:s + len(lab)] = np.maximum(x + 0.5, 0.0)
    return out


def both_space_scale(n: int, query_rows: int, full_rows: int, dims: int = 256) -> dict[str, Any]:
    """The "both" space's index build and all-neighbours at ``n`` assets, whole appearance block vs PCA-``dims``."""
    from backend.features.descriptor import DEFAULT_WEIGHTS
    from backend.library import space_blocks as B
    from backend.library.code_table import CodeTable
    from backend.library.similarity import SimilarityIndex

    lib = synthetic_library(n)
    labels = np.random.default_rng(0).integers(0, 60, size=n)  # the codes' clusters (same seed and draw)
    appearance = synthetic_appearance(n, labels)
    table = CodeTable("bench", np.arange(1, n + 1, dtype=np.int64), lib["names"], lib["codes"][:, :32].copy(),
                      lib["codes"][:, 32:].copy(), lib["size"], lib["families"], lib["categories"])
    w = DEFAULT_WEIGHTS
    kwargs = {"appearance": appearance, "appearance_weight": w["appearance"], "shape_weight": w["shape"],
              "texture_weight": w["texture"], "size_weight": w["size"]}
    rows = np.arange(n) if n <= full_rows else np.linspace(0, n - 1, min(query_rows, n)).astype(np.int64)
    # the library's own tags for the tag-metric variant: a fifth of the assets tagged with their cluster's 2 tags
    tags = [{f"t{labels[i] % 12}", f"u{labels[i] % 5}"} if i % 5 == 0 else None for i in range(n)]
    res: dict[str, Any] = {"assets": n, "k": K, "timed_rows": len(rows), "extrapolated": len(rows) < n,
                           "appearance_dim": appearance.shape[1], "variants": {}}
    found = {}
    for name, d, extra in (("full", 0, {}), (f"pca_{dims}", dims, {}),
                           (f"pca_{dims} + tag metric", dims, {"tags": tags, "tag_weight": w["tags"]})):
        builds = []
        for _ in range(2):  # the first build of a process also pays for touching fresh memory: the faster of two
            index = None
            B._BASES.clear()  # a fresh fit of the basis (as ``asset2vec index`` in a new process)
            t0 = time.perf_counter()
            index = SimilarityIndex(table, "both", appearance_dims=d, **kwargs, **extra)
            builds.append(time.perf_counter() - t0)
        # the service after an Embed: the same library plus one asset, the basis of the library it grew from reused
        index = None
        B._BASES.clear()
        before = table.subset(np.arange(n - 1))
        SimilarityIndex(before, "both", appearance_dims=d, **{**kwargs, "appearance": appearance[:n - 1]},
                        **({"tags": tags[:n - 1], "tag_weight": w["tags"]} if extra else {}))
        t0 = time.perf_counter()
        index = SimilarityIndex(table, "both", appearance_dims=d, **kwargs, **extra)
        t1 = time.perf_counter()
        rebuild = t1 - t0
        nb, _ = index.neighbour_arrays(K, rows=rows)
        t2 = time.perf_counter()
        index.similar_to_code(table.shape[0], table.texture[0], table.size[0], K, appearance=appearance[0])
        t3 = time.perf_counter()
        found[name] = nb
        res["variants"][name] = {
            "width": int(index.features.shape[1]), "build_s": round(min(builds), 2),
            "build_s_each": [round(b, 2) for b in builds], "rebuild_after_embed_s": round(rebuild, 2),
            "index_mb": round((index.features.nbytes + index.index.x.nbytes) / 2**20),
            "neighbours_measured_s": round(t2 - t1, 2),
            "all_neighbours_s": round((t2 - t1) * n / len(rows), 1), "one_query_s": round(t3 - t2, 4)}
        print(f"[{n}] both {name}: {res['variants'][name]}", flush=True)
        del index
    full, pca = found["full"], found[f"pca_{dims}"]
    res["recall_at_10_vs_full"] = round(float(np.mean([len(set(a) & set(b)) / K for a, b in zip(full, pca,
                                                                                                 strict=True)])), 4)
    res["speedup_all_neighbours"] = round(res["variants"]["full"]["all_neighbours_s"]
                                          / max(res["variants"][f"pca_{dims}"]["all_neighbours_s"], 1e-9), 1)
    res["peak_rss_mb"] = peak_rss_mb()
    print(f"[{n}] recall@10 of PCA vs full {res['recall_at_10_vs_full']}, speedup {res['speedup_all_neighbours']}x",
          flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder for the synthetic catalogues (kept)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--thumbnails", type=Path, default=None, help="a folder of view bundles to take real PNGs from")
    ap.add_argument("--rowwise-rows", type=int, default=2000,
                    help="assets the former one-query-per-asset path is timed on (then extrapolated)")
    ap.add_argument("--rowwise-full", type=int, default=10_000,
                    help="up to this many assets the former path runs on every asset (no extrapolation)")
    ap.add_argument("--old-explore-max", type=int, default=10_000,
                    help="largest size at which the page as it was before (HEAD) is built too")
    ap.add_argument("--explore-cap", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None,
                    help="default bench/results/catalogue_scale.json (with --both-only: both_space_scale.json)")
    ap.add_argument("--both-only", action="store_true", help='only the "both" space, whole vs PCA appearance')
    ap.add_argument("--both-rows", type=int, default=2000, help="rows all-neighbours is timed on above --both-full")
    ap.add_argument("--both-full", type=int, default=10_000, help="up to this many assets all rows are timed")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.both_only:
        out_path = args.out or ROOT / "bench" / "results" / "both_space_scale.json"
        if args.child is not None:
            args.child.write_text(json.dumps(both_space_scale(args.sizes[0], args.both_rows, args.both_full), indent=1))
            return 0
        sizes = []
        for n in args.sizes:
            child = args.work / f"both_{n}.json"
            args.work.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "bench.catalogue_scale", "--work", str(args.work), "--both-only",
                            "--sizes", str(n), "--both-rows", str(args.both_rows), "--both-full",
                            str(args.both_full), "--child", str(child)],
                           check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            sizes.append(json.loads(child.read_text()))
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps({"benchmark": "both_space_scale", "machine": machine_info(), "sizes": sizes,
                                            "notes": ["the machine is shared: other work was running (see "
                                                      "load_average_at_start)"]}, indent=1) + "\n")
            print(f"wrote {out_path}", flush=True)
        return 0
    if args.child is not None:  # one size in this process: its peak memory is its own
        res = run_size(args.sizes[0], args.work, args.thumbnails, args.rowwise_rows, args.old_explore_max,
                       args.explore_cap, args.rowwise_full)
        args.child.write_text(json.dumps(res, indent=1))
        return 0
    args.out = args.out or ROOT / "bench" / "results" / "catalogue_scale.json"
    info = machine_info()
    sizes = []
    for n in args.sizes:
        child = args.work / f"result_{n}.json"
        cmd = [sys.executable, "-m", "bench.catalogue_scale", "--work", str(args.work), "--sizes", str(n),
               "--rowwise-rows", str(args.rowwise_rows), "--rowwise-full", str(args.rowwise_full),
               "--old-explore-max", str(args.old_explore_max),
               "--explore-cap", str(args.explore_cap), "--child", str(child)]
        if args.thumbnails:
            cmd += ["--thumbnails", str(args.thumbnails)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        res = json.loads(child.read_text())
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        sizes.append(res)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out = {"benchmark": "catalogue_scale", "issue": 20, "machine": info, "k": K, "sizes": sizes,
               "notes": ["rowwise_* is the former all_neighbours (one similar() query per asset), timed on "
                         "rowwise_measured_rows assets and extrapolated when rowwise_is_extrapolated",
                         "explore uses an analytic disk renderer; a trained decoder adds a constant number of "
                         "renders (PCA strips, sparse regions, style grid, missing thumbnails of shown assets only)",
                         "the machine is shared: other work was running (see load_average_at_start)"]}
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
