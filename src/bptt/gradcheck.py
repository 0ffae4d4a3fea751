"""Finite differences and the comparison of gradients: the second witness (and the third, torch).

Central differences in float64, ∂J/∂θ_i ≈ (J(θ + ε e_i) − J(θ − ε e_i)) / 2ε
with ε ≈ 1e-6 (near the cube root of float64's machine epsilon, 6e-6, where the
truncation error ε² and the round-off error 1e-16·|J|/ε balance).  Every evaluation of J is a fresh
forward pass from the same initial state: nothing is carried between the
f(θ + ε) and f(θ − ε) evaluations, no clipping, no dropout, no decay.

Relative error of two gradients a, b of one tensor:

    rel(a, b) = max_i |a_i − b_i| / max(max_i (|a_i| + |b_i|), tiny)

measured against the tensor's own scale, because finite differences cannot
resolve an entry a million times smaller than its tensor's largest (their
absolute error is about 1e-16·|J|/ε everywhere).  The worst entry is the
argmax of |a_i − b_i|.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bptt import models, ops
from bptt.cells import get_cell
from bptt.errors import BpttError, as_array, check_bool, check_int, check_positive, check_seed

EPS = 1e-6
TINY = 1e-300


def numerical_gradient(
    f: Callable[[], float],
    x: np.ndarray,
    eps: float = EPS,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Central differences of f() with respect to the array x, which f reads.

    x is perturbed in place one entry at a time and restored exactly.  indices: flat
    indices to check (None: all); entries not checked are NaN.  Returns an array of x's shape.
    """
    if not isinstance(x, np.ndarray):  # f reads x: it is perturbed in place, so an array
        raise BpttError(f"x must be the numpy array f reads, got {type(x).__name__}")
    if x.dtype != np.float64:
        raise BpttError(f"finite differences need float64, got {x.dtype}")
    eps = check_positive("eps", eps)
    if not x.flags.writeable:
        raise BpttError("x is a read-only array: numerical_gradient perturbs it in place (give "
                        "f a writeable copy to read, and that copy as x)")
    grad = np.full(x.shape, np.nan)
    flat = x.reshape(-1)  # a view: x must be contiguous
    if not np.shares_memory(flat, x):
        raise BpttError("numerical_gradient needs x C-contiguous, not in Fortran order nor "
                        "a strided view: give f np.ascontiguousarray(x) to read, and it as x")
    if indices is not None:
        picked = as_array("indices", indices)
        if picked.ndim != 1 or (picked.size and (
            picked.dtype.kind not in "iu" or ops.any_outside(picked, flat.size)
        )):
            raise BpttError(
                f"indices must be flat indices of x in [0, {flat.size}) (one integer per entry "
                f"to check), got {indices!r}"
            )
        indices = picked.astype(np.intp, copy=False)
    for i in range(flat.size) if indices is None else indices:
        original = flat[i]
        flat[i] = original + eps
        f_plus = f()
        flat[i] = original - eps
        f_minus = f()
        flat[i] = original
        grad.reshape(-1)[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def numerical_grads(
    params: dict[str, np.ndarray],
    inputs: Any,
    targets: Any,
    h0: models.State = None,
    eps: float = EPS,
    sample: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[dict[str, np.ndarray], models.State]:
    """Finite-difference ∂J/∂θ for every parameter and ∂J/∂(initial state) of the full BPTT loss.

    Same arguments as :func:`bptt.loss_and_grads` (params and h0 must be float64;
    they are copied, never modified).  sample: check at most this many random entries
    per tensor (the others are NaN), drawn with rng.  Returns (grads, dJ_dh0) with
    dJ_dh0 in the form of h0 (zeros state when h0 is None).
    """
    if not isinstance(params, dict):
        raise BpttError(f"params must be a dict of arrays, got {type(params).__name__}")
    # C order: numerical_gradient perturbs each copy through its flat view (a transposed
    # weight passes check_params, and np.array would keep its Fortran order)
    params = {k: np.array(v, dtype=np.float64, order="C") for k, v in params.items()}
    shapes = models.check_params(params)
    inputs = models.check_inputs(inputs, shapes, np.float64)
    eps = check_positive("eps", eps)
    if sample is not None:
        sample = check_int("sample", sample, 1)
    if h0 is None:
        h0 = models.zero_state(params, inputs.shape[1])
    # checked as the forward reads it (an LSTM's pair may be a list; an RNN's or GRU's list
    # is rows of its one array, and its ∂J/∂h0 comes back as that one array)
    models.state_to_layers(h0, shapes, inputs.shape[1], np.float64)
    paired = len(get_cell(shapes.cell).STATE_NAMES) > 1
    states = [np.array(s, dtype=np.float64, order="C") for s in (h0 if paired else [h0])]
    state = tuple(states) if paired else states[0]

    labels = models.check_targets(targets, inputs.shape[0], inputs.shape[1], shapes.V)

    def loss() -> float:
        # models.forward_loss on what is checked above, once: the parameters and the state
        # only move by ±eps in place (finite stays finite), the rest never changes
        fwd = models.forward_checked(params, shapes, inputs, state)
        return ops.cross_entropy_forward(fwd.logits, labels)[0]

    rng = np.random.default_rng(0) if rng is None else models.check_rng(rng)

    def pick(a: np.ndarray) -> np.ndarray | None:
        if sample is None or a.size <= sample:
            return None
        return rng.choice(a.size, size=sample, replace=False)

    grads = {k: numerical_gradient(loss, v, eps, pick(v)) for k, v in params.items()}
    dstates = [numerical_gradient(loss, s, eps, pick(s)) for s in states]
    return grads, (tuple(dstates) if paired else dstates[0])


FD4_EPS = 3e-4


def numerical_grads_fourth_order(
    params: dict[str, np.ndarray],
    inputs: Any,
    targets: Any,
    h0: models.State = None,
    eps: float = FD4_EPS,
    sample: int | None = None,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], models.State]:
    """The fourth-order central stencil (4 D(ε) − D(2ε)) / 3, D = :func:`numerical_grads`.

    D's truncation error ε² f⁽³⁾/6 cancels, leaving ε⁴ f⁽⁵⁾/30, so ε can be 3e-4 and the
    round-off ≈ ulp(J)/ε shrinks some 300-fold: tensors whose gradients are 1e-4 of |J|
    (the bottom layers of a stacked LSTM) are still resolved to 1e-7 of their scale, where
    D(1e-6) alone is not (measured over 108 random cells × sizes × 1–3 layers: worst
    5e-8 relative; D(1e-6) failed 1e-7 at H = 3, T = 4, two LSTM layers).
    Same arguments and return as :func:`numerical_grads` (sample: the same random entries
    for both ε, drawn from ``seed``).
    """
    seed = check_seed(seed)  # (a seed, not a Generator: both ε draw the same entries)
    near, near_h0 = numerical_grads(params, inputs, targets, h0, eps, sample,
                                    np.random.default_rng(seed))
    far, far_h0 = numerical_grads(params, inputs, targets, h0, 2 * eps, sample,
                                  np.random.default_rng(seed))
    grads = {k: (4 * near[k] - far[k]) / 3 for k in near}
    if isinstance(near_h0, tuple):
        return grads, tuple((4 * a - b) / 3 for a, b in zip(near_h0, far_h0, strict=True))
    return grads, (4 * near_h0 - far_h0) / 3


@dataclass
class Comparison:
    """How two gradients of one tensor differ.

    max_rel: rel(a, b) above;  max_abs: max |a_i − b_i|;  worst: index of that entry;
    a_worst, b_worst: the two values there.  a is the gradient under test, b the witness:
    entries b leaves NaN (not computed, as sampled finite differences leave them) are
    ignored; a NaN or inf in a where b has a number is an infinite error.
    """

    name: str
    max_rel: float
    max_abs: float
    worst: tuple[int, ...]
    a_worst: float
    b_worst: float

    def passed(self, tol: float) -> bool:
        """True when max_rel <= tol."""
        return bool(self.max_rel <= tol)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max(max (|a| + |b|), tiny) over the entries the witness b computed
    (not NaN); inf when a holds NaN or inf there."""
    return compare_arrays("", a, b).max_rel


def compare_arrays(name: str, a: Any, b: Any) -> Comparison:
    """Compare two gradients of one tensor (see :class:`Comparison`)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise BpttError(f"{name or 'gradient'}: shapes differ, {a.shape} vs {b.shape}")
    known = ~np.isnan(b)  # the witness's NaN: an entry it did not compute (sampled FD)
    wrong = known & ~np.isfinite(a)  # a NaN or inf under test is never close to a number
    if wrong.any():
        worst = tuple(int(i) for i in np.argwhere(wrong)[0])
        return Comparison(name, math.inf, math.inf, worst, float(a[worst]), float(b[worst]))
    if a.size == 0 or not known.any():
        return Comparison(name, 0.0, 0.0, (), 0.0, 0.0)
    # in halves: a − b and |a| + |b| of two finite floats can pass float64's largest (a
    # learner's 1e308s overflowed, with RuntimeWarnings, to a relative error of 0 or NaN);
    # halved they cannot, and halving is exact (but for subnormals, far under TINY's floor),
    # so the ratio is the one of the whole
    half_a, half_b = a / 2, b / 2
    half_diff = np.where(known, np.abs(half_a - half_b), -np.inf)
    worst_flat = int(np.argmax(half_diff))
    worst = tuple(int(i) for i in np.unravel_index(worst_flat, a.shape))
    half_max = float(half_diff.reshape(-1)[worst_flat])
    half_scale = float(np.max(np.where(known, np.abs(half_a) + np.abs(half_b), 0.0)))
    return Comparison(  # (2 × half_max: a Python float, inf past float64's largest)
        name, half_max / max(half_scale, TINY / 2), 2 * half_max, worst, float(a[worst]),
        float(b[worst]),
    )


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, Comparison]:
    """Compare two gradient dicts key by key (they must have the same keys)."""
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        raise BpttError(f"compare takes two dicts of gradients, got {type(a).__name__} and "
                        f"{type(b).__name__} (for two arrays: compare_arrays)")
    if set(a) != set(b):
        raise BpttError(f"gradient keys differ: {sorted(set(a) ^ set(b))}")
    return {key: compare_arrays(key, a[key], b[key]) for key in a}


# ----------------------------------------------------------------------------
# a whole check: efficient vs reference vs finite differences on a random problem
# ----------------------------------------------------------------------------

REFERENCE_TOL = 1e-12
FD_TOL = 1e-7
TORCH_TOL = 1e-10


@dataclass
class Row:
    """One parameter's verdict: its errors against each witness and PASS/FAIL.

    vs_torch is None when torch autograd was not run (torch not importable, or not asked).
    """

    cell: str
    layers: int
    name: str
    vs_reference: Comparison
    vs_numeric: Comparison
    vs_torch: Comparison | None = None

    def witnesses(self) -> list[tuple[str, Comparison, float]]:
        """(witness name, comparison, tolerance) for every witness that ran."""
        out = [
            ("reference", self.vs_reference, REFERENCE_TOL),
            ("finite differences", self.vs_numeric, FD_TOL),
        ]
        if self.vs_torch is not None:
            out.append(("torch", self.vs_torch, TORCH_TOL))
        return out

    @property
    def passed(self) -> bool:
        """Every witness within its tolerance (REFERENCE_TOL, FD_TOL, TORCH_TOL)."""
        return all(c.passed(tol) for _, c, tol in self.witnesses())

    @property
    def worst(self) -> Comparison:
        """The comparison farthest from passing (largest error relative to its tolerance)."""
        return max(self.witnesses(), key=lambda w: w[1].max_rel / w[2])[1]


def random_problem(
    cell: str, hidden: int, seq_len: int, batch: int, layers: int, seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, models.State]:
    """A small float64 problem with non-zero biases, a random initial state and random targets.

    Returns (params, inputs (T, B) ids, targets (T, B), h0 in public form).
    """
    seq_len, batch = check_int("seq_len", seq_len, 1), check_int("batch", batch, 1)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    D, V = 5, 4
    params = models.init_params(cell, D, hidden, V, True, rng, np.float64, layers)
    for key, value in params.items():
        if value.ndim == 1:  # biases: random, not PyTorch's small init, so bugs in them show
            params[key] = rng.normal(size=value.shape)
    inputs = rng.integers(0, D, size=(seq_len, batch))
    targets = rng.integers(0, V, size=(seq_len, batch))
    zero = models.zero_state(params, batch)
    h0 = (
        tuple(rng.normal(size=z.shape) * 0.5 for z in zero)
        if isinstance(zero, tuple)
        else rng.normal(size=zero.shape) * 0.5
    )
    return params, inputs, targets, h0


def check_model(
    cell: str = "rnn", hidden: int = 4, seq_len: int = 5, batch: int = 2, layers: int = 1,
    seed: int = 0, use_torch: bool | None = False,
) -> list[Row]:
    """Check the efficient BPTT of one cell against the reference, finite differences and torch.

    Finite differences use :func:`numerical_grads_fourth_order` on every entry.

    use_torch: True runs PyTorch autograd as a third witness (BpttError if torch is
    missing), None runs it when torch is importable, False never.
    Returns one :class:`Row` per parameter plus one for the initial state ("h0").
    """
    if use_torch is not None:
        check_bool("use_torch (or None)", use_torch)
    params, inputs, targets, h0 = random_problem(cell, hidden, seq_len, batch, layers, seed)
    # deferred import: reference imports models, which this module also imports
    from bptt import interop, reference

    eff = models.backprop(params, inputs, targets, h0=h0)
    _, ref_grads, terms = reference.loss_and_grads(
        params, inputs, targets, h0=h0, keep_contributions=False
    )
    num_grads, num_h0 = numerical_grads_fourth_order(params, inputs, targets, h0)
    mine = dict(eff.grads, h0=_flat(eff.dJ_dstate0))
    ref = dict(ref_grads, h0=_flat(terms.dJ_dstate0))
    num = dict(num_grads, h0=_flat(num_h0))
    if use_torch is None:
        use_torch = _torch_available()
    elif use_torch and not _torch_available():
        raise BpttError("torch is not installed: pip install torch, or leave the torch witness off")
    torch_grads: dict[str, np.ndarray] | None = None
    if use_torch:
        _, torch_params, torch_h0 = interop.torch_loss_and_grads(params, inputs, targets, h0)
        torch_grads = dict(torch_params, h0=_flat(torch_h0))
    return [
        Row(cell, layers, key, compare_arrays(key, mine[key], ref[key]),
            compare_arrays(key, mine[key], num[key]),
            None if torch_grads is None else compare_arrays(key, mine[key], torch_grads[key]))
        for key in mine
    ]


def _torch_available() -> bool:
    """True when torch can be imported (the third witness is then on by default)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _flat(state: models.State) -> np.ndarray:
    """A state (array or (h, c) pair) as one array, for comparison."""
    if isinstance(state, (tuple, list)):
        return np.stack([np.asarray(s) for s in state])
    return np.asarray(state)
