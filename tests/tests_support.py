"""Small helpers shared by tests (importable as ``tests_support``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def train_tiny(out: Path, corpus: Path, *extra: str) -> None:
    """Train a tiny model into ``out`` with ``python -m bptt train`` (a few steps)."""
    subprocess.run(
        [sys.executable, "-m", "bptt", "train", str(corpus), "--out", str(out), "--hidden", "8",
         "--seq-len", "10", "--batch", "2", "--steps", "2", "--quiet", "--cell", "rnn", *extra],
        check=True, capture_output=True, timeout=120,
    )


def write_export_with_vocab(path: Path, params: dict, vocab: object) -> Path:
    """An exported state_dict file whose metadata holds ``vocab`` as given, even one
    ``write_torch_safetensors`` refuses (as a hand edit or another tool could write it)."""
    from bptt import checkpoint, interop

    meta = {**interop.export_meta(params), "vocab": vocab}
    checkpoint.write_safetensors_atomic(path, interop.to_torch_state_dict(params), meta)
    return path
