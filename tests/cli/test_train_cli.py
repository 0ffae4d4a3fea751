"""``bptt train`` and ``bptt sample`` run the way a user runs them (tmp dirs): by their entry
point in this process, and as a subprocess where the test is about the process (its standard
streams closed, a pipe, a lock held by another process)."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from tests_support import assert_completed_at_step_4

from bptt import checkpoint

SMALL = ["--hidden", "32", "--seq-len", "20", "--batch", "8", "--sample-length", "30"]
TINY = ["--cell", "rnn", "--hidden", "4", "--seq-len", "5", "--batch", "2"]


def unigram_entropy_bits(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def test_the_commands_tests_run_import_the_bptt_under_test(tmp_path):
    """conftest points every subprocess at this bptt (not another install), from any cwd."""
    import subprocess
    import sys

    import bptt

    r = subprocess.run([sys.executable, "-c", "import bptt; print(bptt.__file__)"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == bptt.__file__, r.stderr


def test_train_writes_a_checkpoint_and_beats_the_unigram_entropy(run_bptt_here, corpus_file, tmp_path):
    out = tmp_path / "run"
    r = run_bptt_here("train", corpus_file, "--out", out, "--steps", "150", "--eval-every", "75",
                 "--cell", "rnn", "--hidden", "64", "--seq-len", "25", "--batch", "16",
                 "--lr", "0.005")
    assert r.returncode == 0, r.stderr
    for name in ("model.safetensors", "train_state.safetensors", "metrics.csv", "loss.png"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [75, 150]
    text = corpus_file.read_text(encoding="utf-8")
    assert float(rows[-1]["val_bpc"]) < unigram_entropy_bits(text) - 0.3
    assert "validation" in r.stdout and "bits per character" in r.stdout
    assert not list(out.glob(".tmp-*"))


def test_resume_is_bit_identical_to_an_uninterrupted_run(run_bptt_here, corpus_file, tmp_path):
    common = [corpus_file, *SMALL, "--dtype", "float64", "--eval-every", "3", "--quiet",
              "--cell", "gru", "--seed", "5"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_bptt_here("train", *common, "--steps", "8", "--out", straight).returncode == 0
    assert run_bptt_here("train", *common, "--steps", "4", "--out", split).returncode == 0
    # settings given again with their saved values change nothing and are accepted
    r = run_bptt_here("train", "--resume", split, "--steps", "8", "--quiet", "--cell", "gru",
                 "--seed", "5")
    assert r.returncode == 0, r.stderr
    for name in ("model.safetensors", "train_state.safetensors"):
        a = safetensors.numpy.load_file(straight / name)
        b = safetensors.numpy.load_file(split / name)
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]), f"{name}:{key} differs after resume"
    # the split run's evaluation of its old end (step 4, off the schedule) is gone, and the
    # interval 4 … 6 is one, as in the run never stopped: the same metrics but the speed
    rows = {name: {r["step"]: (r["train_bpc"], r["val_bpc"])
                   for r in csv.DictReader((d / "metrics.csv").open())}
            for name, d in (("straight", straight), ("split", split))}
    assert set(rows["split"]) == {"3", "6", "8"}
    assert rows["straight"] == rows["split"]


def test_sample_length_prime_and_seed_determinism(run_bptt_here, corpus_file, tmp_path):
    out = tmp_path / "run"
    assert run_bptt_here("train", corpus_file, *SMALL, "--steps", "3", "--out", out,
                    "--quiet").returncode == 0
    a = run_bptt_here("sample", out, "--length", "120", "--seed", "7", "--prime", "The ")
    b = run_bptt_here("sample", out, "--length", "120", "--seed", "7", "--prime", "The ")
    c = run_bptt_here("sample", out, "--length", "120", "--seed", "8", "--prime", "The ")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout != c.stdout
    assert a.stdout.startswith("The ") and len(a.stdout) == len("The ") + 120 + 1
    bad = run_bptt_here("sample", out, "--prime", "\u2603")
    assert bad.returncode == 2 and bad.stderr.startswith("bptt: error:")
    assert "not in the model's vocabulary" in bad.stderr and "Traceback" not in bad.stderr


def test_a_run_directory_with_a_checkpoint_is_never_overwritten(run_bptt_here, corpus_file, tmp_path):
    out = tmp_path / "run"
    assert run_bptt_here("train", corpus_file, *SMALL, "--steps", "2", "--out", out,
                    "--quiet").returncode == 0
    before = (out / "model.safetensors").read_bytes()
    r = run_bptt_here("train", corpus_file, *SMALL, "--steps", "2", "--out", out, "--quiet")
    assert r.returncode == 2 and "already holds a checkpoint" in r.stderr
    assert (out / "model.safetensors").read_bytes() == before


def test_config_file_is_read_and_flags_override_it(run_bptt_here, corpus_file, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"cell": "rnn", "hidden": 24, "steps": 2, "seq_len": 10, "batch": 4}')
    out = tmp_path / "run"
    r = run_bptt_here("train", corpus_file, "--config", cfg, "--hidden", "12", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    w = safetensors.numpy.load_file(out / "model.safetensors")
    assert w["Whh"].shape == (12, 12)
    bad = tmp_path / "bad.json"
    bad.write_text('{"hiden": 3}')
    r = run_bptt_here("train", corpus_file, "--config", bad, "--out", tmp_path / "x")
    assert r.returncode == 2 and "unknown config key(s) 'hiden'" in r.stderr
    assert not (tmp_path / "x").exists()


def _files(directory):
    """Every file under ``directory`` and the SHA-256 of its bytes."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in directory.rglob("*") if p.is_file()}


def test_the_default_run_directory_passes_over_a_file_of_its_name(run_bptt_here, corpus_file,
                                                                  tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "train").write_text("notes, not a run")
    r = run_bptt_here("train", corpus_file, *TINY, "--steps", "1", "--eval-every", "1", "--quiet",
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "runs" / "train").read_text() == "notes, not a run"
    assert (tmp_path / "runs" / "train-2" / "model.safetensors").is_file()


def test_a_resume_to_a_step_the_run_has_reached_says_so_and_changes_nothing(run_bptt_here,
                                                                            corpus_file,
                                                                            tmp_path):
    out = tmp_path / "run"
    r = run_bptt_here("train", corpus_file, *TINY, "--steps", "4", "--eval-every", "2", "--quiet",
                 "--out", out)
    assert r.returncode == 0, r.stderr
    before = _files(out)
    for steps in (["--steps", "3"], ["--steps", "4"], []):
        r = run_bptt_here("train", "--resume", out, *steps)
        assert r.returncode == 0, r.stderr
        assert r.stdout == ""
        assert r.stderr == (f"nothing to do: the run in {out} is already at step 4; --steps "
                            "is the run's total, give a larger one to go on\n")
        assert _files(out) == before


def test_a_resume_with_nothing_to_do_refuses_a_file_that_is_not_there(run_bptt_here,
                                                                       corpus_file, tmp_path):
    """A FILE mistyped on a resume of a finished run was passed over: "nothing to do", exit
    0, as if it were the run's text.  It is refused as every other command refuses it (its
    path is looked at, nothing is read)."""
    out = tmp_path / "run"
    r = run_bptt_here("train", corpus_file, *TINY, "--steps", "2", "--quiet", "--out", out)
    assert r.returncode == 0, r.stderr
    before = _files(out)
    for missing in (tmp_path / "typo.txt", tmp_path):
        r = run_bptt_here("train", "--resume", out, missing, "--steps", "2")
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"bptt: error: {missing} ")
        assert _files(out) == before


def test_a_resume_of_a_file_or_of_nothing_says_that_it_takes_the_runs_directory(
        run_bptt_here, corpus_file, tmp_path):
    """--resume of the train state's own file was "run/train_state.safetensors holds no
    train_state.safetensors to resume from", and of a mistyped path "... holds no ...": the
    line says what --resume takes (and, for a run's file, which directory to give)."""
    out = tmp_path / "run"
    r = run_bptt_here("train", corpus_file, *TINY, "--steps", "2", "--quiet", "--out", out)
    assert r.returncode == 0, r.stderr
    before = _files(out)
    takes = "--resume takes the directory of a run (the --out it wrote to)"
    for path, line in [
        (out / "train_state.safetensors", f"is a file; {takes}: --resume {out}"),
        (out / "model.safetensors", f"is a file; {takes}: --resume {out}"),
        (corpus_file, f"is a file; {takes}"),
        (tmp_path / "rn", f"does not exist; {takes}"),
    ]:
        r = run_bptt_here("train", "--resume", path, "--steps", "4")
        assert r.returncode == 2, r.stderr
        assert r.stderr == f"bptt: error: {path} {line}\n"
        assert _files(out) == before


def test_a_resume_at_the_end_completes_a_checkpoint_a_kill_cut_short(bptt_in_process,
                                                                      tmp_path, monkeypatch):
    # killed at its last checkpoint after the train state's write: the model and metrics.csv
    # are one checkpoint behind, and a resume (nothing to train) must not leave them so
    from bptt import train

    config = train.TrainConfig(cell="rnn", hidden=4, seq_len=5, batch=2, steps=4,
                               eval_every=2, sample_length=0)
    run = train.new_run(config, "abcab" * 40, "t", tmp_path / "run")
    save_model = checkpoint.save_model

    def killed_at_step_4(*args):
        if args[4] == 4:
            raise KeyboardInterrupt
        return save_model(*args)

    monkeypatch.setattr(checkpoint, "save_model", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train.train(run)
    monkeypatch.setattr(checkpoint, "save_model", save_model)
    code, err = bptt_in_process(["train", "--resume", "run"], tmp_path)
    assert_completed_at_step_4(code, err, tmp_path / "run")


def test_quiet_makes_no_samples(run_bptt_here, corpus_file, tmp_path):
    # ten million characters would take many minutes to sample: under --quiet nothing shows
    # them (they are never saved), so none are made
    r = run_bptt_here("train", corpus_file, *TINY, "--steps", "2", "--eval-every", "1", "--quiet",
                 "--sample-length", "10000000", "--out", tmp_path / "run", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""


def test_a_resume_from_elsewhere_asks_for_the_files_again(run_bptt_here, corpus_file, tmp_path):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    (here / "notes.txt").write_bytes(corpus_file.read_bytes())
    r = run_bptt_here("train", "notes.txt", *TINY, "--steps", "2", "--eval-every", "2", "--quiet",
                 "--out", tmp_path / "run", cwd=here)
    assert r.returncode == 0, r.stderr
    before = _files(tmp_path / "run")
    r = run_bptt_here("train", "--resume", tmp_path / "run", "--steps", "3", cwd=elsewhere)
    assert r.returncode == 2
    assert r.stderr == (f"bptt: error: the run in {tmp_path / 'run'} trained on notes.txt, and "
                        "notes.txt is not there from the current directory; give the FILE(s) "
                        f"again: bptt train --resume {tmp_path / 'run'} FILE ...\n")
    assert _files(tmp_path / "run") == before
    r = run_bptt_here("train", "--resume", tmp_path / "run", here / "notes.txt", "--steps", "3",
                 "--quiet", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    # the FILE given again is where the text is now: the next resume reads it there unasked
    r = run_bptt_here("train", "--resume", tmp_path / "run", "--steps", "4", "--quiet", cwd=elsewhere)
    assert r.returncode == 0, r.stderr


def test_a_resume_given_its_text_where_it_is_now_saves_that_as_the_runs_corpus(
        bptt_in_process, corpus_file, tmp_path, monkeypatch):
    # the description (the corpus line, the plot's title, the message of a resume that cannot
    # find the text) names the FILE given, as corpus_files does, not the old place
    from bptt import train

    monkeypatch.setattr(train, "write_plot", lambda run: None)  # (time: not what is tested)
    (tmp_path / "notes.txt").write_text(corpus_file.read_text()[:3000])
    args = [*TINY, "--eval-every", "2", "--quiet"]
    assert bptt_in_process(["train", "notes.txt", *args, "--steps", "2", "--out", "run"],
                           tmp_path) == (0, "")
    (tmp_path / "notes.txt").rename(tmp_path / "moved.txt")
    assert bptt_in_process(["train", "--resume", "run", "moved.txt", "--steps", "3", "--quiet"],
                           tmp_path) == (0, "")
    meta = checkpoint.read_metadata(tmp_path / "run" / "train_state.safetensors")
    assert (meta["corpus"], meta["corpus_files"]) == ("moved.txt", ["moved.txt"])


DIVERGING = ["--cell", "lstm", "--hidden", "8", "--seq-len", "10", "--batch", "2", "--steps", "20",
             "--eval-every", "1", "--optimizer", "sgd", "--no-clip-norm", "--quiet"]


@pytest.mark.parametrize("argv", [
    [*DIVERGING, "--lr", "1e38"],
    # the loss and the gradients finite, the update overflows the weights: caught before
    # they are evaluated or saved (a checkpoint of them would be refused on loading)
    [*DIVERGING[2:], "--cell", "rnn", "--lr", "1e100", "--eval-every", "5",
     "--checkpoint-every", "1"],
], ids=["loss", "weights"])
def test_a_run_that_diverges_before_its_first_checkpoint_says_nothing_was_saved(
        run_bptt_here, corpus_file, tmp_path, argv):
    r = run_bptt_here("train", corpus_file, *argv, "--out", tmp_path / "r")
    assert r.returncode == 2
    assert r.stderr == ("bptt: error: training diverged at step 1: the loss, a gradient or a weight "
                        "is NaN "
                        "or inf; nothing was saved (no checkpoint before it). Train again with a "
                        "lower --lr or with --clip-norm\n")
    assert not (tmp_path / "r").exists()  # a run that saved nothing leaves nothing


def test_a_diverged_run_names_the_checkpoint_it_kept_and_the_advice_works(run_bptt_here, corpus_file,
                                                                          tmp_path):
    """The kept checkpoint is the last one before the step that diverged (an infinite
    validation loss counts: its checkpoint is not written); --resume cannot change --lr, so
    the way on is --init-from, which the message gives and which then trains."""
    r = run_bptt_here("train", corpus_file, *DIVERGING, "--lr", "1e36", "--out", tmp_path / "r")
    assert r.returncode == 2
    run_dir = tmp_path / "r"
    step = checkpoint.read_metadata(run_dir / "train_state.safetensors")["step"]
    assert step >= 1
    # the run is kept whole: its encoded corpus too (a resume reads it)
    assert sorted(p.suffix for p in (run_dir / "cache").iterdir()) == [".ids", ".json"]
    assert r.stderr == (f"bptt: error: training diverged at step {step + 1}: the loss, a "
                        f"gradient or a weight is NaN or inf; the checkpoint of step {step} in "
                        f"{run_dir} is "
                        "kept. Train again with a lower --lr or with --clip-norm, or go on from "
                        f"that checkpoint with --init-from {run_dir} --out NEW_DIR\n")
    with open(run_dir / "metrics.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["step"]) for row in rows] == list(range(1, step + 1))
    assert all(math.isfinite(float(row["val_bpc"])) for row in rows)
    r = run_bptt_here("train", corpus_file, "--init-from", run_dir, "--out", tmp_path / "r2", "--lr",
                 "0.01", "--steps", "2", "--eval-every", "2", "--seq-len", "10", "--batch", "2",
                 "--quiet")
    assert r.returncode == 0, r.stderr


def _train_into_a_pipe_closed_after(lines: int, corpus_file, out, cwd,
                                    steps: int = 100_000) -> tuple[int, str]:
    """``bptt train … | head -n LINES``: the reader of standard output takes ``lines`` lines
    and goes away.  Returns (exit code, stderr).  Standard output is block-buffered, as in
    a user's shell (PYTHONUNBUFFERED, if this environment sets it, would hide a line that
    is never flushed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bptt", "train", str(corpus_file), "--out", str(out), *TINY,
         "--steps", str(steps), "--eval-every", "3", "--sample-length", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    for _ in range(lines):
        proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=120), err


def test_a_run_whose_output_is_closed_saves_and_stops_as_sigpipe_would(corpus_file, tmp_path):
    """It used to stop at its next print and exit 0, as if it had trained every step."""
    out = tmp_path / "r"
    code, err = _train_into_a_pipe_closed_after(2, corpus_file, out, tmp_path)
    assert code == 128 + 13, err  # a shell's code for a command SIGPIPE ended
    step = checkpoint.read_metadata(out / "train_state.safetensors")["step"]
    # at the first evaluation's line the pipe could not take (3, unless this machine kept the
    # reader from closing for a while), not once a buffer of lines filled (thousands)
    assert step % 3 == 0 and 3 <= step <= 30
    assert err.splitlines()[-1] == (f"stopped: its standard output was closed (broken pipe): "
                                    f"checkpoint of step {step} saved in {out}")
    assert checkpoint.load_model(out).step == step


def test_a_new_run_whose_output_is_closed_before_training_leaves_nothing(corpus_file,
                                                                         tmp_path):
    code, err = _train_into_a_pipe_closed_after(0, corpus_file, tmp_path / "r", tmp_path)
    assert code == 128 + 13, err
    assert err.splitlines()[-1] == "bptt: stopped: its standard output was closed (broken pipe)"
    assert not (tmp_path / "r").exists()  # its encoded corpus too


def test_a_run_that_trained_every_step_exits_0_whatever_became_of_its_output(corpus_file,
                                                                            tmp_path):
    """Its last lines (the evaluation of its last step, 'done: …') into a pipe gone: the run
    is complete, exit 0 (it used to be Python's 'Exception ignored … BrokenPipeError' and
    exit 120)."""
    code, err = _train_into_a_pipe_closed_after(2, corpus_file, tmp_path / "r", tmp_path, 3)
    assert code == 0, err
    assert "Exception" not in err and "Traceback" not in err
    assert checkpoint.read_metadata(tmp_path / "r" / "train_state.safetensors")["step"] == 3


def test_a_run_whose_standard_error_is_closed_trains_on(corpus_file, tmp_path):
    """The progress bar's stream going away (2> a pipe whose reader left) ends the bar, not
    the run, and standard output is not touched."""
    with open(tmp_path / "out.txt", "w") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bptt", "train", str(corpus_file), "--out",
             str(tmp_path / "r"), *TINY, "--steps", "30", "--eval-every", "10",
             "--sample-length", "0"], stdout=stdout, stderr=subprocess.PIPE, cwd=tmp_path)
        proc.stderr.close()
        assert proc.wait(timeout=120) == 0
    assert checkpoint.read_metadata(tmp_path / "r" / "train_state.safetensors")["step"] == 30
    assert (tmp_path / "out.txt").read_text().splitlines()[-1].startswith("done: step 30")


def test_a_run_in_a_directory_of_other_things_leaves_them_alone(run_bptt_here, corpus_file, tmp_path):
    """Its clean-up of interrupted writes removes its own temporaries only (it used to remove
    every .tmp-* file of the directory)."""
    out = tmp_path / "project"
    out.mkdir()
    mine = {".tmp-draft.txt": "a draft", ".tmp-model.safetensors.old": "kept", "notes.md": "n"}
    for name, text in mine.items():
        (out / name).write_text(text)
    r = run_bptt_here("train", corpus_file, "--out", out, *TINY, "--steps", "4", "--eval-every", "2",
                 "--quiet")
    assert r.returncode == 0, r.stderr
    assert {name: (out / name).read_text() for name in mine} == mine
    assert (out / "model.safetensors").exists()


def test_a_second_run_in_a_directory_a_run_trains_in_is_refused(run_bptt, run_bptt_here,
                                                                 corpus_file, tmp_path):
    """It used to train beside the first, overwrite its checkpoints and remove its files in
    the middle of their writes.  Here the test holds the lock a training run holds, and the
    runs it refuses are processes of their own (the lock is between processes)."""
    from bptt import train

    out = tmp_path / "r"
    assert run_bptt_here("train", corpus_file, "--out", out, *TINY, "--steps", "2",
                    "--quiet").returncode == 0
    (out / ".tmp-model.safetensors.0123456789ab").write_bytes(b"a write in progress")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    busy = (f"bptt: error: {out} is in use by another bptt process (a run training there, "
            "or a model being saved into it); wait for it to end (or stop it), then resume\n")
    with train.run_dir_lock(out):
        for argv in (["--resume", out, "--steps", "4"],
                     ["--resume", out, "--steps", "4", "--task", "parity"]):
            r = run_bptt("train", *argv, "--quiet")
            assert r.returncode == 2 and r.stderr == busy, (argv, r.stderr)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert run_bptt_here("train", "--resume", out, "--steps", "4", "--quiet").returncode == 0


@pytest.mark.parametrize("argv", [["--task", "parity"], ["{corpus}", *TINY]])
def test_a_new_run_beaten_to_its_directory_leaves_it_to_the_other_run(
        bptt_in_process, corpus_file, tmp_path, monkeypatch, argv):
    """Two new runs with one --out: the directory neither found, the other made and locked
    first, is not this run's to undo (it used to remove it under the other run)."""
    import fcntl

    from bptt import train

    new, holder = tmp_path / "new", []
    real_make = train.make_out_dir

    def made_and_locked_by_another_run(out):
        real_make(out)
        holder.append(os.open(out, os.O_RDONLY))
        fcntl.flock(holder[0], fcntl.LOCK_EX | fcntl.LOCK_NB)

    monkeypatch.setattr(train, "make_out_dir", made_and_locked_by_another_run)
    args = [a.replace("{corpus}", str(corpus_file)) for a in argv]
    code, err = bptt_in_process(["train", *args, "--out", new, "--steps", "2", "--quiet"],
                                tmp_path)
    os.close(holder[0])
    assert code == 2 and err.endswith(
        f"{new} is in use by another bptt process (a run training there, or a model being "
        "saved into it); wait for it to end (or stop it), or choose another --out\n")
    assert new.is_dir()


def test_where_directories_cannot_be_locked_a_run_goes_on_unlocked(tmp_path, monkeypatch):
    from bptt import train

    monkeypatch.setitem(sys.modules, "fcntl", None)  # Windows: no fcntl
    with train.run_dir_lock(tmp_path):
        with train.run_dir_lock(tmp_path):
            pass


def test_a_corpus_named_in_characters_the_plot_font_lacks_prints_nothing(run_bptt_here, corpus_file,
                                                                          tmp_path):
    """matplotlib's warnings of missing glyphs (the corpus name is the plot's title) used to
    reach the terminal under --quiet."""
    named = tmp_path / "日本語.txt"
    named.write_bytes(corpus_file.read_bytes())
    r = run_bptt_here("train", named, "--out", tmp_path / "r", *TINY, "--steps", "2", "--quiet")
    assert r.returncode == 0 and r.stderr == "" and r.stdout == ""
    assert (tmp_path / "r" / "loss.png").exists()


def test_a_resume_in_a_directory_it_cannot_write_is_refused_before_training(
        run_bptt_here, bptt_in_process, corpus_file, tmp_path, monkeypatch):
    out = tmp_path / "r"
    assert run_bptt_here("train", corpus_file, "--out", out, *TINY, "--steps", "2",
                    "--quiet").returncode == 0
    before = (out / "train_state.safetensors").read_bytes()
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == out and
                        mode == os.W_OK else real_access(path, mode))  # a read-only mount
    code, err = bptt_in_process(["train", "--resume", out, "--steps", "4", "--quiet"], tmp_path)
    assert code == 2 and err == (f"bptt: error: the run directory {out} is not writable; make "
                                 "it writable, or copy it somewhere writable and resume the "
                                 "copy\n")
    assert (out / "train_state.safetensors").read_bytes() == before


def test_a_file_named_with_a_plus_resumes_without_being_named_again(run_bptt_here, corpus_file,
                                                                    tmp_path):
    """The train state lists the FILEs (resume used to split the description at ' + ')."""
    named = tmp_path / "a + b.txt"
    named.write_bytes(corpus_file.read_bytes())
    first = run_bptt_here("train", named.name, "--out", "r", *TINY, "--steps", "2", "--quiet",
                     cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    meta = checkpoint.read_metadata(tmp_path / "r" / "train_state.safetensors")
    assert meta["corpus_files"] == ["a + b.txt"]
    again = run_bptt_here("train", "--resume", "r", "--steps", "4", "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert checkpoint.load_model(tmp_path / "r").step == 4


def test_a_file_named_with_a_byte_that_is_not_utf8_is_trained_on_and_resumed(
        run_bptt_here, corpus_file, tmp_path):
    """Python reads such a name with a lone surrogate (U+DCFF for b'\\xff'), which no UTF-8
    text holds: the corpus cache's manifest and then loss.png's title (the corpus is named
    there) were a traceback, exit 1."""
    named = tmp_path / os.fsdecode(b"caf\xe9 \xff.txt")
    named.write_bytes(corpus_file.read_bytes())
    first = run_bptt_here("train", named.name, "--out", "r", *TINY, "--steps", "2", "--quiet",
                          cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "r" / "loss.png").exists()
    again = run_bptt_here("train", "--resume", "r", named.name, "--steps", "4", "--quiet",
                          cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert checkpoint.load_model(tmp_path / "r").step == 4
    meta = checkpoint.read_metadata(tmp_path / "r" / "train_state.safetensors")
    assert meta["corpus_files"] == [named.name]


@pytest.mark.parametrize("argv", [
    ["missing.txt"],  # (its default --out: runs/train)
    ["missing.txt", "--out", "a/b/c"],
    ["{corpus}", *TINY, "--seq-len", "100000", "--out", "a/b/c"],  # the text is too short
    ["{corpus}", *TINY, "--seq-len", "100000", "--out", "a/b/c", "--cache-dir", "k/l/m"],
    ["{corpus}", *DIVERGING, "--lr", "1e38", "--out", "a/b/c"],
    ["--task", "adding"],  # (runs/task-adding-rnn; with its data too large, below)
    ["--task", "adding", "--out", "a/b/c"],
], ids=["missing", "missing-nested", "too-short", "cache-dir", "diverged", "task", "task-nested"])
def test_a_failed_new_run_leaves_no_directory_it_made_not_even_a_parent(
        run_bptt_here, corpus_file, tmp_path, monkeypatch, argv):
    """The run directory and its cache were removed, but not the parents made for them: a
    failed run left an empty runs/ (or a/b/ of --out a/b/c) behind.  A parent that was there
    before stays."""
    from bptt import tasks

    def too_large(config, out):  # as a --batch no memory holds (no such allocation here)
        raise MemoryError

    monkeypatch.setattr(tasks, "new_task_run", too_large)
    argv = [str(corpus_file) if a == "{corpus}" else a for a in argv]
    r = run_bptt_here("train", *argv, "--quiet", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("bptt: error: "), r.stderr
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a").mkdir()
    r = run_bptt_here("train", *argv, "--quiet", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and list((tmp_path / "a").iterdir()) == []


def test_a_resume_whose_metrics_csv_cannot_be_replaced_names_it(run_bptt_here, corpus_file,
                                                                tmp_path):
    """A directory where metrics.csv goes: the error named the temporary file,
    'Is a directory: r/.tmp-metrics.csv'."""
    first = run_bptt_here("train", corpus_file, "--out", "r", *TINY, "--steps", "2", "--quiet",
                          cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (tmp_path / "r" / "metrics.csv").unlink()
    (tmp_path / "r" / "metrics.csv").mkdir()
    again = run_bptt_here("train", "--resume", "r", "--steps", "4", "--quiet", cwd=tmp_path)
    assert (again.returncode, again.stderr) == (
        2, "bptt: error: cannot write r/metrics.csv: Is a directory.\n")
    assert (tmp_path / "r" / "metrics.csv").is_dir()


# ---- mutation audit (5): the lines a run prints ----


@pytest.mark.parametrize("sample_length", [12, 0])
def test_a_run_prints_its_corpus_model_evaluations_and_last_line(run_bptt_here, tmp_path,
                                                                 sample_length):
    text = tmp_path / "cats.txt"
    text.write_text("the cat sat on the mat\n" * 100, encoding="utf-8")  # 2,300 characters
    out = tmp_path / "run"
    r = run_bptt_here("train", text, *TINY, "--steps", "2", "--eval-every", "2",
                      "--sample-length", sample_length, "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [ids] = (out / "cache").glob("*.ids")
    n_params = sum(v.size for v in safetensors.numpy.load_file(out / "model.safetensors").values())
    [row] = csv.DictReader((out / "metrics.csv").open())
    bpc = f"{float(row['val_bpc']):.3f}"
    lines = r.stdout.splitlines()
    assert lines[:3] == [
        f"encoded the corpus into {ids} (2,300 characters, vocabulary 11, uint8, 2.2 KiB)",
        f"corpus: {text} (2,300 chars, vocabulary 11); model: rnn, H=4, L=1, {n_params:,} "
        f"parameters, float32; run dir: {out}",
        f"step 2: validation {bpc} bits per character",
    ]
    assert lines[-1] == (f"done: step 2, validation {bpc} bits per character; checkpoint, "
                         f"metrics.csv and loss.png in {out}")
    sample = lines[3:-1]  # the evaluation's sample, each of its lines under "  | "
    assert all(line.startswith("  | ") for line in sample), sample
    assert len("\n".join(line[4:] for line in sample)) == sample_length
    # the progress bar counted the two steps; no bar for an encoding this quick
    assert " 2/2 " in r.stderr and "encoding" not in r.stderr, r.stderr


def test_a_byte_count_is_shown_in_the_unit_that_fits():
    from bptt.cli import train

    assert [train._size(n) for n in (812, 1024, 20_890, 199_966_474, 2 * 1024**3)] == [
        "812 B", "1.0 KiB", "20.4 KiB", "190.7 MiB", "2.0 GiB"]


def test_every_setting_given_as_a_flag_is_the_runs_setting(run_bptt_here, tmp_path):
    """Each of train's settings flags reaches the run's saved config (a flag left out of the
    settings read from the command line was dropped without a word)."""
    text = tmp_path / "cats.txt"
    text.write_text("the cat sat on the mat\n" * 100, encoding="utf-8")
    given = {"cell": "gru", "hidden": 5, "layers": 2, "seq_len": 6, "batch": 3, "steps": 2,
             "lr": 0.02, "optimizer": "sgd", "clip": 3.0, "clip_norm": 2.0, "dtype": "float64",
             "seed": 9, "eval_every": 2, "checkpoint_every": 1, "sample_length": 3,
             "temperature": 0.5, "val_fraction": 0.2, "errors": "replace", "unk": "¤",
             "cache_dir": str(tmp_path / "kc")}
    flags = [x for k, v in given.items() for x in ("--" + k.replace("_", "-"), str(v))]
    r = run_bptt_here("train", text, *flags, "--quiet", "--out", tmp_path / "a")
    assert r.returncode == 0, r.stderr
    saved = checkpoint.read_metadata(tmp_path / "a" / "train_state.safetensors")["config"]
    assert saved == given | {"init_from": None}
    r = run_bptt_here("train", text, *TINY, "--steps", "1", "--no-clip-norm", "--quiet",
                      "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    assert checkpoint.read_metadata(tmp_path / "b" / "train_state.safetensors")["config"][
        "clip_norm"] is None


def test_a_new_run_whose_directory_got_a_checkpoint_meanwhile_leaves_it(
        bptt_in_process, run_bptt_here, tmp_path, monkeypatch):
    """Two new runs with one --out: the directory was free when this run first looked, and
    held the other run's checkpoint when this one had it locked: it is refused, untouched,
    before its corpus is encoded (nothing on standard output)."""
    import shutil

    from bptt import train

    text = tmp_path / "cats.txt"
    text.write_text("the cat sat on the mat\n" * 100, encoding="utf-8")
    other = tmp_path / "other"
    code, err = bptt_in_process(["train", text, *TINY, "--steps", "1", "--quiet",
                                 "--out", other], tmp_path)
    assert code == 0, err
    new = tmp_path / "new"
    real_make = train.make_out_dir

    def made_and_trained_in_by_another_run(out):
        real_make(out)
        shutil.copytree(other, out, dirs_exist_ok=True)

    monkeypatch.setattr(train, "make_out_dir", made_and_trained_in_by_another_run)
    r = run_bptt_here("train", text, *TINY, "--steps", "2", "--out", new, cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", (
        f"bptt: error: {new} already holds a checkpoint; continue it with --resume {new} or "
        "choose another --out\n"))
    assert _files(new) == _files(other)


def test_a_train_state_of_before_corpus_files_resumes_on_its_files(run_bptt_here, tmp_path):
    """A train state without "corpus_files" names its FILEs in the description only, ' + '
    between them: it is split there, not at a '+' inside a file's name."""
    for name in ("one.txt", "two+2.txt"):
        (tmp_path / name).write_text("the cat sat on the mat\n" * 60, encoding="utf-8")
    first = run_bptt_here("train", "one.txt", "two+2.txt", "--out", "r", *TINY, "--steps", "2",
                          "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    state = tmp_path / "r" / "train_state.safetensors"
    tensors, meta = checkpoint.read_safetensors(state)
    assert (meta.pop("corpus_files"), meta["corpus"]) == (["one.txt", "two+2.txt"],
                                                          "one.txt + two+2.txt")
    checkpoint.write_safetensors_atomic(state, tensors, meta)
    again = run_bptt_here("train", "--resume", "r", "--steps", "4", "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert checkpoint.load_model(tmp_path / "r").step == 4


def test_quiet_makes_no_encoding_bar_however_long_the_encoding(monkeypatch):
    """The encoding bars show only after half a second (none in these quick tests): under
    --quiet none is made at all."""
    import tqdm

    from bptt.cli import train

    made = []
    monkeypatch.setattr(tqdm, "tqdm", lambda **kwargs: made.append(kwargs["desc"]) or
                        tqdm.std.tqdm(disable=True))
    for quiet in (True, False):
        bar = train._EncodingBar(quiet)
        bar("scan", 5, 10)
        bar("encode", 10, 10)
        bar.close()
    assert made == ["encoding 1/2: scan", "encoding 2/2: write"]
