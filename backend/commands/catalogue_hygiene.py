"""``asset2vec catalogue remove NAME... | --missing | --unsaved``: take assets out of a catalogue.

Registered under ``asset2vec catalogue`` by :mod:`backend.commands.library`. Opens only the catalogue
(no model, no torch): removing is instant even on a machine that cannot load the decoder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend.cli import CommandError


def register_remove(csub: argparse._SubParsersAction) -> None:
    """Add ``remove`` to the ``catalogue`` subcommands."""
    q = csub.add_parser(
        "remove", help="forget assets: by name, every asset whose .blend is gone (--missing) or every embed of "
                       "an unsaved file (--unsaved)",
        description="Removes the assets' rows, codes, tags, review answers and neighbour entries (one transaction). "
                    "A model folder's codes.npz keeps the training codes of the assets it was trained on; "
                    "embedding or indexing the file again brings an asset back.")
    q.add_argument("names", nargs="*", metavar="NAME", help="catalogue names (as `asset2vec similar` prints them)")
    q.add_argument("--missing", action="store_true", help="every asset whose .blend file no longer exists here")
    q.add_argument("--unsaved", action="store_true", help="every embed of a file that was never saved (unsaved/...)")
    q.add_argument("--run", type=Path, default=None,
                   help="library home (from `asset2vec index`) or run folder whose catalogue to clean "
                        "(default: the default home, $ASSET2VEC_HOME or ~/.asset2vec)")
    q.add_argument("--catalogue", type=Path, default=None, help="catalogue file (instead of --run)")
    q.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.set_defaults(func=cmd_catalogue_remove)


def _catalogue_path(args: argparse.Namespace) -> Path:
    from backend.lifecycle.home import CATALOGUE_FILE, LibraryHome

    if args.catalogue is not None:
        return Path(args.catalogue)
    folder = LibraryHome.at(args.run).root
    return folder / CATALOGUE_FILE


def cmd_catalogue_remove(args: argparse.Namespace) -> int:
    from backend.library.catalogue import Catalogue
    from backend.library.errors import LibraryError
    from backend.library.forget import forget_assets

    if not (args.names or args.missing or args.unsaved):
        raise CommandError("say what to remove: catalogue NAMEs, --missing or --unsaved")
    path = _catalogue_path(args)
    if not path.is_file():
        raise CommandError(f"{path}: no catalogue here; pass --run HOME_OR_RUN or --catalogue FILE")
    try:
        with Catalogue(path, create=False) as cat:
            wanted = list(dict.fromkeys(args.names))
            if args.missing:
                wanted += [n for n in cat.missing_assets() if n not in wanted]
            if args.unsaved:
                wanted += [n for n in cat.unsaved_assets() if n not in wanted]
            if args.dry_run:
                known = set(cat.asset_names())
                unknown = [n for n in wanted if n not in known]
                if unknown:  # the same refusal as a real run, with close matches
                    cat.remove_assets(unknown)
                removed = sorted(wanted)
            else:  # in a library home its stored views go too (the same as DELETE /v1/assets/NAME)
                removed = forget_assets(cat, wanted, path.parent / "bundles")
            left = cat.count("assets")
    except LibraryError as e:
        raise CommandError(str(e)) from None
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        print(json.dumps({"catalogue": str(path), "dry_run": bool(args.dry_run), "removed": removed, "assets": left}))
    else:
        lines = [f"{verb} {len(removed)} asset(s) from {path}; {left} left" + (" (dry run)" if args.dry_run else "")]
        lines += [f"  {n}" for n in removed[:50]] + ([f"  ... and {len(removed) - 50} more"] if len(removed) > 50 else [])
        print("\n".join(lines))
    return 0
