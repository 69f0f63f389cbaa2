#!/usr/bin/env python3
"""Picture of what the artist sees in the Asset2Vec sidebar, from a real embed: ``docs/panel_preview.png``.

Headless Blender cannot screenshot its UI, so this runs the real flow and the real panels' ``draw()``
into a recording layout (:class:`Recorder`, the subset of ``bpy.types.UILayout`` the panels use), then
paints the recorded rows with Pillow:

1. builds the procedural sample library (chairs, tables, sofas, lamps .blend files);
2. serves a backend on 127.0.0.1 (``--run RUN_DIR``, or a tiny synthetic run trained here);
3. embeds ``--library`` sample assets with the add-on's Embed operator (so the catalogue holds real
   Blender assets with thumbnails and artist tags) and refits the tag classifiers on them;
4. opens chairs.blend, embeds one chair, and draws the Asset2Vec tab.

    .venv/bin/python -m bench.panel_preview [--run RUN_DIR] [--out docs/panel_preview.png]

Headless Blender has no icon system (preview ``icon_id`` is 0), so the painter maps each similar
asset's thumbnail by name to the PNG the add-on fetched from the backend. Timings go to
``bench/results/panel_preview.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def _font() -> Path:
    """DejaVu Sans, which matplotlib ships (has the arrows and check marks the painter uses)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


WIDTH, ROW_H, PAD, THUMB = 400, 24, 8, 64
BG, PANEL, BOX, TEXT, DIM = (48, 48, 48), (61, 61, 61), (40, 40, 40), (230, 230, 230), (160, 160, 160)
BUTTON, ACTIVE, ACCENT = (84, 84, 84), (71, 114, 179), (95, 160, 95)
ICON_GLYPHS = {"CHECKMARK": ("✓", (120, 200, 120)), "USER": ("●", (170, 170, 170)), "QUESTION": ("?", (230, 180, 60)),
               "X": ("✗", (220, 90, 90)), "ERROR": ("!", (230, 90, 80)), "INFO": ("i", (120, 170, 230)),
               "LINKED": ("↔", (120, 200, 120)), "UNLINKED": ("⊘", (200, 120, 120)), "ADD": ("+", TEXT),
               "REMOVE": ("−", TEXT), "CANCEL": ("✗", TEXT), "TRASH": ("×", TEXT), "OBJECT_DATA": ("▲", (230, 160, 80)),
               "OUTLINER_COLLECTION": ("▣", TEXT), "FILE_REFRESH": ("⟳", TEXT), "IMAGE_DATA": ("□", DIM),
               "APPEND_BLEND": ("↓", TEXT), "LINK_BLEND": ("↔", TEXT), "SHADERFX": ("◆", TEXT)}


# -- recording the panels' draw() --------------------------------------------------------------------------

class Recorder:
    """Records the ``UILayout`` calls the Asset2Vec panels make (row, column, box, label, prop, operator...)."""

    def __init__(self, kind: str = "column") -> None:
        self.kind, self.items = kind, []  # items: Recorder or tuples ("label", text, icon), ...

    def _child(self, kind: str) -> Recorder:
        child = Recorder(kind)
        self.items.append(child)
        return child

    def row(self, align: bool = False, **_: Any) -> Recorder:
        return self._child("row")

    def column(self, align: bool = False, **_: Any) -> Recorder:
        return self._child("column")

    def box(self) -> Recorder:
        return self._child("box")

    def separator(self, **_: Any) -> None:
        self.items.append(("separator",))

    def label(self, text: str = "", icon: str = "NONE", **_: Any) -> None:
        self.items.append(("label", text, icon))

    def progress(self, factor: float = 0.0, text: str = "", **_: Any) -> None:
        self.items.append(("progress", float(factor), text))

    def template_icon(self, icon_value: int = 0, scale: float = 1.0) -> None:
        self.items.append(("thumb", icon_value))

    def prop(self, data: Any, name: str, text: str | None = None, expand: bool = False, **_: Any) -> None:
        rna = data.bl_rna.properties[name]
        label = rna.name if text is None else text
        if not label and rna.type == "STRING":  # a search field without a label: Blender shows an icon, we its name
            label = rna.name
        value = getattr(data, name)
        if rna.type == "BOOLEAN":
            self.items.append(("check", label, bool(value)))
        elif rna.type == "ENUM":
            items = [(i.identifier, i.name) for i in rna.enum_items]
            if expand:
                self.items.append(("tabs", items, value))
            else:
                self.items.append(("field", label, dict(items).get(value, value)))
        else:
            self.items.append(("field", label, str(value)))

    def operator(self, idname: str, text: str | None = None, icon: str = "NONE", **_: Any) -> SimpleNamespace:
        import bpy

        mod, op = idname.split(".")
        label = getattr(getattr(bpy.ops, mod), op).get_rna_type().name if text is None else text
        props = SimpleNamespace()
        self.items.append(("button", label, icon, idname, props))
        return props  # the panel sets operator properties on it

    # -- queries for tests ---------------------------------------------------------------------------------

    def flat(self) -> list[tuple]:
        """Every recorded leaf item, depth first."""
        out = []
        for it in self.items:
            out += it.flat() if isinstance(it, Recorder) else [it]
        return out

    def texts(self) -> list[str]:
        """The visible text of every label, field, check box and button."""
        return [str(it[1]) for it in self.flat() if it[0] in ("label", "field", "check", "button")]


def draw_panels(context: Any) -> list[tuple[str, Recorder | None]]:
    """Run every Asset2Vec panel's real ``draw()``: ``[(title, recorded layout or None when closed)]``."""
    from blender_addon import panels

    out = []
    for cls in panels.classes:
        closed = "DEFAULT_CLOSED" in getattr(cls, "bl_options", set())
        rec = None
        if not closed:
            rec = Recorder()
            cls.draw(SimpleNamespace(layout=rec), context)
        out.append((cls.bl_label, rec))
    return out


# -- painting with Pillow ----------------------------------------------------------------------------------

class Painter:
    """Paints recorded panels as a Blender-like dark sidebar."""

    def __init__(self, thumbs: dict[int, Path]) -> None:
        from PIL import ImageFont

        font = _font()
        self.font = ImageFont.truetype(str(font), 12)
        self.bold = ImageFont.truetype(str(font.with_name("DejaVuSans-Bold.ttf")), 13)
        self.thumbs = thumbs

    def height(self, item: Any, width: int) -> int:
        if isinstance(item, Recorder):
            if item.kind == "row":
                return max([self.height(i, width) for i in item.items] or [ROW_H])
            inner = sum(self.height(i, width) for i in item.items)
            return inner + (2 * 4 if item.kind == "box" else 0)
        if item[0] == "thumb":
            return THUMB + 4
        if item[0] == "separator":
            return 6
        return ROW_H

    def widths(self, row: Recorder, width: int) -> list[int]:
        """Icon-only buttons and thumbnails get a fixed width; the rest share what is left."""
        fixed = []
        for it in row.items:
            if not isinstance(it, Recorder) and it[0] == "button" and not it[1]:
                fixed.append(26)
            elif not isinstance(it, Recorder) and it[0] == "thumb":
                fixed.append(THUMB + 8)
            elif not isinstance(it, Recorder) and it[0] == "label" and not it[1]:
                fixed.append(THUMB + 8)
            else:
                fixed.append(None)
        flexible = [i for i, f in enumerate(fixed) if f is None]
        rest = width - sum(f for f in fixed if f)
        return [f if f is not None else rest // max(1, len(flexible)) for f in fixed]

    def draw(self, d: Any, item: Any, x: int, y: int, w: int) -> int:
        """Draw ``item`` at (x, y) in width ``w``; returns the height used."""
        h = self.height(item, w)
        if isinstance(item, Recorder):
            if item.kind == "box":
                d.rounded_rectangle([x, y + 1, x + w, y + h - 1], 4, fill=BOX)
                x, y, w = x + 4, y + 4, w - 8
            if item.kind == "row":
                cx = x
                for it, iw in zip(item.items, self.widths(item, w), strict=True):
                    self.draw(d, it, cx, y, iw - 2)
                    cx += iw
            else:
                for it in item.items:
                    y += self.draw(d, it, x, y, w)
            return h
        kind = item[0]
        if kind == "label":
            self._text(d, x, y, item[1], item[2], DIM if item[1].startswith("distance") else TEXT)
        elif kind == "field":
            d.text((x + 4, y + 5), f"{item[1]}:", font=self.font, fill=DIM)
            d.rounded_rectangle([x + w // 2, y + 2, x + w, y + ROW_H - 2], 3, fill=(34, 34, 34))
            d.text((x + w // 2 + 6, y + 5), str(item[2])[:28], font=self.font, fill=TEXT)
        elif kind == "check":
            d.rounded_rectangle([x + 4, y + 5, x + 17, y + 18], 2, fill=ACTIVE if item[2] else (34, 34, 34))
            if item[2]:
                d.text((x + 5, y + 3), "✓", font=self.font, fill=TEXT)
            d.text((x + 24, y + 5), item[1], font=self.font, fill=TEXT)
        elif kind == "tabs":
            n = len(item[1])
            for i, (ident, name) in enumerate(item[1]):
                bx = x + i * w // n
                d.rounded_rectangle([bx + 1, y + 2, bx + w // n - 1, y + ROW_H - 2], 3,
                                    fill=ACTIVE if ident == item[2] else BUTTON)
                tw = d.textlength(name, font=self.font)
                d.text((bx + (w // n - tw) / 2, y + 5), name, font=self.font, fill=TEXT)
        elif kind == "button":
            d.rounded_rectangle([x + 1, y + 2, x + w - 1, y + ROW_H - 2], 3, fill=BUTTON)
            glyph, colour = ICON_GLYPHS.get(item[2], ("", TEXT))
            text = f"{glyph} {item[1]}".strip()
            tw = d.textlength(text, font=self.font)
            d.text((x + (w - tw) / 2, y + 5), text, font=self.font, fill=TEXT)
        elif kind == "progress":
            d.rounded_rectangle([x + 1, y + 2, x + w - 1, y + ROW_H - 2], 3, fill=(34, 34, 34))
            d.rounded_rectangle([x + 1, y + 2, x + 1 + int((w - 2) * item[1]), y + ROW_H - 2], 3, fill=ACCENT)
            d.text((x + 6, y + 5), item[2], font=self.font, fill=TEXT)
        elif kind == "thumb":
            path = self.thumbs.get(item[1])
            if path is not None and path.is_file():
                from PIL import Image

                with Image.open(path) as im:
                    tile = Image.new("RGBA", (THUMB, THUMB), (70, 70, 70, 255))
                    tile.alpha_composite(im.convert("RGBA").resize((THUMB, THUMB)))
                    d._image.paste(tile.convert("RGB"), (x + 2, y + 2))
        return h

    def _text(self, d: Any, x: int, y: int, text: str, icon: str, fill: tuple) -> None:
        glyph, colour = ICON_GLYPHS.get(icon, ("", fill))
        if glyph:
            d.text((x + 4, y + 5), glyph, font=self.font, fill=colour)
            x += 18
        d.text((x + 4, y + 5), text, font=self.font, fill=fill)

    def paint(self, panels: list[tuple[str, Recorder | None]], out: Path) -> Path:
        from PIL import Image, ImageDraw

        inner = WIDTH - 2 * PAD
        total = PAD + sum(ROW_H + 4 + (self.height(rec, inner) + PAD if rec else 0) + 4 for _, rec in panels)
        img = Image.new("RGB", (WIDTH, total), BG)
        d = ImageDraw.Draw(img)
        y = PAD
        for title, rec in panels:
            d.rectangle([0, y, WIDTH, y + ROW_H + 2], fill=PANEL)
            d.text((PAD, y + 5), ("▾ " if rec else "▸ ") + title, font=self.bold, fill=TEXT)
            y += ROW_H + 4
            if rec is not None:
                y += self.draw(d, rec, PAD, y, inner) + PAD
            y += 4
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, optimize=True)
        return out


# -- the real flow ---------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="trained run folder (default: a tiny synthetic run trained here)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "panel_preview.png"))
    parser.add_argument("--library", type=int, default=12, help="sample assets embedded before the showcase one")
    parser.add_argument("--size", type=int, default=64, help="capture size in pixels")
    parser.add_argument("--neighbours", type=int, default=4, help="similar assets listed per space")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="asset2vec-panel-preview-"))
    os.environ.setdefault("BLENDER_USER_CONFIG", str(work / "blender-config"))
    os.environ.setdefault("BLENDER_USER_SCRIPTS", str(work / "blender-scripts"))
    os.environ.setdefault("BLENDER_USER_EXTENSIONS", str(work / "blender-extensions"))
    import bpy

    import blender_addon
    from backend.service.engine import Engine
    from backend.service.server import Service
    from blender_addon import embed_job, preferences, session
    from blender_addon.headless.sample_library import build_sample_library
    from shared.client import Client
    from tests.backend.service import service_support as support

    t0 = time.perf_counter()
    truth = build_sample_library(work / "library", seed=0)
    t_library = time.perf_counter() - t0
    run_dir = Path(args.run) if args.run else support.fresh_run_copy(work / "run")
    engine = Engine.open(run_dir, catalogue_path=work / "catalogue.sqlite", invert_steps=None if args.run else 30)
    engine.neighbours_k = args.neighbours
    timings: dict[str, float] = {"build_library_s": round(t_library, 2)}
    with Service(engine, port=0, advertise=False) as svc:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        blender_addon.register()
        prefs = preferences.get()

        def embed(obj: Any) -> embed_job.EmbedJob:
            prefs.backend_url, prefs.capture_size, prefs.capture_samples = svc.url, args.size, 8
            bpy.context.view_layer.objects.active = obj
            bpy.context.scene.asset2vec.capture_target = "OBJECT"
            assert bpy.ops.asset2vec.embed() == {"FINISHED"}
            job = embed_job.pump(timeout=600)
            if job is None or job.state != embed_job.DONE:
                raise SystemExit(f"embed failed: {job.message if job else '?'}")
            return job

        # The library the backend knows: a few assets of every sample file (not the showcase chair).
        showcase = next(a for a in truth["assets"] if a["blend"] == "chairs.blend")
        picks = [a for a in truth["assets"] if a["name"] != showcase["name"] and a["blend"] != "families.blend"]
        picks = picks[:: max(1, len(picks) // args.library)][: args.library]
        t0 = time.perf_counter()
        for blend in sorted({a["blend"] for a in picks}):
            bpy.ops.wm.open_mainfile(filepath=str(work / "library" / blend))
            for a in (a for a in picks if a["blend"] == blend):
                embed(bpy.data.objects[a["name"]])
        timings["library_embeds"] = len(picks)
        timings["library_embed_s_each"] = round((time.perf_counter() - t0) / len(picks), 2)
        Client(svc.url).train("tags")  # learn tags from the artists' tags of the assets just embedded

        bpy.ops.wm.open_mainfile(filepath=str(work / "library" / "chairs.blend"))
        t0 = time.perf_counter()
        job = embed(bpy.data.objects[showcase["name"]])
        timings["showcase_embed_s"] = round(time.perf_counter() - t0, 2)

        # Headless Blender has no icons: give each thumbnail a stand-in icon id the painter resolves by name.
        from blender_addon import writeback

        names = sorted({n["name"] for n in writeback.neighbours(bpy.data.objects[showcase["name"]])})
        ids = {name: i + 1 for i, name in enumerate(names)}
        thumbs = session.get().thumbnails
        thumbs.icon_id = lambda name: ids.get(name, 0)  # type: ignore[method-assign] - this instance only
        try:
            panels = draw_panels(bpy.context)
        finally:
            del thumbs.icon_id
        out = Painter({i: thumbs.path(n) for n, i in ids.items()}).paint(panels, Path(args.out))
        blender_addon.unregister()
    engine.close()

    report = {
        "machine": platform.node(), "cpu": cpu_name(), "cores": os.cpu_count(), "device": "cpu (Cycles CPU capture)",
        "run": str(args.run or "tiny synthetic run (8 assets)"), "capture_size": args.size, **timings,
        "status": job.message, "out": str(out), "png_bytes": out.stat().st_size,
    }
    print(json.dumps(report, indent=1))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "panel_preview.json").write_text(json.dumps(report, indent=1))
    return 0




if __name__ == "__main__":
    sys.exit(main())
