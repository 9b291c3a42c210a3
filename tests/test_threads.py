"""Thread pools follow the free cores (``ml4ms.threads``)."""

import subprocess
import sys
import time

import pytest

from ml4ms import threads


@pytest.mark.skipif(threads.usable_cores() < 2, reason="needs two cores")
def test_a_busy_core_is_not_counted_as_free():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it take its core
        assert threads.free_cores(0.3) <= threads.usable_cores() - 1
    finally:
        spinner.kill()
        spinner.wait()


def test_limit_threads_caps_blas_and_torch(monkeypatch):
    import numpy as np  # noqa: F401  (loads BLAS)
    import torch
    from threadpoolctl import threadpool_info

    previous = torch.get_num_threads()
    monkeypatch.setattr(threads, "_measured", [])
    monkeypatch.setattr(threads, "free_cores", lambda interval=0.1: 1)
    try:
        assert threads.limit_threads() == 1
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert threads.limit_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        threads.limit_threads(previous)


def test_threads_option_is_checked(capsys):
    from ml4ms.cli import main

    assert main(["datasets", "--threads", "0"]) == 2
    assert "--threads: must be an integer >= 1" in capsys.readouterr().err
