"""The command: measure the machine, the grid, the min-char-rnn point and the scaling; report."""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import machine, report, scaling
from benchmarks.config import MIN_CHAR, Config, grid, make_data, make_params
from benchmarks.contenders import CONTENDERS
from benchmarks.timing import ATTEMPTS, measure, wait_for_quiet

HERE = Path(__file__).resolve().parent
LOSS_RTOL = {"float32": 1e-4, "float64": 1e-10}


def run_point(config: Config, names: list[str], threads: int, quick: bool,
              missing: dict[str, str]) -> report.Point:
    """Time every contender that takes ``config`` on the same weights and data."""
    params = make_params(config)
    ids, targets = make_data(config)
    runners, skipped = {}, {}
    for name in names:
        contender = CONTENDERS[name]
        if not contender.takes(config):
            continue
        if name in missing:
            skipped[name] = missing[name]
            continue
        runners[name] = contender.make(config, params, ids, targets, threads)
    wait_for_quiet(5 if quick else 30)
    measured = measure(runners, config.chars, rounds=7 if quick else 15,
                       round_seconds=0.05 if quick else 0.08,
                       warmup_seconds=0.2 if quick else 0.4)
    # the same weights and data give the same first loss in every contender
    ours = measured["bptt"].first_loss
    for name, m in measured.items():
        if abs(m.first_loss - ours) > LOSS_RTOL[config.dtype] * abs(ours):
            raise RuntimeError(f"{name} computes loss {m.first_loss} where bptt has {ours} "
                               f"({config.label}): not the same work")
    del runners
    gc.collect()
    return report.Point(config, measured, skipped)


def header(info: dict, peak: dict, unset: str, quick: bool, seconds: float,
           busy: list[str]) -> str:
    blas = info["blas"]
    lines = [
        "# Training throughput: bptt against PyTorch, JAX and the textbook loop",
        "",
        f"`python -m benchmarks{' --quick' if quick else ''}` on {info['date']}, "
        f"{seconds:.0f} s.  Machine: {info['cpu']}, {info['cores']} cores; Python "
        f"{info['python']}, numpy {info['numpy']}, torch {info['torch']}, jax {info['jax']}.",
        f"BLAS: {blas.get('library')} {blas.get('version', '')}, kernel "
        f"{blas.get('kernel', '?')}, {blas.get('threads')} threads (threadpoolctl); torch is "
        f"set to the same number, XLA's own pool takes every core ({info['cores']}).  "
        + (f"Unset for this run only: {unset}." if unset else
           "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: not set."),
        f"Square-GEMM peak (numpy float32 matmul, n = {peak['n']}): "
        f"**{peak['gflops']:.1f} GFLOP/s**.",
        "",
        "Each step: forward over T characters of B streams, the total cross-entropy, BPTT "
        "through all T steps, one optimizer update; characters/s is T·B per step, the median "
        "of the timed rounds after warm-up, contenders interleaved (short rounds, each "
        "contender once per round).  Ratios are bptt ÷ contender (above 1: bptt is faster), "
        "the median over rounds of the two rates of the same round: this machine's speed "
        "drifts by ±20% from second to second, and a round sees both contenders alike.  In "
        "parentheses: the quartiles of those per-round ratios, the middle half of them (a "
        "target inside that range is met or missed by the noise of this machine).  "
        "GFLOP/s counts the matrix products only "
        "(6·T·B·(G·H + V·H), G = gates·H), the same nominal work for every contender.  torch "
        "gets one-hot inputs (nn.RNN takes no ids), bptt and JAX gather; every contender "
        "starts from the same weights and is checked to compute the same first loss.  Each "
        "round starts once the threads of the contender before it have gone to sleep "
        "(OpenBLAS's spin about 0.1 s after a call).",
        "",
        *busy,
    ]
    return "\n".join(lines)


def busy_lines(points: list[report.Point]) -> list[str]:
    """What other processes did to the rounds; a warning when many stayed disturbed."""
    measured = [m for point in points for m in point.measured.values()]
    rounds = sum(len(m.rounds) for m in measured)
    retimed = sum(m.retimed for m in measured)
    stayed = sum(m.stayed_disturbed for m in measured)
    lines = [f"Rounds timed again because other processes used the cores: {retimed} (of "
             f"{rounds} rounds); still disturbed after {ATTEMPTS} attempts: {stayed}.", ""]
    if stayed > 0.05 * rounds:
        lines[0] = ("**This machine was busy during the run: the numbers below are not "
                    "reliable; measure again on a quiet machine.**  " + lines[0])
    return lines


def versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "jax"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = "not installed"
    return out


def main(argv: list[str], unset: str = "") -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller grid, under 2 minutes")
    parser.add_argument("--out", type=Path, default=HERE,
                        help="where results.md and results.jsonl go (default: benchmarks/)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--contenders", default="bptt,torch,jax,naive",
                        help="comma-separated subset of bptt,torch,jax,naive")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contender {unknown[0]!r}: choose from {','.join(CONTENDERS)}")
    if "bptt" not in names:
        parser.error("bptt must be among the contenders (ratios are against it)")
    if not args.no_write:
        # before the minutes of measuring: a --out that cannot take the files fails now
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"--out {args.out}: {exc.strerror or exc}")
    started = time.perf_counter()
    blas = machine.blas_info()
    threads = int(blas.get("threads") or 1)
    info = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": machine.cpu_name(), "cores": os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__, **versions(),
        "blas": blas, "unset": unset, "quick": args.quick,
    }
    missing = {n: why for n in names if (why := CONTENDERS[n].missing())}
    peak = machine.gemm_peak(seconds=0.5 if args.quick else 1.0)
    info["gemm_peak_gflops"] = peak["gflops"]
    print(f"BLAS {blas}; GEMM peak {peak['gflops']:.1f} GFLOP/s", file=sys.stderr)
    points = []
    for config in grid(args.quick):
        points.append(run_point(config, names, threads, args.quick, missing))
        print(f"  {config.label}: " + ", ".join(
            f"{n} {m.chars_per_sec:,.0f}" for n, m in points[-1].measured.items()),
            file=sys.stderr)
    min_char = run_point(MIN_CHAR, [n for n in ("bptt", "naive") if n in names], threads,
                         args.quick, missing)
    print(f"  min-char: bptt ÷ naive {min_char.ratio('naive')}", file=sys.stderr)
    series = scaling.scaling(args.quick)
    seconds = time.perf_counter() - started
    text = "\n".join([
        header(info, peak, unset, args.quick, seconds, busy_lines([*points, min_char])),
        "## The grid (T = 50, V = 100, float32, Adam)",
        "",
        report.grid_table(points, peak["gflops"]),
        "",
        *report.skipped_notes(points),
        "",
        "## min-char-rnn's configuration",
        "",
        report.naive_table(min_char),
        "",
        f"## Scaling with T ({scaling.SCALING.label.replace(' T=50', '')}, full BPTT)",
        "",
        report.scaling_table(series),
    ])
    print(text)
    if not args.no_write:
        (args.out / "results.md").write_text(text + "\n", encoding="utf-8")
        lines = report.json_lines([*points, min_char], peak["gflops"], info, series)
        (args.out / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
