"""``bptt train --task NAME`` run the way a user runs it (subprocess, tmp dirs)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

import bptt


def test_parity_is_learned_from_the_command_line(run_bptt, tmp_path):
    out = tmp_path / "parity"
    r = run_bptt("train", "--task", "parity", "--task-length", "8", "--steps", "300",
                 "--eval-every", "100", "--seed", "0", "--out", out)
    assert r.returncode == 0, r.stderr
    for name in ("model.safetensors", "metrics.csv", "loss.png"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(row["step"]) for row in rows] == [100, 200, 300]
    assert set(rows[0]) == {"step", "train_loss", "val_loss", "val_accuracy", "seqs_per_sec"}
    assert float(rows[-1]["val_accuracy"]) >= 0.95  # measured: 1.000 (0.927 at step 200)
    assert r.stdout.startswith("task: parity (classification, 2 classes, T = 8")
    assert "step 300: validation accuracy" in r.stdout and "done: step 300" in r.stdout
    assert "100%" in r.stderr  # the progress bar
    clf = bptt.SequenceClassifier.load(out / "model.safetensors")
    bits = np.array([[1, 0, 1, 1, 0, 0, 0, 1], [1, 1, 0, 0, 0, 0, 0, 0]], float)[..., None]
    assert clf.predict(bits).tolist() == [0, 0]
    assert not list(out.glob(".tmp-*"))


def test_adding_and_tweets_write_a_checkpoint_with_metadata(run_bptt, tmp_path):
    from bptt.checkpoint import read_safetensors

    out = tmp_path / "adding"
    r = run_bptt("train", "--task", "adding", "--task-length", "12", "--steps", "20",
                 "--eval-every", "10", "--hidden", "8", "--cell", "gru", "--quiet", "--out", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    _, meta = read_safetensors(out / "model.safetensors")
    assert meta["info"]["task"] == "adding" and meta["info"]["length"] == 12
    assert meta["info"]["step"] == 20 and meta["model"]["cell"] == "gru"
    assert meta["estimator"]["class"] == "SequenceRegressor"
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert set(rows[0]) == {"step", "train_mse", "val_mse", "val_r2", "seqs_per_sec"}
    r = run_bptt("train", "--task", "tweets", "--steps", "5", "--eval-every", "5", "--hidden",
                 "8", "--out", tmp_path / "tweets")
    assert r.returncode == 0, r.stderr
    assert "tweets (classification, 2 classes, T = 12, D = 3; 2,000 training" in r.stdout


@pytest.mark.parametrize("argv, message", [
    (["--task-length", "5"], "--task-length needs --task NAME"),
    (["--task", "parity", "--seq-len", "5"], "--seq-len does not apply to --task"),
    (["--task", "parity", "notes.txt"], "give no FILE"),
    (["--task", "digits", "--task-length", "4"], "the digits task has a fixed length"),
    (["--task", "adding", "--task-length", "1"], "needs a length >= 2"),
    (["--task", "mnist"], "invalid choice: 'mnist'"),
])
def test_bad_task_flags_are_one_line(run_bptt, tmp_path, argv, message):
    r = run_bptt("train", *argv, "--out", tmp_path / "x", "--steps", "1")
    assert r.returncode == 2, r.stdout
    assert r.stderr.startswith("bptt: error:") and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_digits_without_scikit_learn_is_one_clear_line(tmp_path):
    hide = tmp_path / "no-sklearn" / "sklearn"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('scikit-learn is hidden here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(hide.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    r = subprocess.run([sys.executable, "-m", "bptt", "train", "--task", "digits", "--out",
                        tmp_path / "d"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr == ("bptt: error: the digits task needs scikit-learn, which is not "
                        "installed: pip install 'bptt[examples]' (or pip install scikit-learn)\n")
    assert not (tmp_path / "d").exists()
