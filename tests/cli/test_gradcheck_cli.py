"""`bptt gradcheck` run as a user runs it: every cell against every witness (by its entry point,
in this process), and YOUR backward (a fresh interpreter imports it, as a user's does)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests_support import bptt_here

EXAMPLES = Path(__file__).resolve().parents[1] / "broken_backwards"


def _mine(tmp_path: Path, *body: str) -> None:
    """tmp_path/mine.py: the right backward of broken_backwards/correct.py, then ``body``
    (lines of Python, run on its loss, grads and h_last, the last of them a return)."""
    (tmp_path / "mine.py").write_text(
        (EXAMPLES / "correct.py").read_text() + "\n\ncorrect = rnn_backward\n\n\n"
        "def rnn_backward(params, inputs, targets, h0=None, truncate=None):\n"
        "    loss, grads, h_last = correct(params, inputs, targets, h0, truncate)\n"
        + "".join(f"    {line}\n" for line in body))


def bptt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m bptt ARGS`` from ``cwd``: a fresh interpreter imports YOUR backward."""
    return subprocess.run([sys.executable, "-m", "bptt", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def bptt_model_check(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``bptt ARGS`` by its entry point in this process (:func:`tests_support.bptt_here`), for
    the checks of bptt's own cells (torch imported once, not once per command)."""
    return bptt_here(*args, cwd=cwd)


def test_default_checks_every_cell_with_one_and_two_layers_against_all_witnesses(tmp_path, torch):
    run = bptt_model_check("gradcheck", "--json", "--hidden", "3", "--seq-len", "4", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["passed"] is True
    assert report["tolerances"] == {"reference": 1e-12, "finite_differences": 1e-7, "torch": 1e-10}
    rows = report["rows"]
    assert {(r["cell"], r["layers"]) for r in rows} == {
        (c, L) for c in ("rnn", "lstm", "gru") for L in (1, 2)}
    assert all(r["rel_vs_torch"] is not None and r["rel_vs_torch"] < 1e-10 for r in rows)
    assert {r["param"] for r in rows if r["cell"] == "lstm" and r["layers"] == 2} == {
        "Wxh", "Whh", "bxh", "bhh", "Wxh_l1", "Whh_l1", "bxh_l1", "bhh_l1", "Why", "by", "h0"}


def test_the_table_has_a_row_per_parameter_and_states_its_tolerances(tmp_path):
    run = bptt_model_check("gradcheck", "--cell", "rnn", "--layers", "1", "--no-torch", "--hidden",
                           "3", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "tolerances: reference 1e-12, finite differences 1e-07" in out
    assert "torch witness not run: --no-torch" in out
    rows = [line for line in out.splitlines() if line.startswith("| rnn | 1 |")]
    assert [r.split("|")[3].strip() for r in rows] == ["Wxh", "Whh", "bh", "Why", "by", "h0"]
    assert all(r.rstrip().endswith("| PASS |") for r in rows)
    assert "6 passed, 0 failed" in out


def test_your_correct_backward_passes(tmp_path):
    run = bptt("gradcheck", "--backward", f"{EXAMPLES / 'correct.py'}:rnn_backward", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "PASS: all 6 gradients agree with the reference" in run.stdout


def test_your_broken_backward_fails_with_its_diagnosis(tmp_path):
    run = bptt("gradcheck", "--backward", f"{EXAMPLES / 'no_recurrence.py'}:rnn_backward",
               cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    out = " ".join(run.stdout.split())  # the sentences are wrapped
    assert "| Why |" in run.stdout and "| Whh |" in run.stdout
    assert ("Your dW^hh keeps only 1 step of the recurrence: the term ∂h_t/∂h_{t−1} = "
            "diag(1 − h_t²) W^hh is missing or not accumulated") in out
    assert "FAIL: 4 of 6 gradients differ" in out


def test_json_report_of_a_localised_bug(tmp_path):
    run = bptt("gradcheck", "--json", "--backward",
               f"{EXAMPLES / 'clipped_carry.py'}:rnn_backward", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert report["passed"] is False and report["diagnosis"] is None
    assert report["localisation"]["first_wrong_t"] == 2
    assert {p["param"]: p["passed"] for p in report["params"]} == {
        "Wxh": False, "Whh": False, "bh": False, "Why": True, "by": True, "h0": False}


def test_what_your_backward_prints_goes_to_stderr_and_json_stays_json(tmp_path):
    """A learner's debugging print (at import, in each call) went to stdout, before the
    report: --json printed a document no JSON reader could read."""
    (tmp_path / "mine.py").write_text(
        "print('importing mine')\n" + (EXAMPLES / "correct.py").read_text()
        .replace("    return loss, grads, hs[-1]", "    print('loss', loss)\n    return loss, grads, hs[-1]"))
    run = bptt("gradcheck", "--json", "--backward", "mine.py:rnn_backward", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["passed"] is True
    assert run.stderr.startswith("importing mine\nloss ")


def test_truncate_flag_checks_against_the_truncated_reference(tmp_path):
    spec = f"{EXAMPLES / 'truncated_two_steps.py'}:rnn_backward"
    assert bptt("gradcheck", "--backward", spec, "--truncate", "2", cwd=tmp_path).returncode == 0


def test_a_module_spec_is_imported_from_the_current_directory(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "mymod.py").write_text((EXAMPLES / "sign_flipped.py").read_text())
    run = bptt("gradcheck", "--backward", "mypkg.mymod:rnn_backward", cwd=tmp_path)
    assert run.returncode == 1 and "The sign is flipped" in run.stdout


@pytest.mark.parametrize(("spec", "source", "message"), [
    ("missing.py:fn", None, "missing.py does not exist"),
    ("mine.py:nope", "def rnn_backward(params, inputs, targets, h0=None, truncate=None):\n    pass\n",
     "mine.py has no function 'nope' (it defines: rnn_backward)"),
    ("mine.py:rnn_backward", "rnn_backward = [1, 2]\n", "mine.py:rnn_backward is a list, not a function"),
    ("mine.py:rnn_backward",
     "def rnn_backward(params, inputs, targets, h0=None, truncate=None):\n    return 42\n",
     "returned a int; expected a dict of gradients, (loss, grads) or (loss, grads, h_last)"),
    ("just_a_name", None, "--backward expects MODULE:FUNCTION or FILE.py:FUNCTION"),
    ("mine.py:f", "def f(:\n", "importing mine.py failed: SyntaxError: invalid syntax (mine.py, line 1)\n"),
    ("mine.py:f", "import sys\nsys.exit(3)\n", "importing mine.py failed: SystemExit: 3 (mine.py, line 2)"),
    ("mine.py:f", "import sys\ndef f(params, inputs, targets, h0=None, truncate=None):\n    sys.exit(4)\n",
     "f raised SystemExit: 4 (mine.py, line 3)"),
])
def test_a_bad_backward_spec_is_one_line_and_exit_2(tmp_path, spec, source, message):
    if source is not None:
        (tmp_path / "mine.py").write_text(source)
    run = bptt("gradcheck", "--backward", spec, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("bptt: error: ")
    assert message in run.stderr


def test_flags_that_do_not_apply_are_refused(tmp_path):
    spec = f"{EXAMPLES / 'correct.py'}:rnn_backward"
    for args, message in [
        (["--backward", spec, "--seq-len", "3"], "at least 4"),
        (["--truncate", "2"], "--truncate applies only with --backward"),
    ]:
        run = bptt_model_check("gradcheck", *args, cwd=tmp_path)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)


def test_a_cell_or_layer_count_given_twice_is_checked_once(tmp_path):
    run = bptt_model_check("gradcheck", "--json", "--cell", "rnn", "--cell", "rnn", "--layers",
                           "1", "--layers", "1", "--hidden", "3", "--seq-len", "3", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)["rows"]
    assert [r["param"] for r in rows] == ["Wxh", "Whh", "bh", "Why", "by", "h0"]


@pytest.mark.parametrize("as_json", [False, True])
def test_a_parameter_that_fails_makes_the_model_check_exit_1(monkeypatch, capsys, as_json):
    """The exit code tells a script what the table says: one FAIL row, exit 1 (table or
    --json).  The failing row is a real row whose reference comparison is replaced by one
    off by a factor of 2."""
    import dataclasses

    import numpy as np

    from bptt import cli, gradcheck

    real = gradcheck.check_model

    def one_row_fails(*args, **kwargs):
        rows = real(*args, **kwargs)
        wrong = gradcheck.compare_arrays(rows[0].name, np.full(3, 2.0), np.ones(3))
        return [dataclasses.replace(rows[0], vs_reference=wrong), *rows[1:]]

    monkeypatch.setattr(gradcheck, "check_model", one_row_fails)
    argv = ["gradcheck", "--cell", "rnn", "--layers", "1", "--no-torch"]
    assert cli.main(argv + (["--json"] if as_json else [])) == 1
    out = capsys.readouterr().out
    if as_json:
        report = json.loads(out)
        assert report["passed"] is False
        assert [row["passed"] for row in report["rows"]].count(False) == 1
    else:
        assert out.count("| FAIL |") == 1 and out.rstrip().endswith("passed, 1 failed")
    monkeypatch.setattr(gradcheck, "check_model", real)
    assert cli.main(argv + (["--json"] if as_json else [])) == 0


@pytest.mark.parametrize("loss", ["float('inf')", "float('nan')"])
def test_json_report_of_a_loss_that_is_not_finite_is_strict_json(tmp_path, monkeypatch, capsys,
                                                                  loss):
    """A learner's −log of an underflowed p is an infinite loss: --json wrote it as Infinity
    (NaN for a NaN loss), which JSON does not have; it is null, as a missing value."""
    from bptt import cli

    _mine(tmp_path, f"return {loss}, grads, h_last")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["gradcheck", "--json", "--backward", "mine.py:rnn_backward"]) == 1

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    report = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert report["loss"]["yours"] is None and report["loss"]["passed"] is False
    assert all(p["passed"] for p in report["params"])


@pytest.mark.parametrize(("scale", "verdict", "code"), [("1", "PASS: all 5 gradients agree", 0),
                                                         ("1.001", "FAIL: ", 1)])
def test_a_float32_backward_is_reported_at_float32s_tolerance(tmp_path, monkeypatch, capsys,
                                                              scale, verdict, code):
    """The text and --json say the tolerance the gradients were held to: float32's 1e-5 for
    a backward that computes in float32, not float64's 1e-9 (in-process: cli.main)."""
    from bptt import cli

    (tmp_path / "mine.py").write_text(
        "import numpy as np\n\nimport bptt\n\n\n"
        "def rnn_backward(params, inputs, targets, h0=None, truncate=None):\n"
        "    p32 = {k: v.astype(np.float32) for k, v in params.items()}\n"
        "    loss, grads, h_last = bptt.loss_and_grads(p32, inputs, targets, "
        "h0=h0.astype(np.float32))\n"
        f"    return loss, {{k: v * np.float32({scale}) for k, v in grads.items()}}, h_last\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["gradcheck", "--backward", "mine.py:rnn_backward"]) == code
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(verdict) and "(tolerance 1e-05, relative to each" in last, last
    assert cli.main(["gradcheck", "--json", "--backward", "mine.py:rnn_backward"]) == code
    assert json.loads(capsys.readouterr().out)["tolerance"] == 1e-5


@pytest.mark.parametrize(("returned", "message"), [
    ("10**400, grads, h_last", "returned a loss too large for a float64 number"),
    ("loss, grads, [[10**400] * 4] * 2", "returned an h_last that is not a numeric array"),
    ("loss, grads, h_last + 0j", "returned an h_last of dtype complex128; the last state h_T "
                                 "is an array of real numbers"),
])
def test_a_loss_or_h_last_that_is_no_float64_is_one_line_and_exit_2(tmp_path, run_bptt_here,
                                                                     returned, message):
    """A Python int past float64's range as the loss (or in h_last) was a traceback
    (OverflowError); a complex h_last was cast to float64 with a ComplexWarning, its
    imaginary part dropped, and passed."""
    _mine(tmp_path, f"return {returned}")
    run = run_bptt_here("gradcheck", "--backward", "mine.py:rnn_backward", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("bptt: error: ")
    assert message in run.stderr


@pytest.mark.parametrize("value", ["np.nan", "np.inf"])
def test_a_gradient_with_nan_or_inf_is_reported_without_numpy_warnings(tmp_path, run_bptt_here,
                                                                       value):
    """Probing prefixes subtracted the learner's gradients of T' − 1 steps from those of T'
    steps: inf − inf printed numpy's "RuntimeWarning: invalid value encountered in
    subtract" (and the line of bptt's source) between the report's lines on stderr."""
    _mine(tmp_path, f"grads['Whh'][0, 0] = {value}", "return loss, grads, h_last")
    run = run_bptt_here("gradcheck", "--backward", "mine.py:rnn_backward", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert "W^hh: Your ∂J/∂W^hh contains NaN or inf." in run.stdout
    assert run.stderr == ""


def test_a_gradient_near_float64s_largest_fails_without_numpy_warnings(tmp_path, run_bptt_here):
    """A backward of 1e308s printed six lines of "RuntimeWarning: overflow encountered" (from
    the relative errors and the constant-factor fit) around the FAIL report."""
    (tmp_path / "huge.py").write_text(
        "import numpy as np\n\n\n"
        "def f(params, inputs, targets, h0=None, truncate=None):\n"
        "    return {k: np.full_like(v, 1e308) for k, v in params.items()}\n")
    run = run_bptt_here("gradcheck", "--backward", "huge.py:f", cwd=tmp_path)
    assert run.returncode == 1 and run.stderr == "", run.stderr
    rows = [line for line in run.stdout.splitlines() if line.endswith("| FAIL |")]
    assert len(rows) == 5 and all("| 1.0e+00 |" in row for row in rows), run.stdout
    assert "FAIL: 5 of 5 gradients differ" in run.stdout and "× the reference" not in run.stdout


# --- found by a mutation audit: each test kills a mutant that survived the tests above ------


def _gradcheck(capsys, *args: str) -> tuple[int, str]:
    """``bptt gradcheck ARGS`` in this process: (exit code, standard output)."""
    from bptt import cli

    code = cli.main(["gradcheck", *args])
    return code, capsys.readouterr().out


def _table_row(out: str, name: str) -> list[str]:
    """The cells of the report table's row for ``name`` (the gradient or "loss J")."""
    row = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_layers_do_not_apply_to_your_backward(tmp_path):
    spec = f"{EXAMPLES / 'correct.py'}:rnn_backward"
    run = bptt_model_check("gradcheck", "--backward", spec, "--layers", "2", cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    assert "--backward checks a one-layer backward: --layers does not apply" in run.stderr


def test_the_report_table_sets_yours_beside_the_reference(capsys):
    """mean_loss.py divides the loss and every gradient by T·B = 10: in each row "yours" is
    a tenth of "reference", in the text and in --json."""
    spec = f"{EXAMPLES / 'mean_loss.py'}:rnn_backward"
    code, out = _gradcheck(capsys, "--backward", spec)
    assert code == 1
    assert _table_row(out, "loss J") == ["loss J", "9.0e-01", "", "2.21005", "22.1005", "FAIL"]
    for name in ("Wxh", "Whh", "bh", "Why", "by", "h0"):
        _, _, _, yours, reference, verdict = _table_row(out, name)
        assert float(yours) == pytest.approx(float(reference) / 10, rel=1e-5) and \
            verdict == "FAIL", name
    assert "\nDiagnosis:\n" in out and "What the checks say:" not in out

    code, out = _gradcheck(capsys, "--json", "--backward", spec)
    report = json.loads(out)
    assert code == 1 and report["diagnosis"]["name"] == "mean"
    assert report["loss"]["yours"] == pytest.approx(report["loss"]["reference"] / 10, rel=1e-12)
    assert report["loss"]["rel_error"] == pytest.approx(0.9, rel=1e-12)  # the table's 9.0e-01
    for row in report["params"]:
        assert row["yours"] == pytest.approx(row["reference"] / 10, rel=1e-12), row["param"]


def test_the_problem_checked_is_described_with_its_seed(capsys):
    spec = f"{EXAMPLES / 'correct.py'}:rnn_backward"
    code, out = _gradcheck(capsys, "--json", "--seed", "3", "--backward", spec)
    assert code == 0
    assert json.loads(out)["problem"] == (
        "vanilla RNN, T = 5, B = 2, H = 4, D = 5, V = 4, float64, random non-zero biases and "
        "h0 (seed 3), full BPTT")


def test_a_missing_gradient_and_a_wrong_h_last_have_their_own_rows(tmp_path, monkeypatch,
                                                                     capsys):
    (tmp_path / "mine.py").write_text(
        "import bptt\n\n\n"
        "def rnn_backward(params, inputs, targets, h0=None, truncate=None):\n"
        "    loss, grads, h_last = bptt.loss_and_grads(params, inputs, targets)  # h0 left out\n"
        "    del grads['bh']\n"
        "    return loss, grads, h_last\n")
    monkeypatch.chdir(tmp_path)
    code, out = _gradcheck(capsys, "--backward", "mine.py:rnn_backward")
    assert code == 1
    assert _table_row(out, "bh") == ["bh", "missing", "", "", "", "FAIL"]
    assert _table_row(out, "h_last") == ["h_last", "differs", "", "", "", "FAIL"]
    assert "\nWhat the checks say:\n" in out and "Diagnosis:" not in out


def test_json_localisation_counts_steps_from_1_with_each_steps_reach(tmp_path, monkeypatch,
                                                                      capsys):
    """A walk back cut to 2 steps AND a doubled dW^hy: no named bug fits, so prefixes are
    probed; J_1 is wrong already (the head), and J_3 … J_5 hold 2 steps of the recurrence."""
    (tmp_path / "mine.py").write_text(
        "import bptt\n\n\n"
        "def rnn_backward(params, inputs, targets, h0=None, truncate=None):\n"
        "    loss, grads, h_last = bptt.loss_and_grads(params, inputs, targets, h0=h0, "
        "truncate=2)\n"
        "    grads['Why'] = 2 * grads['Why']\n"
        "    return loss, grads, h_last\n")
    monkeypatch.chdir(tmp_path)
    code, out = _gradcheck(capsys, "--json", "--backward", "mine.py:rnn_backward")
    loc = json.loads(out)["localisation"]
    assert code == 1 and loc["first_wrong_t"] == 1
    assert [s["t"] for s in loc["steps"]] == [1, 2, 3, 4, 5]
    assert [s["reach"] for s in loc["steps"]] == [None, None, 2, 2, 2]
    assert [s["wrong"] for s in loc["steps"]] == [["Why"], ["Why"]] + [
        ["Wxh", "Whh", "bh", "Why"]] * 3
    # each step's worst relative error, as the library measured it, and what t counts from
    from bptt import diagnose

    steps = diagnose.check_backward(diagnose.load_backward("mine.py:rnn_backward"),
                                    diagnose.make_problem()).localisation.steps
    assert [s["max_rel"] for s in loc["steps"]] == [s.max_rel for s in steps]
    assert all(0 < s.max_rel < 1 for s in steps) and loc["note"] == "t is 1-based"


# ---- mutation audit (6): each row of --backward's table and --json, the note rows too ----

# a missing, a transposed, a doubled and a NaN gradient, and a wrong h_last, at once
FOUR_WRONG = ('del grads["bh"]', 'grads["Wxh"] = grads["Wxh"].T', 'grads["Why"] = 2 * grads["Why"]',
              'grads["by"] = grads["by"] * np.nan', "return loss, grads, h_last + 1")


def _four_wrong(tmp_path, monkeypatch):
    """mine.py (FOUR_WRONG) in tmp_path, the current directory; the library's report of it."""
    from bptt import diagnose

    _mine(tmp_path, *FOUR_WRONG)
    monkeypatch.chdir(tmp_path)
    return diagnose.check_backward(diagnose.load_backward("mine.py:rnn_backward"),
                                   diagnose.make_problem(), name="mine.py:rnn_backward")


def test_each_row_of_the_table_is_a_gradient_or_a_note_of_why_it_was_not_compared(
        tmp_path, monkeypatch, capsys):
    """A gradient that could not be compared is one row with the reason in words; every
    row after it is printed too, and h_last's row comes last."""
    report = _four_wrong(tmp_path, monkeypatch)
    code, out = _gradcheck(capsys, "--backward", "mine.py:rnn_backward")
    assert code == 1
    assert out.splitlines()[0] == "Checking mine.py:rnn_backward against the reference double sum"
    compared = {p.name: p.comparison for p in report.params if p.comparison is not None}
    assert list(compared) == ["Whh", "Why", "h0"]

    def row(name, verdict):
        c = compared[name]
        return [name, f"{c.max_rel:.1e}", str(c.worst), f"{c.a_worst:.6g}", f"{c.b_worst:.6g}",
                verdict]

    table = [[cell.strip() for cell in line.strip("|").split("|")]
             for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert table[2:] == [
        ["Wxh", "shape (5, 4), expected (4, 5)", "", "", "", "FAIL"],
        row("Whh", "PASS"),
        ["bh", "missing", "", "", "", "FAIL"],
        row("Why", "FAIL"),
        ["by", "NaN or inf", "", "", "", "FAIL"],
        row("h0", "PASS"),
        ["h_last", "differs", "", "", "", "FAIL"],
    ]
    assert table[5][1] == "3.3e-01" and table[1][0] == "loss J"


def test_the_worst_entry_is_given_as_row_then_column(tmp_path, monkeypatch, capsys):
    """One entry of ∂J/∂W^hy (V × H = 5 × 4) off, at row 1 and column 3: the table and --json
    name that entry (1, 3), not (3, 1).  (The worst entry of a gradient that passes is
    round-off, which another BLAS or numpy puts elsewhere: not a place to pin it.)"""
    _mine(tmp_path, "grads['Why'][1, 3] += 0.5", "return loss, grads, h_last")
    monkeypatch.chdir(tmp_path)
    code, out = _gradcheck(capsys, "--backward", "mine.py:rnn_backward")
    assert code == 1 and _table_row(out, "Why")[2] == "(1, 3)"
    code, out = _gradcheck(capsys, "--json", "--backward", "mine.py:rnn_backward")
    [why] = [row for row in json.loads(out)["params"] if row["param"] == "Why"]
    assert code == 1 and why["worst"] == [1, 3] and not why["passed"]


def test_json_gives_each_gradients_note_numbers_and_explanation_and_every_message(
        tmp_path, monkeypatch, capsys):
    report = _four_wrong(tmp_path, monkeypatch)
    code, out = _gradcheck(capsys, "--json", "--backward", "mine.py:rnn_backward")
    doc = json.loads(out)
    assert code == 1 and doc["backward"] == "mine.py:rnn_backward"

    def uncompared(param, note, explanation):
        return {"param": param, "passed": False, "note": note, "max_rel": None, "worst": None,
                "yours": None, "reference": None, "explanation": explanation}

    def compared(param, explanation=""):
        c = next(p.comparison for p in report.params if p.name == param)
        return {"param": param, "passed": c.max_rel <= 1e-9, "note": "",
                "max_rel": c.max_rel, "worst": list(c.worst), "yours": c.a_worst,
                "reference": c.b_worst, "explanation": explanation}

    assert doc["params"] == [
        uncompared("Wxh", "shape (5, 4), expected (4, 5)", "Your ∂J/∂W^xh has the right "
                   "values, transposed: return it in the shape of W^xh, (4, 5)."),
        compared("Whh"),
        uncompared("bh", "missing", "Your grads have no 'bh': return ∂J/∂b_h under that key."),
        compared("Why", "Your gradient is 2 × the reference: a constant factor slipped in here."),
        uncompared("by", "NaN or inf", "Your ∂J/∂b_y contains NaN or inf."),
        compared("h0"),
    ]
    assert doc["params"][3]["max_rel"] == pytest.approx(1 / 3, rel=1e-12)
    # the sentences of the text's "What the checks say", h_last's first (not only findings)
    assert doc["messages"] == report.messages() and len(doc["messages"]) == 6
    assert doc["messages"][0].startswith("Your h_last differs from the final state")
    # a mis-shaped W^xh cannot be probed on prefixes: every step's error is unknown (null)
    assert [s["max_rel"] for s in doc["localisation"]["steps"]] == [None] * 5


def test_json_notes_a_dh0_in_columns_when_b_equals_h(tmp_path, monkeypatch, capsys):
    """With B = H the shape cannot tell ∂J/∂h0 in (H, B) columns from (B, H) rows: it is
    compared, fails, and is noted "transposed" (with what to do)."""
    _mine(tmp_path, "grads['h0'] = grads['h0'].T", "return loss, grads, h_last")
    monkeypatch.chdir(tmp_path)
    code, out = _gradcheck(capsys, "--json", "--batch", "4", "--backward", "mine.py:rnn_backward")
    h0 = json.loads(out)["params"][-1]
    assert code == 1 and (h0["param"], h0["passed"], h0["note"], h0["explanation"]) == (
        "h0", False, "transposed", "Your ∂J/∂h0 has the right values, transposed: return it "
                                   "in the shape of h0, (4, 4).")
    assert h0["max_rel"] > 1e-9 and h0["yours"] != h0["reference"]


# --- --cell lstm: YOUR LSTM's backward ---------------------------------------------------


def test_your_correct_lstm_backward_passes(tmp_path):
    spec = f"{EXAMPLES / 'lstm_correct.py'}:lstm_backward"
    run = bptt("gradcheck", "--backward", spec, "--cell", "lstm", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "(LSTM (gates i, f, g, o), T = 5, B = 2, H = 4" in run.stdout
    assert "| c0 |" in run.stdout
    assert "PASS: all 8 gradients agree with the reference" in run.stdout


@pytest.mark.parametrize(("example", "words"), [
    ("lstm_c_path_cut", "The error through the cell state is not carried back"),
    ("lstm_gate_mixup", "Gate mix-up: the derivative of gate o (output gate) is taken at gate"),
    ("lstm_missing_sigmoid_derivative", "The derivative of gate f's activation (forget gate) "
                                        "is missing"),
    ("lstm_mean_over_time", "You differentiate the MEAN over time"),
])
def test_your_broken_lstm_backward_fails_with_its_diagnosis(tmp_path, example, words):
    spec = f"{EXAMPLES / example}.py:lstm_backward"
    run = bptt("gradcheck", "--backward", spec, "--cell", "lstm", "--json", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert words in report["diagnosis"]["message"]
    assert set(report["gates"]) == {"Wxh", "Whh", "bxh", "bhh"}
    assert any(m.startswith("By gate (the blocks of H rows i, f, g, o") for m in report["messages"])


def test_the_gate_mixup_report_says_the_gate_in_words(capsys):
    code, out = _gradcheck(capsys, "--backward", f"{EXAMPLES / 'lstm_gate_mixup'}.py:lstm_backward",
                           "--cell", "lstm")
    assert code == 1
    assert "Diagnosis:\n  - Gate mix-up: the derivative of gate o (output gate)" in out
    assert _table_row(out, "bxh")[-1] == "FAIL" and _table_row(out, "Why")[-1] == "PASS"


def test_more_than_one_cell_with_your_backward_is_a_usage_error(tmp_path):
    spec = f"{EXAMPLES / 'lstm_correct.py'}:lstm_backward"
    run = bptt_model_check("gradcheck", "--backward", spec, "--cell", "lstm", "--cell", "rnn",
                           cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        "bptt: error: --backward checks one backward of one cell: give one --cell, not lstm, rnn"]


def test_your_gru_backward_is_checked_with_cell_gru(tmp_path):
    spec = f"{EXAMPLES / 'gru_correct.py'}:gru_backward"
    run = bptt("gradcheck", "--backward", spec, "--cell", "gru", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "(GRU (gates r, z, n), T = 5" in run.stdout
    assert "PASS: all 7 gradients agree with the reference" in run.stdout
    spec = f"{EXAMPLES / 'gru_direct_path_cut.py'}:gru_backward"
    run = bptt("gradcheck", "--backward", spec, "--cell", "gru", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert "The error through the direct path z_t ⊙ h_{t−1} is not carried back" in run.stdout


# --- mutation audit: the model check's report, as the library computes it ------------------


def test_the_json_rows_give_each_witness_error_and_the_worst_entry_of_the_library(capsys):
    from bptt import gradcheck

    code, out = _gradcheck(capsys, "--json", "--cell", "gru", "--layers", "1", "--no-torch",
                           "--hidden", "2", "--seq-len", "3", "--batch", "1", "--seed", "2")
    assert code == 0
    rows = gradcheck.check_model("gru", 2, 3, 1, 1, 2, use_torch=False)
    assert [(r["param"], r["rel_vs_reference"], r["rel_vs_finite_diff"], r["rel_vs_torch"],
             r["worst"], r["worst_values"]) for r in json.loads(out)["rows"]] == [
        (row.name, row.vs_reference.max_rel, row.vs_numeric.max_rel, None,
         list(row.worst.worst), [row.worst.a_worst, row.worst.b_worst]) for row in rows]


def test_the_table_states_the_torch_tolerance_and_gives_each_rows_torch_error(capsys, torch):
    from bptt import gradcheck

    code, out = _gradcheck(capsys, "--cell", "rnn", "--layers", "1", "--hidden", "2",
                           "--seq-len", "2", "--batch", "1")
    assert code == 0
    assert out.startswith("Relative errors, max |a - b| / max(|a| + |b|) over each tensor; "
                          "tolerances: reference 1e-12, finite differences 1e-07, torch 1e-10\n")
    rows = gradcheck.check_model("rnn", 2, 2, 1, 1, 0, use_torch=True)
    table = [[cell.strip() for cell in line.strip("|").split("|")]
             for line in out.splitlines() if line.startswith("| rnn | 1 |")]
    assert [cells[2:6] for cells in table] == [
        [row.name, f"{row.vs_reference.max_rel:.1e}", f"{row.vs_numeric.max_rel:.1e}",
         f"{row.vs_torch.max_rel:.1e}"] for row in rows]
    assert out.endswith(f"\n{len(rows)} passed, 0 failed\n")


def test_the_problem_line_gives_its_sizes_and_the_last_counts_passes_and_failures(monkeypatch, capsys):
    import dataclasses

    import numpy as np

    from bptt import gradcheck

    real = gradcheck.check_model

    def two_rows_fail(*args, **kwargs):
        rows = real(*args, **kwargs)
        wrong = gradcheck.compare_arrays("W", np.full(3, 2.0), np.ones(3))
        return [dataclasses.replace(row, vs_numeric=wrong) for row in rows[:2]] + rows[2:]

    monkeypatch.setattr(gradcheck, "check_model", two_rows_fail)
    code, out = _gradcheck(capsys, "--cell", "rnn", "--layers", "1", "--no-torch", "--hidden",
                           "2", "--seq-len", "2", "--batch", "1")
    assert code == 1 and out.endswith("\n4 passed, 2 failed\n")
    assert out.splitlines()[1] == ("Problem: float64, H = 2, T = 2, B = 1, random non-zero "
                                   "biases and initial state, seed 0")
