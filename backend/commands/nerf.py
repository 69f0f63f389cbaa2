"""``asset2vec train | embed | train-encoder | render | codes``: the NeRF engine from the command line (thin over plain functions)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from backend.cli import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the latent NeRF on a folder of view bundles (resumable)")
    p.add_argument("bundles", type=Path, help="folder scanned recursively for bundles (transforms.json)")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoint.pt, codes.npz, metrics.json)")
    p.add_argument("--preset", choices=("cpu-small", "full"), default=None, help="default: cpu-small (or the run's)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--steps", type=int, default=None, help="total training steps (default: the preset's)")
    p.add_argument("--minutes", type=float, default=None, help="stop after this much training time in total")
    _device_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("embed", help="fit codes for new assets' bundles with a trained run (inversion)")
    p.add_argument("bundles", type=Path, nargs="+", help="bundle folders or .zip archives")
    p.add_argument("--run", type=Path, required=True, help="trained run folder")
    p.add_argument("--out", type=Path, default=None, help="write the codes to this JSON file")
    p.add_argument("--steps", type=int, default=None, help="inversion steps (default: the preset's)")
    p.add_argument("--encoder", action="store_true",
                   help="instant codes from the run's encoder (train it with `asset2vec train-encoder`)")
    p.add_argument("--refine", action="store_true", help="with --encoder: refine its codes by inversion")
    _device_args(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("train-encoder", help="train the run's instant encoder (18 views -> code without inversion)")
    p.add_argument("bundles", type=Path, help="the bundle folder the run was trained on")
    p.add_argument("--run", type=Path, required=True, help="trained run folder (encoder.pt is written into it)")
    p.add_argument("--kind", choices=("auto", "feature", "views"), default="auto",
                   help="feature: ridge on the pretrained backbone's per-view activations (seconds; the default when "
                        "the backbone runs); "
                        "views: the CNN on the views, trained for --minutes/--steps")
    p.add_argument("--minutes", type=float, default=2.0, help="CNN training time (default 2)")
    p.add_argument("--steps", type=int, default=None, help="stop the CNN after this many steps instead")
    _device_args(p)
    p.set_defaults(func=cmd_train_encoder)

    p = sub.add_parser("render", help="render the shape of one asset with the texture of another")
    p.add_argument("--run", type=Path, required=True, help="trained run folder")
    p.add_argument("--shape", required=True, help="asset (name in the run) giving the shape code")
    p.add_argument("--texture", default=None, help="asset giving the texture code (default: the --shape asset)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write (one row of views)")
    p.add_argument("--orbit", type=int, default=None, help="render N turntable views instead of the 18 rig views")
    p.add_argument("--size", type=int, default=64, help="pixels per view (default 64)")
    _device_args(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("codes", help="export a run's codes (names, shape, texture, model_id) to .npz")
    p.add_argument("--run", type=Path, required=True, help="trained run folder")
    p.add_argument("--out", type=Path, required=True, help=".npz file to write")
    p.set_defaults(func=cmd_codes)


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available, else CPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")


def _setup(args: argparse.Namespace) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def _errors():
    """Exception types that are the user's to fix (turned into ``asset2vec: error: ...``)."""
    from backend.model.errors import ModelError
    from shared.bundle import BundleError

    return (ModelError, BundleError)


def cmd_train(args: argparse.Namespace) -> int:
    _setup(args)
    from pathlib import Path

    from backend.training.data import find_bundles
    from backend.training.plan import plan_training
    from backend.training.trainer import train

    try:
        if not (Path(args.out) / "checkpoint.pt").is_file():  # a new run: its projected steps, time and memory
            plan = plan_training(len(find_bundles(args.bundles)), args.preset, args.device, steps=args.steps)
            print(plan.summary(), file=sys.stderr, flush=True)
        s = train(args.bundles, args.out, args.preset, args.resume, args.steps, args.minutes, args.device)
    except _errors() as e:
        raise CommandError(str(e)) from None
    print(
        f"trained {s.assets} assets ({s.preset}, {s.image_size} px) to step {s.step} in {s.seconds / 60:.1f} min "
        f"({s.samples_per_second / 1000:.0f}k samples/s)\n"
        f"held-out views: {s.heldout_psnr:.2f} dB on white, {s.heldout_psnr_silhouette:.2f} dB inside the silhouette; "
        f"training views: {s.train_psnr:.2f} dB\nrun: {s.run_dir} (model {s.model_id})"
    )
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    _setup(args)
    import numpy as np
    from tqdm import tqdm

    from backend.training.data import read_bundles
    from backend.training.inversion import InversionResult
    from backend.training.run import load_run

    try:
        run = load_run(args.run, args.device)
        bundles = read_bundles(args.bundles)
        with tqdm(total=100, desc="embedding", unit="%", file=sys.stderr) as bar:

            def progress(frac: float, msg: str) -> None:
                bar.n = round(100 * frac)
                bar.set_postfix_str(msg)
                bar.refresh()

            if args.refine and not args.encoder:
                raise CommandError("--refine refines the encoder's codes: pass --encoder too")
            if args.encoder:
                from backend.training.encoder import encode_bundles

                t0 = time.perf_counter()
                shape, texture = encode_bundles(run, bundles)
                seconds = (time.perf_counter() - t0) / len(bundles)
                if args.refine:
                    init = np.concatenate([shape, texture], axis=1)
                    results = run.invert(bundles, args.steps, progress=progress, init=init)
                else:
                    results = [InversionResult(shape=a, texture=b, psnr=float("nan"), seconds=seconds)
                               for a, b in zip(shape, texture, strict=True)]
            else:
                results = run.invert(bundles, args.steps, progress=progress)
    except _errors() as e:
        raise CommandError(str(e)) from None
    out = {
        "model_id": run.model_id,
        "assets": [
            {
                "name": b.asset.name,
                "shape": [round(float(x), 6) for x in r.shape],
                "texture": [round(float(x), 6) for x in r.texture],
                "psnr": None if math.isnan(r.psnr) else round(r.psnr, 3),  # None: an encoder code, not fitted
                "seconds": round(r.seconds, 3),
            }
            for b, r in zip(bundles, results, strict=True)
        ],
    }
    for a in out["assets"]:
        quality = "instant encoder code" if a["psnr"] is None else f"{a['psnr']:.2f} dB"
        print(f"{a['name']}: {quality} in {a['seconds']:.3f} s")
        print(f"  shape   {' '.join(f'{x:+.3f}' for x in a['shape'])}")
        print(f"  texture {' '.join(f'{x:+.3f}' for x in a['texture'])}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
        print(f"codes written to {args.out}")
    return 0


def cmd_train_encoder(args: argparse.Namespace) -> int:
    _setup(args)
    from backend.training.encoder import train_encoder

    try:
        summary = train_encoder(args.run, args.bundles, minutes=args.minutes, steps=args.steps, kind=args.kind)
    except _errors() as e:
        raise CommandError(str(e)) from None
    if summary.kind == "feature":
        oof = "" if summary.nearest_own_oof is None else f", {summary.nearest_own_oof:.0%} out of fold"
        print(f"feature encoder fitted in {summary.seconds:.1f} s (loss {summary.loss:.4f}); "
              f"{summary.nearest_own:.0%} of training assets' codes land nearest their own{oof} -> {summary.path}")
    else:
        print(f"encoder trained for {summary.steps} steps in {summary.seconds:.0f} s (loss {summary.loss:.4f}); "
              f"{summary.nearest_own:.0%} of training assets' codes land nearest their own -> {summary.path}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    _setup(args)
    import numpy as np
    from PIL import Image

    from backend.training.run import load_run
    from shared import rig

    if args.orbit is not None and args.orbit < 1:
        raise CommandError("--orbit needs at least 1 view")
    if not 16 <= args.size <= 512:
        raise CommandError("--size must be between 16 and 512 pixels")
    try:
        run = load_run(args.run, args.device)
        i, j = run.index(args.shape), run.index(args.texture or args.shape)
        views = rig.orbit(args.orbit) if args.orbit else None
        img = run.render(run.shape_codes[i : i + 1], run.texture_codes[j : j + 1], views, args.size)[0]
    except _errors() as e:
        raise CommandError(str(e)) from None
    strip = np.concatenate(list(img), axis=1)  # [H, V*W, 4]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((strip * 255).round().astype(np.uint8), "RGBA").save(args.out)
    print(f"rendered shape of {args.shape!r} with texture of {args.texture or args.shape!r}: {args.out}")
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    import numpy as np

    from backend.training.run import load_run

    try:
        run = load_run(args.run, "cpu")
    except _errors() as e:
        raise CommandError(str(e)) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        names=np.array(run.names),
        shape=run.shape_codes,
        texture=run.texture_codes,
        model_id=np.array(run.model_id),
    )
    print(f"{len(run.names)} codes of model {run.model_id} written to {args.out}")
    return 0
