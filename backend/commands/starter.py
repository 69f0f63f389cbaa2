"""``asset2vec starter-model``: build the generic starter model that ships with the package (thin over
:func:`backend.lifecycle.starter.build_starter`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.cli import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("starter-model", help="build the generic starter model by backend/starter/recipe.json "
                                             "(python build.py runs it; skipped when up to date)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: backend/starter/model in the package)")
    p.add_argument("--sh3d", type=Path, default=None,
                   help="also train on this Sweet Home 3D catalogue folder (from shared/data/fetch_sh3d_default.py)")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date (cached captures are reused)")
    p.add_argument("--cache", type=Path, default=None,
                   help="folder for the library, captures and the run in progress (default: .cache/starter in a "
                        "source checkout, else ~/.cache/asset2vec/starter)")
    p.set_defaults(func=cmd_starter_model)


def cmd_starter_model(args: argparse.Namespace) -> int:
    from backend.lifecycle.starter import StarterError, build_starter

    try:
        build_starter(args.out, args.sh3d, args.force, args.cache)
    except StarterError as e:
        raise CommandError(str(e)) from None
    return 0
