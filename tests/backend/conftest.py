"""Set-up shared by every backend test: import paths and one torch thread."""

import sys
from pathlib import Path

import pytest

# tests/backend (for synthetic.py) importable, and the repository root ahead of it so that this folder never
# shadows the real `backend` package as a namespace package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1].parent))


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Run torch on one thread in the backend tests: on a shared, loaded 2-core machine OpenMP's spinning
    threads make two threads several times slower than one (measured 75k vs 8k samples/s under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
