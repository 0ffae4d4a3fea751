"""The progress bar and Ctrl-C handling shared by the training commands."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bptt.errors import BpttError, DivergedError

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
"""Ctrl-C, and what ``kill``, ``timeout``, a container's stop, a batch system's preemption or
a closed terminal send: each asks a training run to save and stop."""


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
               file=sys.stderr)
    stop: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, frame: object) -> None:
        if stop["signal"] is not None:
            raise KeyboardInterrupt
        stop["signal"] = signum

    # a signal the caller ignores stays ignored (nohup's SIGHUP, a background job's SIGINT)
    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        finished = train_fn(lambda event: show(event, bar, quiet),
                            lambda: stop["signal"] is not None)
        return None if finished else stop["signal"]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        bar.close()


@contextlib.contextmanager
def undo_on_failure(out: Path, cache_dir: Path | None = None) -> Iterator[list]:
    """A new run that fails (a BpttError, no memory, Ctrl-C) before its first checkpoint
    leaves nothing behind and never touches what was there: the cache files it wrote (the
    EncodedCorpus objects appended to the yielded list) are removed, then the cache and
    run directories if they are empty and did not exist before.  Once the run has saved a
    checkpoint, its directory and cache are the run's: they stay."""
    from bptt import corpus, train

    new_dirs = [d for d in (cache_dir, out) if d is not None and not d.exists()]
    written: list = []
    try:
        yield written
    except (BpttError, MemoryError, KeyboardInterrupt):
        if not train.holds_checkpoint(out):
            for item in written:
                if isinstance(item, corpus.EncodedCorpus) and not item.reused:
                    item.ids_file.unlink(missing_ok=True)
                    item.manifest.unlink(missing_ok=True)
            for directory in sorted(new_dirs, key=lambda d: len(d.absolute().parts),
                                    reverse=True):
                with contextlib.suppress(OSError):
                    directory.rmdir()
        raise


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

    text = f"training diverged at step {step}: the loss or a gradient is NaN or inf; "
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
    shell gives a command that signal ends, 128 + its number (130 for Ctrl-C)."""
    how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    print(f"{how}: checkpoint of step {step} saved in {out_dir}", file=sys.stderr)
    return 128 + signum


def nothing_to_do(step: int, out_dir: Path) -> int:
    """Say that a resumed run is already at its --steps (nothing trained, nothing written);
    return the exit code 0."""
    print(f"nothing to do: the run in {out_dir} is already at step {step}; --steps is the "
          "run's total, give a larger one to go on", file=sys.stderr)
    return 0
