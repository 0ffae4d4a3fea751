"""The vanilla (Elman) RNN cell: forward and its backward through time, side by side.

Legend: T time, B batch, D input size, H hidden size, A ages (cells/common.py).

Equations (one layer, one step t; column vectors as in the derivation,
PyTorch's nn.RNN(nonlinearity="tanh") with bias_ih = b_h, bias_hh = 0):

    z_t = W^xh x_t + W^hh h_{t−1} + b_h          Wxh (H, D), Whh (H, H), bh (H,)
    h_t = tanh(z_t)

Parameters of one layer: ``Wxh``, ``Whh`` and, when the layer has a bias, ``bh``.

Backward.  The loss J = Σ_t J_t reaches h_k from every J_t with t ≥ k:

    ∂J/∂h_k = Σ_{t≥k} ∂J_t/∂h_k
            = ∂J_k/∂h_k  +  (∂z_{k+1}/∂h_k)ᵀ ∂J/∂z_{k+1}        (the sum regrouped)
    ∂J/∂z_k = ∂J/∂h_k ⊙ (1 − h_k²)                             (∂h_k/∂z_k = 1 − h_k²)
    ∂J/∂W^hh = Σ_k ∂J/∂z_k h_{k−1}ᵀ,  ∂J/∂W^xh = Σ_k ∂J/∂z_k x_kᵀ,  ∂J/∂b_h = Σ_k ∂J/∂z_k

This is the one O(T) sweep of :func:`sequence_backward`.  The literal double
sum it regroups is :func:`bptt.reference.loss_and_grads`; tests hold them
equal to float64 round-off.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bptt.cells import common

GATES = 1  # rows of Wxh per hidden unit (LSTM: 4, GRU: 3)
PARAM_NAMES = ("Wxh", "Whh", "bh")
BIAS_NAMES = ("bh",)
STATE_NAMES = ("h",)  # the recurrent state of one layer (LSTM: h and c)


def init_layer(
    rng: np.random.Generator,
    input_size: int,
    hidden_size: int,
    bias: bool,
    dtype: type,
    **_: object,
) -> dict[str, np.ndarray]:
    """One layer's parameters, U(−1/√H, 1/√H) as PyTorch.

    Returns Wxh (H, D), Whh (H, H) and, with bias, bh (H,).
    """
    bound = 1.0 / np.sqrt(hidden_size)
    p: dict[str, np.ndarray] = {
        "Wxh": rng.uniform(-bound, bound, (hidden_size, input_size)).astype(dtype),
        "Whh": rng.uniform(-bound, bound, (hidden_size, hidden_size)).astype(dtype),
    }
    if bias:
        p["bh"] = rng.uniform(-bound, bound, hidden_size).astype(dtype)
    return p


# ----------------------------------------------------------------------------
# one step
# ----------------------------------------------------------------------------
# A batch as rows (B, H), so W^hh h_{t−1} is written h_prev @ Whh.T.  The sweeps below do
# not call these: they keep each step's vectors as columns (H, B) (see Layout).


def step_forward(p: dict[str, np.ndarray], x_proj: np.ndarray, h_prev: np.ndarray) -> np.ndarray:
    """h_t = tanh(W^xh x_t + b_h + W^hh h_{t−1}).

    x_proj: (B, H) = W^xh x_t + b_h, already projected; h_prev: (B, H).  Returns h_t (B, H).
    """
    return np.tanh(x_proj + h_prev @ p["Whh"].T)


def step_backward(
    p: dict[str, np.ndarray], dJ_dh: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Invert one step: forward was z = W^xh x + W^hh h_prev + b_h, h = tanh z.

    dJ_dh: (..., B, H) total error at h_t, h: (B, H) = h_t.  Returns (dJ_dz (..., B, H),
    dJ_dh_prev (..., B, H) the error reaching h_{t−1} through this step).
    """
    # ∂h_t/∂z_t = 1 − h_t²
    dJ_dz = dJ_dh * (1 - h * h)
    # ∂z_t/∂h_{t−1} = W^hh
    dJ_dh_prev = dJ_dz @ p["Whh"]
    return dJ_dz, dJ_dh_prev


# ----------------------------------------------------------------------------
# a whole sequence
# ----------------------------------------------------------------------------


class Cache(NamedTuple):
    """What the forward saved for the backward (nothing is recomputed there).

    inputs: (T, B) ids or (T, B, D) dense; hs: (T + 1, B, H) with hs[0] = h0, hs[t + 1] = h_t,
    a transposed view of the sweep's (T + 1, H, B) columns (see COLUMNS): index it freely,
    but for B > 1 a reshape of it copies.
    hs_by_row: (H, (T + 1)·B), hs once more with one row per hidden unit, as
    :func:`bptt.cells.common.by_row` lays it out: column t·B + b holds sequence b's hs[t].
    Its columns [B, (T + 1)·B) are the outputs h_t and its columns [0, T·B) the states
    h_{t−1} the steps read, each an (H, T·B) view.  B = 1: a view of hs; else one copy made
    after the sweep, which the head's W^hy h_t and ∂J/∂W^hh's h_{k−1} both use.
    """

    inputs: np.ndarray
    hs: np.ndarray
    hs_by_row: np.ndarray


class Backward(NamedTuple):
    """Result of :func:`sequence_backward`.

    grads: ∂J/∂(layer parameter), same keys as the layer;
    dJ_dx: (A, T, B, D) error at the layer's inputs by age (None unless need_dx);
    dJ_dstate0: (∂J/∂h0,) each (B, H);
    dJ_dh: (A, T, B, H) the accumulated ∂J/∂h_k by age (A = 1: Σ_{t≥k} ∂J_t/∂h_k).
    dJ_dx and dJ_dh are transposed views of columns, like the Cache's hs.
    """

    grads: dict[str, np.ndarray]
    dJ_dx: np.ndarray | None
    dJ_dstate0: tuple[np.ndarray, ...]
    dJ_dh: np.ndarray


# Layout.  Inside the sweep a step's vectors are COLUMNS, one per sequence of the batch, as
# the derivation writes them: z_t and h_t are (H, B), the states over time hs (T + 1, H, B),
# the errors by age dJ_dh, dJ_dz (A, T, H, B).  Measured on a 2-core machine (OpenBLAS): at
# B = 32, W^hh h_{t−1} took 0.5–0.6 of the time of the rows' h_{t−1}ᵀ W^hhᵀ and W^hhᵀ ∂J/∂z_k
# 0.85 (at B = 1 both layouts are one vector: no difference); a whole training step came out
# 8% faster at H = 256 and 18% at H = 512 (B = 32), 5% at H = 256, B = 1, and 2–3% slower at
# H = 100.  The Cache's hs and the Backward's dJ_dh and dJ_dx are the (…, B, H) and (…, B, D)
# arrays of the docstrings, as transposed views of these columns (no copy).  The LSTM and GRU
# do the same.
COLUMNS = True


def sequence_forward(
    p: dict[str, np.ndarray],
    inputs: np.ndarray,
    state0: tuple[np.ndarray, ...],
    work: common.Buffers | None = None,
) -> Cache:
    """Run the layer over T steps.

    inputs: (T, B) token ids or (T, B, D); state0: (h0,) with h0 (B, H).  work: reusable
    memory (the training loop's; None: fresh arrays).  Returns the Cache; the outputs
    h_0 … h_{T−1} (one per step; h0 is the state before step 0) are hs[1:].  The input
    projection W^xh x_t + b_h is done before the loop, for every t (dense: one batched
    product; token ids: a gather of columns, one per step, or all at once for B = 1); the
    loop does only h_{t−1} → h_t.
    """
    Whh = p["Whh"]
    H, dtype = Whh.shape[0], Whh.dtype
    T, B = inputs.shape[:2]
    hs = common.empty(work, "hs", (T + 1, H, B), dtype)
    # h0 first: it may be the last call's final state, hs[T] of this very buffer
    hs[0] = state0[0].T
    # z_t starts as its input part W^xh x_t + b_h, written straight into hs[t + 1]; step t
    # adds W^hh h_{t−1} to it in place and takes its tanh there
    common.input_columns(p["Wxh"], inputs, p.get("bh"), hs[1:])
    # W^hh h_{t−1} of the current step
    recurrent = common.empty(work, "recurrent", (H, B), dtype)
    # per-step views, made once; the loop only calls kernels that write in place
    h = common.step_views(work, "hs", hs)
    dot, add, tanh = np.dot, np.add, np.tanh
    for t in range(T):
        # z_t = W^hh h_{t−1} + (W^xh x_t + b_h), in hs[t + 1];  h_t = tanh z_t
        dot(Whh, h[t], recurrent)
        add(h[t + 1], recurrent, h[t + 1])
        tanh(h[t + 1], h[t + 1])
    return Cache(inputs, hs.transpose(0, 2, 1), common.by_row(hs, work, "hs_by_row"))


def sequence_backward(
    p: dict[str, np.ndarray],
    cache: Cache,
    dJ_dh_local: np.ndarray,
    truncate: int | None = None,
    need_dx: bool = False,
    work: common.Buffers | None = None,
    grads_out: dict[str, np.ndarray] | None = None,
) -> Backward:
    """Efficient BPTT: one backward sweep over k = T−1 … 0 (the regrouped double sum).

    dJ_dh_local: (A, T, B, H), the error reaching each h_k from outside the recurrence
    (the head, or the layer above) by age; A = 1 for full BPTT, A = min(truncate, T)
    otherwise.  work: reusable memory (None: fresh arrays); grads_out: arrays to write the
    gradients into (same keys as the layer; None: fresh).  Returns a :class:`Backward`.
    Inside, every array is in columns, (…, H, B) (see COLUMNS above).
    Reference: :func:`bptt.reference.loss_and_grads`.
    """
    Whh = p["Whh"]
    A, T, B, H = dJ_dh_local.shape
    common.check_ages(A, truncate, T)
    dtype = dJ_dh_local.dtype
    hs = cache.hs.transpose(0, 2, 1)  # (T + 1, H, B) columns
    # ∂h_k/∂z_k = 1 − h_k² for every k at once (h_k = hs[k + 1]): it needs no error
    dh_dz = np.multiply(hs[1:], hs[1:], out=common.empty(work, "dh_dz", (T, H, B), dtype))
    np.subtract(1, dh_dz, out=dh_dz)
    dJ_dh = common.empty(work, "dJ_dh", (A, T, H, B), dtype)
    dJ_dz = common.empty(work, "dJ_dz", (A, T, H, B), dtype)
    # Σ_{t>k} ∂J_t/∂h_k by age: the error reaching h_k from the steps after it, through
    # z_{k+1}; the step after k writes it, step k reads it
    from_later_by_age = common.zeros(work, "dJ_dh_from_later", (A, H, B), dtype)
    full = truncate is None
    dJ_dh_from_later = from_later_by_age[0] if full else from_later_by_age
    dJ_dh_local_k = common.step_views(
        work, "local", common.as_columns(dJ_dh_local, work, "local"), full
    )
    dJ_dh_k = common.step_views(work, "dJ_dh", dJ_dh, full)
    dJ_dz_k = common.step_views(work, "dJ_dz", dJ_dz, full)
    dh_dz_k = common.step_views(work, "dh_dz", dh_dz)
    # what step k passes to step k − 1, every age one older (truncation drops the oldest):
    # ∂J/∂z_k (dJ_dz_carried) makes ∂J/∂h_{k−1} through z_k (dJ_dh_prev_via_z, which is
    # the dJ_dh_from_later that step k − 1 reads)
    dJ_dz_carried, dJ_dh_prev_via_z = common.older_by_one(dJ_dz_k, from_later_by_age, full)
    Whh_T = Whh.T
    dot, add, multiply = np.dot if full else np.matmul, np.add, np.multiply
    for k in range(T - 1, -1, -1):
        # ∂J/∂h_k = ∂J_k/∂h_k (from outside) + ∂J_{t>k}/∂h_k (from later, through z_{k+1})
        add(dJ_dh_local_k[k], dJ_dh_from_later, dJ_dh_k[k])
        # ∂h_k/∂z_k = 1 − h_k²
        multiply(dJ_dh_k[k], dh_dz_k[k], dJ_dz_k[k])
        if k:
            # ∂z_k/∂h_{k−1} = W^hh:  ∂J/∂h_{k−1} along this step = W^hhᵀ ∂J/∂z_k
            dot(Whh_T, dJ_dz_carried[k], dJ_dh_prev_via_z)
    # h0 is read by z_0 exactly as W^hh is, so it keeps every age that step 0 kept:
    # ∂z_0/∂h0 = W^hh, so ∂J/∂h0 = W^hhᵀ ∂J/∂z_0, every age summed
    dJ_dh0 = (Whh_T @ common.sum_ages(dJ_dz[:, :1])[0]).T.copy()
    grads, dJ_dx = _weight_grads(p, cache, dJ_dz, need_dx, work, grads_out)
    return Backward(grads, dJ_dx, (dJ_dh0,), dJ_dh.transpose(0, 1, 3, 2))


def final_state(cache: Cache) -> tuple[np.ndarray, ...]:
    """The state after the last step, (h_{T−1},) = hs[T], to carry into the next chunk."""
    return (cache.hs[-1],)


def _weight_grads(
    p: dict[str, np.ndarray],
    cache: Cache,
    dJ_dz: np.ndarray,
    need_dx: bool,
    work: common.Buffers | None,
    grads_out: dict[str, np.ndarray] | None,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The weights are shared by every step, so their gradients sum over k: one GEMM each.

    dJ_dz: (A, T, H, B) by age, columns.  For the GEMMs over all T·B columns at once, ∂J/∂z
    and h_{k−1} are first put side by side as (H, T·B) by :func:`common.by_row` (one copy
    each; none for B = 1).
    Returns (grads, dJ_dx (A, T, B, D) or None).
    """
    Wxh = p["Wxh"]
    H, D = Wxh.shape
    T, B = dJ_dz.shape[1], dJ_dz.shape[3]
    out = grads_out or {}
    # every age added up, then (H, T·B): row j holds ∂J/∂z[j] of every step and sequence
    dJ_dz_all = common.by_row(common.sum_ages(dJ_dz), work, "dJ_dz_by_row")
    h_prev = cache.hs_by_row[:, : T * B]  # (H, T·B)
    grads: dict[str, np.ndarray] = {}
    # ∂z_k/∂W^xh = x_k
    grads["Wxh"] = common.weight_gradient(
        dJ_dz_all.T.reshape(T, B, H), cache.inputs, D, out.get("Wxh"), work
    )
    # ∂z_k/∂W^hh = h_{k−1}:  Σ_k ∂J/∂z_k h_{k−1}ᵀ, one GEMM over all T·B columns
    grads["Whh"] = np.matmul(dJ_dz_all, h_prev.T, out=out.get("Whh"))
    if "bh" in p:
        # ∂z_k/∂b_h = 1
        grads["bh"] = np.add.reduce(dJ_dz_all, axis=1, out=out.get("bh"))
    dJ_dx = None
    if need_dx:
        # ∂z_k/∂x_k = W^xh (the layer below gets its error at the same step and age), columns
        dJ_dx_columns = np.matmul(
            Wxh.T, dJ_dz, out=common.empty(work, "dJ_dx", (*dJ_dz.shape[:2], D, B), Wxh.dtype)
        )
        dJ_dx = np.swapaxes(dJ_dx_columns, -1, -2)
    return grads, dJ_dx
