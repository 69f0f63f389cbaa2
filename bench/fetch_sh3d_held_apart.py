#!/usr/bin/env python3
"""Fetch the held-apart libraries of Sweet Home 3D's contributed furniture: every library of the Debian package
`sweethome3d-furniture` except Scopia (the development library). Issue 15 keeps them apart as a check: nothing is
tuned on them; `bench/quality.py` is run on them once the choices are made.

    python -m bench.fetch_sh3d_held_apart OUT_DIR [--deb sweethome3d-furniture_*.deb]

Writes OUT_DIR/<library>-<n>/<model>.obj (+ .mtl, textures) and OUT_DIR/catalog.json in the format
`asset2vec import-folder OUT_DIR LIB --catalogue OUT_DIR/catalog.json` reads (key, obj, name, category, tags,
width/depth/height in cm, creator). Needs apt-get (run `apt-get update` once if it finds nothing) unless ``--deb``
names a downloaded package. Package 1.8-1: BlendSwap-CC-0 175, BlendSwap-CC-BY 135, KatorLegaz 90, Reallusion 25
(425 models).
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DEVELOPMENT_LIBRARY = "Scopia"


def parse_properties(text: str) -> dict[int, dict[str, str]]:
    """``PluginFurnitureCatalog.properties`` -> ``{n: {key: value}}`` from its ``key#n=value`` lines."""
    items: dict[int, dict[str, str]] = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)#(\d+)=(.*)$", line)
        if m:
            items.setdefault(int(m.group(2)), {})[m.group(1)] = m.group(3).strip()
    return items


def extract_library(sh3f: Path, out: Path) -> list[dict]:
    """Write one library's OBJ models under ``out``; their catalogue records."""
    name, records = sh3f.stem, []
    with zipfile.ZipFile(sh3f) as z:
        props = parse_properties(z.read("PluginFurnitureCatalog.properties").decode("latin-1"))
        for n, it in sorted(props.items()):
            model = it.get("model", "").lstrip("/")
            if not model.endswith(".obj"):
                continue
            folder, key = model.rsplit("/", 1)[0] if "/" in model else "", f"{name}-{n:04d}"
            dest = out / key
            dest.mkdir(parents=True, exist_ok=True)
            prefix = folder + "/" if folder else ""  # a model at the archive's root: its files are at the root too
            for member in z.namelist():
                if member.startswith(prefix) and not member.endswith("/") and (folder or "/" not in member):
                    (dest / Path(member).name).write_bytes(z.read(member))
            records.append({"key": key, "obj": Path(model).name, "name": it.get("name", ""),
                            "category": it.get("category", ""),
                            "tags": [t.strip() for t in it.get("tags", "").split(",") if t.strip()],
                            "width": it.get("width"), "depth": it.get("depth"), "height": it.get("height"),
                            "creator": it.get("creator", "")})
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--deb", type=Path, default=None, help="a downloaded sweethome3d-furniture .deb")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp())
    deb = args.deb
    if deb is None:
        subprocess.run(["apt-get", "download", "sweethome3d-furniture"], cwd=work, check=True)
        deb = Path(glob.glob(str(work / "*.deb"))[0])
    subprocess.run(["dpkg", "-x", str(deb), str(work / "x")], check=True)
    libs = sorted(p for p in (work / "x/usr/share/sweethome3d/furniture").glob("*.sh3f")
                  if p.stem != DEVELOPMENT_LIBRARY)
    if not libs:
        sys.exit("no held-apart libraries in the package")
    records = []
    for sh3f in libs:
        got = extract_library(sh3f, args.out)
        print(f"{sh3f.stem}: {len(got)} models")
        records += got
    (args.out / "catalog.json").write_text(json.dumps(records, indent=1))
    print(f"{len(records)} models -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
