"""Helpers for running the ``bptt`` command as a user would: a subprocess, or its entry point
in this process where the test needs no process of its own (:func:`tests_support.bptt_here`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def bptt_cmd(*args: str, cwd: Path | None = None, timeout: float = 300,
             input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m bptt ARGS`` and capture its output (text)."""
    return subprocess.run(
        [sys.executable, "-m", "bptt", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, input=input,
    )


@pytest.fixture
def run_bptt():
    """The :func:`bptt_cmd` function."""
    return bptt_cmd


@pytest.fixture
def run_bptt_here():
    """The :func:`tests_support.bptt_here` function: :func:`bptt_cmd`'s result, in-process."""
    from tests_support import bptt_here

    return bptt_here


@pytest.fixture
def bptt_in_process():
    """``run(args, cwd) -> (exit code, stderr)``: :func:`tests_support.bptt_here`'s, for the
    tests that read only those two."""
    from tests_support import bptt_here

    def run(args, cwd: Path) -> tuple[int, str]:
        result = bptt_here(*args, cwd=cwd)
        return result.returncode, result.stderr

    return run


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    """A 60k-character English/Python text made from the built-in corpus (no download)."""
    from bptt.data import builtin_corpus

    path = tmp_path_factory.mktemp("corpus") / "topics.txt"
    path.write_text(builtin_corpus()[:60_000], encoding="utf-8")
    return path
