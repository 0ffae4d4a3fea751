"""``bptt terms``: ∂J/∂W^hh printed as its Σ_t Σ_{k≤t} terms, then regrouped by k.

    bptt terms                       rnn, T = 3, H = 3
    bptt terms --cell lstm --seq-len 4 --json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bptt import terms
from bptt.cells import CELLS
from bptt.cli import args as types
from bptt.errors import BpttError

SHOWN = 8  # entries of a vector printed before "…"


def add_parser(sub, name: str) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="print dJ/dWhh as its (t, k) terms and show that grouping them by k is the "
             "efficient backward",
        description=(
            "Writes dJ/dW^hh of one layer, on a small random float64 problem, as the double "
            "sum of the derivation, sum over t, sum over k <= t: one line per term with its "
            "Frobenius norm. Then groups the terms by k and shows that sum over t of "
            "dJ_t/dh_k is exactly the efficient backward's accumulated dJ_dh[k], and that "
            "the sum of all terms is the efficient dW^hh. Steps are numbered 1 … T as in the "
            "derivation."
        ),
    )
    p.add_argument("--cell", choices=sorted(CELLS), default="rnn", help="cell (rnn)")
    p.add_argument("--seq-len", type=types.positive_int, default=3, help="time steps T (3)")
    p.add_argument("--hidden", type=types.positive_int, default=3, help="hidden size H (3)")
    p.add_argument("--seed", type=types.seed, default=0, help="random seed (0)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document with every term and the problem itself")
    p.set_defaults(run=run, prints=("the terms", "redirect it to a file, e.g. > terms.txt"))


def run(args: argparse.Namespace) -> int:
    """Print the expansion (or JSON) with the largest differences of the regrouped sums from the
    efficient ones (round-off: the tests hold them equal); 0."""
    if args.seq_len > 50 or args.hidden > 64:
        raise BpttError("bptt terms prints every term: keep --seq-len <= 50 and --hidden <= 64")
    e = terms.expand_whh(args.cell, args.seq_len, args.hidden, args.seed)
    if args.json:
        print(json.dumps(_as_json(e)))
    else:
        _print(e)
    return 0


def _as_json(e: terms.WhhExpansion) -> dict:
    params, inputs, targets, h0 = e.problem
    T = e.T
    return {
        "cell": e.cell,
        "notation": "t and k are 1-based (t, k = 1 … T) as in the derivation; k <= t",
        "T": T,
        "seed": e.seed,
        "problem": {
            "params": {k: v.tolist() for k, v in params.items()},
            "inputs": inputs.tolist(),
            "targets": targets.tolist(),
            "h0": _state_list(h0),
        },
        "terms": [
            {"t": t + 1, "k": k + 1, "norm": float(e.norms[t, k]), "value": e.terms[t, k].tolist()}
            for t in range(T) for k in range(t + 1)
        ],
        "dJt_dh": [
            {"t": t + 1, "k": k + 1, "value": e.dJt_dh[t, k].tolist()}
            for t in range(T) for k in range(t + 1)
        ],
        "by_k": [
            {"k": k + 1, "sum_t_dJt_dh": e.dJ_dh_grouped[k].tolist(),
             "efficient_dJ_dh": e.dJ_dh_efficient[k].tolist(),
             "max_abs_diff": e.max_diff_dJ_dh(k)}
            for k in range(T)
        ],
        "dWhh_sum_of_terms": e.grad_sum.tolist(),
        "dWhh_efficient": e.grad_efficient.tolist(),
        "max_abs_diff": e.max_diff_grad,
    }


def _state_list(h0):
    if isinstance(h0, tuple):
        return [np.asarray(s).tolist() for s in h0]
    return np.asarray(h0).tolist()


def _vector(v: np.ndarray) -> str:
    flat = v.reshape(-1)
    shown = ", ".join(f"{x:+.6f}" for x in flat[:SHOWN])
    return f"[{shown}{', …' if flat.size > SHOWN else ''}]"


# the double sum in each cell's own variables (the GRU's z_k is its update gate, not the
# pre-activation of the RNN's z_k = W^xh x_k + W^hh h_{k−1} + b_h)
DOUBLE_SUM = {
    "rnn": ["∂J/∂W^hh = Σ_t Σ_{k≤t} ∂J_t/∂h_t · ∂h_t/∂h_k · ∂h_k/∂z_k · ∂z_k/∂W^hh"],
    "gru": ["∂J/∂W^hh = Σ_t Σ_{k≤t} ∂J_t/∂h_t · ∂h_t/∂h_k · ∂h_k/∂a^hh_k · ∂a^hh_k/∂W^hh",
            "(a^hh_k = W^hh h_{k−1} + b^hh, rows r z n; z_k is the update gate)"],
    "lstm": ["∂J/∂W^hh = Σ_t Σ_{k≤t} ∂J_t/∂h_t · ∂h_t/∂s_k · ∂s_k/∂a_k · ∂a_k/∂W^hh",
             "(the state s_k = [h_k; c_k]; a_k = W^hh h_{k−1} + W^xh x_k + b, rows i f g o)"],
}


def _print(e: terms.WhhExpansion) -> None:
    T = e.T
    G, H = e.grad_sum.shape
    print(f"dJ/dW^hh of one {e.cell} layer ({G}×{H}) as the double sum of the derivation:")
    for line in DOUBLE_SUM[e.cell]:
        print(f"    {line}")
    print(f"Problem: T = {T}, H = {H}, B = 1, float64, random non-zero biases and initial "
          f"state (seed {e.seed}).")
    print(f"Steps are numbered t, k = 1 … {T} as in the derivation (the code's arrays count "
          "from 0).\n")
    print(f"The {T * (T + 1) // 2} terms, one per (t, k) with k ≤ t:")
    print("   t    k   t−k   ‖term(t, k)‖_F")
    for t in range(T):
        for k in range(t + 1):
            print(f"{t + 1:4d} {k + 1:4d} {t - k:4d}   {e.norms[t, k]:.6e}")
    print(f"\nΣ of all terms      ‖·‖_F = {np.linalg.norm(e.grad_sum):.12e}")
    print(f"efficient dW^hh     ‖·‖_F = {np.linalg.norm(e.grad_efficient):.12e}")
    print(f"max |Σ terms − efficient dW^hh| = {e.max_diff_grad:.1e}\n")
    print("Grouped by k: the terms ∂J_t/∂h_k of each k, their sum Σ_{t≥k} ∂J_t/∂h_k, and what")
    print("the efficient sweep accumulates as dJ_dh[k]:")
    if e.cell == "lstm":
        print("(∂J_t/∂h_k holds c_k fixed: the error c_k carries, ∂J_t/∂c_k, is the other half "
              "of ∂J_t/∂s_k, not shown)")
    for k in range(T):
        rows = [(f"∂J_{t + 1}/∂h_{k + 1}", e.dJt_dh[t, k]) for t in range(k, T)]
        rows.append((f"Σ_t ∂J_t/∂h_{k + 1}", e.dJ_dh_grouped[k]))
        rows.append((f"efficient dJ_dh[{k + 1}]", e.dJ_dh_efficient[k]))
        width = max(len(label) for label, _ in rows)
        print(f"  k = {k + 1}:")
        for label, value in rows:
            print(f"    {label:>{width}} = {_vector(value)}")
        print(f"    {'':>{width}}   max |Σ − efficient| = {e.max_diff_dJ_dh(k):.1e}")
    print("\nSo the O(T) \"shortcut\" — one backward sweep carrying dJ_dh[k] = ∂J_k/∂h_k + "
          "(the error from step k + 1) — is\nthe double sum regrouped by k.")
