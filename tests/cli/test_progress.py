"""The training commands' signal handling (bptt.cli.progress), in-process."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from bptt.cli import progress


@pytest.fixture(autouse=True)
def default_dispositions():
    """Each stop signal as a shell's foreground command has it, whatever this test process
    inherited (under nohup, or as a background job, SIGHUP or SIGINT come ignored)."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                signal.SIGHUP: signal.SIG_DFL}
    previous = {signum: signal.signal(signum, handler) for signum, handler in defaults.items()}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _stopped_by(signum: int) -> tuple[int | None, bool]:
    """Send ``signum`` to this process inside a training loop that checks should_stop once;
    (what run_with_progress returns, whether the loop was asked to stop)."""
    seen = {}

    def train_fn(on_event, should_stop) -> bool:
        os.kill(os.getpid(), signum)
        seen["asked"] = should_stop()
        return not seen["asked"]

    return progress.run_with_progress(1, 0, True, train_fn, lambda *a: None), seen["asked"]


@pytest.mark.parametrize("signum", progress.STOP_SIGNALS)
def test_a_stop_signal_asks_the_loop_to_save_and_stop(signum):
    before = signal.getsignal(signum)
    assert _stopped_by(signum) == (signum, True)
    assert signal.getsignal(signum) is before  # the caller's handler is back


def test_a_signal_the_caller_ignores_stays_ignored(monkeypatch):
    """``nohup bptt train …`` ignores SIGHUP: closing the terminal must not stop the run."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert _stopped_by(signal.SIGHUP) == (None, False)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


# ---------------------------------------------------------------- through the command


def _sigterm_first(function):
    """``function`` that is sent SIGTERM as it starts."""
    def wrapped(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return function(*args, **kwargs)
    return wrapped


TINY = ["--hidden", "4", "--seq-len", "5", "--batch", "2", "--steps", "3", "--quiet"]


def test_sigterm_while_the_corpus_is_encoded_undoes_the_run_as_ctrl_c_does(
        bptt_in_process, corpus_file, tmp_path, monkeypatch):
    from bptt import corpus

    monkeypatch.setattr(corpus, "encode_files", _sigterm_first(corpus.encode_files))
    code, err = bptt_in_process(["train", corpus_file, *TINY, "--out", tmp_path / "r"], tmp_path)
    assert (code, err) == (143, "bptt: stopped by SIGTERM\n")
    assert not (tmp_path / "r").exists()


def test_a_task_run_stopped_before_its_first_step_claims_no_checkpoint(bptt_in_process, tmp_path,
                                                                      monkeypatch):
    from bptt import tasks

    monkeypatch.setattr(tasks, "train_task", _sigterm_first(tasks.train_task))
    code, err = bptt_in_process(["train", "--task", "parity", "--hidden", "4", "--steps", "3",
                                 "--quiet", "--out", tmp_path / "t"], tmp_path)
    assert (code, err) == (143, "bptt: stopped by SIGTERM\n")
    assert not (tmp_path / "t").exists()


def test_a_second_sigterm_during_the_save_exits_143(bptt_in_process, corpus_file, tmp_path,
                                                    monkeypatch):
    """The first asks the loop to save; the second, while it saves, ends the command."""
    from bptt import train

    monkeypatch.setattr(train, "train", _sigterm_first(train.train))
    monkeypatch.setattr(train, "save", _sigterm_first(train.save))
    code, err = bptt_in_process(["train", corpus_file, *TINY, "--out", tmp_path / "r"], tmp_path)
    assert (code, err) == (143, "bptt: stopped by SIGTERM\n")
    assert not (tmp_path / "r").exists()  # nothing was saved: the new run is undone


# ---------------------------------------------------------------- mutation audit (4)


def test_a_failed_new_run_leaves_a_directory_that_was_there_before(tmp_path):
    from bptt.errors import BpttError

    out = tmp_path / "existing"
    out.mkdir()
    with pytest.raises(BpttError, match=r"^no$"), progress.new_run_dir(out):
        raise BpttError("no")
    assert out.is_dir() and not any(out.iterdir())
    new = tmp_path / "new"
    with pytest.raises(BpttError, match=r"^no$"), progress.new_run_dir(new):
        raise BpttError("no")
    assert not new.exists()


def test_a_new_run_that_fails_in_a_way_no_one_foresaw_is_undone_too(bptt_in_process,
                                                                    corpus_file, tmp_path,
                                                                    monkeypatch):
    """Only a user's mistake, no memory, a stop or an OSError undid a new run: an error
    nobody expected (a UnicodeEncodeError while the corpus cache was written) left the run
    directory and its cache's id file behind.  The traceback stays; the half-made run goes."""
    from bptt import corpus

    def unforeseen(*args):
        raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(corpus, "_write_manifest", unforeseen)
    code, err = bptt_in_process(["train", corpus_file, *TINY, "--out", tmp_path / "r"], tmp_path)
    assert code == 1 and err.rstrip().endswith("surrogates not allowed")
    assert not (tmp_path / "r").exists()
    with pytest.raises(RuntimeError), progress.new_run_dir(tmp_path / "new"):
        raise RuntimeError("a bug")
    assert not (tmp_path / "new").exists()


def test_the_last_line_to_a_reader_that_went_away_is_still_exit_0(monkeypatch):
    class Gone:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    dropped = []
    monkeypatch.setattr(progress, "drop_stdout", lambda: dropped.append(True))
    monkeypatch.setattr("sys.stdout", Gone())
    assert progress.finished("done") == 0 and dropped == [True]


def test_a_divergence_next_to_a_state_file_it_cannot_read_says_step_question_mark(tmp_path):
    from bptt import train

    (tmp_path / train.STATE_FILE).write_bytes(b"not a checkpoint")
    assert progress._diverged(7, tmp_path, False) == (
        "training diverged at step 7: the loss, a gradient or a weight is NaN or inf; the "
        f"checkpoint of step ? in {tmp_path} is kept. Train again with a lower --lr or with "
        "--clip-norm")


def test_a_path_that_is_not_utf8_is_printed_escaped_where_stdout_is_strict(tmp_path,
                                                                          monkeypatch):
    """Under a UTF-8 locale (en_US.UTF-8) Python's stdout is 'strict': a path whose byte is no
    UTF-8 (a lone surrogate in Python, U+DCFF for b'\\xff') in a summary line was a
    UnicodeEncodeError traceback after the files were written.  It is escaped, as on stderr."""
    import io

    import numpy as np

    from bptt import checkpoint, cli, models

    vocab = sorted(set("the cat sat"))
    params = models.init_params("rnn", len(vocab), 3, len(vocab), True,
                                np.random.default_rng(0), np.float64)
    run_dir = tmp_path / os.fsdecode(b"r\xff")
    run_dir.mkdir()
    checkpoint.save_model(run_dir, params, vocab)
    buffer = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(buffer, encoding="utf-8"))  # strict
    assert cli.main(["flow", "--checkpoint", str(run_dir), "--text", "the cat sat",
                     "--out", str(tmp_path / "pictures")]) == 0
    sys.stdout.flush()
    first = buffer.getvalue().decode("utf-8").splitlines()[0]
    assert first.endswith(f"{tmp_path}/r\\udcff")


# ---------------------------------------------------------------- mutation audit (5)


def test_a_stop_signal_stays_the_reason_when_the_output_goes_away_after_it(monkeypatch):
    """SIGTERM, then a reader of standard output that went away: the run was stopped by
    SIGTERM (exit 143), not by the broken pipe that came second."""
    monkeypatch.setattr(progress, "drop_stdout", lambda: None)

    def train_fn(on_event, should_stop) -> bool:
        os.kill(os.getpid(), signal.SIGTERM)
        on_event("eval")
        return not should_stop()

    def show(event, bar, quiet):
        raise BrokenPipeError(32, "Broken pipe")

    assert progress.run_with_progress(1, 0, True, train_fn, show) == signal.SIGTERM


def test_a_failed_new_run_leaves_the_shared_cache_it_reused(bptt_in_process, tmp_path):
    """A run that fails before its first checkpoint removes the cache files it wrote, never
    those it found in a --cache-dir shared with other runs."""
    text = tmp_path / "cats.txt"
    text.write_text("the cat sat on the mat\n" * 100, encoding="utf-8")
    cache = tmp_path / "cache"
    code, err = bptt_in_process(["train", text, *TINY, "--cache-dir", cache,
                                 "--out", tmp_path / "a"], tmp_path)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    code, err = bptt_in_process(["train", text, *TINY, "--seq-len", "100000",
                                 "--cache-dir", cache, "--out", tmp_path / "b"], tmp_path)
    assert code == 2 and err.startswith("bptt: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "b").exists()
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before


def test_a_run_directory_made_but_not_writable_is_removed_with_its_new_parents(tmp_path,
                                                                              monkeypatch):
    from bptt.errors import BpttError

    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    out = tmp_path / "a" / "b"
    with pytest.raises(BpttError, match=r"^the output directory .*b is not writable; choose "
                                        r"another --out$"), progress.new_run_dir(out):
        pass
    assert list(tmp_path.iterdir()) == []
