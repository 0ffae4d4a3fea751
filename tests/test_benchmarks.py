"""The benchmark machinery (benchmarks/), run at a tiny size: nothing here is timed.

Every contender must do the same work as bptt (the same loss on the same weights, the same
updates where the optimizer is the same), the table's ratios must be the measured numbers
divided, and ``python -m benchmarks`` must write its files.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ runs from the repo root; it is not installed
    sys.path.insert(0, str(ROOT))

from benchmarks import config as bconfig  # noqa: E402
from benchmarks import report, run, scaling, timing  # noqa: E402
from benchmarks.config import Config, make_data, make_params  # noqa: E402
from benchmarks.contenders import CONTENDERS  # noqa: E402

TINY = {cell: Config(cell, H=6, B=3, T=5, V=7, dtype="float64") for cell in ("rnn", "lstm", "gru")}
TINY_MIN_CHAR = bconfig.MIN_CHAR.replace(H=8, T=6, V=9)


def first_loss(name: str, config: Config) -> float:
    params = make_params(config)
    ids, targets = make_data(config)
    return float(CONTENDERS[name].make(config, params, ids, targets, 1).step())


def needs(module: str):
    """torch as every torch test (fails under BPTT_REQUIRE_TORCH=1); JAX only when installed
    (it is the benchmarks extra's, not the test extra's)."""
    if module == "torch":
        from conftest import require_torch

        require_torch()
    elif importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[benchmarks]')")


@pytest.mark.parametrize("cell", sorted(TINY))
@pytest.mark.parametrize("name", ["torch", "jax"])
def test_each_contender_computes_bptts_loss_on_the_same_weights(cell, name):
    needs(name)
    ours = first_loss("bptt", TINY[cell])
    assert abs(first_loss(name, TINY[cell]) - ours) <= 1e-10 * abs(ours)


def test_the_naive_loop_is_the_same_training_as_bptt_step_after_step():
    """Same loss, and (Adagrad, clip ±5 on both sides) the same weights after every step."""
    c = TINY_MIN_CHAR.replace(lr=0.5, clip=0.05)  # a small clip, so that clipping happens
    params = make_params(c)
    ids, targets = make_data(c)
    ours = CONTENDERS["bptt"].make(c, params, ids, targets, 1)
    naive = CONTENDERS["naive"].make(c, params, ids, targets, 1)
    for _ in range(4):
        a, b = ours.step(), naive.step()
        assert abs(a - b) <= 1e-10 * abs(a)
    for key, value in ours.params.items():
        np.testing.assert_allclose(naive.loop.p[key].reshape(value.shape), value, rtol=1e-10)


def fake_point(config: Config, **rates: float) -> report.Point:
    measured = {name: timing.Measurement(name, rate, [rate], 1, 1.0)
                for name, rate in rates.items()}
    return report.Point(config, measured)


def table_rows(table: str) -> list[list[str]]:
    lines = table.strip().splitlines()
    assert re.fullmatch(r"\|(?:-{3,}:?\|)+", lines[1]), f"not a separator row: {lines[1]}"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_the_table_shows_the_ratios_of_the_measured_rates_and_the_targets():
    points = [
        fake_point(Config("rnn", 100, 1), bptt=150_000.0, torch=20_000.0, jax=160_000.0),
        fake_point(Config("lstm", 256, 32), bptt=90_000.0, torch=60_000.0, jax=45_000.0),
    ]
    peak = 100.0
    rows = table_rows(report.grid_table(points, peak))
    header = rows[0]
    assert len({len(r) for r in rows}) == 1, "every row has the header's columns"
    col = {name: header.index(name) for name in header}
    first, second = rows[2], rows[3]
    assert first[col["bptt ÷ torch"]] == f"{150_000 / 20_000:.2f}×"
    assert first[col["bptt ÷ jax"]] == f"{150_000 / 160_000:.2f}×"
    assert second[col["bptt ÷ torch"]] == f"{90_000 / 60_000:.2f}×"
    assert first[col["bptt chars/s"]] == "150,000"
    # rnn B=1 H=100: torch ≥ 5× met, jax ≥ 1× missed
    assert "torch ≥ 5× ✓" in first[col["targets"]]
    assert "jax ≥ 1× ✗ MISSED" in first[col["targets"]]
    # GFLOP/s from the model's FLOPs and the measured rate, and its share of the peak
    c = points[1].config
    gflops = bconfig.model_flops(c) * 90_000 / c.chars / 1e9
    assert second[col["bptt GFLOP/s"]] == f"{gflops:.1f}"
    assert second[col["% of GEMM peak"]] == f"{gflops / peak:.0%}"
    assert ("✓" if gflops / peak >= 0.65 else "✗") in second[col["targets"]].split("peak")[-1]


def test_a_ratio_pairs_the_rates_of_the_same_round():
    # the machine slowed down in round 2 for torch and in round 3 for bptt: each round's
    # own ratio is 1, 3, 0.5, so the paired median is 1 (the ratio of medians would say 2)
    bptt = timing.Measurement("bptt", 20.0, [10.0, 30.0, 20.0], 1, 1.0)
    torch = timing.Measurement("torch", 10.0, [10.0, 10.0, 40.0], 1, 1.0)
    point = report.Point(Config("rnn", 100, 1), {"bptt": bptt, "torch": torch})
    assert point.ratio("torch") == pytest.approx(1.0)
    # the quartiles of the rounds' ratios 0.5, 1, 3 (statistics.quantiles, exclusive method)
    assert point.ratio_quartiles("torch") == pytest.approx((0.5, 3.0))
    assert report.grid_table([point], 100.0).count("| 1.00× (0.50–3.00) |") == 1
    assert point.ratio_quartiles("jax") is None and point.ratio("jax") is None


def test_a_contender_not_measured_shows_a_dash_and_no_ratio():
    point = fake_point(Config("gru", 100, 1), bptt=1000.0, torch=500.0)
    point.skipped["jax"] = "jax is not installed"
    rows = table_rows(report.grid_table([point], 10.0))
    col = {name: i for i, name in enumerate(rows[0])}
    assert rows[2][col["bptt ÷ jax"]] == "—" and rows[2][col["jax chars/s"]] == "—"
    assert report.skipped_notes([point]) == ["* jax skipped: jax is not installed"]


def test_model_flops_count_the_matrix_products():
    c = Config("lstm", H=10, B=2, T=3, V=7)
    G = 4 * 10
    assert bconfig.model_flops(c) == 3 * 2 * (2 * G * 10 + 2 * 7 * 10) * 3


def test_a_round_disturbed_by_other_processes_is_timed_again(monkeypatch):
    shares = iter([0.9, 0.5, 0.01])
    monkeypatch.setattr(timing, "others_share", lambda *args: next(shares))

    class Runner:
        calls = 0

        def step(self):
            Runner.calls += 1
            return 1.0

        def sync(self):
            pass

    monkeypatch.setattr(timing, "settle", lambda: 0.0)
    seconds, thrown = timing.quiet_round(Runner(), 2)
    assert thrown == [0.9, 0.5] and Runner.calls == 6 and seconds >= 0


def test_a_round_starts_once_the_threads_left_spinning_are_asleep():
    # OpenBLAS's workers spin ~0.1 s after a call: torch timed at once ran 1.6x slower
    import threading

    stop = time.perf_counter() + 0.3

    def spin():
        while time.perf_counter() < stop:
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    waited = timing.settle(max_seconds=2.0)
    spinner.join()
    assert waited >= 0.2
    assert timing.settle(max_seconds=2.0) < 0.2  # nothing spinning: one probe or a few


def test_the_naive_loop_runs_only_at_min_char_rnns_training():
    # it does Adagrad; at the grid's Adam points its rate was not the same work
    takes = CONTENDERS["naive"].takes
    assert takes(bconfig.MIN_CHAR) and takes(TINY_MIN_CHAR)
    assert not any(takes(c) for c in bconfig.grid(quick=False))


def test_a_busy_run_says_so_above_its_numbers():
    def point(stayed):
        thrown = [0.5] * timing.ATTEMPTS * stayed  # as measure() leaves them
        m = timing.Measurement("bptt", 1.0, [1.0] * 10, 1, 0.0, thrown, stayed, stayed)
        return report.Point(TINY["rnn"], {"bptt": m}, {})

    assert run.busy_lines([point(0)])[0].startswith("Rounds timed again")
    assert "10 rounds); still disturbed after" in run.busy_lines([point(0)])[0]
    assert "This machine was busy" in run.busy_lines([point(3)])[0]
    assert ": 3 (of 10 rounds); still disturbed after 4 attempts: 3." in run.busy_lines(
        [point(3)])[0]


def test_fit_exponent_recovers_a_power_law():
    T = [16, 32, 64, 128]
    assert scaling.fit_exponent(T, [3e-6 * t**2 for t in T]) == pytest.approx(2.0)
    assert scaling.fit_exponent(T, [5e-4 * t for t in T]) == pytest.approx(1.0)


@pytest.mark.parametrize(("argv", "message"), [
    # (a KeyError traceback after the machine was measured; a space after a comma too)
    (["--contenders", "bptt,foo"], "unknown contender 'foo': choose from bptt,torch,jax,naive"),
    (["--contenders", "bptt,Torch"], "unknown contender 'Torch'"),
    # (a FileExistsError traceback once every point had been measured, nothing saved)
    (["--out", "{file}"], "--out {file}: File exists"),
])
def test_a_bad_flag_is_one_line_before_anything_is_measured(tmp_path, monkeypatch, capsys, argv,
                                                            message):
    (tmp_path / "a_file").write_text("x")
    argv = [a.replace("{file}", str(tmp_path / "a_file")) for a in argv]
    monkeypatch.setattr(run.machine, "blas_info", lambda: pytest.fail("measured first"))
    with pytest.raises(SystemExit) as exit_:
        run.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message.replace("{file}", str(tmp_path / "a_file")) in err, err
    assert "Traceback" not in err


def test_the_command_runs_at_a_tiny_size_and_writes_its_files(tmp_path, monkeypatch):
    needs("torch")  # a contender here (without it the run reports it skipped)
    monkeypatch.setattr(run, "grid", lambda quick: [TINY["rnn"].replace(dtype="float32"),
                                                    TINY["gru"].replace(B=1, dtype="float32")])
    monkeypatch.setattr(run, "MIN_CHAR", TINY_MIN_CHAR)
    monkeypatch.setattr(run.machine, "gemm_peak", lambda seconds: {"gflops": 10.0, "n": 64})
    monkeypatch.setattr(scaling, "scaling", lambda quick: [
        scaling.measure_series("efficient", scaling.efficient_step, [4, 8], repeats=1),
        scaling.measure_series("reference", scaling.reference_step, [4, 8], repeats=1),
    ])
    monkeypatch.setattr(run, "measure", lambda runners, chars, **kw: timing.measure(
        runners, chars, rounds=1, round_seconds=0.0, warmup_seconds=0.0))
    monkeypatch.setattr(timing, "settle", lambda: 0.0)
    monkeypatch.setattr(run, "wait_for_quiet", lambda seconds: 0.0)
    monkeypatch.setattr(scaling, "wait_for_quiet", lambda seconds: 0.0)
    monkeypatch.setattr(timing, "ATTEMPTS", 1)
    # (a space after a comma is no part of a name)
    run.main(["--quick", "--out", str(tmp_path), "--contenders", "bptt, torch,naive"])
    text = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| cell | H | B | bptt chars/s |" in text and "bptt ÷ naive" in text
    assert "time ∝ T^" in text and "peak memory ∝ T^" in text
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in rows}
    assert kinds == {"machine", "throughput", "scaling"}
    by = {(r["cell"], r["B"], r["contender"]): r for r in rows if r["kind"] == "throughput"}
    # % of the float32 GEMM peak for float32 points only (min-char's float64 had one)
    assert by[("rnn", 3, "bptt")]["fraction_of_peak"] is not None
    assert all(r["fraction_of_peak"] is None for r in rows
               if r["kind"] == "throughput" and r["dtype"] == "float64")
    bptt_rate = by[("rnn", 3, "bptt")]["chars_per_sec"]
    torch_row = by[("rnn", 3, "torch")]
    assert torch_row["ratio_bptt_over"] == pytest.approx(bptt_rate / torch_row["chars_per_sec"])
