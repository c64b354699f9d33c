"""Shared fixtures of the test suite (keep this small and general)."""
import pytest
import torch

from prefect_server import prefect_server  # noqa: F401  (one real Prefect server per session, on first use)
from prefect_torch.examples import make_data
from s3_server import s3_server  # noqa: F401  (one real S3 server per test session, started on first use)


@pytest.fixture(autouse=True)
def _torch_seed_and_one_thread():
    """Every test starts from the same torch seed, on one thread.

    Tiny models train faster (and steadier) on one thread of a busy 2-core machine; tests that
    compare two seeded runs still call ``torch.manual_seed`` themselves before each run.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data():
    """200 samples of the README's binary problem: ``X`` float32 (200, 10), ``y`` int64 (200,).

    A fresh copy for every test, so a test that changes the arrays cannot affect another.
    """
    return make_data(200)
