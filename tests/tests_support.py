"""Small helpers shared by tests (importable as ``tests_support``)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import traceback
import warnings
from pathlib import Path


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header: signature, then the IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def train_tiny(out: Path, corpus: Path, *extra: str) -> None:
    """Train a tiny model into ``out`` with ``bptt train`` (a few steps; in this process)."""
    r = bptt_here("train", corpus, "--out", out, "--hidden", "8", "--seq-len", "10", "--batch",
                  "2", "--steps", "2", "--quiet", "--cell", "rnn", *extra)
    assert r.returncode == 0, r.stderr


class _TimedOut(BaseException):
    """Raised by bptt_here's alarm: no ``except Exception`` of the command takes it."""


def bptt_here(*args, cwd: Path | None = None,
              timeout: float | None = 300) -> subprocess.CompletedProcess:
    """``bptt ARGS`` run by its entry point, bptt.cli.main (what ``python -m bptt`` and the
    console script run), in this process from ``cwd``: what :func:`bptt_cmd` returns (the
    exit code, standard output and error as text) without a new interpreter's start-up
    (numpy and matplotlib imported once, not once per command: about a second a command).

    As a fresh interpreter would show them, the warnings the command raises are written to
    its standard error when they are raised, between its other lines (not recorded by
    pytest), and so are the log records a fresh interpreter's last-resort handler would
    print (pytest's log capture does not take them); an uncaught exception is a traceback
    there and exit code 1, and the text is read with universal newlines (a progress bar's
    carriage returns become newlines, as ``subprocess.run(..., text=True)`` reads them).
    For what needs a process of its own (signals, a closed or full standard output, the
    locale, the environment) use a subprocess.  A command still running after ``timeout``
    seconds (None: no limit) is ended, and subprocess.TimeoutExpired raised, as
    :func:`bptt_cmd` does (an alarm, SIGALRM: there is no process to kill, and pytest has
    no timeout of its own here; a hang would otherwise stop the suite).  What the command
    must leave as it found it for the tests after it (:func:`_process_state`: its signal
    handlers, pytest's fds 1 and 2, ...) is asserted unchanged."""
    from bptt import cli

    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    state = _process_state()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        err.write(warnings.formatwarning(message, category, filename, lineno, line))

    with contextlib.ExitStack() as stack:
        if cwd is not None:
            os.chdir(cwd)
            stack.callback(os.chdir, before)
        stack.enter_context(warnings.catch_warnings())
        warnings.resetwarnings()  # a fresh interpreter's filters: show each warning once
        warnings.simplefilter("default")  # a place, but for these categories
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                         ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = show  # (catch_warnings puts pytest's back)
        root = logging.getLogger()  # no handler: logging.lastResort writes to sys.stderr
        stack.callback(setattr, root, "handlers", root.handlers)
        root.handlers = []
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        if timeout is not None:
            stack.enter_context(_alarm(timeout))
        try:
            code = cli.main([str(a) for a in args])
        except _TimedOut:
            raise subprocess.TimeoutExpired(["bptt", *map(str, args)], timeout, out.getvalue(),
                                            err.getvalue()) from None
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        except Exception:  # what the interpreter would print, and exit 1
            err.write(traceback.format_exc())
            code = 1

    changed = {key: (value, state[key]) for key, value in _process_state().items()
               if state[key] != value}
    assert not changed, f"bptt {' '.join(map(str, args))} changed this process: {changed}"

    def text(stream: io.StringIO) -> str:
        return stream.getvalue().replace("\r\n", "\n").replace("\r", "\n")

    return subprocess.CompletedProcess(["bptt", *map(str, args)], code, text(out), text(err))


def _process_state() -> dict:
    """What a command run in this process must leave as it found it, for the tests after it:
    the signal handlers (train installs its own), numpy's error handling, the current
    directory, the environment, the files behind fds 0-2 (a dropped stdout or stderr is
    pointed at the null device with dup2: in-process, pytest's) and the real streams'
    encoding (utf8_stdout reconfigures a stdout that is not UTF-8)."""
    import numpy as np

    def fd(n: int) -> tuple[int, int] | None:
        try:
            st = os.fstat(n)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    return {
        "signals": {name: signal.getsignal(getattr(signal, name))
                    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGPIPE", "SIGALRM")
                    if hasattr(signal, name)},
        "numpy errors": np.geterr(),
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "fds 0-2": [fd(n) for n in range(3)],
        "sys.__stdout__, sys.__stderr__": [(getattr(s, "encoding", None), getattr(s, "errors", None))
                                           for s in (sys.__stdout__, sys.__stderr__)],
    }


@contextlib.contextmanager
def _alarm(seconds: float):
    """:class:`_TimedOut` in the main thread once ``seconds`` have passed (where there are no
    interval timers, or off the main thread: no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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


def torch_char_model(torch, style: str, layers: int, V: int, H: int, seed: int = 0):
    """A float64 PyTorch character model (eval mode) of V tokens, as practitioners write them:

    charrnn  ``lstm`` = nn.LSTM(V, H, L) on one-hot inputs, ``fc`` = nn.Linear(H, V)
    wlm-*    PyTorch's examples/word_language_model: ``encoder`` = nn.Embedding(V, K = 4),
             ``rnn`` = nn.LSTM / nn.GRU / nn.RNN(tanh)(K, H, L), ``decoder`` = nn.Linear(H, V);
             wlm-tied: decoder.weight is encoder.weight (K = H)
    spro     spro/char-rnn.pytorch: ``encoder`` = nn.Embedding(V, H), ``rnn`` = nn.GRU(H, H,
             L), ``decoder`` = nn.Linear(H, V)

    Returns (module, a function: token ids (T, B) NumPy -> the module's logits (T, B, V))."""
    import numpy as np

    nn = torch.nn
    torch.manual_seed(seed)
    K = H if style in ("wlm-tied", "spro") else 4
    kind = {"wlm-gru": nn.GRU, "wlm-rnn": nn.RNN, "spro": nn.GRU}.get(style, nn.LSTM)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            if style == "charrnn":
                self.lstm = nn.LSTM(V, H, layers, dtype=torch.float64)
                self.fc = nn.Linear(H, V, dtype=torch.float64)
                return
            self.encoder = nn.Embedding(V, K, dtype=torch.float64)
            self.rnn = kind(K, H, layers, dtype=torch.float64)
            self.decoder = nn.Linear(H, V, dtype=torch.float64)
            if style == "wlm-tied":
                self.decoder.weight = self.encoder.weight

        def forward(self, ids):
            if style == "charrnn":
                x = nn.functional.one_hot(ids, V).to(torch.float64)
                return self.fc(self.lstm(x)[0])
            return self.decoder(self.rnn(self.encoder(ids))[0])

    module = Model().eval()

    def logits(ids: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(ids)).numpy()

    return module, logits
