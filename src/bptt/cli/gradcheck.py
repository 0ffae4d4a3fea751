"""``bptt gradcheck``: the built-in cells against every witness, or YOUR backward against ours.

    bptt gradcheck                               every cell, 1 and 2 layers, a row per parameter
    bptt gradcheck --cell lstm --layers 2 --json
    bptt gradcheck --backward my_rnn.py:rnn_backward        check (and diagnose) your own BPTT
    bptt gradcheck --backward mypkg.rnn:backward --truncate 3
    bptt gradcheck --backward my_lstm.py:lstm_backward --cell lstm   your LSTM's (or GRU's)

Exit code 0 when everything passes, 1 on any FAIL, 2 for a usage error (a bad flag,
a --backward spec that cannot be loaded, a function that returns the wrong thing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import textwrap

from bptt import diagnose, gradcheck, train
from bptt.cells import CELLS
from bptt.cli import args as types
from bptt.errors import BpttError


def add_parser(sub, name: str) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="check gradients: efficient BPTT vs the double sum vs finite differences vs torch; "
             "or check your own backward (--backward)",
        description=(
            "Without --backward: checks the efficient BPTT of each built-in cell on a small "
            "random float64 problem against the literal double sum (tolerance "
            f"{gradcheck.REFERENCE_TOL:g}), fourth-order central finite differences (tolerance "
            f"{gradcheck.FD_TOL:g}) and, when torch is installed, PyTorch autograd (tolerance "
            f"{gradcheck.TORCH_TOL:g}); errors are relative to each tensor's scale. "
            "With --backward MODULE:FUNCTION or FILE.py:FUNCTION: imports your one-layer "
            f"backward, {diagnose.SIGNATURE}, of a vanilla RNN (--cell rnn, the default) — "
            "params Wxh (H, D), Whh (H, H), bh (H,), Why (V, H), by (V,) in float64; inputs "
            "(T, B) integer token ids standing for one-hot x_t; targets (T, B) labels; h0 "
            "(B, H) — or of an LSTM (--cell lstm) — params Wxh (4H, D), Whh (4H, H), bxh "
            "(4H,), bhh (4H,), Why (V, H), by (V,), gate rows in PyTorch's order i, f, g, o; "
            "h0 the pair (h0, c0), each (B, H) — or of a GRU (--cell gru: the LSTM's params "
            "with 3H rows, gates r, z, n; h0 (B, H)) — returning grads, (loss, grads) or (loss, "
            "grads, state) with grads keyed like params (optionally also h0: dJ/dh0, and for "
            "the LSTM c0: dJ/dc0), with the loss the TOTAL over time and batch. It compares "
            "it with the reference parameter by parameter (LSTM and GRU also gate by gate) "
            "and, if it is wrong, says which known bug it matches. Exit code 1 on any FAIL, "
            "2 on a usage error."
        ),
    )
    p.add_argument("--cell", choices=sorted(CELLS), action="append",
                   help="cell to check (repeatable; default: all); with --backward, the cell "
                        "of your backward: rnn (default), lstm or gru, one only")
    p.add_argument("--hidden", type=types.positive_int, default=4, help="hidden size H (4)")
    p.add_argument("--seq-len", type=types.positive_int, default=5,
                   help="time steps T (5; at least 4 with --backward)")
    p.add_argument("--batch", type=types.positive_int, default=2, help="batch size B (2)")
    p.add_argument("--layers", type=types.positive_int, action="append",
                   help="stacked layers (repeatable; default: 1 and 2)")
    p.add_argument("--seed", type=types.seed, default=0, help="random seed (0)")
    p.add_argument("--json", action="store_true", help="print one JSON document, no table")
    p.add_argument("--no-torch", action="store_true",
                   help="skip the PyTorch witness even when torch is installed")
    p.add_argument("--backward", metavar="SPEC",
                   help="your backward to check: package.module:function or path/file.py:function")
    p.add_argument("--truncate", type=types.positive_int, metavar="K",
                   help="with --backward: check truncated BPTT (terms with t - k < K); "
                        "your function is called with truncate=K")
    p.set_defaults(run=run, prints=("the report", "redirect it to a file, e.g. > gradcheck.txt"))


def run(args: argparse.Namespace) -> int:
    """Run the checks, print the table (or JSON), return 1 if anything failed."""
    # sizes bptt train refuses: --layers 100000 ran for hours, --seq-len 10^9 took all memory
    train.check_sizes(args.hidden, max(args.layers or [1]), args.seq_len, args.batch)
    if args.backward is not None:
        return _run_backward(args)
    if args.truncate is not None:
        raise BpttError("--truncate applies only with --backward")
    rows: list[gradcheck.Row] = []
    use_torch = False if args.no_torch else None
    # a value given twice is checked once (dict.fromkeys keeps the order given)
    for cell in dict.fromkeys(args.cell or sorted(CELLS)):
        for layers in dict.fromkeys(args.layers or [1, 2]):
            rows += gradcheck.check_model(
                cell, args.hidden, args.seq_len, args.batch, layers, args.seed, use_torch
            )
    failed = sum(not r.passed for r in rows)
    torch_ran = any(r.vs_torch is not None for r in rows)
    if args.json:
        print(_json({
            "tolerances": _tolerances(torch_ran),
            "rows": [_row_json(row) for row in rows],
            "passed": failed == 0,
        }))
        return 1 if failed else 0
    print(f"Relative errors, max |a - b| / max(|a| + |b|) over each tensor; tolerances: "
          f"reference {gradcheck.REFERENCE_TOL:g}, finite differences {gradcheck.FD_TOL:g}"
          + (f", torch {gradcheck.TORCH_TOL:g}" if torch_ran else
             " (torch witness not run: " + ("--no-torch)" if args.no_torch else
                                            "torch not installed)")))
    print(f"Problem: float64, H = {args.hidden}, T = {args.seq_len}, B = {args.batch}, "
          f"random non-zero biases and initial state, seed {args.seed}\n")
    _print_table(rows, torch_ran)
    print(f"\n{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _json(report: dict) -> str:
    """The report as strict JSON: a number that is not finite (a learner's loss of inf or
    NaN, an infinite error) is null, as JSON has no NaN or Infinity (json.dumps would write
    them, and strict readers, jq or JavaScript's JSON.parse, refuse the document)."""

    def strict(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: strict(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strict(v) for v in value]
        return value

    return json.dumps(strict(report), indent=1, allow_nan=False)


def _tolerances(torch_ran: bool) -> dict:
    out = {"reference": gradcheck.REFERENCE_TOL, "finite_differences": gradcheck.FD_TOL}
    if torch_ran:
        out["torch"] = gradcheck.TORCH_TOL
    return out


def _row_json(row: gradcheck.Row) -> dict:
    worst = row.worst
    return {
        "cell": row.cell, "layers": row.layers, "param": row.name,
        "rel_vs_reference": row.vs_reference.max_rel,
        "rel_vs_finite_diff": row.vs_numeric.max_rel,
        "rel_vs_torch": None if row.vs_torch is None else row.vs_torch.max_rel,
        "worst": list(worst.worst), "worst_values": [worst.a_worst, worst.b_worst],
        "passed": row.passed,
    }


def _print_table(rows: list[gradcheck.Row], torch_ran: bool) -> None:
    torch_head = " rel vs torch |" if torch_ran else ""
    print(f"| cell | L | param | rel vs reference | rel vs finite diff |{torch_head} "
          "worst entry (efficient vs witness) | result |")
    print("|---|---|---|---|---|" + ("---|" if torch_ran else "") + "---|---|")
    for r in rows:
        torch_cell = ""
        if torch_ran:
            torch_cell = " — |" if r.vs_torch is None else f" {r.vs_torch.max_rel:.1e} |"
        w = r.worst
        print(f"| {r.cell} | {r.layers} | {r.name} | {r.vs_reference.max_rel:.1e} | "
              f"{r.vs_numeric.max_rel:.1e} |{torch_cell} {w.worst}: {w.a_worst:.6g} vs "
              f"{w.b_worst:.6g} | {'PASS' if r.passed else 'FAIL'} |")


# ----------------------------------------------------------------------------
# --backward: a learner's own BPTT
# ----------------------------------------------------------------------------


def _run_backward(args: argparse.Namespace) -> int:
    cells = list(dict.fromkeys(args.cell or ["rnn"]))
    if len(cells) > 1:
        raise BpttError(f"--backward checks one backward of one cell: give one --cell, not "
                        f"{', '.join(cells)}")
    cell = cells[0]
    if args.layers and set(args.layers) != {1}:
        raise BpttError("--backward checks a one-layer backward: --layers does not apply")
    problem = diagnose.make_problem(args.hidden, args.seq_len, args.batch, args.seed,
                                    args.truncate, cell)
    # what the learner's code prints (debugging lines) goes to stderr: stdout is the report
    # alone, so --json stays one JSON document
    with contextlib.redirect_stdout(sys.stderr):
        fn = diagnose.load_backward(args.backward)
        report = diagnose.check_backward(fn, problem, name=args.backward)
    if args.json:
        print(_json(_report_json(report)))
    else:
        _print_report(report)
    return 0 if report.passed else 1


def _report_json(report: diagnose.BackwardReport) -> dict:
    loc = report.localisation
    return {
        "backward": report.name,
        "problem": report.problem.describe(),
        "tolerance": report.tolerance,
        "passed": report.passed,
        "loss": None if report.loss is None else {
            "yours": report.loss.yours, "reference": report.loss.reference,
            "rel_error": report.loss.rel_error, "passed": report.loss.passed},
        "params": [
            {"param": p.name, "passed": p.passed, "note": p.note,
             "max_rel": None if p.comparison is None else p.comparison.max_rel,
             "worst": None if p.comparison is None else list(p.comparison.worst),
             "yours": None if p.comparison is None else p.comparison.a_worst,
             "reference": None if p.comparison is None else p.comparison.b_worst,
             "explanation": p.explanation}
            for p in report.params
        ],
        "diagnosis": None if report.diagnosis is None else {
            "name": report.diagnosis.name, "message": report.diagnosis.message},
        "messages": report.messages(),
        "gates": report.gates,
        "localisation": None if loc is None else {
            "note": "t is 1-based",
            "first_wrong_t": None if loc.first_wrong is None else loc.first_wrong + 1,
            "steps": [{"t": s.t + 1, "max_rel": s.max_rel if s.max_rel < float("inf") else None,
                       "wrong": list(s.wrong), "reach": s.reach} for s in loc.steps],
        },
    }


def _print_report(report: diagnose.BackwardReport) -> None:
    print(f"Checking {report.name} against the reference double sum")
    print(f"({report.problem.describe()})\n")
    print("| gradient | max rel error | worst entry | yours | reference | result |")
    print("|---|---|---|---|---|---|")
    if report.loss is not None:
        loss = report.loss
        print(f"| loss J | {loss.rel_error:.1e} | | {loss.yours:.6g} | {loss.reference:.6g} | "
              f"{'PASS' if loss.passed else 'FAIL'} |")
    for p in report.params:
        verdict = "PASS" if p.passed else "FAIL"
        if p.comparison is None:
            print(f"| {p.name} | {p.note} | | | | {verdict} |")
            continue
        c = p.comparison
        print(f"| {p.name} | {c.max_rel:.1e} | {c.worst} | {c.a_worst:.6g} | {c.b_worst:.6g} "
              f"| {verdict} |")
    if report.h_last_ok is False:
        print("| h_last | differs | | | | FAIL |")
    messages = report.messages()
    if messages:
        print("\nDiagnosis:" if report.diagnosis is not None else "\nWhat the checks say:")
        for message in messages:
            print(textwrap.fill(message, width=96, initial_indent="  - ",
                                subsequent_indent="    "))
    if report.passed:
        print(f"\nPASS: all {len(report.params)} gradients agree with the reference "
              f"(tolerance {report.tolerance:g}, relative to each tensor's scale).")
    else:
        print(f"\nFAIL: {'; '.join(report.failures())} (tolerance {report.tolerance:g}, "
              "relative to each tensor's scale).")
