"""Benchmark: seconds per asset for an 18-view Cycles capture at 64 and 128 px.

    .venv/bin/python -m bench.capture [--samples 16] [--repeats 2] [--blend FILE ...]

Captures one asset of each sample-library family (built into a temporary folder) plus the first
assets of any ``--blend`` files given (e.g. an imported Sweet Home 3D category). Prints a table and
writes ``bench/results/capture.json`` with machine, CPU, core count, Cycles device and timings.
The first capture of the process (Cycles start-up) is timed separately as ``warmup_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="captures per asset and size (best and mean kept)")
    parser.add_argument("--blend", action="append", default=[], help="extra .blend file: its first 3 marked assets")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "capture.json"))
    args = parser.parse_args()

    import bpy

    from blender_addon.capture import capture_asset, cycles_device
    from blender_addon.headless.sample_library import build_sample_library

    work = Path(tempfile.mkdtemp(prefix="a2v-bench-capture-"))
    build_sample_library(work / "lib", seed=0)
    jobs = [(work / "lib" / f"{f}.blend", n) for f, n in
            (("chairs", "Chair_00"), ("tables", "Table_00"), ("sofas", "Sofa_00"), ("lamps", "Lamp_00"),
             ("families", "ParametricTable"))]
    for extra in args.blend:
        bpy.ops.wm.open_mainfile(filepath=extra)
        jobs += [(Path(extra), ob.name) for ob in sorted(bpy.data.objects, key=lambda o: o.name)
                 if ob.asset_data is not None][:3]
    device = cycles_device()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # other work on the machine skews wall time
    results: dict[str, dict] = {str(s): {} for s in args.sizes}
    warmup = None
    for blend, name in jobs:
        bpy.ops.wm.open_mainfile(filepath=str(blend))
        target = bpy.data.objects[name]
        for size in args.sizes:
            times, cpu = [], []
            for r in range(args.repeats + (1 if warmup is None else 0)):
                t0, c0 = time.perf_counter(), time.process_time()
                capture_asset(target, work / "views" / f"{name}_{size}_{r}", size=size, samples=args.samples)
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                if warmup is None:
                    warmup = dt
                    continue
                times.append(dt)
                cpu.append(dc)
            results[str(size)][f"{blend.stem}/{name}"] = {"best_s": min(times), "mean_s": statistics.mean(times),
                                                          "cpu_s": statistics.mean(cpu)}
            print(f"{blend.stem}/{name:<24} {size:4d} px  best {min(times):.2f} s  mean {statistics.mean(times):.2f} s"
                  f"  (CPU time {statistics.mean(cpu):.2f} s)", flush=True)
    # CPU time over all threads / cores is what the capture costs on an idle machine, whatever else runs.
    summary = {size: {"mean_s_per_asset": statistics.mean(v["mean_s"] for v in res.values()),
                      "best_s_per_asset": statistics.mean(v["best_s"] for v in res.values()),
                      "cpu_s_per_asset": statistics.mean(v["cpu_s"] for v in res.values())}
               for size, res in results.items()}
    report = {
        "benchmark": "capture",
        "machine": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "device": f"Cycles {device}",
        "blender": bpy.app.version_string,
        "views": 18,
        "samples": args.samples,
        "sizes": args.sizes,
        "repeats": args.repeats,
        "warmup_s": warmup,
        "load_average_at_start": load,
        "summary": summary,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    for size, s in summary.items():
        print(f"{size} px: {s['mean_s_per_asset']:.2f} s per asset (mean), {s['best_s_per_asset']:.2f} s (best), "
              f"{s['cpu_s_per_asset']:.2f} CPU-s, on {report['cpu']} x{report['cores']}, {report['device']}, "
              f"load average {load}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
