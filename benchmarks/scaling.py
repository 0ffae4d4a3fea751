"""Scaling with the sequence length T: time and peak memory of the efficient BPTT (O(T)) and
of the literal double sum in bptt.reference (O(T²)), with the fitted exponents."""

from __future__ import annotations

import math
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

import bptt
from benchmarks.config import Config, make_data, make_params
from benchmarks.timing import settle, wait_for_quiet
from bptt import models, optim

SCALING = Config("rnn", H=32, B=4, V=65, dtype="float64")
"""A small network, so that the O(T²) reference reaches T of a few hundred in seconds."""


@dataclass
class Series:
    """One curve: T, seconds per step (the fastest of a few), peak bytes; the exponents."""

    name: str
    T: list[int]
    seconds: list[float]
    peak_bytes: list[int]

    @property
    def time_exponent(self) -> float:
        return fit_exponent(self.T, self.seconds)

    @property
    def memory_exponent(self) -> float:
        return fit_exponent(self.T, self.peak_bytes)


def fit_exponent(x: list[float], y: list[float]) -> float:
    """The slope of log y against log x by least squares: y ∝ x^slope."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(lx, ly, 1)[0])


def efficient_step(config: Config, T: int):
    """A training step as bptt train runs it (backprop with a Workspace, then Adam on the
    flat buffers).  The first call sets everything up (what the memory figure counts)."""
    c = config.replace(T=T)
    params = {k: v.copy() for k, v in make_params(c).items()}
    ids, targets = make_data(c)
    run: dict = {}

    def step() -> None:
        if not run:
            run["workspace"] = workspace = models.Workspace(params)
            run["optimizer"] = optim.make_optimizer("adam", 1e-3)
            run["state"] = optim.pack_state(run["optimizer"].init_state(params),
                                            workspace.layout)
        workspace = run["workspace"]
        models.backprop(params, ids, targets, workspace=workspace)
        run["optimizer"].update({"flat": workspace.params_flat},
                                {"flat": workspace.grads_flat}, run["state"])

    return step


def reference_step(config: Config, T: int):
    """The literal double sum's loss and gradients (bptt.reference), no per-term keeping."""
    c = config.replace(T=T)
    params = make_params(c)
    ids, targets = make_data(c)

    def step() -> None:
        bptt.reference.loss_and_grads(params, ids, targets, keep_contributions=False)

    return step


def measure_series(name: str, make, Ts: list[int], config: Config = SCALING,
                   repeats: int = 7) -> Series:
    """The fewest seconds of ``repeats`` calls after a warm-up one, per T (the machine's
    noise only ever adds time); and the tracemalloc peak of a first call (a fresh step:
    every array it needs is allocated)."""
    seconds, peaks = [], []
    for T in Ts:
        fresh = make(config, T)
        tracemalloc.start()
        fresh()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        step = make(config, T)
        step()  # warm-up
        wait_for_quiet(2)
        times = []
        for _ in range(repeats):
            settle()
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        seconds.append(min(times))
    return Series(name, list(Ts), seconds, peaks)


def scaling(quick: bool) -> list[Series]:
    """Both curves: the efficient path over T = 512 … 8192, the reference over T = 32 … 256
    (long enough that the per-call costs of a step no longer hide how it grows)."""
    efficient_T = [512, 1024, 2048, 4096] if quick else [512, 1024, 2048, 4096, 8192]
    reference_T = [32, 64, 128] if quick else [32, 64, 128, 256]
    return [
        measure_series("efficient (a training step: backprop + Adam)", efficient_step, efficient_T),
        measure_series("reference (literal double sum)", reference_step, reference_T,
                       repeats=3),
    ]


def describe(series: Series) -> str:
    """A one-line summary: the exponents of time and memory."""
    return (f"{series.name}: time ∝ T^{series.time_exponent:.2f}, "
            f"peak memory ∝ T^{series.memory_exponent:.2f}")


def bytes_text(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    units = ["B", "KiB", "MiB", "GiB"]
    power = min(int(math.log(max(n, 1), 1024)), len(units) - 1)
    return f"{n / 1024**power:.1f} {units[power]}"
