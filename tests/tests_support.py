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


def task_run_cut_short_at_its_end(out: Path, monkeypatch):
    """A parity task run of 4 steps in ``out`` killed at its last checkpoint right after the
    train state's write (its model.safetensors and metrics.csv one checkpoint behind).
    Returns its TaskConfig."""
    import pytest

    from bptt import tasks

    config = tasks.TaskConfig(task="parity", length=4, hidden=4, steps=4, batch=4, seed=0,
                              eval_every=2)
    run = tasks.new_task_run(config, out)
    write = type(run.estimator)._write

    def killed_at_the_end(estimator, target, info):
        if info["step"] == config.steps:
            raise KeyboardInterrupt
        return write(estimator, target, info)

    with monkeypatch.context() as patch:
        patch.setattr(type(run.estimator), "_write", killed_at_the_end)
        with pytest.raises(KeyboardInterrupt):
            tasks.train_task(run)
    return config


def assert_completed_at_step_4(code: int, err: str, run_dir: Path) -> None:
    """``bptt train --resume run`` of a run of 4 steps whose last checkpoint a kill cut short:
    exit 0, the two lines that say so, and the model and metrics.csv of step 4 written."""
    from bptt import checkpoint

    assert code == 0
    assert err.splitlines() == [
        "the checkpoint of step 4 in run was cut short by a stop: wrote model.safetensors and "
        "metrics.csv again from its train state",
        "nothing to do: the run in run is already at step 4; --steps is the run's total, give "
        "a larger one to go on"]
    assert checkpoint.read_metadata(run_dir / "model.safetensors")["step"] == 4
    assert (run_dir / "metrics.csv").read_text().splitlines()[-1].startswith("4,")
