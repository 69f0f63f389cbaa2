"""The command line of the add-on's own Bulk Tag Folder run (no ``asset2vec`` command, no torch needed).

:mod:`blender_addon.headless.bulk_folder` runs in a background Blender started from the running one
(``--background --factory-startup``), or, where bpy is a Python module (tests, scripts), in a Python with it.
The add-on's folder is put on that process's ``sys.path``, so it imports the add-on (and its vendored ``shared/``)
from where this Blender loaded it. This module has no ``bpy``: the Blender binary is passed in.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .bulk_job import BulkRequest


def command(req: BulkRequest, blender_binary: str) -> list[str]:
    """The argument list for ``req``; ``blender_binary``: ``bpy.app.binary_path`` ("" where bpy is a module)."""
    package = Path(__file__).resolve().parent
    boot = (f"import sys; sys.path.insert(0, {str(package.parent)!r}); "
            f"from {package.name}.headless.bulk_folder import main; "
            "sys.exit(main(sys.argv[sys.argv.index('--') + 1:]))")
    args = [req.folder, "--url", req.url, "--size", str(req.size), "--samples", str(req.samples)]
    if req.threshold is not None:
        args += ["--threshold", f"{req.threshold:g}"]
    if req.dry_run:
        args.append("--dry-run")
    if blender_binary:
        return [blender_binary, "--background", "--factory-startup", "--python-exit-code", "1",
                "--python-expr", boot, "--", *args]
    return [sys.executable, "-c", boot, "--", *args]
