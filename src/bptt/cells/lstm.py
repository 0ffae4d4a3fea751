"""The LSTM cell: forward and its backward through time, side by side.

Legend: T time, B batch, D input size, H hidden size, A ages (cells/common.py).

Equations (one layer, one step t; column vectors as in the derivation; PyTorch's
nn.LSTM exactly, gate order i, f, g, o):

    a_t = W^xh x_t + b^xh + W^hh h_{t−1} + b^hh        Wxh (4H, D), Whh (4H, H),
        = (a^i_t, a^f_t, a^g_t, a^o_t)                  bxh (4H,), bhh (4H,)
    i_t = σ(a^i_t)      input gate                      rows   0 … H−1  of Wxh, Whh, bxh, bhh
    f_t = σ(a^f_t)      forget gate                     rows   H … 2H−1
    g_t = tanh(a^g_t)   candidate cell                  rows  2H … 3H−1
    o_t = σ(a^o_t)      output gate                     rows  3H … 4H−1
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

The state of one layer is (h, c).  Parameters: ``Wxh, Whh, bxh, bhh`` =
PyTorch's ``weight_ih, weight_hh, bias_ih, bias_hh`` (both biases, so weights
move to and from torch without loss; bias=False drops both).

Backward.  J = Σ_t J_t reaches c_k directly through h_k and, through
c_{k+1} = f_{k+1} ⊙ c_k + …, from every later step; it reaches h_k from
outside (the head or the layer above) and through a_{k+1}:

    ∂J/∂h_k = ∂J_k/∂h_k (outside)  +  W^hhᵀ ∂J/∂a_{k+1}          (∂a_{k+1}/∂h_k = W^hh)
    ∂J/∂c_k = ∂J/∂h_k ⊙ o_k ⊙ (1 − tanh² c_k)                     (∂h_k/∂c_k)
            + ∂J/∂c_{k+1} ⊙ f_{k+1}                               (∂c_{k+1}/∂c_k = f_{k+1})
    ∂J/∂o_k = ∂J/∂h_k ⊙ tanh c_k                                  (∂h_k/∂o_k = tanh c_k)
    ∂J/∂i_k = ∂J/∂c_k ⊙ g_k,   ∂J/∂g_k = ∂J/∂c_k ⊙ i_k,   ∂J/∂f_k = ∂J/∂c_k ⊙ c_{k−1}
    ∂J/∂a^{i,f,o}_k = ∂J/∂{i,f,o}_k ⊙ σ(1 − σ),   ∂J/∂a^g_k = ∂J/∂g_k ⊙ (1 − g_k²)
    ∂J/∂W^xh = Σ_k ∂J/∂a_k x_kᵀ,  ∂J/∂W^hh = Σ_k ∂J/∂a_k h_{k−1}ᵀ,
    ∂J/∂b^xh = ∂J/∂b^hh = Σ_k ∂J/∂a_k

Steps are k = 0 … T−1 and the initial state (h0, c0) stands at k = −1, read by step 0:

    ∂J/∂h0 = W^hhᵀ ∂J/∂a_0,   ∂J/∂c0 = ∂J/∂c_0 ⊙ f_0

Both errors, ∂J/∂h and ∂J/∂c, are carried back through time by age (with
truncation K, J_t reaches step k only if t − k < K; see cells/common.py).

This is the one O(T) sweep of :func:`sequence_backward`.  The literal double
sum it regroups, walking each J_t back along both the h and the c path with the
explicit Jacobian ∂[h_k; c_k]/∂[h_{k−1}; c_{k−1}], is
:func:`bptt.reference.lstm_step` with :func:`bptt.reference.loss_and_grads`;
tests hold them equal to float64 round-off.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bptt import ops
from bptt.cells import common
from bptt.errors import BpttError, is_finite_as

GATES = 4  # rows of Wxh per hidden unit: i, f, g, o
PARAM_NAMES = ("Wxh", "Whh", "bxh", "bhh")
BIAS_NAMES = ("bxh", "bhh")
STATE_NAMES = ("h", "c")


def init_layer(
    rng: np.random.Generator,
    input_size: int,
    hidden_size: int,
    bias: bool,
    dtype: type,
    forget_bias: float | None = None,
    **_: object,
) -> dict[str, np.ndarray]:
    """One layer's parameters, U(−1/√H, 1/√H) as PyTorch.

    Returns Wxh (4H, D), Whh (4H, H) and, with bias, bxh (4H,), bhh (4H,).
    forget_bias: None keeps PyTorch's init; a float sets the f rows (H … 2H−1) of bxh
    to it and those of bhh to 0, so b_f = forget_bias at the start of training.
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
    if forget_bias is not None:
        if not bias:
            raise BpttError("forget_bias needs bias=True (an LSTM without biases has no b_f)")
        if not is_finite_as(forget_bias, dtype):
            raise BpttError(
                f"forget_bias must be a finite number ({np.dtype(dtype).name}), got {forget_bias!r}"
            )
        p["bxh"][H : 2 * H] = forget_bias
        p["bhh"][H : 2 * H] = 0
    return p


# ----------------------------------------------------------------------------
# one step
# ----------------------------------------------------------------------------
# A batch as rows (B, H), so W^hh h_{t−1} is written h_prev @ Whh.T.  The sweeps below do
# not call these: they keep each step's vectors as columns (H, B) (see Layout).  Tests hold
# step_forward to the sweep's saved step and step_backward to finite differences.


class Step(NamedTuple):
    """The forward values of one step, each (B, H): the gates and the new state."""

    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    c: np.ndarray
    tanh_c: np.ndarray
    h: np.ndarray


def step_forward(
    p: dict[str, np.ndarray], x_proj: np.ndarray, h_prev: np.ndarray, c_prev: np.ndarray
) -> Step:
    """c_t = f ⊙ c_{t−1} + i ⊙ g,  h_t = o ⊙ tanh c_t  with gates from a_t.

    x_proj: (B, 4H) = W^xh x_t + b^xh + b^hh, already projected; h_prev, c_prev: (B, H).
    Returns the :class:`Step` (every gate kept for the backward).
    """
    H = h_prev.shape[-1]
    # a_t = (W^xh x_t + b^xh + b^hh) + W^hh h_{t−1}, rows i f g o
    a = x_proj + h_prev @ p["Whh"].T
    i = ops.sigmoid_forward(a[..., 0:H])
    f = ops.sigmoid_forward(a[..., H : 2 * H])
    g = np.tanh(a[..., 2 * H : 3 * H])
    o = ops.sigmoid_forward(a[..., 3 * H : 4 * H])
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    return Step(i, f, g, o, c, tanh_c, o * tanh_c)


class StepBackward(NamedTuple):
    """Result of :func:`step_backward`, each with the leading age axis of dJ_dh.

    dJ_dc: (..., B, H) total ∂J/∂c_t;  dJ_da: (..., B, 4H) ∂J/∂a_t (rows i f g o);
    dJ_dh_prev, dJ_dc_prev: (..., B, H) the error reaching h_{t−1}, c_{t−1} through this step.
    """

    dJ_dc: np.ndarray
    dJ_da: np.ndarray
    dJ_dh_prev: np.ndarray
    dJ_dc_prev: np.ndarray


def step_backward(
    p: dict[str, np.ndarray],
    dJ_dh: np.ndarray,
    dJ_dc_from_later: np.ndarray,
    step: Step,
    c_prev: np.ndarray,
) -> StepBackward:
    """Invert one step.

    dJ_dh: (..., B, H) total error at h_t; dJ_dc_from_later: (..., B, H) the error at c_t
    arriving through c_{t+1} (zero at the last step); step: the forward's :class:`Step`;
    c_prev: (B, H) = c_{t−1}.  Returns a :class:`StepBackward`.
    """
    # forward was h_t = o_t ⊙ tanh c_t
    # ∂h_t/∂o_t = tanh c_t
    dJ_do = dJ_dh * step.tanh_c
    # ∂h_t/∂c_t = o_t ⊙ (1 − tanh² c_t), plus the path through c_{t+1}
    dJ_dc = dJ_dc_from_later + ops.tanh_backward(dJ_dh * step.o, step.tanh_c)
    # forward was c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    # ∂c_t/∂i_t = g_t
    dJ_di = dJ_dc * step.g
    # ∂c_t/∂f_t = c_{t−1}
    dJ_df = dJ_dc * c_prev
    # ∂c_t/∂g_t = i_t
    dJ_dg = dJ_dc * step.i
    # ∂c_t/∂c_{t−1} = f_t
    dJ_dc_prev = dJ_dc * step.f
    # forward was i, f, o = σ(a^i, a^f, a^o), g = tanh a^g:  ∂σ/∂a = σ(1 − σ), ∂g/∂a^g = 1 − g²
    dJ_da = np.concatenate(
        [
            ops.sigmoid_backward(dJ_di, step.i),
            ops.sigmoid_backward(dJ_df, step.f),
            ops.tanh_backward(dJ_dg, step.g),
            ops.sigmoid_backward(dJ_do, step.o),
        ],
        axis=-1,
    )
    # ∂a_t/∂h_{t−1} = W^hh
    dJ_dh_prev = dJ_da @ p["Whh"]
    return StepBackward(dJ_dc, dJ_da, dJ_dh_prev, dJ_dc_prev)


# ----------------------------------------------------------------------------
# a whole sequence
# ----------------------------------------------------------------------------


class Cache(NamedTuple):
    """What the forward saved for the backward (nothing is recomputed there).

    inputs: (T, B) ids or (T, B, D) dense;  hs, cs: (T + 1, B, H) with hs[0] = h0,
    cs[0] = c0, hs[t + 1] = h_t, cs[t + 1] = c_t;  i, f, g, o, tanh_c: (T, B, H) per step.
    gates: (T, B, 4H) in the sweep's order i f o g (SWEEP_BLOCKS), of which i, f, g, o are
    views.  Every array but inputs is a transposed view of the sweep's columns (see COLUMNS):
    index it freely, but a reshape of it may copy.
    hs_by_row: (H, (T + 1)·B), hs once more with one row per hidden unit, as
    :func:`bptt.cells.common.by_row` lays it out: column t·B + b holds sequence b's hs[t].
    Its columns [B, (T + 1)·B) are the outputs h_t and its columns [0, T·B) the states
    h_{t−1} the steps read, each an (H, T·B) view.  B = 1: a view of hs; else one copy made
    after the sweep, which the head's W^hy h_t and ∂J/∂W^hh's h_{k−1} both use.
    """

    inputs: np.ndarray
    hs: np.ndarray
    cs: np.ndarray
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    tanh_c: np.ndarray
    gates: np.ndarray
    hs_by_row: np.ndarray

    def step(self, t: int) -> Step:
        """The saved forward values of step t (0-based) as a :class:`Step`."""
        return Step(
            self.i[t], self.f[t], self.g[t], self.o[t], self.cs[t + 1], self.tanh_c[t],
            self.hs[t + 1],
        )


class Backward(NamedTuple):
    """Result of :func:`sequence_backward`.

    grads: ∂J/∂(layer parameter), same keys as the layer;
    dJ_dx: (A, T, B, D) error at the layer's inputs by age (None unless need_dx);
    dJ_dstate0: (∂J/∂h0, ∂J/∂c0) each (B, H);
    dJ_dh, dJ_dc: (A, T, B, H) the accumulated ∂J/∂h_k, ∂J/∂c_k by age
    (A = 1: Σ_{t≥k} ∂J_t/∂h_k and Σ_{t≥k} ∂J_t/∂c_k).  dJ_dc is the total, through
    h_k and c_{k+1}; the reference's Terms.dJt_dc[l, t, k] = ∂J_t/∂c_k is c_k's partial as
    half of the state [h_k; c_k] (h_k held fixed), so (A = 1)
    dJ_dc[0, k] = Σ_{t≥k} Terms.dJt_dc[l, t, k] + dJ_dh[0, k] ⊙ o_k ⊙ (1 − tanh² c_k).
    dJ_dx, dJ_dh, dJ_dc are transposed views of columns, like the Cache's arrays.
    """

    grads: dict[str, np.ndarray]
    dJ_dx: np.ndarray | None
    dJ_dstate0: tuple[np.ndarray, ...]
    dJ_dh: np.ndarray
    dJ_dc: np.ndarray


# Layout.  Inside the sweep a step's vectors are COLUMNS, one per sequence of the batch, as
# the derivation writes them: a_t = W^hh h_{t−1} + … is (4H, B), h_t is (H, B), and arrays
# over time are (T + 1, 5H, B) (a step's gates, then the c_{t−1} it reads), (T + 1, H, B).
# Then W^hh h_{t−1} and W^hhᵀ ∂J/∂a_k are products in the orientation BLAS runs fastest for
# a small batch (measured here: 25–35% faster than h_{t−1}ᵀ W^hhᵀ at B = 32; the same at
# B = 1, where both layouts are one vector), and each gate of a step is one contiguous block.
# The Cache and Backward hold (…, B, H) arrays, as the RNN's and GRU's do: transposed views
# of these columns (no copy).
COLUMNS = True

# Gates.  Inside a sweep a step's gate rows are stored i, f, o, g (SWEEP_BLOCKS: blocks 0, 1,
# 3, 2 of PyTorch's i, f, g, o), so that the three sigmoid gates are one contiguous block of
# 3H rows.  σ(x) = 1 / (1 + e^{−x}), so the sweep's copy of those rows is negated: W h gives
# −a directly, and σ of all three gates is e^{·}, + 1, 1/· over 3H rows at once; the g rows
# are copied as they are and go through tanh.  Negation is exact in binary floating point, so
# the rows hold −a to the last bit.  The parameters, their gradients and the backward's ∂J/∂a
# keep PyTorch's rows i, f, g, o throughout; only the forward's gate buffer is in sweep order.
SWEEP_BLOCKS = (0, 1, 3, 2)  # sweep block n is PyTorch's gate block SWEEP_BLOCKS[n]
SWEEP_SIGNS = (-1.0, -1.0, -1.0, 1.0)  # i, f, o hold −a; g holds a


def _sweep_weights(
    p: dict[str, np.ndarray], H: int, work: common.Buffers | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """W^xh, W^hh and the bias b^xh + b^hh in the sweep's order and signs (see SWEEP_BLOCKS).

    One product by a scalar per gate block of contiguous rows (at H = 512 a quarter of
    the time of one product by a broadcast column of signs, measured).
    """
    dtype = p["Whh"].dtype
    Wxh_sweep = common.empty(work, "Wxh_sweep", p["Wxh"].shape, dtype)
    Whh_sweep = common.empty(work, "Whh_sweep", p["Whh"].shape, dtype)
    bias_sweep = np.empty(GATES * H, dtype) if "bxh" in p else None
    for n, (block, sign) in enumerate(zip(SWEEP_BLOCKS, SWEEP_SIGNS, strict=True)):
        sweep_rows, rows = slice(n * H, (n + 1) * H), slice(block * H, (block + 1) * H)
        np.multiply(p["Wxh"][rows], sign, out=Wxh_sweep[sweep_rows])
        np.multiply(p["Whh"][rows], sign, out=Whh_sweep[sweep_rows])
        if bias_sweep is not None:
            np.multiply(p["bxh"][rows] + p["bhh"][rows], sign, out=bias_sweep[sweep_rows])
    return Wxh_sweep, Whh_sweep, bias_sweep


def sequence_forward(
    p: dict[str, np.ndarray],
    inputs: np.ndarray,
    state0: tuple[np.ndarray, ...],
    work: common.Buffers | None = None,
) -> Cache:
    """Run the layer over T steps.

    inputs: (T, B) token ids or (T, B, D); state0: (h0, c0), each (B, H).  work: reusable
    memory (None: fresh arrays).  Returns the Cache; the outputs h_0 … h_{T−1}
    (one per step; h0 is the state before step 0) are hs[1:].
    The input projection W^xh x_t + b^xh + b^hh is done for all t before the loop; only the
    recurrent part W^hh h_{t−1} and the gates are done step by step.
    """
    H = p["Whh"].shape[1]
    T, B = inputs.shape[:2]
    G = GATES * H
    Wxh_sweep, Whh_sweep, bias_sweep = common.of_params(
        work, "sweep_weights", lambda: _sweep_weights(p, H, work)
    )
    dtype = Whh_sweep.dtype
    # step t's block of rows: its gates in sweep order i f o g, then the c_{t−1} it reads
    # (block T holds c_{T−1} alone), so that [g_t; c_{t−1}] is one block of rows, as [i_t; f_t]
    # is; then h and tanh c: all columns
    gates_and_c = common.empty(work, "gates_and_c", (T + 1, G + H, B), dtype)
    gates, cs = gates_and_c[:T, :G], gates_and_c[:, G:]
    # the gate rows start as the input part W^xh x_t + b^xh + b^hh; step t adds W^hh h_{t−1}
    # to its block in place (a block the sweep reads once, not a second array of that size)
    common.input_columns(Wxh_sweep, inputs, bias_sweep, gates)
    # W^hh h_{t−1} of the current step, in the sweep's order and signs
    recurrent = common.empty(work, "recurrent", (G, B), dtype)
    hs = common.empty(work, "hs", (T + 1, H, B), dtype)
    tanh_c = common.empty(work, "tanh_c", (T, H, B), dtype)
    # [i_t ⊙ g_t; f_t ⊙ c_{t−1}]
    products = common.empty(work, "products", (2 * H, B), dtype)
    i_times_g, f_times_c = products[:H], products[H:]
    # a constant as an array: for the small arrays of a loop numpy takes it faster than a scalar
    one = np.ones((3 * H, B), dtype)
    hs[0], cs[0] = state0[0].T, state0[1].T
    i, f, o, g = (gates[:, n * H : (n + 1) * H] for n in range(GATES))
    ifo, i_and_f, g_and_c_prev = gates[:, : 3 * H], gates[:, : 2 * H], gates_and_c[:T, 3 * H :]
    # per-step views, made once; the loop only calls kernels that write in place
    h_t, c_t, tanh_c_t, a_t, ifo_t, i_and_f_t, g_and_c_prev_t, o_t, g_t = (
        common.step_views(work, name, array, base=base)
        for name, array, base in [
            ("hs", hs, hs), ("cs", cs, gates_and_c), ("tanh_c", tanh_c, tanh_c),
            ("gates", gates, gates_and_c), ("ifo", ifo, gates_and_c),
            ("i_and_f", i_and_f, gates_and_c), ("g_and_c_prev", g_and_c_prev, gates_and_c),
            ("o", o, gates_and_c), ("g", g, gates_and_c),
        ]
    )
    dot, add, multiply = np.dot, np.add, np.multiply
    exp, divide, tanh = np.exp, np.divide, np.tanh
    # e^{−a} = inf for a ≪ 0 gives σ = 1 / inf = 0, and e^{−a} = 0 for a ≫ 0 gives σ = 1: exact
    with np.errstate(over="ignore", under="ignore"):
        for t in range(T):
            # a_t = W^hh h_{t−1} + W^xh x_t + b^xh + b^hh, negated in the rows i, f, o
            dot(Whh_sweep, h_t[t], recurrent)
            add(a_t[t], recurrent, a_t[t])
            # i, f, o = σ(a) = 1 / (1 + e^{−a})
            exp(ifo_t[t], ifo_t[t])
            add(ifo_t[t], one, ifo_t[t])
            divide(one, ifo_t[t], ifo_t[t])  # (measured: twice np.reciprocal's speed at B = 32)
            # g_t = tanh a^g_t
            tanh(g_t[t], g_t[t])
            # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t, both products at once: [i_t; f_t] ⊙ [g_t; c_{t−1}]
            multiply(i_and_f_t[t], g_and_c_prev_t[t], products)
            add(f_times_c, i_times_g, c_t[t + 1])
            # h_t = o_t ⊙ tanh c_t
            tanh(c_t[t + 1], tanh_c_t[t])
            multiply(o_t[t], tanh_c_t[t], h_t[t + 1])
    rows = (0, 2, 1)  # (T, X, B) columns -> (T, B, X): transposed views
    return Cache(inputs, hs.transpose(rows), cs.transpose(rows), i.transpose(rows),
                 f.transpose(rows), g.transpose(rows), o.transpose(rows),
                 tanh_c.transpose(rows), gates.transpose(rows),
                 common.by_row(hs, work, "hs_by_row"))


def _local_partials(
    gates: np.ndarray,
    tanh_c: np.ndarray,
    c_prev: np.ndarray,
    dh_da_o_c: np.ndarray,
    dc_dc_a_ifg: np.ndarray,
    slope: np.ndarray,
) -> None:
    """The local partials of every step k, all at once (they need no error), as columns.

    gates: (T, 4H, B) in sweep order i f o g;  tanh_c = tanh c_k, c_prev = c_{k−1}:
    (T, H, B);  into dh_da_o_c (T, 2, H, B) and dc_dc_a_ifg (T, 4, H, B);
    slope: (T, 3H, B) scratch.

    forward was h_k = o_k ⊙ tanh c_k, o_k = σ(a^o_k):
      dh_da_o_c[k, 0] = ∂h_k/∂a^o_k = tanh c_k ⊙ o_k (1 − o_k)
      dh_da_o_c[k, 1] = ∂h_k/∂c_k   = o_k ⊙ (1 − tanh² c_k)
    forward was c_k = f_k ⊙ c_{k−1} + i_k ⊙ g_k, i, f = σ(a^i, a^f), g = tanh a^g:
      dc_dc_a_ifg[k, 0] = ∂c_k/∂c_{k−1} = f_k
      dc_dc_a_ifg[k, 1] = ∂c_k/∂a^i_k   = g_k ⊙ i_k (1 − i_k)
      dc_dc_a_ifg[k, 2] = ∂c_k/∂a^f_k   = c_{k−1} ⊙ f_k (1 − f_k)
      dc_dc_a_ifg[k, 3] = ∂c_k/∂a^g_k   = i_k ⊙ (1 − g_k²)
    """
    H = tanh_c.shape[1]
    i, f, o, g = (gates[:, n * H : (n + 1) * H] for n in range(GATES))
    # ∂σ/∂a = σ (1 − σ) for the three sigmoid gates i, f, o at once
    ops.sigmoid_slope(gates[:, : 3 * H], out=slope)
    np.multiply(slope[:, 2 * H :], tanh_c, out=dh_da_o_c[:, 0])
    np.multiply(tanh_c, tanh_c, out=dh_da_o_c[:, 1])
    np.subtract(1, dh_da_o_c[:, 1], out=dh_da_o_c[:, 1])
    dh_da_o_c[:, 1] *= o
    dc_dc_a_ifg[:, 0] = f
    np.multiply(slope[:, :H], g, out=dc_dc_a_ifg[:, 1])
    np.multiply(slope[:, H : 2 * H], c_prev, out=dc_dc_a_ifg[:, 2])
    np.multiply(g, g, out=dc_dc_a_ifg[:, 3])
    np.subtract(1, dc_dc_a_ifg[:, 3], out=dc_dc_a_ifg[:, 3])
    dc_dc_a_ifg[:, 3] *= i


def sequence_backward(
    p: dict[str, np.ndarray],
    cache: Cache,
    dJ_dh_local: np.ndarray,
    truncate: int | None = None,
    need_dx: bool = False,
    work: common.Buffers | None = None,
    grads_out: dict[str, np.ndarray] | None = None,
) -> Backward:
    """Efficient BPTT: one backward sweep over k = T−1 … 0, carrying ∂J/∂h and ∂J/∂c by age.

    dJ_dh_local: (A, T, B, H), the error reaching each h_k from outside the recurrence
    (the head, or the layer above) by age; A = 1 for full BPTT, A = min(truncate, T)
    otherwise.
    work: reusable memory (None: fresh arrays); grads_out: arrays to write the gradients
    into (same keys as the layer; None: fresh).  Returns a :class:`Backward`.
    Reference: :func:`bptt.reference.loss_and_grads`.

    The local partials of every step depend on the forward values only, so they are
    computed for all k at once (:func:`_local_partials`), before the sweep; the sweep
    multiplies errors by them.  Everything is in columns (see COLUMNS above).  Per step the
    sweep fills one (6H, B) block of ``back`` (A, T, 6H, B), six blocks of H rows:

        0: ∂J/∂c_{k−1} through c_k;  1 … 4: ∂J/∂a_k, gates i f g o;  5: ∂J/∂c_k
    """
    A, T, B, H = dJ_dh_local.shape
    common.check_ages(A, truncate, T)
    dtype = dJ_dh_local.dtype
    local_all = common.as_columns(dJ_dh_local, work, "local")  # (A, T, H, B)
    cs = cache.cs.transpose(0, 2, 1)
    dh_da_o_c = common.empty(work, "dh_da_o_c", (T, 2, H, B), dtype)
    dc_dc_a_ifg = common.empty(work, "dc_dc_a_ifg", (T, 4, H, B), dtype)
    _local_partials(
        cache.gates.transpose(0, 2, 1), cache.tanh_c.transpose(0, 2, 1), cs[:-1],
        dh_da_o_c, dc_dc_a_ifg, common.empty(work, "slope", (T, 3 * H, B), dtype),
    )
    back = common.empty(work, "back", (A, T, 6 * H, B), dtype)
    dJ_dh = common.empty(work, "dJ_dh", (A, T, H, B), dtype)
    dJ_dc_prev_via_c = back[:, :, :H]
    dJ_da = back[:, :, H : 5 * H]  # gates i f g o
    dJ_dc = back[:, :, 5 * H :]
    # Σ_{t>k} ∂J_t/∂h_k by age: the error reaching h_k from the steps after it, through
    # a_{k+1}; the step after k writes it, step k reads it
    from_later_by_age = common.zeros(work, "dJ_dh_from_later", (A, H, B), dtype)
    full = truncate is None
    dJ_dh_from_later = from_later_by_age[0] if full else from_later_by_age
    dJ_dh_local_k = common.step_views(work, "local", local_all, full)
    dJ_dh_k = common.step_views(work, "dJ_dh", dJ_dh, full)
    # [∂J/∂a^o, ∂J/∂c_k] (blocks 4, 5) and [∂J/∂c_{k−1}, ∂J/∂a^i, ∂J/∂a^f, ∂J/∂a^g] (0 … 3)
    by_block = back.reshape(A, T, 6, H, B)
    o_and_c_k = common.step_views(work, "o_and_c", by_block[:, :, 4:], full, back)
    c_ifg_k = common.step_views(work, "c_ifg", by_block[:, :, :4], full, back)
    dJ_dc_k = common.step_views(work, "dJ_dc", dJ_dc, full, back)
    # the same ∂J/∂h_k and ∂J/∂c_k as one block (…, 1, H, B), each to multiply a stack of
    # partials (a view made here once, not at every step)
    dJ_dh_block_k = common.step_views(work, "dJ_dh_block", dJ_dh[:, :, None], full, dJ_dh)
    dJ_dc_block_k = common.step_views(work, "dJ_dc_block", dJ_dc[:, :, None], full, back)
    dJ_da_k = common.step_views(work, "dJ_da", dJ_da, full, back)
    dJ_dc_prev_k = common.step_views(work, "dJ_dc_prev", dJ_dc_prev_via_c, full, back)
    dh_da_o_c_k = common.step_views(work, "dh_da_o_c", dh_da_o_c)
    dc_dc_a_ifg_k = common.step_views(work, "dc_dc_a_ifg", dc_dc_a_ifg)
    # what step k passes to step k − 1, every age one older (truncation drops the oldest),
    # on both paths: ∂J/∂a_k (dJ_da_carried) makes ∂J/∂h_{k−1} through a_k (dJ_dh_prev_via_a,
    # which is the dJ_dh_from_later that step k − 1 reads); ∂J/∂c_{k−1} through c_k
    # (dJ_dc_prev_carried) is added to the ages of ∂J/∂c_{k−1} it reaches (dJ_dc_reached_via_c:
    # every age, or 1 … K−1 when truncated)
    dJ_da_carried, dJ_dh_prev_via_a = common.older_by_one(dJ_da_k, from_later_by_age, full)
    dJ_dc_prev_carried, _ = common.older_by_one(dJ_dc_prev_k, from_later_by_age, full)
    dJ_dc_reached_via_c = dJ_dc_k if full else [e[1:] for e in dJ_dc_k]
    Whh_T = p["Whh"].T
    dot = np.dot if full else np.matmul
    add, multiply = np.add, np.multiply
    for k in range(T - 1, -1, -1):
        # ∂J/∂h_k = ∂J_k/∂h_k (outside) + W^hhᵀ ∂J/∂a_{k+1} (from later, through a_{k+1})
        add(dJ_dh_local_k[k], dJ_dh_from_later, dJ_dh_k[k])
        # [∂J/∂a^o_k, ∂J/∂c_k through h_k] = ∂J/∂h_k ⊙ [∂h_k/∂a^o_k, ∂h_k/∂c_k]
        multiply(dJ_dh_block_k[k], dh_da_o_c_k[k], o_and_c_k[k])
        if k < T - 1:
            # ∂J/∂c_k += ∂J/∂c_{k+1} ⊙ f_{k+1}  (the path through c_{k+1})
            add(dJ_dc_reached_via_c[k], dJ_dc_prev_carried[k + 1], dJ_dc_reached_via_c[k])
        # [∂J/∂c_{k−1} through c_k, ∂J/∂a^i_k, ∂J/∂a^f_k, ∂J/∂a^g_k]
        #     = ∂J/∂c_k ⊙ [∂c_k/∂c_{k−1}, ∂c_k/∂a^i_k, ∂c_k/∂a^f_k, ∂c_k/∂a^g_k]
        multiply(dJ_dc_block_k[k], dc_dc_a_ifg_k[k], c_ifg_k[k])
        if k:
            # ∂a_k/∂h_{k−1} = W^hh:  ∂J/∂h_{k−1} along this step = W^hhᵀ ∂J/∂a_k
            dot(Whh_T, dJ_da_carried[k], dJ_dh_prev_via_a)
    # (h0, c0) are read by step 0 as the weights are, so they keep every age step 0 kept:
    # ∂J/∂h0 = Σ_ages W^hhᵀ ∂J/∂a_0,  ∂J/∂c0 = Σ_ages ∂J/∂c_0 ⊙ f_0
    dJ_dh0 = (Whh_T @ common.sum_ages(dJ_da[:, :1])[0]).T.copy()
    dJ_dc0 = common.sum_ages(dJ_dc_prev_via_c[:, :1])[0].T.copy()
    grads, dJ_dx = _weight_grads(p, cache, dJ_da, need_dx, work, grads_out)
    rows = (np.swapaxes(a, -1, -2) for a in (dJ_dh, dJ_dc))
    return Backward(grads, dJ_dx, (dJ_dh0, dJ_dc0), *rows)


def final_state(cache: Cache) -> tuple[np.ndarray, ...]:
    """The state after the last step, (h_{T−1}, c_{T−1}) = (hs[T], cs[T]), to carry into the
    next chunk."""
    return (cache.hs[-1], cache.cs[-1])


def _weight_grads(
    p: dict[str, np.ndarray],
    cache: Cache,
    dJ_da: np.ndarray,
    need_dx: bool,
    work: common.Buffers | None,
    grads_out: dict[str, np.ndarray] | None,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The weights are shared by every step, so their gradients sum over k: one GEMM each.

    dJ_da: (A, T, 4H, B) by age, columns, gates i f g o.  For the GEMMs over all T·B
    columns at once, ∂J/∂a and h_{k−1} are laid out gate row by gate row first, (4H, T·B)
    and (H, T·B) (one copy each; none for B = 1).  Returns (grads, dJ_dx (A, T, B, D) or None).
    """
    Wxh = p["Wxh"]
    G, D = Wxh.shape
    T, B = dJ_da.shape[1], dJ_da.shape[3]
    out = grads_out or {}
    # every age added up, then (4H, T·B): row j holds ∂J/∂a[j] of every step and sequence
    dJ_da_all = common.by_row(common.sum_ages(dJ_da), work, "dJ_da_by_row")
    h_prev = cache.hs_by_row[:, : T * B]  # (H, T·B)
    grads: dict[str, np.ndarray] = {}
    # ∂a_k/∂W^xh = x_k
    grads["Wxh"] = common.weight_gradient(
        dJ_da_all.T.reshape(T, B, G), cache.inputs, D, out.get("Wxh"), work
    )
    # ∂a_k/∂W^hh = h_{k−1}:  Σ_k ∂J/∂a_k h_{k−1}ᵀ, one GEMM over all T·B columns
    grads["Whh"] = np.matmul(dJ_da_all, h_prev.T, out=out.get("Whh"))
    if "bxh" in p:
        # ∂a_k/∂b^xh = ∂a_k/∂b^hh = 1
        grads["bxh"] = np.add.reduce(dJ_da_all, axis=1, out=out.get("bxh"))
        grads["bhh"] = out["bhh"] if "bhh" in out else np.empty_like(grads["bxh"])
        grads["bhh"][...] = grads["bxh"]
    dJ_dx = None
    if need_dx:
        # ∂a_k/∂x_k = W^xh (the layer below gets its error at the same step and age), columns
        dJ_dx_columns = np.matmul(
            Wxh.T, dJ_da, out=common.empty(work, "dJ_dx", (*dJ_da.shape[:2], D, B), Wxh.dtype)
        )
        dJ_dx = np.swapaxes(dJ_dx_columns, -1, -2)
    return grads, dJ_dx

