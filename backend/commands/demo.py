"""``asset2vec demo``: the whole pipeline on the built-in sample library, step by step.

Each step writes into ``OUT`` and is skipped when its output is already complete, so a demo that
was interrupted continues where it stopped.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from backend.cli import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate the sample library, capture it and show what Asset2Vec does")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--size", type=int, default=64, help="capture size in pixels (default: 64)")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per view (default: 16)")
    p.add_argument("--minutes", type=float, default=5.0, help="training time budget in minutes (default: 5)")
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
    # The capture command skips assets whose bundle is up to date (same content hash).
    _cli(["capture", str(library), "--out", str(bundles), "--size", str(args.size), "--samples", str(args.samples)])
    _done(t0, f"{len(list(bundles.glob('*/transforms.json')))} bundles")

    t0 = _step("3. Contact sheet")
    from backend.contact_sheet import write_contact_sheet

    sheet = write_contact_sheet(sorted(bundles.iterdir()), out / "contact_sheet.png")
    _done(t0, f"wrote {sheet}")

    run = out / "run"
    t0 = _step(f"4. Train the latent NeRF (cpu-small, {args.minutes:g} min budget) -> {run}")
    if not (run / "codes.npz").is_file():
        resume = ["--resume"] if (run / "checkpoint.pt").is_file() else []
        _cli(["train", str(bundles), "--out", str(run), "--preset", "cpu-small", "--minutes", str(args.minutes),
              *resume])
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    _done(t0, "held-out-view PSNR {:.1f} dB".format(metrics.get("heldout_psnr", float("nan"))))

    t0 = _step("5. Catalogue and tags learnt from the artists' tags")
    _cli(["catalogue", "import", "--run", str(run)])
    _cli(["tags", "train", "--run", str(run)])
    predictions = io.StringIO()
    with redirect_stdout(predictions):  # one line per asset: summarised below instead
        _cli(["tags", "predict", "--run", str(run), "--json"])
    print("\n".join(tag_summary(json.loads(predictions.getvalue()))))
    _done(t0, f"catalogue {run / 'catalogue.sqlite'}")

    t0 = _step("6. Similar assets (shape space, then texture space)")
    from backend.training.run import load_run

    names = load_run(run).names
    for name in [n for n in names if "Chair_00" in n or "Table_00" in n][:2] or names[:2]:
        for space in ("shape", "texture"):
            print(f"-- {space} neighbours of {name}")
            _cli(["similar", name, "--run", str(run), "--space", space, "-k", "5"])
    _cli(["similar", "--all", "--run", str(run), "-k", "10"])
    _done(t0, "neighbours stored for every asset")

    t0 = _step(f"7. Exploration page and style-transfer grid -> {out / 'explore'}")
    picks = names[:: max(1, len(names) // 4)][:4]
    _cli(["style-grid", *picks, "--run", str(run), "--out", str(out / "style_grid.png")])
    _cli(["explore", "--run", str(run), "--out", str(out / "explore")])
    _done(t0, f"open {out / 'explore' / 'index.html'}")
    print(f"\nDemo finished: {sheet}, {out / 'style_grid.png'}, {out / 'explore' / 'index.html'}")
    return 0


def tag_summary(predictions: dict[str, dict[str, Any]], examples: int = 3) -> list[str]:
    """A few lines on what ``tags predict --json`` decided: counts, then example assets.

    Examples come from the *written* tags only (each tag's calibrated threshold, exclusive groups), the most
    probable first, so a one-off guess under the threshold is never shown as the model's answer; suggestions
    (below it, for the artist to review) are only counted.
    """
    written = {n: v["write"] for n, v in predictions.items() if v.get("write")}
    suggested = {n: v["suggest"] for n, v in predictions.items() if v.get("suggest")}
    per_tag: dict[str, int] = {}
    for tags in written.values():
        for t in tags:
            per_tag[t] = per_tag.get(t, 0) + 1
    lines = [f"   {len(predictions)} assets: {sum(map(len, written.values()))} tag(s) written on {len(written)} "
             f"(at each tag's calibrated threshold), {sum(map(len, suggested.values()))} suggested for review on "
             f"{len(suggested)}, nothing new for {len(predictions) - len(written.keys() | suggested.keys())}"]
    if per_tag:
        by_count = sorted(per_tag.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append("   written: " + ", ".join(f"{t} x{c}" for t, c in by_count))
        best = sorted(written.items(), key=lambda kv: (-max(kv[1].values()), kv[0]))[:examples]
        width = max(len(n) for n, _ in best)
        for i, (name, tags) in enumerate(best):
            added = ", ".join(f"{t} ({p:.2f})" for t, p in tags.items())
            lines.append(f"   {'e.g.' if i == 0 else '    '} {name:{width}s}  + {added}")
    else:
        lines.append("   no tag is sure enough to be written (the artists' tags already cover the confident ones); "
                     "`asset2vec tags review` asks about the suggestions")
    return lines


def _cli(argv: list[str]) -> None:
    from backend.cli import main as cli_main

    code = cli_main(argv)
    if code not in (0, None):
        raise CommandError(f"`asset2vec {' '.join(argv)}` failed (exit {code})")
