"""The training commands' signal handling (bptt.cli.progress), in-process."""

from __future__ import annotations

import os
import signal

import pytest

from bptt.cli import progress


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
