"""What every cell shares: the input projection, the bookkeeping of truncation, reusable memory.

Legend: T time, B batch, D input size, H hidden size, G = GATES·H rows of W^xh, A ages.

Ages.  Truncated BPTT with window K keeps, of the double sum
Σ_t Σ_{k≤t} ∂J_t/∂h_t ∂h_t/∂h_k ∂h_k/∂z_k ∂z_k/∂W, only the terms with
t − k < K.  The age of a gradient at step k is a = t − k, the distance back
to the loss J_t it came from.  The efficient backward therefore carries its
error vectors by age: an array (A, H, B) (columns, below) with A = min(K, T), where
moving from step k to k − 1 makes every age one older and drops the age that reaches K.  Without
truncation every age is kept, and since the sum is linear they can all be
added up at once: A = 1 and the single row holds Σ_t ∂J_t/∂h_k.  That is the
whole of the "shortcut": the same sum, regrouped by k.

Speed.  Only the recurrence itself is sequential: h_{t−1} → h_t forward and
∂J/∂z_{k+1} → ∂J/∂h_k backward.  Everything else is done outside the loops, for all
T·B columns at once: the input projection (:func:`input_columns`: one batched product,
or for token ids one gather per step, all steps in one for B = 1), every local partial of
every step (they depend on the forward values only, not on the error), and the weight
gradients (one GEMM each, summing over k inside the product).
The loops touch only per-step views made beforehand and call a handful of kernels, writing
into preallocated arrays (``out=``).  :class:`Buffers` keeps those arrays, and their
per-step views, from one training step to the next.

Columns.  The sweeps of every cell keep each step's vectors as columns, (X, B) — the
derivation's column vectors side by side — because, on the machine they were written on,
BLAS multiplied W^hh (X, H) by h_{t−1} (H, B) faster than h_{t−1}ᵀ (B, H) by W^hhᵀ at
B = 32, and no slower at B = 1 (measured; see "Layout" in rnn.py and lstm.py).  The helpers
:func:`input_columns`, :func:`as_columns` and :func:`by_row` convert at the edges.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from bptt import ops
from bptt.errors import BpttError

T_ = TypeVar("T_")

# ----------------------------------------------------------------------------
# memory reused across calls
# ----------------------------------------------------------------------------


class Buffers:
    """Named arrays kept from one call to the next while their shape and dtype stay the same.

    The training loop passes one (see :class:`bptt.models.Workspace`), so a step
    allocates almost nothing: the arrays a cell returns (its Cache, its Backward) are then
    OVERWRITTEN by the next call.  The public functions pass None and get fresh arrays.
    """

    def __init__(self, fixed_params: bool = False) -> None:
        """fixed_params: every call given this memory runs on the same parameters, unchanged
        (generating text, scoring a validation set): what a cell makes of its weights alone
        (its sweep's reordered, negated copies) is then made by the first call only
        (:func:`of_params`).  A training loop's weights change at every step: False."""
        self.fixed_params = fixed_params
        self._arrays: dict[str, np.ndarray] = {}
        self._steps: dict[tuple, tuple[np.ndarray, list[np.ndarray]]] = {}
        self._children: dict[str, Buffers] = {}
        self._of_params: dict[str, Any] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The array called ``name`` (uninitialised the first time)."""
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._arrays[name] = np.empty(shape, dtype)
        return a

    def steps(
        self, name: str, array: np.ndarray, full: bool | None, base: np.ndarray
    ) -> list[np.ndarray]:
        """:func:`steps` of ``array``, a view of the kept array ``base``: made once, and
        made again only when ``base`` is another array (a new shape)."""
        cached = self._steps.get((name, full))
        if cached is None or cached[0] is not base:
            cached = self._steps[name, full] = (base, steps(array, full))
        return cached[1]

    def child(self, name: str) -> Buffers:
        """A separate namespace (one per layer)."""
        if name not in self._children:
            self._children[name] = Buffers(self.fixed_params)
        return self._children[name]


def of_params(work: Buffers | None, name: str, make: Callable[[], T_]) -> T_:
    """``make()``: what a cell makes of its parameters alone, made at every call, or only at
    the first when ``work`` has fixed parameters (then kept under ``name``)."""
    if work is None or not work.fixed_params:
        return make()
    if name not in work._of_params:
        work._of_params[name] = make()
    return work._of_params[name]


def empty(work: Buffers | None, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array: kept in ``work`` under ``name``, or fresh when work is None."""
    return np.empty(shape, dtype) if work is None else work.get(name, shape, dtype)


def zeros(work: Buffers | None, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Like :func:`empty`, filled with zeros."""
    a = empty(work, name, shape, dtype)
    a.fill(0)
    return a


def steps(array: np.ndarray, full: bool | None = None) -> list[np.ndarray]:
    """Per-step views of a time-major array, made once so that a loop body does no indexing.

    full None: array (T, …) -> [array[t]].  Otherwise array (A, T, …) is by age:
    full BPTT (full True, A = 1) -> [array[0, t]], the loop sees no age axis;
    truncated (full False) -> [array[:, t]], each (A, …).
    """
    if full is None:
        return list(array)
    if full:
        return list(array[0])
    return [array[:, t] for t in range(array.shape[1])]


def step_views(
    work: Buffers | None,
    name: str,
    array: np.ndarray,
    full: bool | None = None,
    base: np.ndarray | None = None,
) -> list[np.ndarray]:
    """:func:`steps`, kept in ``work`` when there is one.

    base: the kept array that ``array`` is a view of (default: ``array`` itself); the
    views are made again only when it changes.
    """
    if work is None:
        return steps(array, full)
    return work.steps(name, array, full, array if base is None else base)


# ----------------------------------------------------------------------------
# ages
# ----------------------------------------------------------------------------


def num_ages(truncate: int | None) -> int:
    """A: rows of age kept by the backward sweep (1 = all ages summed, full BPTT; else K,
    which callers have capped at T with :func:`bptt.models.check_truncate`: A = min(K, T))."""
    return 1 if truncate is None else truncate


def check_ages(A: int, truncate: int | None, T: int) -> None:
    """A sweep's error from outside must come with the rows of age its window needs:
    1 for full BPTT, min(K, T) for truncate=K (more or fewer would be another window)."""
    expected = 1 if truncate is None else min(truncate, T)
    if A != expected:
        raise BpttError(
            f"dJ_dh_local has {A} rows of age, but truncate={truncate!r} over T = {T} "
            f"steps needs {expected}"
        )


def older_by_one(
    per_step: list[np.ndarray], from_later: np.ndarray, full: bool
) -> tuple[list[np.ndarray], np.ndarray]:
    """Where a sweep reads, and writes, the error it carries from step k into step k − 1.

    per_step: the error leaving each step, by age (:func:`steps` views);
    from_later: (A, X, B) columns, the error arriving at the step below from the later
    ones, by age.
    Full BPTT: one row holds every age (A = 1), read and written whole.
    Truncated: ages 0 … K−2 of step k become ages 1 … K−1 of step k − 1, so the sweep
    writes them into from_later[1:]; age K − 1 would become K and is dropped (never computed),
    and from_later[0] stays 0 (no loss is younger than 0).  Returns (sources, destination).
    """
    if full:
        return per_step, from_later[0]
    return [e[:-1] for e in per_step], from_later[1:]


# ----------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------


def is_token_ids(inputs: np.ndarray) -> bool:
    """True when inputs are token ids (T, B) standing for one-hot x_t, False for dense (T, B, D)."""
    return inputs.ndim == 2


def check_ids(ids: np.ndarray, D: int) -> None:
    """IndexError unless every token id is in [0, D) (a gather must never wrap or clip one)."""
    if ops.any_outside(ids, D):
        raise IndexError(f"token id outside [0, {D})")


def input_projection(
    W: np.ndarray,
    inputs: np.ndarray,
    bias: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """W x_t + b for every t and row, at once: (T, B, D) dense or (T, B) ids -> (T, B, G).

    W: (G, D), bias: (G,) or None, out: (T, B, G) to write into.
    Token ids: x_t = onehot(id), so W x_t + b is column id of W + b 1ᵀ (1ᵀ x_t = 1):
    one (D, G) table, then one gather of its rows for all T·B ids; or, with a bias and
    fewer ids than columns, the gather first and b added to the rows taken (the same sums).
    Dense: one GEMM over all T·B rows.
    """
    G, D = W.shape
    if is_token_ids(inputs):
        check_ids(inputs, D)
        if bias is not None and inputs.size < D:
            # rows ids of the view W.T, picked one by one (W.T.take would copy all of W
            # first: 20 ms at D = 20000); ids checked above
            return np.add(W.T[inputs], bias, out=out)
        table = np.add(W.T, bias) if bias is not None else np.ascontiguousarray(W.T)
        return table.take(inputs, axis=0, out=out, mode="clip")
    T, B = inputs.shape[:2]
    if out is None:
        out = np.empty((T, B, G), dtype=W.dtype)
    np.matmul(inputs.reshape(T * B, D), W.T, out=out.reshape(T * B, G))
    if bias is not None:
        out += bias
    return out


def weight_gradient(
    dJ_dproj: np.ndarray,
    inputs: np.ndarray,
    D: int,
    out: np.ndarray | None = None,
    work: Buffers | None = None,
) -> np.ndarray:
    """∂J/∂W for proj = W x_t summed over all rows: Σ_rows ∂J/∂proj ⊗ x (∂proj/∂W = x).

    dJ_dproj: (T, B, G) (ages already summed), inputs: (T, B) ids or (T, B, D).
    out: (G, D).  Token ids: a scatter-add of rows into columns of W (or, for a small
    vocabulary, the GEMM with the one-hot rows: :func:`bptt.ops.embedding_backward`);
    dense: one GEMM.
    work: reusable memory (for a small vocabulary, the one-hot rows of the ids).
    """
    G = dJ_dproj.shape[-1]
    if is_token_ids(inputs):
        one_hot = None
        if work is not None and ops.uses_one_hot(dJ_dproj, D):
            one_hot = empty(work, "one_hot", (inputs.size, D), dJ_dproj.dtype)
        table = ops.embedding_backward(dJ_dproj, inputs, D, out, one_hot)
        return table if out is not None else np.ascontiguousarray(table)
    return np.matmul(dJ_dproj.reshape(-1, G).T, inputs.reshape(-1, D), out=out)


def sum_ages(by_age: np.ndarray) -> np.ndarray:
    """(A, T, X, B) -> (T, X, B), or rows (A, T, B, X) -> (T, B, X): the error of every age
    added up (A = 1: a view, no work)."""
    return by_age[0] if by_age.shape[0] == 1 else by_age.sum(axis=0)


# ----------------------------------------------------------------------------
# columns: each step's vectors side by side, (X, B), as the derivation writes them
# ----------------------------------------------------------------------------


def input_columns(
    W: np.ndarray, inputs: np.ndarray, bias: np.ndarray | None, out: np.ndarray
) -> np.ndarray:
    """W x_t + b for every t, as columns: (T, B) ids or (T, B, D) dense -> out (T, G, B).

    Token ids (x_t one-hot): columns ids[t] of the (G, D) table W + b 1ᵀ, gathered step by
    step (B = 1: the rows of :func:`input_projection`, the same memory).  Dense: W times
    the columns of x_t, one product per step.
    """
    T, B = inputs.shape[:2]
    D = W.shape[1]
    if B == 1 and is_token_ids(inputs):
        # (T, G, 1) -> (T, 1, G): a transpose is always a view, also of a strided ``out``
        input_projection(W, inputs, bias, out.transpose(0, 2, 1))
        return out
    if is_token_ids(inputs):
        check_ids(inputs, D)
        table = W if bias is None else np.add(W, bias[:, None])
        for t in range(T):
            table.take(inputs[t], axis=1, out=out[t], mode="clip")  # ids checked above
        return out
    np.matmul(W, inputs.transpose(0, 2, 1), out=out)
    if bias is not None:
        out += bias[:, None]
    return out


def as_columns(rows: np.ndarray, work: Buffers | None, name: str) -> np.ndarray:
    """(…, B, X) -> (…, X, B): a view when ``rows`` is already a view of columns (as the
    layer above and the language-model head give it), else a copy kept in ``work``.

    A view of a whole array of columns (the head's and the layer above's buffers) is that
    array itself: the same object at every call, so the per-step views a sweep keeps of it
    (:func:`step_views`) are made once, not again at every call (T views: 5 µs a training
    step at T = 25).  A contiguous view of the same shape and dtype as the array that owns
    its memory is all of that memory."""
    columns = np.swapaxes(rows, -1, -2)
    if columns.flags.c_contiguous:
        owner = columns.base
        if (isinstance(owner, np.ndarray) and owner.shape == columns.shape
                and owner.dtype == columns.dtype and owner.flags.c_contiguous):
            return owner
        return columns
    out = empty(work, name, columns.shape, columns.dtype)
    np.copyto(out, columns)
    return out


def by_row(columns: np.ndarray, work: Buffers | None, name: str) -> np.ndarray:
    """(T, X, B) columns -> (X, T·B), row x holding component x of every step and sequence:
    a view for B = 1 (the same memory), else a copy kept in ``work``."""
    T, X, B = columns.shape
    if B == 1:
        return columns[:, :, 0].T
    out = empty(work, name, (X, T, B), columns.dtype)
    np.copyto(out, columns.transpose(1, 0, 2))
    return out.reshape(X, T * B)


# ----------------------------------------------------------------------------
# gate rows in another order (inside a sweep only; parameters keep PyTorch's order)
# ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def gate_rows(order: tuple[int, ...], H: int) -> np.ndarray:
    """Row indices that take gate blocks (each H rows) in ``order``: W[gate_rows] regroups W.
    (Made once per order and H, read-only.)"""
    rows = np.concatenate([np.arange(g * H, (g + 1) * H) for g in order])
    rows.flags.writeable = False
    return rows


def regroup(W: np.ndarray, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """W's rows (or a bias's entries) taken in the order ``rows``: a copy."""
    return np.take(W, rows, axis=0, out=out)
