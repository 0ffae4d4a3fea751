"""The report: ratios computed from the measurements, the issue's targets, markdown, JSON lines."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

from benchmarks.config import Config, model_flops
from benchmarks.scaling import Series, bytes_text, describe
from benchmarks.timing import Measurement


@dataclass
class Point:
    """One benchmark point: its problem, every contender's measurement, those skipped (why)."""

    config: Config
    measured: dict[str, Measurement]
    skipped: dict[str, str] = field(default_factory=dict)

    def rate(self, name: str) -> float | None:
        m = self.measured.get(name)
        return None if m is None else m.chars_per_sec

    def paired_ratios(self, other: str) -> list[float]:
        """bptt's rate over ``other``'s in each round (empty when either was not measured)."""
        ours, theirs = self.measured.get("bptt"), self.measured.get(other)
        if ours is None or theirs is None:
            return []
        return [a / b for a, b in zip(ours.rounds, theirs.rounds, strict=True)]

    def ratio(self, other: str) -> float | None:
        """bptt's speed over ``other``'s (> 1: bptt is faster): the median, over rounds, of
        the two rates measured in the same round.  (The machine's speed drifts from second
        to second; within one round both contenders see the same machine, so the paired
        ratio is steadier than the ratio of the two medians.)"""
        ratios = self.paired_ratios(other)
        return statistics.median(ratios) if ratios else None

    def ratio_quartiles(self, other: str) -> tuple[float, float] | None:
        """(q1, q3) of the rounds' paired ratios: the middle half of them, how far the noise
        of this machine moves :meth:`ratio` (None with fewer than two rounds)."""
        ratios = self.paired_ratios(other)
        if len(ratios) < 2:
            return None
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        return q1, q3

    def gflops(self, name: str = "bptt") -> float | None:
        """Achieved GFLOP/s: the model's FLOPs per step (config.model_flops) times steps/s."""
        rate = self.rate(name)
        return None if rate is None else model_flops(self.config) * rate / self.config.chars / 1e9


# ----------------------------------------------------------------------------
# the targets of issue 6
# ----------------------------------------------------------------------------


def targets(config: Config) -> list[tuple[str, float]]:
    """(what, minimum) for a point: "torch", "jax", "naive" ratios, "peak" a fraction."""
    if config.optimizer == "adagrad":  # the min-char-rnn point
        return [("naive", 3.5)]
    wanted: list[tuple[str, float]] = [("jax", 1.0)]
    if config.cell == "rnn":
        torch_min = {(1, 100): 5.0, (32, 256): 1.5, (32, 512): 1.2}.get((config.B, config.H))
    else:
        torch_min = 3.0 if config.B == 1 else 1.1
    if torch_min is not None:
        wanted.insert(0, ("torch", torch_min))
    if config.H >= 256 and config.B == 32:
        wanted.append(("peak", 0.65))
    return wanted


def check_targets(point: Point, peak_gflops: float) -> list[tuple[str, float, float | None, bool]]:
    """Every target of the point: (what, minimum, achieved or None if not measured, met)."""
    result = []
    for what, minimum in targets(point.config):
        if what == "peak":
            gflops = point.gflops()
            got = None if gflops is None else gflops / peak_gflops
        else:
            got = point.ratio(what)
        result.append((what, minimum, got, got is not None and got >= minimum))
    return result


# ----------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------


def _rate(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _ratio(point: Point, other: str) -> str:
    """The paired ratio, and in parentheses the quartiles of the rounds' ratios."""
    ratio, spread = point.ratio(other), point.ratio_quartiles(other)
    if ratio is None:
        return "—"
    return f"{ratio:.2f}×" if spread is None else f"{ratio:.2f}× ({spread[0]:.2f}–{spread[1]:.2f})"


def _target_text(checks: list[tuple[str, float, float | None, bool]]) -> str:
    parts = []
    for what, minimum, got, met in checks:
        need = f"≥ {minimum:.0%} peak" if what == "peak" else f"{what} ≥ {minimum:g}×"
        mark = "—" if got is None else ("✓" if met else "✗ MISSED")
        parts.append(f"{need} {mark}")
    return "; ".join(parts)


def grid_table(points: list[Point], peak_gflops: float) -> str:
    """The markdown table of the grid: rates, ratios (bptt ÷ contender), GFLOP/s, targets."""
    lines = [
        "| cell | H | B | bptt chars/s | torch chars/s | bptt ÷ torch | jax chars/s "
        "| bptt ÷ jax | bptt GFLOP/s | % of GEMM peak | targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in points:
        c = p.config
        gflops = p.gflops()
        share = None if gflops is None else gflops / peak_gflops
        lines.append(
            f"| {c.cell} | {c.H} | {c.B} | {_rate(p.rate('bptt'))} | {_rate(p.rate('torch'))} "
            f"| {_ratio(p, 'torch')} | {_rate(p.rate('jax'))} | {_ratio(p, 'jax')} "
            f"| {'—' if gflops is None else f'{gflops:.1f}'} "
            f"| {'—' if share is None else f'{share:.0%}'} "
            f"| {_target_text(check_targets(p, peak_gflops))} |"
        )
    return "\n".join(lines)


def naive_table(point: Point) -> str:
    """The min-char-rnn comparison: bptt against the textbook per-step loop."""
    c = point.config
    return "\n".join([
        "| config | bptt chars/s | naive loop chars/s | bptt ÷ naive | target |",
        "|---|---:|---:|---:|---|",
        f"| rnn H={c.H} T={c.T} V={c.V} B={c.B} {c.dtype}, Adagrad, clip ±{c.clip:g} "
        f"| {_rate(point.rate('bptt'))} | {_rate(point.rate('naive'))} "
        f"| {_ratio(point, 'naive')} | {_target_text(check_targets(point, 1.0))} |",
    ])


def scaling_table(series: list[Series]) -> str:
    """Time per step and peak memory against T, for each curve, with the fitted exponents."""
    lines = []
    for s in series:
        lines += [f"**{describe(s)}**", "", "| T | ms per step | peak memory |", "|---:|---:|---:|"]
        lines += [f"| {T} | {sec * 1e3:.2f} | {bytes_text(b)} |"
                  for T, sec, b in zip(s.T, s.seconds, s.peak_bytes, strict=True)]
        lines.append("")
    return "\n".join(lines)


def skipped_notes(points: list[Point]) -> list[str]:
    """One note per contender skipped anywhere, with the reason."""
    notes: dict[str, str] = {}
    for p in points:
        notes.update(p.skipped)
    return [f"* {name} skipped: {why}" for name, why in sorted(notes.items())]


def json_lines(points: list[Point], peak_gflops: float, machine: dict, series: list[Series]
               ) -> list[str]:
    """One JSON object per measurement (and one for the machine, one per scaling curve)."""
    rows = [{"kind": "machine", **machine}]
    for p in points:
        base = {"cell": p.config.cell, "H": p.config.H, "B": p.config.B, "T": p.config.T,
                "V": p.config.V, "dtype": p.config.dtype, "optimizer": p.config.optimizer}
        for name, m in p.measured.items():
            gflops = p.gflops(name)
            rows.append({
                "kind": "throughput", **base, "contender": name,
                "chars_per_sec": m.chars_per_sec, "rounds": m.rounds,
                "steps_per_round": m.steps_per_round, "gflops": gflops,
                "disturbed_rounds_retimed": m.disturbed,
                # (the peak is float32's: a float64 point, min-char's, has none to compare)
                "fraction_of_peak": None if gflops is None or p.config.dtype != "float32"
                else gflops / peak_gflops,
                "ratio_bptt_over": None if name == "bptt" else p.ratio(name),
                "ratio_quartiles": None if name == "bptt" else p.ratio_quartiles(name),
            })
        for name, why in p.skipped.items():
            rows.append({"kind": "skipped", **base, "contender": name, "reason": why})
    for s in series:
        rows.append({"kind": "scaling", "name": s.name, "T": s.T, "seconds": s.seconds,
                     "peak_bytes": s.peak_bytes, "time_exponent": s.time_exponent,
                     "memory_exponent": s.memory_exponent})
    return [json.dumps(r, ensure_ascii=False) for r in rows]
