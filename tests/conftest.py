"""Shared test set-up: the bptt that subprocesses import, the Hypothesis profile and the
torch fixture.

Under CI (``CI`` set) Hypothesis runs a derandomized profile, so a run is repeatable.
With ``BPTT_REQUIRE_TORCH=1`` (set by .ci/run) a test that needs torch FAILS when torch
is missing instead of being skipped, so CI proves the PyTorch cross-checks ran.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

import bptt

# Every `python -m bptt` a test starts (a subprocess, run as a user runs it) imports the bptt
# this process tests, by absolute path: not another install the environment may hold (an
# editable install of another checkout, or a relative PYTHONPATH read from a child's cwd).
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(Path(bptt.__file__).resolve().parents[1]),
     *filter(None, [os.environ.get("PYTHONPATH")])])

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def require_torch():
    """Import torch, or skip (fail when BPTT_REQUIRE_TORCH=1)."""
    if os.environ.get("BPTT_REQUIRE_TORCH") == "1":
        torch = importlib.import_module("torch")
    else:
        torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64)
    return torch


@pytest.fixture
def torch():
    """The torch module in float64 (see :func:`require_torch`)."""
    return require_torch()


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded Generator: every random test input is repeatable."""
    return np.random.default_rng(12345)
