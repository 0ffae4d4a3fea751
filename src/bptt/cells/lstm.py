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
from bptt.errors import BpttError

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
    p = {
        "Wxh": rng.uniform(-bound, bound, (GATES * H, input_size)).astype(dtype),
        "Whh": rng.uniform(-bound, bound, (GATES * H, H)).astype(dtype),
    }
    if bias:
        p["bxh"] = rng.uniform(-bound, bound, GATES * H).astype(dtype)
        p["bhh"] = rng.uniform(-bound, bound, GATES * H).astype(dtype)
    if forget_bias is not None:
        if not bias:
            raise BpttError("forget_bias needs bias=True (an LSTM without biases has no b_f)")
        number = (int, float, np.integer, np.floating)
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, number):
            raise BpttError(f"forget_bias must be a number, got {forget_bias!r}")
        p["bxh"][H : 2 * H] = forget_bias
        p["bhh"][H : 2 * H] = 0
    return p


# ----------------------------------------------------------------------------
# one step
# ----------------------------------------------------------------------------


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
    """

    inputs: np.ndarray
    hs: np.ndarray
    cs: np.ndarray
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    tanh_c: np.ndarray

    def step(self, t: int) -> Step:
        """The saved forward values of step t (0-based) as a :class:`Step`."""
        return Step(
            self.i[t], self.f[t], self.g[t], self.o[t], self.cs[t + 1], self.tanh_c[t],
            self.hs[t + 1],
        )


class Backward(NamedTuple):
    """Result of :func:`sequence_backward`.

    grads: ∂J/∂(layer parameter), same keys as the layer;
    dJ_dx: (A, T, B, D) error at the layer's inputs by age (None for token ids / when not asked);
    dJ_dstate0: (∂J/∂h0, ∂J/∂c0) each (B, H);
    dJ_dh, dJ_dc: (A, T, B, H) the accumulated ∂J/∂h_k, ∂J/∂c_k by age
    (A = 1: Σ_{t≥k} ∂J_t/∂h_k and Σ_{t≥k} ∂J_t/∂c_k).  dJ_dc is the total, through
    h_k and c_{k+1}; the reference's Terms.dJt_dc is c_k's partial as half of the state
    [h_k; c_k] (h_k held fixed), so dJ_dc = that + dJ_dh ⊙ o_k ⊙ (1 − tanh² c_k).
    """

    grads: dict[str, np.ndarray]
    dJ_dx: np.ndarray | None
    dJ_dstate0: tuple[np.ndarray, ...]
    dJ_dh: np.ndarray
    dJ_dc: np.ndarray


def sequence_forward(
    p: dict[str, np.ndarray], inputs: np.ndarray, state0: tuple[np.ndarray, ...]
) -> Cache:
    """Run the layer over T steps.

    inputs: (T, B) token ids or (T, B, D); state0: (h0, c0), each (B, H).
    Returns the Cache; the outputs h_1 … h_T are hs[1:].
    The input projection W^xh x_t + b^xh + b^hh is one matrix product (or gather) for all t
    at once; only the recurrent part W^hh h_{t−1} is done step by step.
    """
    x_proj = common.input_projection(p["Wxh"], inputs)
    for name in BIAS_NAMES:
        if name in p:
            x_proj += p[name]
    T, B, G = x_proj.shape
    H = G // GATES
    hs = np.empty((T + 1, B, H), dtype=x_proj.dtype)
    cs = np.empty((T + 1, B, H), dtype=x_proj.dtype)
    i, f, g, o, tanh_c = (np.empty((T, B, H), dtype=x_proj.dtype) for _ in range(5))
    hs[0], cs[0] = state0
    for t in range(T):
        step = step_forward(p, x_proj[t], hs[t], cs[t])
        i[t], f[t], g[t], o[t], tanh_c[t] = step.i, step.f, step.g, step.o, step.tanh_c
        cs[t + 1], hs[t + 1] = step.c, step.h
    return Cache(inputs, hs, cs, i, f, g, o, tanh_c)


def sequence_backward(
    p: dict[str, np.ndarray],
    cache: Cache,
    dJ_dh_local: np.ndarray,
    truncate: int | None = None,
    need_dx: bool = False,
) -> Backward:
    """Efficient BPTT: one backward sweep over k = T−1 … 0, carrying ∂J/∂h and ∂J/∂c by age.

    dJ_dh_local: (A, T, B, H), the error reaching each h_k from outside the recurrence
    (the head, or the layer above) by age; A = 1 for full BPTT, A = truncate otherwise.
    Returns a :class:`Backward`.  Reference: :func:`bptt.reference.loss_and_grads`.
    """
    A, T, B, H = dJ_dh_local.shape
    dJ_dh = np.empty_like(dJ_dh_local)
    dJ_dc = np.empty_like(dJ_dh_local)
    dJ_da = np.empty((A, T, B, GATES * H), dtype=dJ_dh_local.dtype)
    # errors carried back into step k from the steps after it (by age)
    dJ_dh_from_later = np.zeros((A, B, H), dtype=dJ_dh_local.dtype)
    dJ_dc_from_later = np.zeros((A, B, H), dtype=dJ_dh_local.dtype)
    for k in range(T - 1, -1, -1):
        # ∂J/∂h_k = ∂J_k/∂h_k (from outside) + ∂J_{t>k}/∂h_k (carried back through a_{k+1})
        np.add(dJ_dh_local[:, k], dJ_dh_from_later, out=dJ_dh[:, k])
        back = step_backward(p, dJ_dh[:, k], dJ_dc_from_later, cache.step(k), cache.cs[k])
        dJ_dc[:, k] = back.dJ_dc
        dJ_da[:, k] = back.dJ_da
        # into step k − 1 every age grows by one (truncation drops the oldest)
        dJ_dh_from_later = common.age_one_step(back.dJ_dh_prev, truncate)
        dJ_dc_from_later = common.age_one_step(back.dJ_dc_prev, truncate)
    # (h0, c0) are read by step 0 as the weights are, so they keep every age step 0 kept:
    # ∂J/∂h0 = Σ_ages W^hhᵀ ∂J/∂a_0,  ∂J/∂c0 = Σ_ages ∂J/∂c_0 ⊙ f_0
    dJ_dh0 = back.dJ_dh_prev.sum(axis=0)
    dJ_dc0 = back.dJ_dc_prev.sum(axis=0)
    grads, dJ_dx = _weight_grads(p, cache, dJ_da, need_dx)
    return Backward(grads, dJ_dx, (dJ_dh0, dJ_dc0), dJ_dh, dJ_dc)


def final_state(cache: Cache) -> tuple[np.ndarray, ...]:
    """The state after the last step, (h_T, c_T), to carry into the next chunk."""
    return (cache.hs[-1], cache.cs[-1])


def _weight_grads(
    p: dict[str, np.ndarray], cache: Cache, dJ_da: np.ndarray, need_dx: bool
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The weights are shared by every step, so their gradients sum over k: one GEMM each.

    dJ_da: (A, T, B, 4H) by age.  Returns (grads, dJ_dx (A, T, B, D) or None).
    """
    H = p["Whh"].shape[1]
    dJ_da_all = dJ_da.sum(axis=0) if dJ_da.shape[0] > 1 else dJ_da[0]
    flat = dJ_da_all.reshape(-1, GATES * H)
    grads: dict[str, np.ndarray] = {}
    # ∂a_k/∂W^xh = x_k
    grads["Wxh"], dJ_dx = common.input_projection_backward(dJ_da, cache.inputs, p["Wxh"], need_dx)
    # ∂a_k/∂W^hh = h_{k−1}
    grads["Whh"] = flat.T @ cache.hs[:-1].reshape(-1, H)
    for name in BIAS_NAMES:
        if name in p:
            # ∂a_k/∂b^xh = ∂a_k/∂b^hh = 1
            grads[name] = flat.sum(axis=0)
    return grads, dJ_dx
