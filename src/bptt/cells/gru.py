"""The GRU cell: forward and its backward through time, side by side.

Legend: T time, B batch, D input size, H hidden size, A ages (cells/common.py).

Equations (one layer, one step t; column vectors as in the derivation; PyTorch's
nn.GRU exactly, gate order r, z, n):

    a^ih_t = W^xh x_t + b^xh = (a^ir_t, a^iz_t, a^in_t)      Wxh (3H, D), bxh (3H,)
    a^hh_t = W^hh h_{t−1} + b^hh = (a^hr_t, a^hz_t, a^hn_t)  Whh (3H, H), bhh (3H,)
    r_t = σ(a^ir_t + a^hr_t)           reset gate            rows   0 … H−1
    z_t = σ(a^iz_t + a^hz_t)           update gate           rows   H … 2H−1
    n_t = tanh(a^n_t),  a^n_t = a^in_t + r_t ⊙ a^hn_t        rows  2H … 3H−1
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

Note r multiplies a^hn = W^hn h_{t−1} + b^hn, b^hn INSIDE the product: this is
why the two biases are not interchangeable for the GRU as they are for the LSTM.
Parameters: ``Wxh, Whh, bxh, bhh`` = PyTorch's ``weight_ih, weight_hh, bias_ih,
bias_hh`` (bias=False drops both).  The state of one layer is h.

Backward.  J = Σ_t J_t reaches h_{k−1} along two paths of step k: directly,
through z_k ⊙ h_{k−1}, and through a^hh_k = W^hh h_{k−1} + b^hh:

    ∂J/∂h_k  = ∂J_k/∂h_k (outside) + (error from step k + 1 through both paths)
    ∂J/∂n_k  = ∂J/∂h_k ⊙ (1 − z_k)                 (∂h_k/∂n_k = 1 − z_k)
    ∂J/∂z_k  = ∂J/∂h_k ⊙ (h_{k−1} − n_k)           (∂h_k/∂z_k = h_{k−1} − n_k)
    ∂J/∂a^n_k = ∂J/∂n_k ⊙ (1 − n_k²)               (∂n_k/∂a^n_k = 1 − n_k²)
    ∂J/∂r_k  = ∂J/∂a^n_k ⊙ a^hn_k                  (∂a^n_k/∂r_k = a^hn_k)
    ∂J/∂a^in_k = ∂J/∂a^n_k                          (∂a^n_k/∂a^in_k = 1)
    ∂J/∂a^hn_k = ∂J/∂a^n_k ⊙ r_k                    (∂a^n_k/∂a^hn_k = r_k)
    ∂J/∂a^{ir,hr}_k = ∂J/∂r_k ⊙ r_k(1 − r_k),  ∂J/∂a^{iz,hz}_k = ∂J/∂z_k ⊙ z_k(1 − z_k)
    ∂J/∂h_{k−1} (through step k) = W^hhᵀ ∂J/∂a^hh_k + ∂J/∂h_k ⊙ z_k
    ∂J/∂W^xh = Σ_k ∂J/∂a^ih_k x_kᵀ,  ∂J/∂b^xh = Σ_k ∂J/∂a^ih_k,
    ∂J/∂W^hh = Σ_k ∂J/∂a^hh_k h_{k−1}ᵀ,  ∂J/∂b^hh = Σ_k ∂J/∂a^hh_k

The initial state h0 stands at k = −1 and is read by step 0 along both paths.

This is the one O(T) sweep of :func:`sequence_backward`.  The literal double
sum it regroups, with the explicit Jacobians ∂h_k/∂a^ih_k, ∂h_k/∂a^hh_k and the
direct diag(z_k), is :func:`bptt.reference.gru_step` with
:func:`bptt.reference.loss_and_grads`; tests hold them equal to float64 round-off.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bptt import ops
from bptt.cells import common

GATES = 3  # rows of Wxh per hidden unit: r, z, n
PARAM_NAMES = ("Wxh", "Whh", "bxh", "bhh")
BIAS_NAMES = ("bxh", "bhh")
STATE_NAMES = ("h",)


def init_layer(
    rng: np.random.Generator,
    input_size: int,
    hidden_size: int,
    bias: bool,
    dtype: type,
    **_: object,
) -> dict[str, np.ndarray]:
    """One layer's parameters, U(−1/√H, 1/√H) as PyTorch.

    Returns Wxh (3H, D), Whh (3H, H) and, with bias, bxh (3H,), bhh (3H,).
    """
    H = hidden_size
    bound = 1.0 / np.sqrt(H)
    p: dict[str, np.ndarray] = {
        "Wxh": rng.uniform(-bound, bound, (GATES * H, input_size)).astype(dtype),
        "Whh": rng.uniform(-bound, bound, (GATES * H, H)).astype(dtype),
    }
    if bias:
        p["bxh"] = rng.uniform(-bound, bound, GATES * H).astype(dtype)
        p["bhh"] = rng.uniform(-bound, bound, GATES * H).astype(dtype)
    return p


# ----------------------------------------------------------------------------
# one step
# ----------------------------------------------------------------------------
# A batch as rows (B, H), so W^hh h_{t−1} is written h_prev @ Whh.T.  The sweeps below do
# not call these: they keep each step's vectors as columns (H, B) (see Layout).  Tests hold
# step_forward to the sweep's saved step and step_backward to finite differences.


class Step(NamedTuple):
    """The forward values of one step, each (B, H): the gates, a^hn and the new h."""

    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    a_hn: np.ndarray
    h: np.ndarray


def step_forward(p: dict[str, np.ndarray], x_proj: np.ndarray, h_prev: np.ndarray) -> Step:
    """h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}, gates r, z, n as in the module docstring.

    x_proj: (B, 3H) = a^ih_t = W^xh x_t + b^xh, already projected; h_prev: (B, H).
    Returns the :class:`Step` (every gate kept for the backward).
    """
    H = h_prev.shape[-1]
    # a^hh_t = W^hh h_{t−1} + b^hh, rows r z n
    a_hh = h_prev @ p["Whh"].T
    if "bhh" in p:
        a_hh += p["bhh"]
    r = ops.sigmoid_forward(x_proj[..., 0:H] + a_hh[..., 0:H])
    z = ops.sigmoid_forward(x_proj[..., H : 2 * H] + a_hh[..., H : 2 * H])
    a_hn = a_hh[..., 2 * H : 3 * H]
    n = np.tanh(x_proj[..., 2 * H : 3 * H] + r * a_hn)
    h = n + z * (h_prev - n)  # = (1 − z) ⊙ n + z ⊙ h_{t−1}
    return Step(r, z, n, a_hn, h)


class StepBackward(NamedTuple):
    """Result of :func:`step_backward`, each with the leading age axis of dJ_dh.

    dJ_da_ih: (..., B, 3H) ∂J/∂a^ih_t;  dJ_da_hh: (..., B, 3H) ∂J/∂a^hh_t (rows r z n);
    dJ_dh_prev: (..., B, H) the error reaching h_{t−1} through this step.
    """

    dJ_da_ih: np.ndarray
    dJ_da_hh: np.ndarray
    dJ_dh_prev: np.ndarray


def step_backward(
    p: dict[str, np.ndarray], dJ_dh: np.ndarray, step: Step, h_prev: np.ndarray
) -> StepBackward:
    """Invert one step.

    dJ_dh: (..., B, H) total error at h_t; step: the forward's :class:`Step`;
    h_prev: (B, H) = h_{t−1}.  Returns a :class:`StepBackward`.
    """
    # forward was h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}
    # ∂h_t/∂n_t = 1 − z_t
    dJ_dn = dJ_dh * (1 - step.z)
    # ∂h_t/∂z_t = h_{t−1} − n_t
    dJ_dz = dJ_dh * (h_prev - step.n)
    # ∂h_t/∂h_{t−1} along the direct path = z_t
    dJ_dh_prev_direct = dJ_dh * step.z
    # forward was n_t = tanh(a^n_t), a^n_t = a^in_t + r_t ⊙ a^hn_t
    # ∂n_t/∂a^n_t = 1 − n_t²  (and ∂a^n_t/∂a^in_t = 1)
    dJ_dan = ops.tanh_backward(dJ_dn, step.n)
    # ∂a^n_t/∂r_t = a^hn_t = W^hn h_{t−1} + b^hn
    dJ_dr = dJ_dan * step.a_hn
    # ∂a^n_t/∂a^hn_t = r_t
    dJ_dahn = dJ_dan * step.r
    # forward was r_t = σ(a^ir_t + a^hr_t), z_t = σ(a^iz_t + a^hz_t):  ∂σ/∂a = σ(1 − σ)
    dJ_dar = ops.sigmoid_backward(dJ_dr, step.r)
    dJ_daz = ops.sigmoid_backward(dJ_dz, step.z)
    # stacked in row order r z n:  a^ir, a^hr enter r alike (so do a^iz, a^hz);  the n rows
    # differ, ∂J/∂a^in = ∂J/∂a^n but ∂J/∂a^hn = ∂J/∂a^n ⊙ r
    dJ_da_ih = np.concatenate([dJ_dar, dJ_daz, dJ_dan], axis=-1)
    dJ_da_hh = np.concatenate([dJ_dar, dJ_daz, dJ_dahn], axis=-1)
    # ∂a^hh_t/∂h_{t−1} = W^hh, plus the direct path
    dJ_dh_prev = dJ_da_hh @ p["Whh"]
    dJ_dh_prev += dJ_dh_prev_direct
    return StepBackward(dJ_da_ih, dJ_da_hh, dJ_dh_prev)


# ----------------------------------------------------------------------------
# a whole sequence
# ----------------------------------------------------------------------------


class Cache(NamedTuple):
    """What the forward saved for the backward (nothing is recomputed there).

    inputs: (T, B) ids or (T, B, D) dense;  hs: (T + 1, B, H) with hs[0] = h0,
    hs[t + 1] = h_t;  r, z, n, a_hn: (T, B, H) per step.  Every array but inputs is a
    transposed view of the sweep's columns (see COLUMNS): index it freely, a reshape may copy.
    hs_by_row: (H, (T + 1)·B), hs once more with one row per hidden unit, as
    :func:`bptt.cells.common.by_row` lays it out: column t·B + b holds sequence b's hs[t].
    Its columns [B, (T + 1)·B) are the outputs h_t and its columns [0, T·B) the states
    h_{t−1} the steps read, each an (H, T·B) view.  B = 1: a view of hs; else one copy made
    after the sweep, which the head's W^hy h_t and ∂J/∂W^hh's h_{k−1} both use.
    """

    inputs: np.ndarray
    hs: np.ndarray
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    a_hn: np.ndarray
    hs_by_row: np.ndarray

    def step(self, t: int) -> Step:
        """The saved forward values of step t (0-based) as a :class:`Step`."""
        return Step(self.r[t], self.z[t], self.n[t], self.a_hn[t], self.hs[t + 1])


class Backward(NamedTuple):
    """Result of :func:`sequence_backward`.

    grads: ∂J/∂(layer parameter), same keys as the layer;
    dJ_dx: (A, T, B, D) error at the layer's inputs by age (None unless need_dx);
    dJ_dstate0: (∂J/∂h0,) each (B, H);
    dJ_dh: (A, T, B, H) the accumulated ∂J/∂h_k by age (A = 1: Σ_{t≥k} ∂J_t/∂h_k).
    dJ_dx and dJ_dh are transposed views of columns, like the Cache's arrays.
    """

    grads: dict[str, np.ndarray]
    dJ_dx: np.ndarray | None
    dJ_dstate0: tuple[np.ndarray, ...]
    dJ_dh: np.ndarray


# Layout.  As in the LSTM (cells/lstm.py), inside the sweep a step's vectors are columns,
# one per sequence of the batch: a^hh_t is (3H, B), h_t is (H, B), arrays over time are
# (T, 4H, B) (a step's gate rows, then a^in), (T + 1, H, B); W^hh h_{t−1} and W^hhᵀ ∂J/∂a^hh_k
# then run in BLAS's fast orientation for a small batch.  The Cache and Backward hold
# transposed views of them.
COLUMNS = True

# The input side's gate blocks inside the backward sweep, as PyTorch's block numbers.
ORDER = (2, 0, 1)


def _sweep_weights(
    p: dict[str, np.ndarray], H: int, work: common.Buffers | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The sweep's input table, its bias and its W^hh (the r and z rows negated).

    Per step: a = [−(a^ir + a^hr), −(a^iz + a^hz), a^hn] = x_in[t, :3H] + W^hh h_{t−1}
    (r z rows negated), and a^in = x_in[t, 3H:]: one (4H, D) table, its third block b^hn
    alone (inside r ⊙ ·, so it is added here, before the product with r).
    """
    Wxh, Whh = p["Wxh"], p["Whh"]
    dtype = Whh.dtype
    table = np.zeros((4 * H, Wxh.shape[1]), dtype)
    np.negative(Wxh[: 2 * H], out=table[: 2 * H])
    table[3 * H :] = Wxh[2 * H :]
    bias = None
    if "bxh" in p:
        bias = np.concatenate([-(p["bxh"][: 2 * H] + p["bhh"][: 2 * H]),
                               p["bhh"][2 * H :], p["bxh"][2 * H :]])
    Whh_sweep = common.empty(work, "Whh_sweep", Whh.shape, dtype)
    np.negative(Whh[: 2 * H], out=Whh_sweep[: 2 * H])
    Whh_sweep[2 * H :] = Whh[2 * H :]
    return table, bias, Whh_sweep


def sequence_forward(
    p: dict[str, np.ndarray],
    inputs: np.ndarray,
    state0: tuple[np.ndarray, ...],
    work: common.Buffers | None = None,
) -> Cache:
    """Run the layer over T steps.

    inputs: (T, B) token ids or (T, B, D); state0: (h0,) with h0 (B, H).  work: reusable
    memory (None: fresh arrays).  Returns the Cache; the outputs h_0 … h_{T−1}
    (one per step; h0 is the state before step 0) are hs[1:].
    The input projection W^xh x_t + b^xh, with b^hh too, is done for all t before the loop;
    only the recurrent product W^hh h_{t−1} and the gates are done step by step.

    σ(a) = 1 / (1 + e^{−a}): the r and z rows of W^xh, W^hh and their biases are negated
    (exact in binary floating point), so e^{·}, + 1, 1/· over those 2H rows give both σ
    gates of a step (numpy's e^x costs about half its tanh).
    """
    Whh = p["Whh"]
    H, dtype = Whh.shape[1], Whh.dtype
    T, B = inputs.shape[:2]
    table, bias, Whh_sweep = common.of_params(
        work, "sweep_weights", lambda: _sweep_weights(p, H, work)
    )
    # step t's block of rows: −(a^ir + a^hr), −(a^iz + a^hz), a^hn (the gates), then a^in:
    # it starts as x_in (their input parts and biases, table's rows); step t adds the sweep's
    # W^hh h_{t−1} to its first 3H rows in place, and they become r_t, z_t, a^hn_t
    x_in = common.input_columns(
        table, inputs, bias, common.empty(work, "x_in", (T, 4 * H, B), dtype)
    )
    gates = x_in[:, : GATES * H]
    # W^hh h_{t−1} of the current step (r, z rows negated)
    recurrent = common.empty(work, "recurrent", (GATES * H, B), dtype)
    n = common.empty(work, "n", (T, H, B), dtype)
    hs = common.empty(work, "hs", (T + 1, H, B), dtype)
    h_prev_minus_n = common.empty(work, "h_prev_minus_n", (H, B), dtype)
    # a constant as an array: for the small arrays of a loop numpy takes it faster than a scalar
    one = np.ones((2 * H, B), dtype=dtype)
    hs[0] = state0[0].T
    r, z, a_hn = (gates[:, m * H : (m + 1) * H] for m in range(GATES))
    # per-step views, made once; the loop only calls kernels that write in place
    v = {
        name: common.step_views(work, name, array, base=base)
        for name, array, base in [
            ("hs", hs, hs), ("gates", gates, x_in), ("rz", gates[:, : 2 * H], x_in),
            ("r", r, x_in), ("z", z, x_in), ("a_hn", a_hn, x_in), ("n", n, n),
            ("x_n", x_in[:, 3 * H :], x_in),
        ]
    }
    h_t, a_t, rz_t, r_t, z_t, a_hn_t, n_t, x_n = (
        v[m] for m in ("hs", "gates", "rz", "r", "z", "a_hn", "n", "x_n")
    )
    dot, add, subtract, multiply = np.dot, np.add, np.subtract, np.multiply
    exp, divide, tanh = np.exp, np.divide, np.tanh
    # e^{−a} = inf for a ≪ 0 gives σ = 1 / inf = 0, and e^{−a} = 0 for a ≫ 0 gives σ = 1: exact
    with np.errstate(over="ignore", under="ignore"):
        for t in range(T):
            # a = [−(a^ir + a^hr), −(a^iz + a^hz), a^hn]
            #   = W^hh h_{t−1} (r, z rows negated) + x_in[t, :3H] (their input part and biases)
            dot(Whh_sweep, h_t[t], recurrent)
            add(a_t[t], recurrent, a_t[t])
            # r_t, z_t = σ(a^ir + a^hr), σ(a^iz + a^hz), σ(a) = 1 / (1 + e^{−a})
            exp(rz_t[t], rz_t[t])
            add(rz_t[t], one, rz_t[t])
            divide(one, rz_t[t], rz_t[t])  # (measured: twice np.reciprocal's speed at B = 32)
            # n_t = tanh(a^in_t + r_t ⊙ a^hn_t)
            multiply(r_t[t], a_hn_t[t], n_t[t])
            add(n_t[t], x_n[t], n_t[t])
            tanh(n_t[t], n_t[t])
            # h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1} = n_t + z_t ⊙ (h_{t−1} − n_t)
            subtract(h_t[t], n_t[t], h_prev_minus_n)
            multiply(z_t[t], h_prev_minus_n, h_prev_minus_n)
            add(n_t[t], h_prev_minus_n, h_t[t + 1])
    rows = (0, 2, 1)  # (T, X, B) columns -> (T, B, X): transposed views
    return Cache(inputs, hs.transpose(rows), r.transpose(rows), z.transpose(rows),
                 n.transpose(rows), a_hn.transpose(rows), common.by_row(hs, work, "hs_by_row"))


def _local_partials(
    r: np.ndarray, z: np.ndarray, n: np.ndarray, a_hn: np.ndarray, h_prev: np.ndarray,
    dh_da: np.ndarray,
) -> None:
    """The local partials of every step k, all at once (they need no error), as columns.

    r, z, n, a_hn: (T, H, B) the forward's gates and a^hn_k;  h_prev = h_{k−1}: (T, H, B);
    into dh_da (T, 5, H, B).

    forward was h_k = (1 − z_k) ⊙ n_k + z_k ⊙ h_{k−1}, n_k = tanh(a^in_k + r_k ⊙ a^hn_k),
    r_k = σ(a^ir_k + a^hr_k), z_k = σ(a^iz_k + a^hz_k):
      dh_da[:, 0] = ∂h_k/∂a^in_k = ∂h_k/∂n_k ∂n_k/∂a^n_k = (1 − z_k) ⊙ (1 − n_k²)
      dh_da[:, 1] = ∂h_k/∂a^r_k  = ∂h_k/∂a^n_k ⊙ a^hn_k ⊙ r_k (1 − r_k)
      dh_da[:, 2] = ∂h_k/∂a^z_k  = (h_{k−1} − n_k) ⊙ z_k (1 − z_k)
      dh_da[:, 3] = ∂h_k/∂a^hn_k = ∂h_k/∂a^n_k ⊙ r_k
      dh_da[:, 4] = ∂h_k/∂h_{k−1} along the direct path = z_k  (not a ∂h/∂a: the path
                    that skips a^hh, kept beside them so one product per step takes all)
    """
    dh_dan, scratch = dh_da[:, 0], dh_da[:, 4]  # (block 4 is free until its z, last)
    np.multiply(n, n, out=dh_dan)
    np.subtract(1, dh_dan, out=dh_dan)
    dh_dan *= np.subtract(1, z, out=scratch)
    ops.sigmoid_slope(r, out=dh_da[:, 1])
    dh_da[:, 1] *= a_hn
    dh_da[:, 1] *= dh_dan
    ops.sigmoid_slope(z, out=dh_da[:, 2])
    dh_da[:, 2] *= np.subtract(h_prev, n, out=scratch)
    np.multiply(dh_dan, r, out=dh_da[:, 3])
    dh_da[:, 4] = z


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
    otherwise.
    work: reusable memory (None: fresh arrays); grads_out: arrays to write the gradients
    into (same keys as the layer; None: fresh).  Returns a :class:`Backward`.
    Reference: :func:`bptt.reference.loss_and_grads`.

    The local partials of every step depend on the forward values only, so they are
    computed for all k at once, before the sweep; the sweep multiplies errors by them.
    Everything is in columns (see COLUMNS above).  Per step the sweep fills one (5H, B)
    block of ``back`` (A, T, 5H, B), five blocks of H rows:

        0 … 2: ∂J/∂a^ih_k as n r z;  1 … 3: ∂J/∂a^hh_k as r z hn;  4: ∂J/∂h_k ⊙ z_k

    (the input side's blocks regrouped n r z, so that ∂J/∂a^ih and ∂J/∂a^hh overlap, the r
    and z blocks shared, and one product per step fills both).
    """
    A, T, B, H = dJ_dh_local.shape
    common.check_ages(A, truncate, T)
    dtype = dJ_dh_local.dtype
    r, z, n, a_hn, hs = (
        a.transpose(0, 2, 1) for a in (cache.r, cache.z, cache.n, cache.a_hn, cache.hs)
    )
    # the local partials of every step (no error involved), all at once
    dh_da = common.empty(work, "dh_da", (T, 5, H, B), dtype)
    _local_partials(r, z, n, a_hn, hs[:-1], dh_da)
    # --- the sweep ----------------------------------------------------------------------
    back = common.empty(work, "back", (A, T, 5 * H, B), dtype)
    dJ_dh = common.empty(work, "dJ_dh", (A, T, H, B), dtype)
    dJ_da_ih = back[:, :, 0 : 3 * H]  # n r z
    dJ_da_hh = back[:, :, H : 4 * H]  # r z hn
    dJ_dh_prev_direct = back[:, :, 4 * H :]  # ∂J/∂h_{k−1} along the direct path
    # Σ_{t>k} ∂J_t/∂h_k by age: the error reaching h_k from the steps after it (through
    # a^hh_{k+1} and the direct path); the step after k writes it, step k reads it
    from_later_by_age = common.zeros(work, "dJ_dh_from_later", (A, H, B), dtype)
    full = truncate is None
    dJ_dh_from_later = from_later_by_age[0] if full else from_later_by_age
    dJ_dh_local_k = common.step_views(
        work, "local", common.as_columns(dJ_dh_local, work, "local"), full
    )
    dJ_dh_k = common.step_views(work, "dJ_dh", dJ_dh, full)
    # the same ∂J/∂h_k as one block (…, 1, H, B), to multiply the stack dh_da_k (a view made
    # here once, not at every step)
    dJ_dh_block_k = common.step_views(work, "dJ_dh_block", dJ_dh[:, :, None], full, dJ_dh)
    back_k = common.step_views(work, "back", back.reshape(A, T, 5, H, B), full, back)
    dh_da_k = common.step_views(work, "dh_da", dh_da)
    # what step k passes to step k − 1, every age one older (truncation drops the oldest):
    # ∂J/∂a^hh_k (dJ_da_hh_carried) and the direct path's (dJ_dh_prev_direct_carried) make
    # ∂J/∂h_{k−1} through step k (dJ_dh_prev_via_step, which is the dJ_dh_from_later that
    # step k − 1 reads)
    dJ_da_hh_carried, dJ_dh_prev_via_step = common.older_by_one(
        common.step_views(work, "dJ_da_hh", dJ_da_hh, full, back), from_later_by_age, full
    )
    dJ_dh_prev_direct_carried, _ = common.older_by_one(
        common.step_views(work, "direct", dJ_dh_prev_direct, full, back), from_later_by_age,
        full,
    )
    Whh_T = p["Whh"].T
    dot = np.dot if full else np.matmul
    add, multiply = np.add, np.multiply
    for k in range(T - 1, -1, -1):
        # ∂J/∂h_k = ∂J_k/∂h_k (from outside) + ∂J_{t>k}/∂h_k (from later, through step k + 1)
        add(dJ_dh_local_k[k], dJ_dh_from_later, dJ_dh_k[k])
        # [∂J/∂a^in_k, ∂J/∂a^r_k, ∂J/∂a^z_k, ∂J/∂a^hn_k, ∂J/∂h_{k−1} along the direct path]
        #     = ∂J/∂h_k ⊙ dh_da_k
        multiply(dJ_dh_block_k[k], dh_da_k[k], back_k[k])
        if k:
            # ∂a^hh_k/∂h_{k−1} = W^hh, plus the direct path ∂h_k/∂h_{k−1} = z_k
            dot(Whh_T, dJ_da_hh_carried[k], dJ_dh_prev_via_step)
            add(dJ_dh_prev_via_step, dJ_dh_prev_direct_carried[k], dJ_dh_prev_via_step)
    # h0 is read by step 0 as the weights are, so it keeps every age step 0 kept:
    # ∂J/∂h0 = W^hhᵀ ∂J/∂a^hh_0 + ∂J/∂h0 along the direct path (z_0 ⊙ ∂J/∂h_0), ages summed
    dJ_dh0 = (Whh_T @ common.sum_ages(dJ_da_hh[:, :1])[0]
              + common.sum_ages(dJ_dh_prev_direct[:, :1])[0])
    grads, dJ_dx = _weight_grads(p, cache, dJ_da_ih, dJ_da_hh, need_dx, work, grads_out)
    return Backward(grads, dJ_dx, (dJ_dh0.T.copy(),), dJ_dh.transpose(0, 1, 3, 2))


def final_state(cache: Cache) -> tuple[np.ndarray, ...]:
    """The state after the last step, (h_{T−1},) = hs[T], to carry into the next chunk."""
    return (cache.hs[-1],)


def _weight_grads(
    p: dict[str, np.ndarray],
    cache: Cache,
    dJ_da_ih: np.ndarray,
    dJ_da_hh: np.ndarray,
    need_dx: bool,
    work: common.Buffers | None,
    grads_out: dict[str, np.ndarray] | None,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The weights are shared by every step, so their gradients sum over k: one GEMM each.

    dJ_da_ih: (A, T, 3H, B) by age, columns, regrouped n r z; dJ_da_hh: (A, T, 3H, B) in
    PyTorch's r z n.  For the GEMMs over all T·B columns at once both are laid out row
    by row, (3H, T·B), the input side back in r z n (one copy each; none of ∂J/∂a^hh for
    B = 1).
    Returns (grads, dJ_dx (A, T, B, D) or None).
    """
    Wxh = p["Wxh"]
    G, D = Wxh.shape
    H = G // GATES
    T, B = dJ_da_ih.shape[1], dJ_da_ih.shape[3]
    out = grads_out or {}
    # every age added up, then row by row: ∂J/∂a^ih in r z n (blocks 1, 2 then 0), ∂J/∂a^hh
    dJ_da_ih_nrz = common.sum_ages(dJ_da_ih)
    dJ_da_ih_all = common.empty(work, "dJ_da_ih_by_row", (G, T, B), Wxh.dtype)
    np.copyto(dJ_da_ih_all[: 2 * H], dJ_da_ih_nrz[:, H:].transpose(1, 0, 2))
    np.copyto(dJ_da_ih_all[2 * H :], dJ_da_ih_nrz[:, :H].transpose(1, 0, 2))
    dJ_da_ih_all = dJ_da_ih_all.reshape(G, T * B)
    dJ_da_hh_all = common.by_row(common.sum_ages(dJ_da_hh), work, "dJ_da_hh_by_row")
    h_prev = cache.hs_by_row[:, : T * B]  # (H, T·B)
    grads: dict[str, np.ndarray] = {}
    # ∂a^ih_k/∂W^xh = x_k
    grads["Wxh"] = common.weight_gradient(
        dJ_da_ih_all.T.reshape(T, B, G), cache.inputs, D, out.get("Wxh"), work
    )
    # ∂a^hh_k/∂W^hh = h_{k−1}:  Σ_k ∂J/∂a^hh_k h_{k−1}ᵀ, one GEMM over all T·B columns
    grads["Whh"] = np.matmul(dJ_da_hh_all, h_prev.T, out=out.get("Whh"))
    if "bxh" in p:
        # ∂a^ih_k/∂b^xh = 1
        grads["bxh"] = np.add.reduce(dJ_da_ih_all, axis=1, out=out.get("bxh"))
    if "bhh" in p:
        # ∂a^hh_k/∂b^hh = 1
        grads["bhh"] = np.add.reduce(dJ_da_hh_all, axis=1, out=out.get("bhh"))
    dJ_dx = None
    if need_dx:
        # ∂a^ih_k/∂x_k = W^xh (the layer below gets its error at the same step and age),
        # W^xh's rows regrouped n r z like the error's
        Wxh_nrz = common.regroup(Wxh, common.gate_rows(ORDER, H))
        dJ_dx_columns = np.matmul(
            Wxh_nrz.T, dJ_da_ih,
            out=common.empty(work, "dJ_dx", (*dJ_da_ih.shape[:2], D, B), Wxh.dtype),
        )
        dJ_dx = np.swapaxes(dJ_dx_columns, -1, -2)
    return grads, dJ_dx
