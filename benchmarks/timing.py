"""Timing: warm-up, then rounds of training steps, the contenders interleaved; the median."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

TICKS = 100  # USER_HZ: /proc/stat counts CPU time in 1/100 s
QUIET = 0.15  # a round is disturbed when other processes used more than 15% of a core
ATTEMPTS = 4  # a disturbed round is timed again, at most this many times in all
SETTLED = 0.1  # this process's idle threads are asleep when they use under 10% of a core


@dataclass
class Measurement:
    """One contender at one point: characters per second, the median over rounds."""

    name: str
    chars_per_sec: float
    rounds: list[float]  # characters per second of every round
    steps_per_round: int
    first_loss: float  # the loss of the first (warm-up) step, at the initial weights
    disturbed: list[float] = field(default_factory=list)  # others' CPU share, retried rounds
    retimed: int = 0  # rounds timed more than once (other processes disturbed them)
    stayed_disturbed: int = 0  # rounds still disturbed after ATTEMPTS (the least kept)


def busy_seconds() -> float | None:
    """CPU seconds all processes have used (every core; /proc/stat), or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return (sum(fields[:8]) - idle) / TICKS


def others_share(busy_before: float | None, cpu_before: float, wall: float) -> float:
    """How much of a core OTHER processes used while we timed (0 when unknown)."""
    busy_after = busy_seconds()
    if busy_before is None or busy_after is None or wall <= 0:
        return 0.0
    ours = time.process_time() - cpu_before
    return max(0.0, (busy_after - busy_before - ours) / wall)


def wait_for_quiet(max_seconds: float, probe: float = 0.5) -> float:
    """Wait (at most ``max_seconds``) until other processes leave the cores alone for a
    ``probe`` interval; returns the seconds waited.  Off Linux: no wait."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_seconds:
        busy, cpu, t0 = busy_seconds(), time.process_time(), time.perf_counter()
        if busy is None:
            break
        time.sleep(probe)
        if others_share(busy, cpu, time.perf_counter() - t0) <= QUIET:
            break
    return time.perf_counter() - start


def settle(max_seconds: float = 1.0, probe: float = 0.02) -> float:
    """Wait until the threads this process has left running go to sleep (at most
    ``max_seconds``); returns the seconds waited.

    After a call, OpenBLAS's worker threads spin for about 2^28 cycles (0.1 s here) and
    OpenMP's and XLA's for their own while: the next contender, timed at once, would share
    the cores with them (measured: torch's LSTM at H = 256, B = 32 ran 1.6× slower right
    after a bptt round).  This process's CPU time while its main thread sleeps is theirs.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < max_seconds:
        cpu = time.process_time()
        time.sleep(probe)
        if time.process_time() - cpu < SETTLED * probe:
            break
    return time.perf_counter() - start


def timed_steps(runner: Any, steps: int) -> float:
    """Seconds for ``steps`` training steps (waiting for queued work at the end)."""
    start = time.perf_counter()
    for _ in range(steps):
        runner.step()
    runner.sync()
    return time.perf_counter() - start


def quiet_round(runner: Any, steps: int) -> tuple[float, list[float]]:
    """Seconds of one round, timed again while other processes disturbed it (a machine
    shared with other work: their threads and ours fight for the cores, and multithreaded
    BLAS or OpenMP waits for a thread that is not running).  Returns (seconds, the
    others' CPU shares of the rounds thrown away); after ATTEMPTS the least disturbed.
    Each attempt starts once the threads of the runner timed before are asleep (settle)."""
    thrown: list[float] = []
    best = (float("inf"), 0.0)
    for _ in range(ATTEMPTS):
        settle()
        busy, cpu = busy_seconds(), time.process_time()
        seconds = timed_steps(runner, steps)
        share = others_share(busy, cpu, seconds)
        if share <= QUIET:
            return seconds, thrown
        thrown.append(share)
        best = min(best, (share, seconds))
    return best[1], thrown


def measure(runners: dict[str, Any], chars: int, rounds: int = 5, round_seconds: float = 0.25,
            warmup_seconds: float = 0.3) -> dict[str, Measurement]:
    """Time every runner on the same problem (``chars`` characters per step).

    Warm-up: steps until ``warmup_seconds`` have passed (at least two: compilation, first
    allocations), which also sizes a round at about ``round_seconds`` (at least one step).
    Then ``rounds`` rounds, each timing every runner once, in an order rotated every round;
    before each, the previous runner's idle threads are let go to sleep (:func:`settle`),
    and a round that other processes disturbed is timed again (:func:`quiet_round`).
    """
    steps: dict[str, int] = {}
    first: dict[str, float] = {}
    for name, runner in runners.items():
        first[name] = float(runner.step())
        runner.sync()
        start, n = time.perf_counter(), 0
        while n < 2 or time.perf_counter() - start < warmup_seconds:
            runner.step()
            n += 1
        runner.sync()
        per_step = (time.perf_counter() - start) / n
        steps[name] = max(1, round(round_seconds / per_step))
    results: dict[str, list[float]] = {name: [] for name in runners}
    disturbed: dict[str, list[float]] = {name: [] for name in runners}
    retimed, stayed = dict.fromkeys(runners, 0), dict.fromkeys(runners, 0)
    order = list(runners)
    for r in range(rounds):
        for name in order[r % len(order):] + order[: r % len(order)]:
            seconds, thrown = quiet_round(runners[name], steps[name])
            results[name].append(steps[name] * chars / seconds)
            disturbed[name] += thrown
            retimed[name] += bool(thrown)
            stayed[name] += len(thrown) == ATTEMPTS
    return {
        name: Measurement(name, statistics.median(rates), rates, steps[name], first[name],
                          disturbed[name], retimed[name], stayed[name])
        for name, rates in results.items()
    }
