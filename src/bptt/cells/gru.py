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
    p = {
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
    hs[t + 1] = h_t;  r, z, n, a_hn: (T, B, H) per step.
    """

    inputs: np.ndarray
    hs: np.ndarray
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    a_hn: np.ndarray

    def step(self, t: int) -> Step:
        """The saved forward values of step t (0-based) as a :class:`Step`."""
        return Step(self.r[t], self.z[t], self.n[t], self.a_hn[t], self.hs[t + 1])


class Backward(NamedTuple):
    """Result of :func:`sequence_backward`.

    grads: ∂J/∂(layer parameter), same keys as the layer;
    dJ_dx: (A, T, B, D) error at the layer's inputs by age (None for token ids / when not asked);
    dJ_dstate0: (∂J/∂h0,) each (B, H);
    dJ_dh: (A, T, B, H) the accumulated ∂J/∂h_k by age (A = 1: Σ_{t≥k} ∂J_t/∂h_k).
    """

    grads: dict[str, np.ndarray]
    dJ_dx: np.ndarray | None
    dJ_dstate0: tuple[np.ndarray, ...]
    dJ_dh: np.ndarray


def sequence_forward(
    p: dict[str, np.ndarray], inputs: np.ndarray, state0: tuple[np.ndarray, ...]
) -> Cache:
    """Run the layer over T steps.

    inputs: (T, B) token ids or (T, B, D); state0: (h0,) with h0 (B, H).
    Returns the Cache; the outputs h_1 … h_T are hs[1:].
    The input projection W^xh x_t + b^xh is one matrix product (or gather) for all t at once;
    only the recurrent part W^hh h_{t−1} + b^hh is done step by step.
    """
    x_proj = common.input_projection(p["Wxh"], inputs)
    if "bxh" in p:
        x_proj += p["bxh"]
    T, B, G = x_proj.shape
    H = G // GATES
    hs = np.empty((T + 1, B, H), dtype=x_proj.dtype)
    r, z, n, a_hn = (np.empty((T, B, H), dtype=x_proj.dtype) for _ in range(4))
    hs[0] = state0[0]
    for t in range(T):
        step = step_forward(p, x_proj[t], hs[t])
        r[t], z[t], n[t], a_hn[t], hs[t + 1] = step.r, step.z, step.n, step.a_hn, step.h
    return Cache(inputs, hs, r, z, n, a_hn)


def sequence_backward(
    p: dict[str, np.ndarray],
    cache: Cache,
    dJ_dh_local: np.ndarray,
    truncate: int | None = None,
    need_dx: bool = False,
) -> Backward:
    """Efficient BPTT: one backward sweep over k = T−1 … 0 (the regrouped double sum).

    dJ_dh_local: (A, T, B, H), the error reaching each h_k from outside the recurrence
    (the head, or the layer above) by age; A = 1 for full BPTT, A = truncate otherwise.
    Returns a :class:`Backward`.  Reference: :func:`bptt.reference.loss_and_grads`.
    """
    A, T, B, H = dJ_dh_local.shape
    dJ_dh = np.empty_like(dJ_dh_local)
    dJ_da_ih = np.empty((A, T, B, GATES * H), dtype=dJ_dh_local.dtype)
    dJ_da_hh = np.empty((A, T, B, GATES * H), dtype=dJ_dh_local.dtype)
    # error carried back into step k from the steps after it (by age)
    dJ_dh_from_later = np.zeros((A, B, H), dtype=dJ_dh_local.dtype)
    for k in range(T - 1, -1, -1):
        # ∂J/∂h_k = ∂J_k/∂h_k (from outside) + ∂J_{t>k}/∂h_k (carried back through step k + 1)
        np.add(dJ_dh_local[:, k], dJ_dh_from_later, out=dJ_dh[:, k])
        back = step_backward(p, dJ_dh[:, k], cache.step(k), cache.hs[k])
        dJ_da_ih[:, k] = back.dJ_da_ih
        dJ_da_hh[:, k] = back.dJ_da_hh
        # into step k − 1 every age grows by one (truncation drops the oldest)
        dJ_dh_from_later = common.age_one_step(back.dJ_dh_prev, truncate)
    # h0 is read by step 0 as the weights are, so it keeps every age step 0 kept
    dJ_dh0 = back.dJ_dh_prev.sum(axis=0)
    grads, dJ_dx = _weight_grads(p, cache, dJ_da_ih, dJ_da_hh, need_dx)
    return Backward(grads, dJ_dx, (dJ_dh0,), dJ_dh)


def final_state(cache: Cache) -> tuple[np.ndarray, ...]:
    """The state after the last step, (h_T,), to carry into the next chunk."""
    return (cache.hs[-1],)


def _weight_grads(
    p: dict[str, np.ndarray],
    cache: Cache,
    dJ_da_ih: np.ndarray,
    dJ_da_hh: np.ndarray,
    need_dx: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The weights are shared by every step, so their gradients sum over k: one GEMM each.

    dJ_da_ih, dJ_da_hh: (A, T, B, 3H) by age.  Returns (grads, dJ_dx (A, T, B, D) or None).
    """
    H = p["Whh"].shape[1]
    G = GATES * H
    ih = (dJ_da_ih.sum(axis=0) if dJ_da_ih.shape[0] > 1 else dJ_da_ih[0]).reshape(-1, G)
    hh = (dJ_da_hh.sum(axis=0) if dJ_da_hh.shape[0] > 1 else dJ_da_hh[0]).reshape(-1, G)
    grads: dict[str, np.ndarray] = {}
    # ∂a^ih_k/∂W^xh = x_k
    grads["Wxh"], dJ_dx = common.input_projection_backward(
        dJ_da_ih, cache.inputs, p["Wxh"], need_dx
    )
    # ∂a^hh_k/∂W^hh = h_{k−1}
    grads["Whh"] = hh.T @ cache.hs[:-1].reshape(-1, H)
    if "bxh" in p:
        # ∂a^ih_k/∂b^xh = 1
        grads["bxh"] = ih.sum(axis=0)
    if "bhh" in p:
        # ∂a^hh_k/∂b^hh = 1
        grads["bhh"] = hh.sum(axis=0)
    return grads, dJ_dx
