#!/usr/bin/env python3
"""Set-up and everyday tasks for Asset2Vec. Standard library only: runs before anything is installed.

    python build.py demo        # set up, build the sample library, capture it, train, tag, explore
    python build.py test        # set up, lint, run the test suite
    python build.py test --quick  # the same without the slow tests (Cycles, training, Blender subprocesses)
    python build.py extension   # build the installable Blender extension zip into dist/

Set-up creates ``.venv`` in the repository (Python 3.11) and installs the pinned stack and this
project into it. The venv is reused as long as the pins in ``pyproject.toml`` are unchanged.
``demo`` and ``test`` then build the starter model (``asset2vec starter-model``, a few minutes the
first time) unless it was already built from ``backend/starter/recipe.json`` as it is now.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "asset2vec-pins.json"
PY_VERSION = (3, 11)
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
#: The starter model's recipe (committed) and where ``asset2vec starter-model`` builds it (ignored by git).
STARTER_RECIPE = ROOT / "backend" / "starter" / "recipe.json"
STARTER_MODEL = ROOT / "backend" / "starter" / "model"
VENV_PY = BIN / "python"
#: Wheels the add-on needs inside Blender (which ships numpy but not these).
ADDON_WHEELS = ("zeroconf", "ifaddr")
#: Platforms the extension's wheels are fetched for: every one Blender ships on (4.2+ bundles Python 3.11; macOS
#: on Intel for 4.2-4.5, whose newest zeroconf wheel is an older release: each platform gets its newest). Pure
#: wheels (ifaddr) are the same file for all and ship once.
WHEEL_PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "linux-arm64": ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "windows-x64": ["win_amd64"],
    "windows-arm64": ["win_arm64"],
    "macos-arm64": ["macosx_11_0_arm64"],
    "macos-x64": ["macosx_11_0_x86_64", "macosx_10_9_x86_64"],
}


def log(msg: str) -> None:
    print(f"[build] {msg}", flush=True)


def find_python() -> str:
    """A Python 3.11 interpreter to create the venv with (the pinned bpy wheel needs 3.11)."""
    if sys.version_info[:2] == PY_VERSION:
        return sys.executable
    name = f"python{PY_VERSION[0]}.{PY_VERSION[1]}"
    found = shutil.which(name)
    if found:
        return found
    sys.exit(f"[build] Asset2Vec needs Python {PY_VERSION[0]}.{PY_VERSION[1]} (bpy==5.0.1 is built for it); "
             f"install it or run this script with it.")


def pins() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = {
        "python": f"{PY_VERSION[0]}.{PY_VERSION[1]}",
        "dependencies": sorted(project["dependencies"]),
        "dev": sorted(project.get("optional-dependencies", {}).get("dev", [])),
    }
    spec["digest"] = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return spec


def ensure_venv() -> None:
    """Create or reuse ``.venv``; (re)install only when the pins changed or the install is broken.

    Holds a lock while it looks and installs, so two commands started together (tests and demo)
    never install into, or rebuild, the same venv at once.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; run one build.py command at a time there
        _ensure_venv_locked()
        return
    with open(ROOT / ".venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _ensure_venv_locked()


def _ensure_venv_locked() -> None:
    want = pins()
    if STAMP.is_file() and VENV_PY.exists():
        have = json.loads(STAMP.read_text())
        if have.get("digest") == want["digest"] and _project_importable():
            log(f"reusing {VENV.relative_to(ROOT)} (pins unchanged)")
            return
        log("pins changed or install incomplete: updating the venv")
    if not _venv_python_ok():
        log(f"creating {VENV.relative_to(ROOT)} with {find_python()} (first run downloads several GB)")
        if VENV.exists():
            shutil.rmtree(VENV)  # only a venv whose interpreter is missing or of another Python version
        run([find_python(), "-m", "venv", str(VENV)])
    STAMP.unlink(missing_ok=True)  # written only after a complete install
    run([str(VENV_PY), "-m", "pip", "install", "--upgrade", "pip"])
    run([str(VENV_PY), "-m", "pip", "install", "-e", f"{ROOT}[dev]"])
    STAMP.write_text(json.dumps(want, indent=1))
    log("venv ready")


def _venv_python_ok() -> bool:
    """The venv's interpreter exists and is the required Python version (pip can then repair the rest)."""
    if not VENV_PY.exists():
        return False
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    out = subprocess.run([str(VENV_PY), "-c", probe], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == f"{PY_VERSION[0]}.{PY_VERSION[1]}"


def _project_importable() -> bool:
    probe = "import shared, backend, blender_addon, torch, pytorch3d, bpy, sklearn, zeroconf"
    return subprocess.run([str(VENV_PY), "-c", probe], capture_output=True, cwd="/").returncode == 0


def run(cmd: list[str], **kw) -> None:
    result = subprocess.run(cmd, **kw)
    if result.returncode != 0:
        sys.exit(f"[build] failed ({result.returncode}): {' '.join(map(str, cmd))}")


def venv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Idle OpenMP threads sleep instead of spinning: torch and Cycles share only two cores here.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def starter_recipe_digest() -> str:
    """sha256 of the starter recipe's canonical JSON: ``backend.lifecycle.starter.recipe_digest`` (a test checks)."""
    recipe = json.loads(STARTER_RECIPE.read_text())
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ensure_starter_model() -> None:
    """Build the starter model into ``backend/starter/model`` unless it was built from the current recipe.

    Locked like the venv, so ``test`` and ``demo`` started together never build it twice at once.
    """
    lock_dir = ROOT / ".cache"
    lock_dir.mkdir(exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks
        _ensure_starter_locked()
        return
    with open(lock_dir / "starter.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _ensure_starter_locked()


def _ensure_starter_locked() -> None:
    want = starter_recipe_digest()
    try:
        have = json.loads((STARTER_MODEL / "MANIFEST.json").read_text()).get("recipe_digest")
    except (OSError, ValueError):
        have = None
    if have == want and (STARTER_MODEL / "checkpoint.pt").is_file():
        if not (STARTER_MODEL / "thumbnails.npz").is_file():  # built before they shipped: added, never retrained
            run([str(BIN / "asset2vec"), "starter-model"], cwd=ROOT, env=venv_env())
        log(f"starter model up to date ({STARTER_MODEL.relative_to(ROOT)}, recipe {want[:12]})")
        return
    log(f"building the starter model: asset2vec starter-model -> {STARTER_MODEL.relative_to(ROOT)} "
        f"({'first build' if have is None else 'recipe changed'}; a few minutes, cached steps are skipped)")
    t0 = time.perf_counter()
    run([str(BIN / "asset2vec"), "starter-model"], cwd=ROOT, env=venv_env())
    log(f"starter model built in {time.perf_counter() - t0:.0f} s")


def cmd_test(args: argparse.Namespace) -> None:
    ensure_venv()
    log("ruff check")
    run([str(BIN / "ruff"), "check", "."], cwd=ROOT, env=venv_env())
    ensure_starter_model()  # the tests load it
    # --quick leaves out the tests marked slow (they render with Cycles, train, or start Blender subprocesses).
    quick = ["-m", "not slow"] if args.quick else []
    log("pytest" + (" (quick: -m 'not slow')" if args.quick else ""))
    run([str(VENV_PY), "-m", "pytest", "-q", *quick, *args.pytest_args], cwd=ROOT, env=venv_env())


def cmd_demo(args: argparse.Namespace) -> None:
    ensure_venv()
    ensure_starter_model()
    out = Path(args.out).resolve()
    run([str(BIN / "asset2vec"), "demo", "--out", str(out)], cwd=ROOT, env=venv_env())


def build_extension(out_dir: Path, platforms: list[str] | None = None) -> Path:
    """Zip ``blender_addon/`` + the vendored ``shared/`` protocol + wheels into an extension."""
    manifest = tomllib.loads((ROOT / "blender_addon" / "blender_manifest.toml").read_text())
    platforms = platforms or list(WHEEL_PLATFORMS)
    wheel_dir = ROOT / "build" / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    pip = [str(VENV_PY if VENV_PY.exists() else sys.executable), "-m", "pip", "download", "--quiet"]
    for plat in platforms:
        shutil.rmtree(wheel_dir / plat, ignore_errors=True)  # only this build's wheels ship, never stale ones
        tags = [a for t in WHEEL_PLATFORMS[plat] for a in ("--platform", t)]
        run([*pip, "--only-binary=:all:", "--python-version", "3.11", *tags, "-d", str(wheel_dir / plat),
             *ADDON_WHEELS])
    # One file per wheel name: a pure wheel is downloaded once per platform but must ship (and be listed) once.
    by_name = {w.name: w for plat in platforms for w in sorted((wheel_dir / plat).glob("*.whl"))}
    wheels = [by_name[name] for name in sorted(by_name)]
    listed = [f"./wheels/{w.name}" for w in wheels]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((ROOT / "blender_addon").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.name != "blender_manifest.toml":
                zf.write(path, path.relative_to(ROOT / "blender_addon"))
        zf.writestr("blender_manifest.toml", _manifest_with_wheels(listed))
        for path in sorted((ROOT / "shared").rglob("*.py")):
            zf.write(path, Path("shared") / path.relative_to(ROOT / "shared"))
        for w in wheels:
            zf.write(w, Path("wheels") / w.name)
    os.replace(tmp, target)
    return target


def _manifest_with_wheels(listed: list[str]) -> str:
    """The manifest text with its ``wheels = [...]`` list set to the fetched wheels."""
    lines = (ROOT / "blender_addon" / "blender_manifest.toml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("wheels"))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith("]"))
    lines[start : end + 1] = ["wheels = ["] + [f'  "{w}",' for w in listed] + ["]"]
    return "\n".join(lines) + "\n"


def cmd_extension(args: argparse.Namespace) -> None:
    # Needs only pip (the venv's python if there is one, else this one), not the full venv.
    target = build_extension(Path(args.out).resolve(), args.platform or None)
    log(f"extension written: {target}")
    log("install it in Blender: Edit > Preferences > Get Extensions > (menu) Install from Disk...")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run Asset2Vec end to end on the built-in sample library")
    p.add_argument("--out", default=str(ROOT / "demo_out"), help="output folder (default: demo_out/)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("test", help="lint and run the tests")
    p.add_argument("--quick", action="store_true",
                   help="leave out the slow tests (Cycles renders, training, Blender subprocesses): under 2 minutes")
    p.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("extension", help="build the Blender extension zip")
    p.add_argument("--out", default=str(ROOT / "dist"))
    p.add_argument("--platform", action="append", choices=sorted(WHEEL_PLATFORMS),
                   help="only fetch wheels for this platform (repeatable; default: all)")
    p.set_defaults(func=cmd_extension)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
