"""Make ``tests/backend/synthetic.py`` importable as ``synthetic`` for the model tests."""

import sys
from pathlib import Path

import pytest

# The repository root first: with tests/ on sys.path (a rootdir conftest), tests/backend would otherwise
# shadow the real `backend` package as a namespace package (the editable install's finder comes later).
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Run torch on one thread in these tests: on a shared, loaded 2-core machine OpenMP's spinning threads
    make two threads several times slower than one (measured 75k vs 8k samples/s under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
