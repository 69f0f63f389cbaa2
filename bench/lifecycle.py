#!/usr/bin/env python3
"""Model lifecycle benchmarks: how fast a library gets good tags through the review queue (and, later, index timing).

    .venv/bin/python -m bench.lifecycle --part review --ground-truth GT.json (--run RUN_DIR | --bundles DIR)
                                        [--answers 40] [--every 5] [--start 8] [--seeds 2]
    .venv/bin/python -m bench.lifecycle --part index [--index-steps 1500]

(from the repository root). Data paths are arguments, never defaults: the review part needs the sample
library's ``ground_truth.json`` (``asset2vec sample-library DIR`` writes ``DIR/ground_truth.json``; ``python
build.py test`` leaves one in ``.cache/starter/sample-seed0/``) and a trained run of that library
(``--run``, e.g. ``backend/starter/model``) or its bundles to train a quick one on (``--bundles``).

Parts (one function each; ``--part all`` runs every part):

* ``review``: the tag-accuracy-vs-reviewed-assets curve on the sample library. The codes of a trained run
  (``--run``, or a quick cpu-small run trained on ``--bundles``) and the library's ground-truth tags (``ground_truth.json`` of the sample library
  builder). A test split is held out (never tagged, never asked about). An artist starts from ``--start``
  fully tagged assets, then answers questions from the ground truth, through the real review code
  (:mod:`backend.library.review`: a real catalogue, an answer stored, the classifiers retrained and every
  prediction refreshed). Every ``--every`` answers the tag model is scored on the test split: tag mAP
  (mean average precision over the test tags; a tag the model has not learnt scores its prevalence) and
  accuracy (every test asset x tag at threshold 0.5). Strategies: the review queue (least sure first,
  new tags included) vs. random questions (a random asset and a random tag the artist uses), by number
  of answers; and the queue vs. tagging randomly chosen assets completely, by number of assets reviewed.
* ``index``: wall time of ``asset2vec index`` on the sample library (72 assets, 64 px, 16 samples, the
  ``--index-preset`` with ``--index-steps``), per stage and per 100 assets; then the incremental case: the
  same library again (nothing to redo) and with 18 new assets (codes by inversion, no retraining).

Writes ``bench/results/lifecycle.json`` (each part under its own key; the other parts' last results are
kept) and ``bench/results/lifecycle_review.png``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


# -- review: tag accuracy vs reviewed assets ------------------------------------------------------------

def _find_run(args: argparse.Namespace) -> Path:
    """The run whose codes are used: ``--run``, or a quick cpu-small run trained on ``--bundles``."""
    if args.run is not None:
        if not (args.run / "codes.npz").is_file():
            raise SystemExit(f"--run {args.run}: not a trained run (no codes.npz)")
        return args.run
    if args.bundles is None:
        raise SystemExit("the review part needs --run RUN_DIR (a trained run of the sample library, e.g. "
                         "backend/starter/model) or --bundles DIR (the library's bundles, to train a quick run on)")
    if not args.bundles.is_dir():
        raise SystemExit(f"--bundles {args.bundles}: no such folder")
    from backend.training.trainer import train

    out = Path(tempfile.mkdtemp(prefix="asset2vec-bench-lifecycle-")) / "run"
    print(f"training a quick cpu-small run on {args.bundles} ({args.train_steps} steps) into {out}", flush=True)
    train(Path(args.bundles), out, preset="cpu-small", steps=args.train_steps, show_progress=False)
    return out


class _Library:
    """The training pool in a real catalogue (codes of the run), plus the held-out test split as arrays."""

    def __init__(self, run: Any, names: list[str], truth: dict[str, set[str]], pool: list[int], test: list[int],
                 folder: Path) -> None:
        from backend.library.catalogue import Catalogue
        from shared.bundle import AssetInfo

        self.model_id, self.truth = run.model_id, truth
        self.cat = Catalogue(folder / "catalogue.sqlite")
        self.cat.register_model(run.model_id, run.preset)
        infos = {a.name: a for a in run.assets}
        row = {n: i for i, n in enumerate(run.names)}
        codes = {}
        for i in pool:
            n = names[i]
            info = infos[n]
            aid = self.cat.upsert_asset(AssetInfo(name=n, size=tuple(info.size), category=info.category))
            codes[aid] = (run.shape_codes[row[n]], run.texture_codes[row[n]], None)
        self.cat.set_codes(run.model_id, codes, source="training")
        self.pool = [names[i] for i in pool]
        t = [row[names[i]] for i in test]
        self.test_names = [names[i] for i in test]
        self.test_shape, self.test_texture = run.shape_codes[t], run.texture_codes[t]
        self.test_size = np.array([infos[n].size for n in self.test_names], np.float32)

    def tag_fully(self, name: str) -> None:
        """The artist tags ``name`` in Blender with all its true tags."""
        self.cat.add_artist_tags(name, sorted(self.truth[name]))


def _score(lib: _Library, model: Any, vocab: list[str]) -> dict[str, float]:
    """Tag mAP and accuracy of ``model`` (or None: nothing learnt) on the test split, over ``vocab``."""
    from sklearn.metrics import average_precision_score

    n = len(lib.test_names)
    learnt = model is not None and bool(model.classifiers)
    probs = model.predict(lib.test_shape, lib.test_texture, lib.test_size) if learnt else [{} for _ in range(n)]
    trained = set(model.tags) & set(vocab) if learnt else set()
    aps, correct = [], 0
    for tag in vocab:
        y = np.array([tag in lib.truth[nm] for nm in lib.test_names], dtype=int)
        p = np.array([pr.get(tag, 0.0) for pr in probs])
        # A tag the model has not learnt ranks nothing: its AP is the prevalence (chance).
        aps.append(float(average_precision_score(y, p)) if tag in trained else float(y.mean()))
        correct += int(((p >= 0.5) == y.astype(bool)).sum())
    return {"tag_map": float(np.mean(aps)), "accuracy": correct / (n * len(vocab)), "tags_learnt": len(trained)}


def _simulate_questions(lib: _Library, strategy: str, answers: int, every: int, vocab: list[str],
                        rng: random.Random) -> dict[str, Any]:
    """Answer ``answers`` questions (``queue`` head, or a ``random`` unanswered prediction) from the truth."""
    from backend.library import review

    model, _ = review.fit_tag_model(lib.cat, lib.model_id, cross_validate=False)
    review.predict_catalogue(lib.cat, model)
    curve = [{"answers": 0, "assets": 0, **_score(lib, model, vocab)}]
    touched: set[str] = set()
    seconds = []
    for k in range(1, answers + 1):
        if strategy == "queue":
            items = review.review_queue(lib.cat, lib.model_id, limit=1)
        else:
            items = _random_question(lib, rng)
        if not items:
            print(f"    {strategy}: nothing left to ask after {k - 1} answers", flush=True)
            break
        it = items[0]
        t0 = time.perf_counter()
        new, _ = review.answer_and_retrain(lib.cat, lib.model_id, it["name"], it["tag"],
                                           it["tag"] in lib.truth[it["name"]])
        seconds.append(time.perf_counter() - t0)
        model = new or model
        touched.add(it["name"])
        if k % every == 0 or k == answers:
            curve.append({"answers": k, "assets": len(touched), **_score(lib, model, vocab)})
    return {"curve": curve, "seconds_per_answer": float(np.mean(seconds)) if seconds else None}


def _random_question(lib: _Library, rng: random.Random) -> list[dict[str, Any]]:
    """One random unanswered question: a pool asset and a tag the artist uses that it does not have as an artist tag."""
    answered = {(r["name"], r["tag"]) for r in lib.cat.reviews()}
    artist = {n: set(lib.cat.tags_of(n)["artist"]) for n in lib.pool}
    used = sorted(set().union(*artist.values()))
    pairs = [(n, t) for n in lib.pool for t in used if t not in artist[n] and (n, t) not in answered]
    if not pairs:
        return []
    name, tag = rng.choice(pairs)
    return [{"name": name, "tag": tag}]


def _simulate_assets(lib: _Library, assets: int, every: int, vocab: list[str], rng: random.Random) -> dict[str, Any]:
    """Tag randomly chosen untagged assets completely, retraining after each."""
    from backend.library import review
    from backend.library.errors import LibraryError

    untagged = [n for n in lib.pool if not lib.cat.tags_of(n)["artist"]]
    rng.shuffle(untagged)
    model, _ = review.fit_tag_model(lib.cat, lib.model_id, cross_validate=False)
    curve = [{"assets": 0, "answers": 0, **_score(lib, model, vocab)}]
    answered = 0
    for k, name in enumerate(untagged[:assets], 1):
        lib.tag_fully(name)
        answered += len(vocab)  # the artist considers every tag of the vocabulary for this asset
        try:
            model, _ = review.fit_tag_model(lib.cat, lib.model_id, cross_validate=False)
        except LibraryError:
            pass
        if k % every == 0 or k == assets:
            curve.append({"assets": k, "answers": answered, **_score(lib, model, vocab)})
    return {"curve": curve}


def _mean_curves(curves: list[list[dict[str, Any]]], key: str) -> list[dict[str, Any]]:
    """Average curves of several seeds point by point (points matched by ``key``; std across seeds)."""
    by_x: dict[int, list[dict[str, Any]]] = {}
    for c in curves:
        for p in c:
            by_x.setdefault(int(p[key]), []).append(p)
    out = []
    for x in sorted(by_x):
        pts = by_x[x]
        row: dict[str, Any] = {key: x, "seeds": len(pts)}
        for m in ("tag_map", "accuracy", "tags_learnt", "assets", "answers"):
            if m == key:
                continue
            vals = np.array([p[m] for p in pts], float)
            row[m] = float(vals.mean())
            if m in ("tag_map", "accuracy"):
                row[f"{m}_std"] = float(vals.std())
        out.append(row)
    return out


def part_review(args: argparse.Namespace) -> dict[str, Any]:
    """The tag-accuracy-vs-reviewed-assets curve: review queue vs random questions vs random whole assets."""
    from backend.training.run import load_run

    if args.ground_truth is None or not args.ground_truth.is_file():
        raise SystemExit(f"the review part needs --ground-truth GT.json (got {args.ground_truth}): the sample library's "
                         "ground_truth.json, written by `asset2vec sample-library DIR`")
    run_dir = _find_run(args)
    run = load_run(run_dir, device="cpu")
    gt = {a["name"]: set(a["tags"]) for a in json.loads(Path(args.ground_truth).read_text())["assets"]}
    names = [n for n in run.names if n in gt]
    print(f"[review] run {run_dir} ({run.preset}, {run.metrics.get('step')} steps), {len(names)} assets with "
          f"ground-truth tags", flush=True)
    t_start = time.perf_counter()
    per_seed: dict[str, list] = {"queue": [], "random_questions": [], "random_assets": []}
    speed: list[float] = []
    splits = []
    for seed in range(args.seeds):
        rng = random.Random(seed)
        order = list(range(len(names)))
        rng.shuffle(order)
        n_test = int(round(args.test_fraction * len(names)))
        test, pool = sorted(order[:n_test]), sorted(order[n_test:])
        start = rng.sample(pool, args.start)
        pool_tags = [t for i in pool for t in gt[names[i]]]
        test_tags = {t for i in test for t in gt[names[i]]}
        # Tags the test split has and the pool could teach (>= 3 examples there).
        vocab = sorted(t for t in test_tags if pool_tags.count(t) >= 3)
        splits.append({"seed": seed, "pool": len(pool), "test": len(test), "start": [names[i] for i in start],
                       "vocabulary": vocab})
        for strategy in per_seed:
            with tempfile.TemporaryDirectory(prefix="asset2vec-bench-review-") as tmp:
                lib = _Library(run, names, gt, pool, test, Path(tmp))
                for i in start:
                    lib.tag_fully(names[i])
                t0 = time.perf_counter()
                if strategy == "random_assets":
                    res = _simulate_assets(lib, args.assets, args.every_assets, vocab, random.Random(1000 + seed))
                else:
                    res = _simulate_questions(lib, "queue" if strategy == "queue" else "random", args.answers,
                                              args.every, vocab, random.Random(1000 + seed))
                    if res["seconds_per_answer"] is not None:
                        speed.append(res["seconds_per_answer"])
                lib.cat.close()
            per_seed[strategy].append(res["curve"])
            last = res["curve"][-1]
            print(f"  seed {seed} {strategy:16s} {time.perf_counter() - t0:6.1f} s: start mAP "
                  f"{res['curve'][0]['tag_map']:.3f} -> {last['tag_map']:.3f} after {last['answers']} answers / "
                  f"{last['assets']} assets (accuracy {res['curve'][0]['accuracy']:.3f} -> {last['accuracy']:.3f})",
                  flush=True)
    result = {
        "run": str(run_dir), "model_id": run.model_id, "preset": run.preset, "steps": run.metrics.get("step"),
        "ground_truth": str(args.ground_truth), "assets": len(names), "test_fraction": args.test_fraction,
        "start_tagged": args.start, "answers": args.answers, "seeds": args.seeds, "splits": splits,
        "seconds_per_answer": float(np.mean(speed)) if speed else None,
        "curves": {
            "queue_by_answers": _mean_curves(per_seed["queue"], "answers"),
            "random_questions_by_answers": _mean_curves(per_seed["random_questions"], "answers"),
            "random_assets_by_assets": _mean_curves(per_seed["random_assets"], "assets"),
        },
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    result["png"] = str(_plot_review(result, args.out_dir / "lifecycle_review.png"))
    return result


def _plot_review(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result["curves"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))

    def line(ax: Any, pts: list[dict[str, Any]], x: str, label: str, style: str) -> None:
        xs = [p[x] for p in pts]
        ys = np.array([p["tag_map"] for p in pts])
        sd = np.array([p["tag_map_std"] for p in pts])
        ax.plot(xs, ys, style, label=label)
        ax.fill_between(xs, ys - sd, ys + sd, alpha=0.15)

    line(axes[0], c["queue_by_answers"], "answers", "review queue (least sure first)", "o-")
    line(axes[0], c["random_questions_by_answers"], "answers", "random questions (random asset, tag in use)", "s--")
    # A fully tagged asset counts one answer per vocabulary tag (the artist decides each of them).
    most = max(p["answers"] for p in c["queue_by_answers"])
    line(axes[0], [p for p in c["random_assets_by_assets"] if p["answers"] <= most], "answers",
         "random assets, fully tagged", "^:")
    axes[0].set_xlabel("questions answered (a fully tagged asset: one per vocabulary tag)")
    axes[0].set_title("tag mAP on held-out assets vs answers")
    line(axes[1], c["queue_by_answers"], "assets", "review queue (assets asked about)", "o-")
    line(axes[1], c["random_assets_by_assets"], "assets", "random assets, fully tagged", "s--")
    axes[1].set_xlabel("assets reviewed (queue: asked at least one question)")
    axes[1].set_title("tag mAP vs assets reviewed")
    for ax in axes:
        ax.set_ylabel("tag mAP (test split)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Tag review on the sample library ({result['assets']} assets, {result['start_tagged']} tagged at "
                 f"start, {result['seeds']} seeds)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- index timing ----------------------------------------------------------------------------------------

def _run_index(argv: list[str]) -> tuple[dict[str, Any], float]:
    """``asset2vec index ... --progress-json`` in a child process: (its summary event, wall seconds)."""
    import os
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "backend.cli", "index", *argv, "--progress-json"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = next((e for e in events if e.get("event") == "summary"), None)
    if proc.returncode != 0 or summary is None:
        raise RuntimeError(f"index failed ({proc.returncode}): {proc.stderr[-2000:]} {events[-1:]}")
    return summary, seconds


def part_index(args: argparse.Namespace) -> dict[str, Any]:
    """Wall time of ``asset2vec index`` on the sample library, per stage and per 100 assets, and re-runs."""
    import shutil

    from backend.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="a2v-bench-index-") as tmp:
        lib, home = Path(tmp) / "library", Path(tmp) / "home"
        assert cli(["sample-library", str(lib)]) == 0
        extra = Path(tmp) / "later"  # outside the library: not seen by the first index run
        extra.mkdir()
        shutil.move(str(lib / "lamps.blend"), extra / "lamps.blend")  # indexed later: the incremental case
        base = ["--home", str(home), "--size", str(args.index_size), "--samples", str(args.index_samples),
                "--preset", args.index_preset, "--steps", str(args.index_steps)]
        first, first_s = _run_index([str(lib), *base])
        again, again_s = _run_index([str(lib), *base])
        shutil.move(str(extra / "lamps.blend"), lib / "lamps.blend")
        more, more_s = _run_index([str(lib), *base])
    n = first["assets"]
    per100 = {k: round(v * 100 / n, 1) for k, v in first["seconds"].items() if k != "train"}
    result = {
        "settings": {"size": args.index_size, "samples": args.index_samples, "preset": args.index_preset,
                     "steps": args.index_steps, "invert_steps": "preset default"},
        "first": {"assets": n, "wall_s": round(first_s, 1), "stages_s": first["seconds"],
                  "per_100_assets_s_excluding_training": per100,
                  "per_100_assets_s": round(first_s * 100 / n, 1), "heldout_psnr": first["heldout_psnr"],
                  "tags": len(first["tags"])},
        "unchanged_rerun": {"wall_s": round(again_s, 1), "captured": again["captured"], "inverted": again["inverted"]},
        "new_assets": {"added": more["assets"] - n, "wall_s": round(more_s, 1), "inverted": more["inverted"],
                       "stages_s": more["seconds"],
                       "per_100_new_assets_s": round(more_s * 100 / max(more["inverted"], 1), 1),
                       "retrain_advice": more["retrain_advice"]},
    }
    print(f"index: {n} assets in {first_s:.0f} s ({result['first']['per_100_assets_s']:.0f} s per 100 assets; "
          f"stages {first['seconds']}); unchanged re-run {again_s:.0f} s; {more['inverted']} new assets "
          f"{more_s:.0f} s", flush=True)
    return result


PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"review": part_review, "index": part_index}


def _device_name() -> str:
    """What trains and inverts here: the CUDA GPU's name when there is one (index uses it), else "cpu"."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=(*PARTS, "all"), default="all")
    ap.add_argument("--run", type=Path, default=None, help="trained run of the sample library (review part)")
    ap.add_argument("--ground-truth", type=Path, default=None, help="the sample library's ground_truth.json (review)")
    ap.add_argument("--bundles", type=Path, default=None, help="bundles to train a quick run on when --run is not given")
    ap.add_argument("--train-steps", type=int, default=300, help="steps of the quick run trained when none is given")
    ap.add_argument("--answers", type=int, default=40, help="questions answered per strategy and seed")
    ap.add_argument("--every", type=int, default=5, help="score the tag model every this many answers")
    ap.add_argument("--assets", type=int, default=16, help="assets tagged completely in the random-assets baseline")
    ap.add_argument("--every-assets", type=int, default=1, help="score every this many assets in that baseline")
    ap.add_argument("--start", type=int, default=8, help="assets fully tagged before the review starts")
    ap.add_argument("--test-fraction", type=float, default=0.3, help="share of assets held out for scoring")
    ap.add_argument("--seeds", type=int, default=2, help="random splits / start sets averaged")
    ap.add_argument("--index-preset", default="cpu-small", help="preset of the index part's model")
    ap.add_argument("--index-steps", type=int, default=1500, help="training steps of the index part (preset: 1500)")
    ap.add_argument("--index-size", type=int, default=64, help="capture size of the index part")
    ap.add_argument("--index-samples", type=int, default=16, help="Cycles samples of the index part")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args()

    out = args.out_dir / "lifecycle.json"
    result: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    result.update(benchmark="lifecycle", machine=machine_info(), device=_device_name(),
                  time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for name in PARTS if args.part == "all" else (args.part,):
        result[name] = PARTS[name](args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
