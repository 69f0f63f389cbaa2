"""``asset2vec demo``: the whole pipeline on the built-in sample library, step by step.

Each step writes into ``OUT`` and is skipped when its output is already complete, so a demo that
was interrupted continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from backend.cli import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate the sample library, capture it and show what Asset2Vec does")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--size", type=int, default=64, help="capture size in pixels (default: 64)")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per view (default: 16)")
    p.set_defaults(func=run_demo)


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _done(t0: float, what: str) -> None:
    print(f"   {what} ({time.perf_counter() - t0:.1f} s)", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    library, bundles = out / "library", out / "bundles"

    t0 = _step(f"1. Sample library -> {library}")
    from blender_addon.headless.sample_library import build_sample_library

    truth_path = library / "ground_truth.json"
    if not truth_path.is_file():
        build_sample_library(library)
    assets = json.loads(truth_path.read_text())["assets"]
    _done(t0, f"{len(assets)} assets in {len({a['blend'] for a in assets})} .blend files")

    t0 = _step(f"2. Capture 18 views per asset at {args.size} px with Cycles -> {bundles}")
    from backend.cli import main as cli_main

    # The capture command skips assets whose bundle is up to date (same content hash).
    if cli_main(["capture", str(library), "--out", str(bundles), "--size", str(args.size),
                 "--samples", str(args.samples)]) != 0:
        raise CommandError("capture failed for some assets (see above)")
    _done(t0, f"{len(list(bundles.glob('*/transforms.json')))} bundles")

    t0 = _step("3. Contact sheet")
    from backend.contact_sheet import write_contact_sheet

    sheet = write_contact_sheet(sorted(bundles.iterdir()), out / "contact_sheet.png")
    _done(t0, f"wrote {sheet}")
    print(f"\nDemo finished: open {sheet}")
    return 0
