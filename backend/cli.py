"""The ``asset2vec`` command. Each group of subcommands lives in :mod:`backend.commands`.

Blender-side commands (capture, sample-library, import-folder, ...) import ``bpy`` and
``blender_addon``; backend commands import torch. Both only inside the command that needs them,
so ``asset2vec --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from backend.errors import Asset2VecError

#: Modules under backend.commands that contribute subcommands via ``register(subparsers)``.
COMMAND_MODULES = ("blender", "demo", "service", "nerf", "library", "bulk", "lifecycle", "starter")


class CommandError(Asset2VecError):
    """A user-facing failure: printed as ``asset2vec: error: ...`` with exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asset2vec",
        description="Learned shape + texture codes for 3D assets: capture, train, embed, tag, explore.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"backend.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        print(f"asset2vec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asset2vec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        return 0


if __name__ == "__main__":
    # Run through the package module so CommandError raised by commands is this same class.
    from backend.cli import main as _main

    sys.exit(_main())
