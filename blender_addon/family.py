"""Parametric families: discover an object's variant parameters, sample them, capture each variant.

A family's parameters are
* Geometry Nodes modifier inputs (int / float / bool) with min/max from the node group interface,
* custom properties named ``metadata.FAMILY_PARAM_PREFIX + ...`` with UI min/max (drivers or
  Geometry Nodes make them change the asset),
* scalar inputs of material nodes carrying the custom property ``metadata.MATERIAL_PARAM_MARK``:
  ``True`` (all unlinked scalar inputs with a known range), a comma-separated list of input names,
  or a group ``{"Hue": [0.0, 1.0]}`` giving inputs with explicit ranges (most shader inputs
  report no range to Python; factor inputs are 0..1).
  Colour inputs are not sampled: vary colour through a marked Hue/Saturation/Value node's Hue.

Parameters are addressed by readable keys: ``"<modifier>/<input>"``, ``"<custom property>"`` and
``"<material>/<node>/<input>"``; a variant is a ``{key: value}`` dict.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .capture import capture_asset
from .errors import AddonError
from .protocol import bundle, metadata

#: Ranges wider than this are "unbounded" (Blender's default float limits are +-3.4e38).
MAX_RANGE = 1e6
#: Material sockets with a wider soft range than this have no meaningful range to sample.
MAX_MATERIAL_RANGE = 1000.0
_SCALAR_SOCKETS = {"NodeSocketFloat": "float", "NodeSocketInt": "int", "NodeSocketBool": "bool"}
_SCALAR_INPUT_TYPES = {"VALUE": "float", "INT": "int", "BOOLEAN": "bool"}


class FamilyError(AddonError, ValueError):
    """An object is not a usable parametric family; the message says what to fix."""


@dataclass
class FamilyParam:
    """One parameter: its key, kind (``float``/``int``/``bool``), range and current value."""

    key: str
    kind: str
    min: float
    max: float
    value: Any
    _get: Callable[[], Any]
    _set: Callable[[Any], None]

    def get(self) -> Any:
        return self._get()

    def set(self, value: Any) -> None:
        self._set(value)


def family_name(obj: Any) -> str:
    """The family an object belongs to: its ``metadata.FAMILY_NAME`` property, else its name."""
    return str(obj.get(metadata.FAMILY_NAME) or obj.name)


def discover_parameters(obj: Any) -> list[FamilyParam]:
    """All bounded scalar parameters of ``obj`` (see the module docstring), in a stable order."""
    params: list[FamilyParam] = []
    params += _gn_params(obj)
    params += _custom_prop_params(obj)
    params += _material_params(obj)
    return params


def _bounded(lo: float, hi: float) -> bool:
    return math.isfinite(lo) and math.isfinite(hi) and hi - lo <= MAX_RANGE and hi >= lo


def _driven_paths(obj: Any) -> set[str]:
    """Data paths of ``obj`` set by drivers: those are outputs of other parameters, not parameters."""
    anim = getattr(obj, "animation_data", None)
    return {fc.data_path for fc in anim.drivers} if anim is not None else set()


def _gn_params(obj: Any) -> list[FamilyParam]:
    out = []
    driven = _driven_paths(obj)
    for mod in getattr(obj, "modifiers", ()):
        if mod.type != "NODES" or mod.node_group is None:
            continue
        for item in mod.node_group.interface.items_tree:
            if item.item_type != "SOCKET" or item.in_out != "INPUT" or item.socket_type not in _SCALAR_SOCKETS:
                continue
            kind = _SCALAR_SOCKETS[item.socket_type]
            ident = item.identifier
            if mod.get(f"{ident}_use_attribute") or f'modifiers["{mod.name}"]["{ident}"]' in driven:
                continue  # set by an attribute or a driver, not a free value
            # Interface limits are float32: round so 0.6 reads back as 0.6, not 0.6000000238.
            lo, hi = (0.0, 1.0) if kind == "bool" else (_f32(item.min_value), _f32(item.max_value))
            if not _bounded(lo, hi):
                continue

            def get(mod: Any = mod, ident: str = ident, kind: str = kind) -> Any:
                return _cast(mod[ident], kind)

            def set_(v: Any, mod: Any = mod, ident: str = ident, obj: Any = obj) -> None:
                mod[ident] = v
                obj.update_tag()  # ID-property writes do not tag the depsgraph on their own

            out.append(FamilyParam(f"{mod.name}/{item.name}", kind, lo, hi, get(), get, set_))
    return out


def _custom_prop_params(obj: Any) -> list[FamilyParam]:
    out = []
    for key in sorted(obj.keys()):
        if not key.startswith(metadata.FAMILY_PARAM_PREFIX):
            continue
        value = obj[key]
        if isinstance(value, bool):
            kind, lo, hi = "bool", 0.0, 1.0
        elif isinstance(value, (int, float)):
            kind = "int" if isinstance(value, int) else "float"
            try:
                ui = obj.id_properties_ui(key).as_dict()
            except TypeError:
                ui = {}
            lo = float(ui.get("min", ui.get("soft_min", -math.inf)))
            hi = float(ui.get("max", ui.get("soft_max", math.inf)))
            if not _bounded(lo, hi):
                continue
        else:
            continue

        def get(key: str = key, kind: str = kind) -> Any:
            return _cast(obj[key], kind)

        def set_(v: Any, key: str = key) -> None:
            obj[key] = v
            obj.update_tag()  # drivers reading the property re-evaluate with the object

        out.append(FamilyParam(key, kind, lo, hi, get(), get, set_))
    return out


def _material_params(obj: Any) -> list[FamilyParam]:
    out = []
    seen: set[str] = set()
    for slot in getattr(obj, "material_slots", ()):
        mat = slot.material
        if mat is None or mat.node_tree is None or mat.name in seen:
            continue
        seen.add(mat.name)
        for node in sorted(mat.node_tree.nodes, key=lambda n: n.name):
            mark = node.get(metadata.MATERIAL_PARAM_MARK)
            if not mark:
                continue
            ranges = _mark_ranges(mark)
            wanted = {s.strip() for s in mark.split(",")} if isinstance(mark, str) else set(ranges)
            for sock in node.inputs:
                kind = _SCALAR_INPUT_TYPES.get(sock.type)
                if kind is None or sock.is_linked or not sock.enabled or (wanted and sock.name not in wanted):
                    continue
                lo, hi = ranges.get(sock.name) or _socket_range(sock, kind)
                if not _bounded(lo, hi):
                    continue

                def get(sock: Any = sock, kind: str = kind) -> Any:
                    return _cast(sock.default_value, kind)

                def set_(v: Any, sock: Any = sock) -> None:
                    sock.default_value = v

                out.append(FamilyParam(f"{mat.name}/{node.name}/{sock.name}", kind, lo, hi, get(), get, set_))
    return out


def _mark_ranges(mark: Any) -> dict[str, tuple[float, float]]:
    """Explicit ranges from a mark given as a group ``{"Hue": [0.0, 1.0], ...}``."""
    if isinstance(mark, (str, int, float)):
        return {}
    out = {}
    for name in mark.keys():
        try:
            lo, hi = (float(v) for v in mark[name])
        except (TypeError, ValueError):
            continue
        out[name] = (lo, hi)
    return out


def _socket_range(sock: Any, kind: str) -> tuple[float, float]:
    """A material input's range: factors are 0..1; other sockets only report a generic soft range
    (+-10000), so a range wider than :data:`MAX_MATERIAL_RANGE` counts as unbounded."""
    if kind == "bool" or sock.bl_idname.endswith("Factor"):
        return 0.0, 1.0
    if sock.bl_idname.endswith("Percentage"):
        return 0.0, 100.0
    rna = sock.bl_rna.properties["default_value"]
    lo, hi = float(rna.soft_min), float(rna.soft_max)
    return (lo, hi) if hi - lo <= MAX_MATERIAL_RANGE else (-math.inf, math.inf)


def _f32(v: float) -> float:
    """A float32 value as the shortest decimal that round-trips (7 significant digits)."""
    return float(f"{v:.7g}")


def _cast(v: Any, kind: str) -> Any:
    return bool(v) if kind == "bool" else int(v) if kind == "int" else _f32(v)


def _levels(p: FamilyParam, k: int) -> list[Any]:
    """``k`` evenly spaced values over the parameter's range (fewer for bools and small int ranges)."""
    if p.kind == "bool":
        return [False, True][: max(k, 1)] if k >= 2 else [bool(p.value)]
    if k == 1:
        return [p.value]
    vals = [p.min + (p.max - p.min) * i / (k - 1) for i in range(k)]
    if p.kind == "int":
        return sorted({int(round(v)) for v in vals})
    return [round(v, 6) for v in vals]


def sample_family(
    obj: Any, n: int, mode: str = "grid", seed: int = 0, params: list[FamilyParam] | None = None
) -> list[dict[str, Any]]:
    """``n`` parameter dicts for ``obj``'s family.

    ``grid``: ``ceil(n ** (1/d))`` evenly spaced levels per parameter, and ``n`` combinations
    picked evenly through the full grid (so the extremes are included). ``random``: uniform
    within each range, seeded. Duplicates are dropped, so a tiny grid may give fewer than ``n``.
    """
    if n < 1:
        raise FamilyError(f"number of variants must be at least 1, got {n}")
    if mode not in ("grid", "random"):
        raise FamilyError(f"sampling mode must be 'grid' or 'random', got {mode!r}")
    params = discover_parameters(obj) if params is None else params
    if not params:
        raise FamilyError(
            f"object {obj.name!r} has no family parameters: give it a Geometry Nodes modifier with int/float/bool "
            f"inputs that have a min and max, custom properties named '{metadata.FAMILY_PARAM_PREFIX}...' with a "
            f"min and max, or mark a material node with the custom property '{metadata.MATERIAL_PARAM_MARK}'"
        )
    if mode == "random":
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            variant = {}
            for p in params:
                if p.kind == "bool":
                    variant[p.key] = rng.random() < 0.5
                elif p.kind == "int":
                    variant[p.key] = rng.randint(int(p.min), int(p.max))
                else:
                    variant[p.key] = round(rng.uniform(p.min, p.max), 6)
            out.append(variant)
        return out
    k = max(1, math.ceil(n ** (1.0 / len(params)) - 1e-9))
    # Bools and short int ranges have fewer levels: grow k until the grid is big enough or stops growing.
    while True:
        grid = list(itertools.product(*[_levels(p, k) for p in params]))
        bigger = list(itertools.product(*[_levels(p, k + 1) for p in params]))
        if len(grid) >= n or len(bigger) == len(grid):
            break
        k += 1
    picks = sorted({round(i * (len(grid) - 1) / max(n - 1, 1)) for i in range(n)}) if n < len(grid) else range(len(grid))
    return [{p.key: combo[j] for j, p in enumerate(params)} for combo in (grid[i] for i in picks)]


@contextlib.contextmanager
def applied(obj: Any, variant: dict[str, Any], params: list[FamilyParam] | None = None) -> Iterator[None]:
    """Set ``variant``'s values on ``obj`` for the duration of the block, then restore the originals."""
    params = discover_parameters(obj) if params is None else params
    by_key = {p.key: p for p in params}
    unknown = sorted(set(variant) - set(by_key))
    if unknown:
        raise FamilyError(f"object {obj.name!r} has no family parameter(s) {', '.join(unknown)}; it has: "
                          f"{', '.join(by_key) or 'none'}")
    originals = {k: by_key[k].get() for k in variant}
    try:
        for k, v in variant.items():
            by_key[k].set(v)
        yield
    finally:
        for k, v in originals.items():
            by_key[k].set(v)


def capture_family(
    obj: Any,
    n: int,
    out_dir: str | os.PathLike[str],
    mode: str = "grid",
    seed: int = 0,
    size: int = 128,
    samples: int = 16,
    progress: Callable[[int, int], None] | None = None,
    **capture_kw: Any,
) -> list[bundle.Bundle]:
    """Capture ``n`` sampled variants of ``obj`` into ``out_dir/<family>__v000/`` ... and return the bundles.

    Each bundle's AssetInfo records the family name and the variant's parameter values. The
    object's original values are restored afterwards, even on error.
    """
    params = discover_parameters(obj)
    variants = sample_family(obj, n, mode=mode, seed=seed, params=params)
    name = family_name(obj)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    bundles = []
    for i, variant in enumerate(variants):
        with applied(obj, variant, params):
            bundles.append(
                capture_asset(obj, Path(out_dir) / f"{safe}__v{i:03d}", size=size, samples=samples,
                              name=f"{name}__v{i:03d}", family=name, parameters=variant, **capture_kw)
            )
        if progress is not None:
            progress(i + 1, len(variants))
    return bundles
