"""The progress bar and Ctrl-C handling shared by the training commands."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bptt.errors import BpttError, DivergedError

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
"""Ctrl-C, and what ``kill``, ``timeout``, a container's stop, a batch system's preemption or
a closed terminal send: each asks a training run to save and stop, and ends any other
command (or a run before its loop) as Ctrl-C does."""


BROKEN_PIPE = getattr(signal, "SIGPIPE", 13)
"""What a write to a pipe whose reader went away (``bptt train | head``) raises in C programs:
a training run stops as it does for the other stop signals (saved, exit 128 + 13)."""


class Stopped(KeyboardInterrupt):
    """A stop signal that ends the command at once (as Ctrl-C's KeyboardInterrupt does, so
    what undoes a half-made run on Ctrl-C undoes it for each of them); ``signum``: which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stopped_how(signum: int) -> str:
    """'interrupted' (Ctrl-C) or 'stopped by SIGTERM', …: what the messages say."""
    if signum == signal.SIGINT:
        return "interrupted"
    if signum == BROKEN_PIPE:
        return "stopped: its standard output was closed (broken pipe)"
    return f"stopped by {signal.Signals(signum).name}"


def utf8_stdout() -> None:
    """Standard output writes UTF-8 whatever the locale says, for every command and --help:
    they print ∂, ‖, × and sampled characters, which an ASCII or latin-1 stdout refused with
    a UnicodeEncodeError traceback.  A path with a byte that is not UTF-8 (a lone surrogate
    in Python) is written as a backslash escape, as standard error writes it, where the
    stream would refuse it ('strict', a UTF-8 locale such as en_US.UTF-8; the C locale's
    'surrogateescape' writes the byte itself).  (A closed one, None: see
    :func:`require_stdout`.)"""
    stream = sys.stdout
    if not hasattr(stream, "reconfigure"):
        return
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("_", "-")
    if encoding not in ("utf-8", "utf8"):
        stream.reconfigure(encoding="utf-8")
    if getattr(stream, "errors", None) == "strict":
        stream.reconfigure(errors="backslashreplace")


def require_stdout(what: str, instead: str) -> None:
    """BpttError for a closed standard output (``>&-``: Python then has none), for a command
    that writes ``what`` there; ``instead`` says what the user can do.  (Called for every
    command by :func:`bptt.cli.main`, from its parser's ``prints``.)"""
    if sys.stdout is None:
        raise BpttError(f"standard output is closed: there is nowhere to write {what} "
                        f"({instead})")


def drop_stdout() -> None:
    """Point standard output at the null device: nothing more is written to a closed or
    full one (Python's own advice for SIGPIPE)."""
    _to_devnull(sys.stdout.fileno())


def _to_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


class _Stderr:
    """Standard error for the progress bar and the messages: a stderr whose reader went away
    (2>&1 | head) or that is full is dropped (pointed at the null device), not an error that
    ends the run or a second error."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except OSError:
            _to_devnull(sys.stderr.fileno())
            return len(text)

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except OSError:
            _to_devnull(sys.stderr.fileno())


def say(line: str) -> None:
    """Write one line to standard error (see :class:`_Stderr`), as :func:`one_line`."""
    stderr = _Stderr()
    stderr.write(one_line(line) + "\n")
    stderr.flush()


def one_line(text: str) -> str:
    """``text`` with each control character written as its escape (a newline as \\n, a
    terminal's ESC as \\x1b): a file name may hold them, and a message that names it must
    stay one line, and must not drive the terminal."""
    return "".join(
        char.encode("unicode_escape").decode("ascii") if unicodedata.category(char) == "Cc"
        else char
        for char in text
    )


def write_line(bar: Any, text: str) -> None:
    """One line of a run's output on standard output, above its progress bar, flushed: a
    reader that went away (| head) is noticed at this line (run_with_progress then stops
    the run), not when a buffer of thousands of lines fills."""
    bar.write(text)
    sys.stdout.flush()


def finished(line: str) -> int:
    """Print the last line of a run that trained every step; return its exit code, 0: a
    reader of standard output that went away by now changes nothing."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        drop_stdout()
    return 0


def _handle(signals: tuple[int, ...], handler: Callable[[int, object], None]) -> dict:
    """Install ``handler`` for each of ``signals`` the caller does not ignore (nohup's
    SIGHUP, a background job's SIGINT stay ignored); return the handlers it replaced."""
    return {signum: signal.signal(signum, handler) for signum in signals
            if signal.getsignal(signum) is not signal.SIG_IGN}


def _restore(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@contextlib.contextmanager
def stop_signals_end_the_command() -> Iterator[None]:
    """While a command runs, SIGTERM and SIGHUP end it as Ctrl-C does: :class:`Stopped`,
    which the command's clean-up sees, then one line and exit 128 + the signal."""

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    previous = _handle(STOP_SIGNALS, stop)
    try:
        yield
    finally:
        _restore(previous)


def run_with_progress(
    total: int,
    initial: int,
    quiet: bool,
    train_fn: Callable[[Callable[[Any], None], Callable[[], bool]], bool],
    show: Callable[[Any, Any, bool], None],
) -> int | None:
    """Run ``train_fn(on_event, should_stop)`` under a tqdm bar on stderr.

    The first Ctrl-C (or SIGTERM, SIGHUP: :data:`STOP_SIGNALS`, those not ignored) asks the
    loop to stop after the current step (it saves a checkpoint); a second one interrupts at
    once.
    ``show(event, bar, quiet)`` displays each event.  Returns None when ``train_fn``
    finished, else the number of the signal that stopped it.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, disable=quiet, unit="step", dynamic_ncols=True,
               file=_Stderr())
    stop: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, frame: object) -> None:
        if stop["signal"] is not None:
            raise Stopped(signum)
        stop["signal"] = signum

    def on_event(event: Any) -> None:
        try:
            show(event, bar, quiet)
        except BrokenPipeError:  # standard output's reader went away (| head; stderr's cannot)
            drop_stdout()
            if stop["signal"] is None:
                stop["signal"] = BROKEN_PIPE

    previous = _handle(STOP_SIGNALS, on_signal)
    try:
        finished = train_fn(on_event, lambda: stop["signal"] is not None)
        return None if finished else stop["signal"]
    finally:
        _restore(previous)
        bar.close()


@contextlib.contextmanager
def new_run_dir(out: Path, cache_dir: Path | None = None) -> Iterator[list]:
    """Create a new run's directory and hold its lock (train.run_dir_lock) while the run
    trains.  A run that fails before its first checkpoint (a user's mistake, no memory,
    Ctrl-C or another stop signal, a write the system refused, or a bug) leaves nothing
    behind and never touches what was there: the cache files it wrote (the EncodedCorpus
    objects appended to the yielded list) are removed, then the cache and run directories
    and the parents they lacked, if they are empty and did not exist before, all while the
    lock is held (a run that takes the directory next finds it as it left it).  Once the
    run has saved a checkpoint, its directory and cache are the run's: they stay; so does a
    directory another run trains in (train.RunDirInUseError: not this run's to undo)."""
    from bptt import checkpoint, train

    # (with the parents they lack: a failed run in runs/train left an empty runs/)
    new_dirs = [new for made in (cache_dir, out) if made is not None
                for new in checkpoint.missing_dirs(made)]
    written: list = []
    try:
        train.make_out_dir(out)
    except BaseException:  # whatever ends it: a half-made run is no run
        _undo(out, written, new_dirs)
        raise
    with train.run_dir_lock(out):
        try:
            yield written
        except BaseException:  # whatever ends it: a half-made run is no run
            _undo(out, written, new_dirs)
            raise


def _undo(out: Path, written: list, new_dirs: list[Path]) -> None:
    """Remove what a new run wrote and the directories it made, unless it saved a checkpoint."""
    from bptt import checkpoint, corpus, train

    if train.holds_checkpoint(out):
        return
    for item in written:
        if isinstance(item, corpus.EncodedCorpus) and not item.reused:
            item.ids_file.unlink(missing_ok=True)
            item.manifest.unlink(missing_ok=True)
    checkpoint.remove_empty_dirs(new_dirs)


@contextlib.contextmanager
def explain_divergence(out_dir: Path, fine_tune: bool) -> Iterator[None]:
    """Turn a DivergedError into one line in flags: which checkpoint of ``out_dir`` is kept
    (read off the disk: the last one saved before the step that diverged, or none) and
    what to do.  A run continues with its own settings only (--resume cannot change --lr),
    so the way on from the kept checkpoint is a new run from its weights (fine_tune: the
    command has --init-from)."""
    try:
        yield
    except DivergedError as exc:
        raise BpttError(_diverged(exc.step, out_dir, fine_tune)) from None


def _diverged(step: int, out_dir: Path, fine_tune: bool) -> str:
    from bptt import checkpoint, train

    text = f"training diverged at step {step}: the loss, a gradient or a weight is NaN or inf; "
    state = out_dir / train.STATE_FILE
    if not state.exists():
        return text + ("nothing was saved (no checkpoint before it). Train again with a lower "
                       "--lr or with --clip-norm")
    try:
        saved = checkpoint.read_metadata(state).get("step")
    except BpttError:  # (not a file this run wrote: it is not described)
        saved = "?"
    text += (f"the checkpoint of step {saved} in {out_dir} is kept. Train again with a lower "
             "--lr or with --clip-norm")
    if fine_tune:
        text += f", or go on from that checkpoint with --init-from {out_dir} --out NEW_DIR"
    return text


def interrupted(step: int, out_dir: Path, signum: int = signal.SIGINT) -> int:
    """Say where the checkpoint of a run stopped by ``signum`` is; return the exit code a
    shell gives a command that signal ends, 128 + its number (130 for Ctrl-C).  A run
    stopped before it saved anything (a task run before its first step) raises
    :class:`Stopped` instead: nothing to point at, and a new run's directory is undone."""
    from bptt import train

    if not train.holds_train_state(out_dir):
        raise Stopped(signum)
    say(f"{stopped_how(signum)}: checkpoint of step {step} saved in {out_dir}")
    return 128 + signum


def nothing_to_do(step: int, out_dir: Path, completed: Sequence[str] = ()) -> int:
    """Say that a resumed run is already at its --steps (nothing trained; ``completed``: the
    files of its last checkpoint written again, which a stop had left behind its train
    state); return the exit code 0."""
    if completed:
        say(f"the checkpoint of step {step} in {out_dir} was cut short by a stop: wrote "
            f"{' and '.join(completed)} again from its train state")
    say(f"nothing to do: the run in {out_dir} is already at step {step}; --steps is the "
        "run's total, give a larger one to go on")
    return 0
