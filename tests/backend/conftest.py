"""Set-up shared by every backend test: one torch thread."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Run torch on one thread in the backend tests: on a shared, loaded 2-core machine OpenMP's spinning
    threads make two threads several times slower than one (measured 75k vs 8k samples/s under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
