"""Helpers for the library tests (importable: conftest modules are not for importing)."""

from __future__ import annotations

import numpy as np

from backend.library.catalogue import CodeTable


def make_table(shape: np.ndarray, texture: np.ndarray, names: list[str] | None = None,
               families: list[str] | None = None, size: np.ndarray | None = None,
               categories: list[str] | None = None) -> CodeTable:
    n = len(shape)
    names = names or [f"asset_{i:04d}" for i in range(n)]
    return CodeTable(
        model_id="m-test",
        ids=np.arange(1, n + 1, dtype=np.int64),
        names=names,
        shape=np.asarray(shape, np.float32),
        texture=np.asarray(texture, np.float32),
        size=np.ones((n, 3), np.float32) if size is None else np.asarray(size, np.float32),
        families=families or [""] * n,
        categories=categories or [""] * n,
    )
