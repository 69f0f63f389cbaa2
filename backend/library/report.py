"""The exploration page: every analysis of :mod:`.explore` / :mod:`.style` as PNG + JSON + one ``index.html``."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from . import explore, style
from .catalogue import Catalogue, CodeTable
from .tags import tag_status

THUMB_SIZE = 32
RENDER_BATCH = 8


def thumbnails(renderer: style.Renderer, cat: Catalogue | None, table: CodeTable,
               size: int = THUMB_SIZE) -> list[np.ndarray]:
    """One RGBA thumbnail ``[H, W, 4]`` per asset: the catalogue's, else a decoder render (then cached there)."""
    out: list[np.ndarray | None] = [None] * len(table)
    if cat is not None:
        for i, aid in enumerate(table.ids):
            png = cat.thumbnail(int(aid))
            if png:
                out[i] = style.decode_png(png)
    missing = [i for i, t in enumerate(out) if t is None]
    for s in tqdm(range(0, len(missing), RENDER_BATCH), desc="thumbnails", unit="batch", disable=not missing):
        rows = missing[s:s + RENDER_BATCH]
        imgs = style.render_codes(renderer, table.shape[rows], table.texture[rows], size)
        for r, img in zip(rows, imgs, strict=True):
            out[r] = img
            if cat is not None:
                cat.set_thumbnail(int(table.ids[r]), style.png_bytes(img))
    return [o for o in out if o is not None]


def explore_library(
    renderer: style.Renderer,
    cat: Catalogue | None,
    table: CodeTable,
    out: str | os.PathLike[str],
    method: str = "pca",
    image_size: int = 48,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write PCA strips, maps with clusters, sparse regions, duplicates and a style grid into ``out``.

    Returns the summary also written to ``out/explore.json``; ``out/index.html`` shows it all.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: None)
    files: list[dict[str, str]] = []
    data: dict[str, Any] = {"model_id": table.model_id, "assets": len(table)}
    # Nothing here needs tags; the page says how tags start when there are none.
    data["tags"] = tag_status(cat) if cat is not None else None

    say("thumbnails")
    thumbs = thumbnails(renderer, cat, table)

    say("PCA of each half")
    pcas = {h: explore.pca_summary(getattr(table, h), 8) for h in ("shape", "texture")}
    data["pca"] = {h: {"explained_variance_ratio": s["explained_variance_ratio"], "sigma": s["sigma"]}
                   for h, s in pcas.items()}
    explore.plot_explained_variance(pcas, out / "pca_variance.png")
    files.append({"png": "pca_variance.png", "title": "Explained variance per half",
                  "caption": "How many directions each half really uses."})
    for half, s in pcas.items():
        strips = style.pca_strips(renderer, table, half, s, n_dirs=min(4, len(s["directions"])),
                                  image_size=image_size)
        name = f"pca_{half}_strips.png"
        style.save_grid(strips, out / name, col_labels=["-2 sd", "-1 sd", "mean", "+1 sd", "+2 sd"],
                        row_labels=[f"PC{i + 1}" for i in range(len(strips))], row_label_px=30)
        files.append({"png": name, "title": f"Principal directions of the {half} half",
                      "caption": f"Each row: mean code + t·sd·direction on the {half} half, other half at its mean."})

    central: list[str] = table.names[:5]
    for space in ("shape", "texture"):
        say(f"{space}-space map and clusters")
        feats = explore.space_features(table, space)
        coords = explore.embed_2d(feats, method)
        cl = explore.clusters(feats, table.names)
        data[f"clusters_{space}"] = {k: v for k, v in cl.items() if k != "labels"}
        explore.plot_map(coords, table.names, out / f"map_{space}.png", cl["labels"],
                         [c["name"] for c in cl["clusters"]], thumbs, title=f"{space} space ({method})")
        files.append({"png": f"map_{space}.png", "title": f"Map of {space} space",
                      "caption": f"{cl['k']} clusters (silhouette {cl['silhouette'] or 0:.2f}), "
                                 "each named after its most central asset (its most typical members are "
                                 "listed under Clusters)."})
        if space == "shape":
            central = [c["name"] for c in cl["clusters"]][:5]

    if len(table) >= 4:
        say("sparse regions")
        regions = explore.sparse_regions(explore.space_features(table, "both"), table.names, n_regions=5)
        data["sparse_regions"] = regions
        if regions:
            mixed = [explore.mix_codes(table, r["weights"]) for r in regions]
            imgs = style.render_codes(renderer, np.stack([m[0] for m in mixed]), np.stack([m[1] for m in mixed]),
                                      image_size)
            style.save_grid(imgs[None], out / "sparse.png", col_labels=[f"#{i + 1}" for i in range(len(regions))])
            files.append({"png": "sparse.png", "title": "Sparse regions: where the library needs assets",
                          "caption": "; ".join(f"#{i + 1}: {r['score']:.1f}× the usual gap, near "
                                               f"{', '.join(r['nearest'][:3])}" for i, r in enumerate(regions))})

    say("near-duplicates")
    data["duplicates"] = explore.near_duplicates(table)

    say("style-transfer grid")
    grid = style.style_grid(renderer, table, central, image_size=image_size)
    style.save_grid(grid, out / "style_grid.png", col_labels=central, row_labels=central, row_label_px=90)
    files.append({"png": "style_grid.png", "title": "Shape (rows) × texture (columns)",
                  "caption": "Decoder renders mixing the shape of one asset with the texture of another."})

    data["files"] = [f["png"] for f in files] + ["explore.json", "index.html"]
    _write(out / "explore.json", json.dumps(data, indent=1))
    typical = {n for sp in ("shape", "texture") for c in data[f"clusters_{sp}"]["clusters"] for n in c["typical"]}
    write_index_html(out, files, data, {n: style.png_bytes(t) for n, t in zip(table.names, thumbs, strict=True)
                                        if n in typical})
    return data


def write_index_html(out: Path, files: list[dict[str, str]], data: dict[str, Any],
                     thumbs: dict[str, bytes] | None = None) -> Path:
    """A single static page: the tag status, every PNG with its caption, clusters with their most typical
    assets (``thumbs``: PNG bytes by asset name, shown inline) and duplicates as a list."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Asset2Vec library exploration</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%;"
        "border:1px solid #ccc}figure{margin:2em 0}</style></head><body>",
        f"<h1>Library exploration</h1><p>Model <code>{html.escape(str(data.get('model_id')))}</code>, "
        f"{data.get('assets')} assets. Data: <a href='explore.json'>explore.json</a>.</p>",
    ]
    parts.append(_tags_html(data.get("tags")))
    for f in files:
        parts.append(f"<figure><h2>{html.escape(f['title'])}</h2><img src='{html.escape(f['png'])}' alt=''>"
                     f"<figcaption>{html.escape(f['caption'])}</figcaption></figure>")
    parts.append(_clusters_html(data, thumbs or {}))
    dups = data.get("duplicates") or []
    parts.append("<h2>Near-duplicates</h2>")
    parts.append("<ul>" + "".join(f"<li>{html.escape(' = '.join(g['assets']))}</li>" for g in dups) + "</ul>"
                 if dups else "<p>None found.</p>")
    parts.append("</body></html>")
    return _write(out / "index.html", "\n".join(parts))


def _tags_html(status: dict[str, Any] | None) -> str:
    """The tag status: how tags start when there are none, else how many assets are tagged with what."""
    if status is None:
        return ""
    if status.get("message"):
        return (f"<div class='tags-help' style='background:#fff6d5;border:1px solid #e0c060;padding:0.6em 1em'>"
                f"<h2>Tags</h2><p>{html.escape(status['message'])}</p></div>")
    tags = ", ".join(f"{html.escape(t)} ({n})" for t, n in status.get("tags", {}).items())
    return f"<h2>Tags</h2><p>{status.get('tagged_assets', 0)} assets have artist tags: {tags}.</p>"


def _clusters_html(data: dict[str, Any], thumbs: dict[str, bytes]) -> str:
    """Each space's clusters: name, size and the most typical members (with thumbnails when given)."""
    import base64

    def asset(name: str) -> str:
        img = ""
        if name in thumbs:
            src = "data:image/png;base64," + base64.b64encode(thumbs[name]).decode("ascii")
            img = f"<img src='{src}' alt='' style='width:48px;border:none;vertical-align:middle'> "
        return f"<span style='margin-right:1em'>{img}{html.escape(name)}</span>"

    parts = []
    for space in ("shape", "texture"):
        cl = data.get(f"clusters_{space}")
        if not cl:
            continue
        parts.append(f"<h2>Clusters in {space} space</h2><p>Named after their most typical asset (closest to the "
                     "cluster centre); the most typical members are shown.</p><table>")
        for c in cl["clusters"]:
            parts.append(f"<tr><td><b>{html.escape(c['name'])}</b><br>{c['size']} assets</td>"
                         f"<td>{''.join(asset(n) for n in c.get('typical', []))}</td></tr>")
        parts.append("</table>")
    return "\n".join(parts)


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
