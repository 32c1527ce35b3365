"""Shared fixtures: small synthetic datasets made once per session."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores on CI: keep every test process at a predictable thread count.
torch.set_num_threads(int(os.environ.get("A2VIDEO_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
