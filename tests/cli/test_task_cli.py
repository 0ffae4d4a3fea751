"""``bptt train --task NAME`` run the way a user runs it (tmp dirs): by its entry point in this
process (:func:`tests_support.bptt_here`), and as a subprocess where the environment
matters."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from tests_support import assert_completed_at_step_4, task_run_cut_short_at_its_end

import bptt


def test_parity_is_learned_from_the_command_line(run_bptt_here, tmp_path):
    out = tmp_path / "parity"
    r = run_bptt_here("train", "--task", "parity", "--task-length", "8", "--steps", "300",
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


def test_the_help_gives_the_defaults_of_a_task_run(monkeypatch, capsys):
    """`bptt train --help` states the defaults of a run on text (--hidden 128, --steps 3000,
    --lr 0.003, --clip-norm 5, --eval-every 250); a task run has others, which it did not say."""
    from bptt.cli import main
    from bptt.tasks import TASK_DEFAULTS, TaskConfig

    monkeypatch.setenv("COLUMNS", "1000")  # (argparse wraps lines at hyphens)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name, d in TASK_DEFAULTS.items():
        assert f"{name} --hidden {d['hidden']} --steps {d['steps']} --lr {d['lr']:g}" in text
    config = TaskConfig()
    assert f"--clip-norm {config.clip_norm:g} --eval-every {config.eval_every}" in text


def test_adding_and_tweets_write_a_checkpoint_with_metadata(run_bptt_here, tmp_path):
    from bptt.checkpoint import read_safetensors

    out = tmp_path / "adding"
    r = run_bptt_here("train", "--task", "adding", "--task-length", "12", "--steps", "20",
                 "--eval-every", "10", "--hidden", "8", "--cell", "gru", "--quiet", "--out", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    _, meta = read_safetensors(out / "model.safetensors")
    assert meta["info"]["task"] == "adding" and meta["info"]["length"] == 12
    assert meta["info"]["step"] == 20 and meta["model"]["cell"] == "gru"
    assert meta["estimator"]["class"] == "SequenceRegressor"
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert set(rows[0]) == {"step", "train_mse", "val_mse", "val_r2", "seqs_per_sec"}
    r = run_bptt_here("train", "--task", "tweets", "--steps", "5", "--eval-every", "5", "--hidden",
                 "8", "--no-clip-norm", "--out", tmp_path / "tweets")
    assert r.returncode == 0, r.stderr
    assert "tweets (classification, 2 classes, T = 12, D = 3; 2,000 training" in r.stdout
    _, meta = read_safetensors(tmp_path / "tweets" / "model.safetensors")
    assert meta["info"]["task_config"]["clip_norm"] is None  # --no-clip-norm: never clipped
    assert bptt.SequenceClassifier.load(tmp_path / "tweets").clip_norm is None
    # the last line sums up the last evaluation (the model's history holds its row)
    last = meta["info"]["history"][-1]
    assert r.stdout.splitlines()[-1].startswith(
        f"done: step 5, validation accuracy {last['val_accuracy']:.3f}, cross-entropy "
        f"{last['val_loss']:.4f}; checkpoint, metrics.csv and loss.png in ")


def test_the_summary_line_of_an_evaluation_gives_its_metrics_to_stated_digits():
    from bptt.cli import train_task

    assert train_task._summary({"val_accuracy": 0.98765, "val_loss": 0.0412345}) == (
        "validation accuracy 0.988, cross-entropy 0.0412")
    assert train_task._summary({"val_mse": 0.00123456, "val_r2": 0.987654}) == (
        "validation MSE 0.00123, R² 0.9877")


class _RecordingBar:
    """A stand-in for the run's tqdm bar: the calls made on it, in order."""

    def __init__(self):
        self.calls = []

    def update(self, n):
        self.calls.append(("update", n))

    def set_postfix(self, **postfix):
        self.calls.append(("set_postfix", postfix))

    def write(self, text):
        self.calls.append(("write", text))


@pytest.mark.parametrize("quiet", [False, True])
def test_each_event_of_a_task_run_moves_the_bar_or_prints_one_line(quiet):
    """A step moves the bar one step and shows its loss (4 decimals) and speed (sequences a
    second, thousands separated) beside it; an evaluation is one line above the bar (none
    with --quiet); a checkpoint and the end show nothing."""
    from bptt.cli import train_task
    from bptt.tasks import TaskEvent

    bar = _RecordingBar()
    row = {"step": 20, "train_loss": 0.5, "val_loss": 0.0412345, "val_accuracy": 0.98765,
           "seqs_per_sec": 12345.6}
    for event in (TaskEvent("step", 20, loss=0.693147, seqs_per_sec=12345.6),
                  TaskEvent("eval", 20, seqs_per_sec=12345.6, metrics=row),
                  TaskEvent("checkpoint", 20), TaskEvent("done", 20)):
        train_task._show(event, bar, quiet)
    # (refresh=False: the postfix is drawn with the bar's next update, not once more a step)
    step = [("update", 1),
            ("set_postfix", {"loss": "0.6931", "seqs_s": "12,346", "refresh": False})]
    evaluation = [("write", "step 20: validation accuracy 0.988, cross-entropy 0.0412")]
    assert bar.calls == step + ([] if quiet else evaluation)


@pytest.mark.parametrize("argv, message", [
    (["--task-length", "5"], "--task-length needs --task NAME"),
    (["--task", "parity", "--seq-len", "5"], "--seq-len does not apply to --task"),
    (["--task", "parity", "notes.txt"], "give no FILE"),
    (["--task", "digits", "--task-length", "4"], "the digits task has a fixed length"),
    (["--task", "adding", "--task-length", "1"], "needs a length >= 2"),
    (["--task", "mnist"], "invalid choice: 'mnist'"),
])
def test_bad_task_flags_are_one_line(run_bptt_here, tmp_path, argv, message):
    r = run_bptt_here("train", *argv, "--out", tmp_path / "x", "--steps", "1")
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


def test_digits_trains_on_what_load_digits_gives(run_bptt_here, tmp_path, monkeypatch):
    """scikit-learn is not installed here: a stand-in ``sklearn.datasets.load_digits`` gives
    what the real one does (images (N, 8, 8) of integers 0 … 16, target (N,) of 0 … 9), so
    the task's own path runs: scaling, the 80/20 split, 10 classes, T = D = 8, the run."""
    import types

    rng = np.random.default_rng(0)
    target = np.arange(200) % 10
    # each class a bright row of its own (row = label mod 8) over noise: learnable, 8×8
    images = rng.integers(0, 5, size=(200, 8, 8))
    images[np.arange(200), target % 8] = 16
    images[target >= 8, :, 0] = 16  # labels 8, 9 share rows with 0, 1: a bright column too
    sklearn = types.ModuleType("sklearn")
    datasets = types.ModuleType("sklearn.datasets")
    datasets.load_digits = lambda: types.SimpleNamespace(images=images, target=target)
    sklearn.datasets = datasets
    monkeypatch.setitem(sys.modules, "sklearn", sklearn)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", datasets)
    out = tmp_path / "digits"
    r = run_bptt_here("train", "--task", "digits", "--steps", "150", "--eval-every", "50",
                      "--out", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("task: digits (classification, 10 classes, T = 8, D = 8; "
                               "160 training, 40 validation sequences)")  # the 80/20 split
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(row["step"]) for row in rows] == [50, 100, 150]
    assert float(rows[-1]["val_accuracy"]) >= 0.9  # measured: 1.000
    clf = bptt.SequenceClassifier.load(out / "model.safetensors")
    assert clf.n_features_in_ == 8 and clf.classes_.tolist() == list(range(10))
    # the model reads images as the task scales them (/ 16; unscaled it scores 0.2)
    assert (clf.predict(images[:40] / 16.0) == target[:40]).mean() >= 0.9


def _state(directory):
    from bptt.checkpoint import read_safetensors

    return read_safetensors(directory / "train_state.safetensors")


def test_a_task_run_resumes_exactly_from_the_command_line(run_bptt_here, tmp_path):
    common = ("--task", "tweets", "--hidden", "8", "--batch", "16", "--eval-every", "10",
              "--seed", "2", "--quiet")
    r = run_bptt_here("train", *common, "--steps", "30", "--out", tmp_path / "straight")
    assert r.returncode == 0, r.stderr
    r = run_bptt_here("train", *common, "--steps", "10", "--out", tmp_path / "resumed")
    assert r.returncode == 0, r.stderr
    # no --task needed: the run directory says it holds a task run; --steps is the total.
    # Settings given again with their saved values change nothing and are accepted.
    r = run_bptt_here("train", "--resume", tmp_path / "resumed", "--steps", "30", "--hidden", "8",
                 "--seed", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("task: tweets") and "done: step 30" in r.stdout
    (a, meta_a), (b, meta_b) = _state(tmp_path / "straight"), _state(tmp_path / "resumed")
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert meta_a["estimator"] == meta_b["estimator"] and meta_a["step"] == 30
    rows = list(csv.DictReader((tmp_path / "resumed" / "metrics.csv").open()))
    assert [int(row["step"]) for row in rows] == [10, 20, 30]
    clf = bptt.SequenceClassifier.load(tmp_path / "resumed")
    assert clf.n_steps_ == 30


@pytest.fixture(scope="module")
def tweets_run(tmp_path_factory):
    """A finished two-step task run (made in-process: only the resumes are commands)."""
    from bptt import tasks

    config = tasks.TaskConfig(task="tweets", hidden=4, steps=2, eval_every=2)
    run = tasks.new_task_run(config, tmp_path_factory.mktemp("task") / "run")
    assert tasks.train_task(run)
    return run.out_dir


@pytest.mark.parametrize("argv, message", [
    (["--hidden", "8"], "--hidden cannot change on --resume (only --steps and --eval-every"),
    (["--task-length", "4"], "--task-length cannot change on --resume"),
    (["--no-clip-norm"], "--clip-norm cannot change on --resume"),  # the run clips at 1
    (["--task", "parity"], "--task parity, but {run} holds a run of the tweets task"),
    (["--seq-len", "5"], "--seq-len does not apply to --task"),
    (["notes.txt"], "a task run trains on generated data: give no FILE"),
    (["--out", "{tmp}/elsewhere"], "--out cannot change on --resume"),
])
def test_bad_flags_on_a_task_resume_are_one_line_and_change_nothing(run_bptt_here, tmp_path, argv,
                                                                     message, tweets_run):
    run = tweets_run
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    argv = [a.format(tmp=tmp_path) for a in argv]
    r = run_bptt_here("train", "--resume", run, *argv, "--steps", "4")
    assert r.returncode == 2, r.stdout
    assert r.stderr.startswith("bptt: error:") and message.format(run=run) in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert not (tmp_path / "elsewhere").exists()


def test_a_run_on_text_is_not_resumed_as_a_task(run_bptt_here, tmp_path, corpus_file):
    run = tmp_path / "text"
    r = run_bptt_here("train", corpus_file, "--hidden", "4", "--seq-len", "5", "--batch", "2",
                 "--steps", "1", "--eval-every", "1", "--quiet", "--out", run)
    assert r.returncode == 0, r.stderr
    r = run_bptt_here("train", "--task", "parity", "--resume", run)
    assert r.returncode == 2
    assert "holds a run on text, not a task run: resume it without --task" in r.stderr


def _files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def test_a_task_resume_keeps_a_model_that_is_not_the_runs_own(run_bptt_here, tweets_run, tmp_path,
                                                               corpus_file):
    """A task run's train state beside a text model (copied in by hand): the resume would
    overwrite that model at its first checkpoint; it is refused and nothing changes."""
    import shutil

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    r = run_bptt_here("train", corpus_file, "--hidden", "4", "--seq-len", "5", "--batch", "2",
                 "--steps", "1", "--quiet", "--out", tmp_path / "text")
    assert r.returncode == 0, r.stderr
    shutil.copy(tmp_path / "text" / "model.safetensors", mixed)
    shutil.copy(tweets_run / "train_state.safetensors", mixed)
    before = _files(mixed)
    r = run_bptt_here("train", "--resume", mixed, "--steps", "4")
    assert r.returncode == 2
    assert r.stderr == (f"bptt: error: {mixed}/model.safetensors is not the model of the run "
                        "whose train state is beside it (step 2); the run would overwrite it at "
                        f"its next checkpoint: move it away (or copy the run without it) to "
                        f"resume {mixed}\n")
    assert _files(mixed) == before


def test_the_default_task_directory_passes_over_a_file_of_its_name(run_bptt_here, tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "task-parity-rnn").write_text("notes, not a run")
    r = run_bptt_here("train", "--task", "parity", "--cell", "rnn", "--hidden", "4", "--steps", "1",
                 "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "runs" / "task-parity-rnn").read_text() == "notes, not a run"
    assert (tmp_path / "runs" / "task-parity-rnn-2" / "model.safetensors").is_file()


def test_a_task_resume_to_a_step_the_run_has_reached_changes_nothing(run_bptt_here, tweets_run):
    before = _files(tweets_run)
    r = run_bptt_here("train", "--resume", tweets_run, "--steps", "1")
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"nothing to do: the run in {tweets_run} is already at step 2; "
                        "--steps is the run's total, give a larger one to go on\n")
    assert _files(tweets_run) == before


def test_a_damaged_task_state_is_one_line_and_changes_nothing(run_bptt_here, tweets_run, tmp_path):
    import shutil

    from bptt.checkpoint import write_safetensors_atomic

    damaged = tmp_path / "damaged"
    shutil.copytree(tweets_run, damaged)
    tensors, meta = _state(damaged)
    meta["history"] = [{"step": "a"}]
    write_safetensors_atomic(damaged / "train_state.safetensors", tensors, meta)
    before = _files(damaged)
    r = run_bptt_here("train", "--resume", damaged, "--steps", "4")
    assert r.returncode == 2, r.stdout
    assert r.stderr == (f"bptt: error: {damaged}/train_state.safetensors is damaged: history "
                        "row 0 must have exactly the columns step, train_loss, val_loss, "
                        "val_accuracy, seqs_per_sec, got {'step': 'a'}\n")
    assert _files(damaged) == before


@pytest.mark.parametrize("task, cell, lr", [("parity", "lstm", "1e38"),
                                           ("adding", "rnn", "1e300")],  # (weights overflow)
                         ids=["loss", "weights"])
def test_a_diverged_task_run_is_one_line_in_flags(run_bptt_here, tmp_path, task, cell, lr):
    """The estimator's DivergedError reaches a user in flags (--lr, --clip-norm, not lr and
    clip_norm), without --init-from, which task runs do not take."""
    r = run_bptt_here("train", "--task", task, "--out", tmp_path / "r", "--hidden", "8", "--batch",
                 "4", "--steps", "20", "--eval-every", "1", "--quiet", "--cell", cell,
                 "--optimizer", "sgd", "--lr", lr, "--no-clip-norm")
    assert r.returncode == 2
    assert r.stderr == ("bptt: error: training diverged at step 1: the loss, a gradient or a weight "
                        "is NaN "
                        "or inf; nothing was saved (no checkpoint before it). Train again with a "
                        "lower --lr or with --clip-norm\n")
    assert not (tmp_path / "r").exists()


def test_a_task_resume_at_the_end_completes_a_checkpoint_a_kill_cut_short(bptt_in_process,
                                                                           tmp_path, monkeypatch):
    # killed at its last checkpoint after the train state's write: the model and metrics.csv
    # are one checkpoint behind, and a resume (nothing to train) must write them again
    task_run_cut_short_at_its_end(tmp_path / "run", monkeypatch)
    code, err = bptt_in_process(["train", "--resume", "run"], tmp_path)
    assert_completed_at_step_4(code, err, tmp_path / "run")
