"""Kills never corrupt, Ctrl-C saves, and runs are deterministic and resume exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from tests_support import bptt_here

from bptt import checkpoint, train

ARGS = ["--cell", "rnn", "--hidden", "32", "--seq-len", "20", "--batch", "8", "--dtype",
        "float64", "--eval-every", "50", "--checkpoint-every", "2", "--sample-length", "20",
        "--quiet", "--seed", "3"]


def _default_stop_signals() -> None:
    """In the child: SIGINT and SIGHUP as a foreground command gets them, even when the tests
    run under nohup or as a background job (which ignore them, and so would the child)."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bptt", "train", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_stop_signals)


def weights(directory: Path, name: str = "model.safetensors") -> dict[str, np.ndarray]:
    return safetensors.numpy.load_file(directory / name)


def assert_bit_identical(a: Path, b: Path) -> None:
    for name in ("model.safetensors", "train_state.safetensors"):
        wa, wb = weights(a, name), weights(b, name)
        assert wa.keys() == wb.keys()
        for key in wa:
            assert np.array_equal(wa[key], wb[key]), f"{name}:{key} differs"


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_and_resume_is_exact(corpus_file, tmp_path):
    # (the runs around the kills need no process of their own: bptt_here, in this process)
    killed = tmp_path / "killed"
    r = bptt_here("train", corpus_file, *ARGS, "--steps", "2", "--out", killed)
    assert r.returncode == 0, r.stderr
    rng = np.random.default_rng(0)
    kills, deadline = 0, time.monotonic() + 150
    while kills < 12 and time.monotonic() < deadline:
        proc = start("--resume", killed, "--steps", "1000000")
        time.sleep(float(rng.uniform(0.3, 1.5)))  # import + some steps: kills land mid-write too
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        # whatever moment the kill hit, both files load and agree with themselves
        model = checkpoint.load_model(killed)
        run = train.resume_run(killed, corpus_file.read_text(encoding="utf-8"))
        assert run.step >= model.step
        assert all(np.isfinite(v).all() for v in model.params.values())
    assert kills >= 12, f"only {kills} kills in the time allowed"
    assert run.step > 2, "every kill landed before training went on: nothing was tested"
    # finish a little past the last checkpoint, then compare with a run never interrupted
    total = str(run.step + 7)
    done = bptt_here("train", "--resume", killed, "--steps", total, "--quiet")
    assert done.returncode == 0, done.stderr
    assert not list(killed.glob(".tmp-*")), "temp files of killed writes were not cleaned up"
    straight = tmp_path / "straight"
    r = bptt_here("train", corpus_file, *ARGS, "--steps", total, "--out", straight)
    assert r.returncode == 0, r.stderr
    assert_bit_identical(straight, killed)


@pytest.mark.parametrize("signum, said", [(signal.SIGINT, "interrupted"),
                                          (signal.SIGTERM, "stopped by SIGTERM"),
                                          (signal.SIGHUP, "stopped by SIGHUP")])
def test_ctrl_c_sigterm_and_sighup_save_a_final_checkpoint_and_exit_128_plus_it(
        corpus_file, tmp_path, signum, said):
    """What a shell, ``kill``, ``timeout``, a container's stop or a closed terminal sends: the
    run saves the step it is at and exits as that signal would end it (130, 143, 129)."""
    out = tmp_path / "run"
    proc = start(corpus_file, *ARGS, "--steps", "100000", "--checkpoint-every", "100000",
                 "--eval-every", "100000", "--out", out)
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    model = checkpoint.load_model(out)
    assert model.step > 0
    assert err == f"{said}: checkpoint of step {model.step} saved in {out}\n"
    assert train.resume_run(out, corpus_file.read_text(encoding="utf-8")).step == model.step


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_bits(corpus_file, tmp_path, dtype):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        r = subprocess.run([sys.executable, "-m", "bptt", "train", corpus_file, "--cell", "lstm",
                            "--hidden", "16", "--seq-len", "10", "--batch", "4", "--steps", "6",
                            "--eval-every", "3", "--dtype", dtype, "--seed", "11", "--quiet",
                            "--out", out], capture_output=True, text=True,
                           env=dict(os.environ))
        assert r.returncode == 0, r.stderr
    assert_bit_identical(*outs)
    # what the README promises: the model file byte for byte, metrics.csv but for the speed
    # (chars_per_sec, also in train_state's history: that file's bytes differ there)
    assert (outs[0] / "model.safetensors").read_bytes() == \
        (outs[1] / "model.safetensors").read_bytes()

    def without_speed(directory: Path) -> list[str]:
        lines = (directory / "metrics.csv").read_text().splitlines()
        return [line.rsplit(",", 1)[0] for line in lines]

    assert without_speed(outs[0]) == without_speed(outs[1])
