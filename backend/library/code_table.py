"""Rows read from the catalogue: all codes of one model (:class:`CodeTable`) and one asset (:class:`AssetRow`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import LibraryError


@dataclass
class CodeTable:
    """All codes of one model, row-aligned: ``shape [N, D]``, ``texture [N, D]``, ``size [N, 3]`` (metres)."""

    model_id: str
    ids: np.ndarray  # [N] int64 asset ids
    names: list[str]
    shape: np.ndarray  # [N, D] float32
    texture: np.ndarray  # [N, D] float32
    size: np.ndarray  # [N, 3] float32
    families: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    psnr: np.ndarray | None = None  # [N] float32, NaN where unknown

    def __len__(self) -> int:
        return len(self.names)

    def index_of(self, name: str) -> int:
        """Row of asset ``name``; unknown names raise :class:`LibraryError` with close matches."""
        try:
            return self.names.index(name)
        except ValueError:
            raise LibraryError(unknown_asset_message(name, self.names)) from None

    def subset(self, rows: np.ndarray | list[int]) -> CodeTable:
        """The table restricted to ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        return CodeTable(
            model_id=self.model_id,
            ids=self.ids[rows],
            names=[self.names[i] for i in rows],
            shape=self.shape[rows],
            texture=self.texture[rows],
            size=self.size[rows],
            families=[self.families[i] for i in rows] if self.families else [],
            categories=[self.categories[i] for i in rows] if self.categories else [],
            psnr=None if self.psnr is None else self.psnr[rows],
        )


@dataclass
class AssetRow:
    """One asset as stored in the catalogue."""

    id: int
    name: str
    source_blend: str
    asset_name: str
    content_hash: str
    family: str
    parameters: dict[str, Any]
    category: str
    size: tuple[float, float, float]
    has_thumbnail: bool


def unknown_asset_message(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"no asset named {name!r} in the catalogue{hint}"
