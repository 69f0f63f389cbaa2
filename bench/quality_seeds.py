#!/usr/bin/env python3
"""Seed spread of the quality benchmark: train one library several times per setting and score every run.

    .venv/bin/python -m bench.quality_seeds BUNDLES --label NAME [--ground-truth GT.json]
        [--setting NAME:key=value,key=value]... [--seeds 0 1 2] [--jobs 1] [--device cuda]
        [--encoder-minutes 0] [--out JSON] [--markdown MD]

A setting is a name and overrides of the ``cpu-small`` preset: ``TrainConfig`` fields (``steps`` included) or
``model.NAME`` for ``ModelConfig`` fields, e.g. ``--setting 3000:steps=3000 --setting
9000@64px:steps=9000,image_size=64 --setting "no view direction:model.view_dependent=false"``; default: the preset as
``asset2vec index`` trains it. Every (setting, seed) pair is one job: train a run on all of BUNDLES
(``seed`` set), then ``bench/quality.py``'s ``evaluate_library`` on it (the baselines are the same for
every job). ``--jobs`` runs that many at once in separate processes (a small model leaves a GPU mostly idle,
so parallel seeds cost little more than one). Single-seed differences of a few points on 100 assets are
noise; this says how much.

Writes the per-job quality JSONs next to ``--out`` (``<out stem>/``), the summary ``--out`` (mean, standard
deviation, min and max per setting of codes + size and of its margins over the best baseline + size), and a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_info
from bench.quality import TARGET_METRICS

ROOT = Path(__file__).resolve().parents[1]

PRESET = "cpu-small"


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """``"NAME:key=value,key=value"`` -> ``(NAME, {key: value})``; values are JSON (numbers) or plain strings."""
    name, _, rest = text.partition(":")
    overrides: dict[str, Any] = {}
    for kv in filter(None, rest.split(",")):
        key, sep, value = kv.partition("=")
        if not sep:
            raise ValueError(f"setting {text!r}: expected key=value, got {kv!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value.strip()
    if not name:
        raise ValueError(f"setting {text!r} has no name")
    return name, overrides


def run_job(setting: str, overrides: dict[str, Any], seed: int, args: dict[str, Any]) -> dict[str, Any]:
    """Train one run and score it; returns ``evaluate_library``'s result plus timing (runs in a worker process)."""
    import torch

    torch.set_num_threads(args["threads"])
    from backend.training.trainer import train
    from bench.quality import evaluate_library

    work = Path(args["work"]) / f"{setting}-seed{seed}"
    cfg = {k: v for k, v in overrides.items() if k != "steps"}
    cfg["seed"] = seed
    t0 = time.perf_counter()
    s = train(args["bundles"], work, PRESET, resume=(work / "checkpoint.pt").is_file(), steps=overrides.get("steps"),
              device=args["device"], show_progress=False, overrides=cfg)
    train_wall = time.perf_counter() - t0
    gt = Path(args["ground_truth"]) if args["ground_truth"] else None
    res = evaluate_library(f"{args['label']} {setting} seed {seed}", work, Path(args["bundles"]), gt,
                           args["encoder_minutes"], args["psnr_assets"])
    res.update(setting=setting, seed=seed, overrides=overrides, train_wall_seconds=train_wall,
               train_seconds=s.seconds, samples_per_second=s.samples_per_second,
               finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), machine=machine_info())
    return res


def _write_whole(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a kill never leaves half a JSON for ``--from-jobs``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def summarise(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting: mean / sd / min / max over seeds of the codes' scores, margins, PSNR and probes."""
    out: dict[str, Any] = {}
    for setting in dict.fromkeys(j["setting"] for j in jobs):
        runs = [j for j in jobs if j["setting"] == setting]
        values: dict[str, list[float]] = {"heldout_psnr": [j["heldout_psnr"] for j in runs],
                                          "steps": [j["steps"] for j in runs],
                                          "train_seconds": [j["train_seconds"] for j in runs]}
        for m in TARGET_METRICS:
            values[m] = [j["targets"][m]["codes_both_size"] for j in runs]
            values[f"{m}_margin_points"] = [j["targets"][m]["margin_points"] for j in runs]
        if all("encoder_both_size" in j["features"] for j in runs):
            for m in TARGET_METRICS:
                values[f"encoder_{m}"] = [j["features"]["encoder_both_size"][m] for j in runs]
        if all("disentanglement" in j for j in runs):
            for g in ("shape_attributes", "texture_attributes"):
                for half in ("shape_half", "texture_half"):
                    values[f"{g}_{half}"] = [j["disentanglement"]["summary"][g][half] for j in runs]
        out[setting] = {"seeds": [j["seed"] for j in runs], "overrides": runs[0]["overrides"],
                        **{k: _stats(v) for k, v in values.items()}}
    return out


def _stats(v: list[float]) -> dict[str, float]:
    a = np.asarray(v, np.float64)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max())}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    first = result["jobs"][0]
    best = {k: first["targets"][k]["best_baseline_with_size"] for k in TARGET_METRICS}
    lines = [f"# Quality over seeds: {result['label']}", "",
             f"Measured {result['time']} on {m['machine']} ({m['cpu']}, {m['cores']} cores, device {result['device']}) "
             f"with `python -m bench.quality_seeds`: {first['assets']} assets, {first['categories']} categories, preset "
             f"`{PRESET}`, {result['jobs_at_once'] or 'several'} job(s) at once. Codes + size, mean ± sd over seeds (margin over "
             "the best baseline + size in points; target +10). Best baselines + size: "
             + ", ".join(f"{k} {v:.3f}" for k, v in best.items()) + ".", "",
             "| setting | seeds | steps | train s | held-out dB | category acc. | p@10 | tag mAP | p@10 adapted |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in result["settings"].items():
        cells = [f"{s[k]['mean']:.3f} ± {s[k]['sd']:.3f} ({s[k + '_margin_points']['mean']:+.1f})"
                 for k in TARGET_METRICS]
        lines.append(f"| {name} | {len(s['seeds'])} | {s['steps']['mean']:.0f} | {s['train_seconds']['mean']:.0f} | "
                     f"{s['heldout_psnr']['mean']:.1f} ± {s['heldout_psnr']['sd']:.1f} | " + " | ".join(cells) + " |")
    enc = {n: s for n, s in result["settings"].items() if "encoder_category_accuracy" in s}
    if enc:
        lines += ["", "Instant encoder (out of fold) + size, mean over seeds:", "",
                  "| setting | category acc. | p@10 | tag mAP | p@10 adapted |", "|---|---|---|---|---|"]
        for name, s in enc.items():
            lines.append(f"| {name} | " + " | ".join(f"{s['encoder_' + k]['mean']:.3f}" for k in TARGET_METRICS) + " |")
    dis = {n: s for n, s in result["settings"].items() if "shape_attributes_shape_half" in s}
    if dis:
        lines += ["", "Disentanglement (mean probe accuracy, mean over seeds):", "",
                  "| setting | shape attrs from shape half | from texture half | colour/material from texture half | "
                  "from shape half |", "|---|---|---|---|---|"]
        for name, s in dis.items():
            lines.append(f"| {name} | {s['shape_attributes_shape_half']['mean']:.3f} | "
                         f"{s['shape_attributes_texture_half']['mean']:.3f} | "
                         f"{s['texture_attributes_texture_half']['mean']:.3f} | "
                         f"{s['texture_attributes_shape_half']['mean']:.3f} |")
    lines += ["", "Per run:", "", "| setting | seed | steps | held-out dB | category acc. | p@10 | tag mAP | p@10 adapted |",
              "|---|---|---|---|---|---|---|---|"]
    for j in result["jobs"]:
        lines.append(f"| {j['setting']} | {j['seed']} | {j['steps']} | {j['heldout_psnr']:.1f} | "
                     + " | ".join(f"{j['targets'][k]['codes_both_size']:.3f}" for k in TARGET_METRICS) + " |")
    return "\n".join(lines) + "\n"


def run_jobs(todo: list[tuple[str, dict[str, Any], int]], shared: dict[str, Any], at_once: int,
             per_job: Path) -> list[dict[str, Any]]:
    """Run ``(setting, overrides, seed)`` jobs, ``at_once`` in parallel; write each result as it finishes and
    return them in ``todo`` order (a failed job is reported and left out)."""
    jobs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    # spawn: CUDA cannot be used in a forked child
    with ProcessPoolExecutor(at_once, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_job, name, ov, seed, shared): (name, seed) for name, ov, seed in todo}
        for fut in as_completed(futures):
            name, seed = futures[fut]
            try:
                res = fut.result()
            except Exception as e:  # one failed job must not lose the others' results
                print(f"[{name} seed {seed}] failed: {type(e).__name__}: {e}", flush=True)
                continue
            _write_whole(per_job / f"{name}-seed{seed}.json", json.dumps(res, indent=1))
            jobs.append(res)
            t = res["targets"]
            print(f"[{name} seed {seed}] {res['steps']} steps, {res['heldout_psnr']:.1f} dB; margins "
                  + ", ".join(f"{k} {t[k]['margin_points']:+.1f}" for k in TARGET_METRICS)
                  + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    order = {(n, s): i for i, (n, _, s) in enumerate(todo)}
    return sorted(jobs, key=lambda j: order[(j["setting"], j["seed"])])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", type=Path)
    ap.add_argument("--label", required=True)
    ap.add_argument("--ground-truth", type=Path, default=None)
    ap.add_argument("--setting", action="append", default=[], help="NAME:key=value,... (default: the preset)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="jobs at once (separate processes)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--encoder-minutes", type=float, default=0.0, help="per fold; 0 skips the encoder")
    ap.add_argument("--psnr-assets", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here (default: next to --out)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality_seeds.json")
    ap.add_argument("--markdown", type=Path, default=None, help="default: --out with .md")
    ap.add_argument("--from-jobs", action="store_true",
                    help="train nothing: summarise the per-job JSONs already next to --out (e.g. after a timeout)")
    args = ap.parse_args()
    try:
        settings = [parse_setting(s) for s in args.setting] or [("preset", {})]
    except ValueError as e:
        ap.error(str(e))
    if not args.bundles.is_dir():
        ap.error(f"{args.bundles} is not a folder of bundles")
    per_job = args.out.with_suffix("")
    per_job.mkdir(parents=True, exist_ok=True)
    shared = {"bundles": str(args.bundles), "label": args.label, "device": args.device, "threads": args.threads,
              "ground_truth": str(args.ground_truth) if args.ground_truth else "",
              "encoder_minutes": args.encoder_minutes, "psnr_assets": args.psnr_assets,
              "work": str(args.work or per_job / "runs")}
    t0 = time.perf_counter()
    if args.from_jobs:
        jobs = [json.loads(f.read_text()) for f in sorted(per_job.glob("*-seed*.json"))]
        jobs.sort(key=lambda j: (j["setting"], j["seed"]))
    else:
        jobs = run_jobs([(name, ov, seed) for name, ov in settings for seed in args.seeds], shared, args.jobs, per_job)
    if not jobs:
        print("no job finished", file=sys.stderr)
        return 1
    info = jobs[0].get("machine") or machine_info()  # --from-jobs: where the runs ran, not this machine
    result = {"benchmark": "quality_seeds", "label": args.label, "machine": info, "device": info["gpu"] or "cpu",
              "time": max(j.get("finished", "") for j in jobs) or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "jobs_at_once": None if args.from_jobs else args.jobs, "wall_seconds": time.perf_counter() - t0, "settings": summarise(jobs), "jobs": jobs}
    args.out.write_text(json.dumps(result, indent=1))
    md = args.markdown or args.out.with_suffix(".md")
    md.write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {args.out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
