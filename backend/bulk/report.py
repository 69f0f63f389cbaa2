"""The bulk-tag report: every proposed (or made) change, for a library owner to review.

``report.json`` (everything), ``report.csv`` (one row per asset) and ``index.html`` (a table with
the thumbnails captured during the run, tags to add with their probabilities, nearest assets).
"""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path
from typing import Any

#: Neighbours listed per space in the CSV/HTML (the JSON has all of them).
SHOWN_NEIGHBOURS = 3


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _tags(to_add: dict[str, float]) -> str:
    return "; ".join(f"{t} ({p:.2f})" for t, p in sorted(to_add.items(), key=lambda kv: (-kv[1], kv[0])))


def _why(why: dict[str, str]) -> str:
    return "; ".join(f"{t}: {w}" for t, w in sorted(why.items()))


def _neighbours(nb: dict[str, list[dict[str, Any]]], space: str) -> str:
    return "; ".join(f"{n.get('name', '')} ({float(n.get('distance', 0.0)):.3f})" for n in nb.get(space, [])[
        :SHOWN_NEIGHBOURS])


def write_report(out_dir: Path, summary: dict[str, Any], files: list[dict[str, Any]]) -> dict[str, Path]:
    """Write the three report files into ``out_dir``; returns their paths.

    ``files``: ``[{"path", "status", "error", "assets": [{"name", "status", "to_add", "added", "to_remove",
    "removed", "why", "predicted", "neighbours", "artist_tags", "thumb"}]}]`` (``why``: tag -> its probability
    against its own calibrated write threshold, or the exclusive group, that makes it added or removed).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "csv": out_dir / "report.csv", "html": out_dir / "index.html"}
    _atomic_text(paths["json"], json.dumps({"summary": summary, "files": files}, indent=1))

    rows = []
    for f in files:
        if not f.get("assets"):
            rows.append({"file": f["path"], "file_status": f["status"], "error": f.get("error", "")})
        for a in f.get("assets", []):
            nb = a.get("neighbours") or {}
            rows.append({"file": f["path"], "file_status": f["status"], "asset": a.get("name", ""),
                         "asset_status": a.get("status", ""), "artist_tags": "; ".join(a.get("artist_tags", [])),
                         "tags_to_add": _tags(a.get("to_add") or {}), "added": "; ".join(a.get("added", [])),
                         "tags_to_remove": _tags(a.get("to_remove") or {}),
                         "removed": "; ".join(a.get("removed", [])), "why": _why(a.get("why") or {}),
                         "similar_shape": _neighbours(nb, "shape"), "similar_texture": _neighbours(nb, "texture"),
                         "similar_both": _neighbours(nb, "both"), "error": a.get("error", "") or f.get("error", "")})
    fields = ["file", "file_status", "asset", "asset_status", "artist_tags", "tags_to_add", "added", "tags_to_remove",
              "removed", "why", "similar_shape", "similar_texture", "similar_both", "error"]
    tmp = paths["csv"].with_name(".report.csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})
    os.replace(tmp, paths["csv"])
    _atomic_text(paths["html"], _html(out_dir, summary, files))
    return paths


def _html(out_dir: Path, summary: dict[str, Any], files: list[dict[str, Any]]) -> str:
    e = html.escape
    head = ", ".join(f"{k}: {v}" for k, v in summary.items() if isinstance(v, (int, float, str)))
    body = []
    for f in files:
        for a in f.get("assets", []) or [{}]:
            thumb = a.get("thumb")
            img = ""
            if thumb and Path(thumb).is_file():
                rel = os.path.relpath(thumb, out_dir)
                img = f'<img src="{e(rel)}" width="64" height="64" alt="">'
            nb = a.get("neighbours") or {}
            status = a.get("status", f.get("status", ""))
            body.append(
                f"<tr class='{e(status)}'><td>{img}</td><td>{e(f['path'])}</td><td>{e(a.get('name', ''))}</td>"
                f"<td>{e(status)}</td><td>{e('; '.join(a.get('artist_tags', [])))}</td>"
                f"<td>{e(_tags(a.get('to_add') or {}))}</td><td>{e(_tags(a.get('to_remove') or {}))}</td>"
                f"<td>{e(_why(a.get('why') or {}))}</td><td>{e(_neighbours(nb, 'shape'))}</td>"
                f"<td>{e(_neighbours(nb, 'texture'))}</td><td>{e(a.get('error', '') or f.get('error', ''))}</td></tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Asset2Vec bulk-tag report</title>
<style>body{{font-family:sans-serif;font-size:13px}} td{{border-bottom:1px solid #ddd;padding:3px 6px}}
tr.failed{{background:#fdd}} img{{background:#eee}}</style></head><body>
<h1>Asset2Vec bulk-tag report</h1><p>{e(head)}</p>
<table><tr><th></th><th>file</th><th>asset</th><th>status</th><th>artist tags</th><th>tags to add (probability)</th>
<th>tags to remove (probability)</th><th>why</th><th>similar shape</th><th>similar texture</th><th>problem</th></tr>
{chr(10).join(body)}
</table></body></html>
"""
