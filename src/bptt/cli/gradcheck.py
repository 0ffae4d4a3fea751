"""``bptt gradcheck``: check the built-in cells' BPTT against its witnesses, a row per parameter."""

from __future__ import annotations

import argparse
import json

from bptt import gradcheck
from bptt.cells import CELLS
from bptt.cli import args as types


def add_parser(sub, name: str) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="check gradients: efficient BPTT vs the literal double sum vs finite differences",
        description=(
            "Checks the efficient BPTT of each built-in cell on a small random float64 problem "
            "against the reference double sum (tolerance "
            f"{gradcheck.REFERENCE_TOL:g}) and central finite differences "
            f"(tolerance {gradcheck.FD_TOL:g}). Exit code 1 on any FAIL."
        ),
    )
    p.add_argument("--cell", choices=sorted(CELLS), action="append",
                   help="cell to check (repeatable; default: all)")
    p.add_argument("--hidden", type=types.positive_int, default=4, help="hidden size H (4)")
    p.add_argument("--seq-len", type=types.positive_int, default=5, help="time steps T (5)")
    p.add_argument("--batch", type=types.positive_int, default=2, help="batch size B (2)")
    p.add_argument("--layers", type=types.positive_int, action="append",
                   help="stacked layers (repeatable; default: 1 and 2)")
    p.add_argument("--seed", type=types.seed, default=0, help="random seed (0)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the checks, print the table, return 1 if anything failed."""
    rows: list[gradcheck.Row] = []
    for cell in args.cell or sorted(CELLS):
        for layers in args.layers or [1, 2]:
            rows += gradcheck.check_model(
                cell, args.hidden, args.seq_len, args.batch, layers, args.seed
            )
    if args.json:
        for row in rows:
            print(json.dumps(_row_json(row)))
    else:
        _print_table(rows)
    failed = sum(not r.passed for r in rows)
    if not args.json:
        print(f"\n{len(rows) - failed} passed, {failed} failed "
              f"(tolerances: reference {gradcheck.REFERENCE_TOL:g}, "
              f"finite differences {gradcheck.FD_TOL:g}, relative to each tensor's scale)")
    return 1 if failed else 0


def _row_json(row: gradcheck.Row) -> dict:
    return {
        "cell": row.cell, "layers": row.layers, "param": row.name,
        "rel_vs_reference": row.vs_reference.max_rel, "rel_vs_finite_diff": row.vs_numeric.max_rel,
        "worst": list(row.vs_numeric.worst), "passed": row.passed,
    }


def _print_table(rows: list[gradcheck.Row]) -> None:
    print("| cell | L | param | rel vs reference | rel vs finite diff | worst entry | result |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.cell} | {r.layers} | {r.name} | {r.vs_reference.max_rel:.1e} | "
              f"{r.vs_numeric.max_rel:.1e} | {r.vs_numeric.worst} | "
              f"{'PASS' if r.passed else 'FAIL'} |")
