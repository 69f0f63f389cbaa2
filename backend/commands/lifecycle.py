"""``asset2vec index FOLDER`` (library -> model -> tagged catalogue in one step) and ``asset2vec models``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from backend.cli import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    from backend.lifecycle.home import HOME_ENV

    p = sub.add_parser(
        "index",
        help="capture, train, embed, tag and link a whole library folder (resumable)",
        description=(
            "From a folder of .blend files to a tagged, searchable library in one step: capture every marked "
            "asset, train a decoder on them, embed every asset, learn tags from the tags artists already gave, "
            "store similar assets, and switch to the new model. Killed at any stage, the same command continues "
            "where it stopped. Run it again after adding assets: new assets get codes without retraining "
            "(--retrain builds a new model; the old one stays restorable with `asset2vec models restore`)."
        ),
    )
    p.add_argument("folder", nargs="?",
                   help="library folder (searched recursively for .blend files; only read). Omit with --retrain to "
                        "retrain on the assets the home already holds")
    _home_arg(p, HOME_ENV)
    p.add_argument("--retrain", action="store_true", help="train a new model even if one is active")
    p.add_argument("--preset", default="cpu-small", help="model preset for a new model (default cpu-small)")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument("--minutes", type=float, help="training time budget in minutes (whichever ends first)")
    p.add_argument("--size", type=int, default=64, help="capture size in pixels (default 64)")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel (default 16)")
    p.add_argument("--capture-device", choices=("AUTO", "CPU", "GPU"), default="AUTO", help="Cycles device")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--invert-steps", type=int, help="inversion steps for assets added after training")
    p.add_argument("--checkpoint-every", type=int,
                   help="training steps between checkpoints (default: the preset's); a kill loses at most these")
    p.add_argument("--no-activate", action="store_true",
                   help="build and store the new model but keep serving the current one")
    p.add_argument("--no-explore", action="store_true", help="do not write the exploration page")
    p.add_argument("--no-encoder", action="store_true",
                   help="do not train the new model's instant encoder (the service then embeds by inversion only)")
    p.add_argument("--encoder-minutes", type=float,
                   help="time for the instant encoder (default: a quarter of the decoder's training time, 5 s to "
                        "1 minute)")
    p.add_argument("--target-precision", type=float, metavar="P",
                   help="out-of-fold precision (0-1) a tag must reach to be written into artists' files; below it a "
                        "tag is only suggested (default: the previous tag model's, else 0.9)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="capture on a Ray cluster, one task per .blend (pip install ray): its address (auto, "
                        "ray://HOST:10001, HOST:6379), or no value for a Ray instance on this machine. Every node "
                        "needs the library at the same path and asset2vec with bpy; only this machine writes the "
                        "home")
    p.add_argument("--progress-json", action="store_true",
                   help='machine-readable output: stdout carries only JSON lines, {"event": "progress", ...} per '
                        'change, then {"event": "summary", ...} or {"event": "error", "message": ...}')
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("models", help="list the models of a library home, switch to one, or restore the previous")
    p.add_argument("action", nargs="?", default="list", choices=("list", "use", "restore"))
    p.add_argument("model_id", nargs="?", help="model to switch to (with `use`)")
    _home_arg(p, HOME_ENV)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)


def _home_arg(p: argparse.ArgumentParser, env: str) -> None:
    p.add_argument("--home", help=f"library home folder (default: ${env}, else ~/.asset2vec)")


def cmd_index(args: argparse.Namespace) -> int:
    from backend.lifecycle.home import HomeError, LibraryHome
    from backend.lifecycle.index import IndexOptions, PipelineCancelled, PipelineError, index_library

    if args.folder is None and args.ray is not None and Path(args.ray).is_dir():
        args.folder, args.ray = args.ray, "local"  # `index --ray FOLDER`: argparse took the folder for the address
    if args.folder is None and not args.retrain:
        raise CommandError("which library? give its folder (asset2vec index FOLDER), or --retrain to retrain on the "
                           "assets the home already holds")
    for flag, value in (("--steps", args.steps), ("--invert-steps", args.invert_steps),
                        ("--checkpoint-every", args.checkpoint_every)):
        if value is not None and value < 1:
            raise CommandError(f"{flag} must be at least 1")
    if args.target_precision is not None and not 0.0 < args.target_precision <= 1.0:  # NaN fails too
        raise CommandError(f"--target-precision must be in (0, 1] (a precision, not a percentage), "
                           f"got {args.target_precision}")
    if args.encoder_minutes is not None and args.encoder_minutes <= 0:
        raise CommandError("--encoder-minutes must be more than 0 (use --no-encoder to skip the encoder)")
    home = LibraryHome.at(args.home)
    emit_json = args.progress_json
    cancel = threading.Event()
    bar = _Bar() if not emit_json else None

    def on_progress(event: dict[str, Any]) -> None:
        if emit_json:
            print(json.dumps({"event": "progress", **event}), flush=True)
        elif bar is not None:
            bar.show(event)

    # SIGTERM (a scheduler, or a parent process) stops cleanly at the next checkpoint like Ctrl-C.
    previous = signal.signal(signal.SIGTERM, lambda *_: cancel.set()) if threading.current_thread() is \
        threading.main_thread() else None
    opts = IndexOptions(preset=args.preset, steps=args.steps, minutes=args.minutes, size=args.size,
                        samples=args.samples, capture_device=args.capture_device, device=args.device,
                        retrain=args.retrain, activate=not args.no_activate, invert_steps=args.invert_steps,
                        explore=not args.no_explore, on_progress=on_progress, cancel=cancel,
                        checkpoint_every=args.checkpoint_every, encoder=not args.no_encoder,
                        encoder_minutes=args.encoder_minutes, target_precision=args.target_precision,
                        ray_address=args.ray)
    from backend.library.errors import LibraryError
    from backend.model.errors import ModelError

    try:
        summary = index_library(args.folder, home, opts)
    except (PipelineError, HomeError, LibraryError, ModelError) as e:
        if emit_json:
            print(json.dumps({"event": "error", "message": str(e),
                              "cancelled": isinstance(e, PipelineCancelled)}), flush=True)
            return 3 if isinstance(e, PipelineCancelled) else 2
        raise CommandError(str(e)) from None
    except KeyboardInterrupt:
        raise CommandError("index interrupted; run the same command again to continue where it stopped") from None
    finally:
        if bar is not None:
            bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    data = summary.as_dict()
    if emit_json:
        print(json.dumps({"event": "summary", **data}), flush=True)
    elif args.json:
        print(json.dumps(data, indent=1))
    else:
        print(_describe(data))
    return 0


def _describe(s: dict[str, Any]) -> str:
    lines = [f"library home {s['home']}: model {s['model_id']} "
             f"({'new, ' if s['trained'] else ''}{'active' if s['activated'] else 'stored, not active'}), "
             f"{s['assets']} assets"]
    if s["folder"]:
        lines.append(f"  captured {s['captured']} asset(s), {s['capture_up_to_date']} up to date")
    pruned = s.get("pruned") or []
    if pruned:
        shown = ", ".join(pruned[:5]) + (f" and {len(pruned) - 5} more" if len(pruned) > 5 else "")
        lines.append(f"  removed {len(pruned)} asset(s) whose .blend is gone or no longer has them: {shown}")
    moved = s.get("moved") or {}
    if moved:
        lines.append(f"  recognised {len(moved)} moved or renamed asset(s) by content: "
                     + ", ".join(f"{a} -> {b}" for a, b in list(moved.items())[:5]))
    if s["trained"]:
        lines.append(f"  held-out view PSNR {s['heldout_psnr']} dB")
    enc = s.get("encoder") or {}
    if enc.get("error"):
        lines.append(f"  {enc['error']}")
    elif enc.get("steps"):
        lines.append(f"  instant encoder: {enc['steps']} steps in {enc['seconds']:.0f} s (embeds answer at once)")
    if s["inverted"]:
        first = " (the instant encoder's code, then a short refinement)" if s.get("from_encoder") else ""
        lines.append(f"  {s['inverted']} asset(s) fitted to the model without retraining{first}")
    lines.append(f"  tags learnt: {', '.join(s['tags'])}" if s["tags"] else f"  tags: {s['tags_help']}")
    if s["retrain_advice"]:
        lines.append(f"  {s['retrain_advice']}")
    if s["explore"]:
        lines.append(f"  exploration page: {s['explore']}")
    size = s.get("catalogue") or {}
    if size.get("bytes_per_asset"):
        lines.append(f"  catalogue: {size['db_bytes'] / 2**20:.1f} MiB, {size['bytes_per_asset'] / 1024:.1f} KiB per asset")
    for f in s["failures"]:
        lines.append(f"  failed: {f}")
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in s["seconds"].items())
    lines.append(f"  time: {timing}")
    return "\n".join(lines)


class _Bar:
    """One tqdm bar per stage on stderr."""

    def __init__(self) -> None:
        self.stage, self.bar = "", None

    def show(self, ev: dict[str, Any]) -> None:
        from tqdm import tqdm

        if ev.get("plan"):  # the training's projected time, printed before it starts
            self.close()
            self.stage = ""  # a new bar below the line
            print(f"  training {ev['message']}", file=sys.stderr, flush=True)
        if ev["stage"] != self.stage:
            self.close()
            self.stage = ev["stage"]
            self.bar = tqdm(total=None, desc=f"[{ev['stage_index']}/{ev['stages']}] {ev['stage']}", file=sys.stderr,
                            dynamic_ncols=True, bar_format="{desc}: {n_fmt}/{total_fmt} {postfix}")
        assert self.bar is not None
        if ev["total"]:
            self.bar.total, self.bar.n = int(ev["total"]), int(ev["done"])
        eta = f", ETA {ev['eta_s']:.0f} s" if ev.get("eta_s") else ""
        self.bar.set_postfix_str(f"{ev['message']}{eta}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_models(args: argparse.Namespace) -> int:
    from backend.library.catalogue import Catalogue
    from backend.library.errors import LibraryError
    from backend.lifecycle.home import LibraryHome

    home = LibraryHome.at(args.home)
    if not home.catalogue.is_file():
        raise CommandError(f"{home.root} holds no library yet; build one with `asset2vec index FOLDER --home "
                           f"{home.root}`")
    with Catalogue(home.catalogue, create=False) as cat:
        try:
            if args.action == "use":
                if not args.model_id:
                    raise CommandError("which model? `asset2vec models use MODEL_ID` (see `asset2vec models`)")
                _check_files(home, args.model_id)
                cat.activate_model(args.model_id)
            elif args.action == "restore":
                previous = cat.previous_model()
                if previous is None:
                    raise CommandError("there is no previous model to restore")
                _check_files(home, previous)
                cat.activate_model(previous)
        except LibraryError as e:
            raise CommandError(str(e)) from None
        models = cat.models()
    if args.json:
        print(json.dumps({"active": next((m["model_id"] for m in models if m["active"]), None), "models": models},
                         indent=1))
        return 0
    for m in models:
        info = m["info"]
        kind = "generic starter" if info.get("generic") else f"trained on {info.get('trained_on', '?')} assets"
        print(f"{'*' if m['active'] else ' '} {m['model_id']}  {m['created'][:19]}  {kind}, {m['codes']} codes")
    if args.action != "list":
        print(f"active model: {next(m['model_id'] for m in models if m['active'])} (a running backend switches on "
              "its next restart, or use Restore in the add-on)")
    return 0


def _check_files(home: Any, model_id: str) -> None:
    if not (home.run_dir(model_id) / "checkpoint.pt").is_file():
        raise CommandError(f"model {model_id} has no files in {home.models}; it cannot serve")
