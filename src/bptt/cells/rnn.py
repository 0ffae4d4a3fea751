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
    """One layer's parameters, U(−1/√H, 1/√H) as PyTorch.  Returns Wxh (H,D), Whh (H,H), bh (H,)."""
    bound = 1.0 / np.sqrt(hidden_size)
    p = {
        "Wxh": rng.uniform(-bound, bound, (hidden_size, input_size)).astype(dtype),
        "Whh": rng.uniform(-bound, bound, (hidden_size, hidden_size)).astype(dtype),
    }
    if bias:
        p["bh"] = rng.uniform(-bound, bound, hidden_size).astype(dtype)
    return p


# ----------------------------------------------------------------------------
# one step
# ----------------------------------------------------------------------------


def step_forward(p: dict[str, np.ndarray], x_proj: np.ndarray, h_prev: np.ndarray) -> np.ndarray:
    """h_t = tanh(W^xh x_t + b_h + W^hh h_{t−1}).

    x_proj: (B, H) = W^xh x_t + b_h, already projected; h_prev: (B, H).  Returns h_t (B, H).
    """
    return np.tanh(x_proj + h_prev @ p["Whh"].T)


def step_backward(
    p: dict[str, np.ndarray], dJ_dh: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Invert one step: forward was z = W^xh x + W^hh h_prev + b_h, h = tanh z.

    dJ_dh: (..., B, H) total error at h_t, h: (B, H) = h_t.
    Returns (dJ_dz (..., B, H), dJ_dh_prev (..., B, H)).
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

    inputs: (T, B) ids or (T, B, D) dense; hs: (T + 1, B, H) with hs[0] = h0, hs[t + 1] = h_t.
    """

    inputs: np.ndarray
    hs: np.ndarray


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
    The input projection W^xh x_t + b_h is one matrix product (or gather) for all t at once;
    only h_{t−1} → h_t is done step by step.
    """
    Whh_T = p["Whh"].T
    x_proj = common.input_projection(p["Wxh"], inputs)
    if "bh" in p:
        x_proj += p["bh"]
    T, B, H = x_proj.shape
    hs = np.empty((T + 1, B, H), dtype=x_proj.dtype)
    hs[0] = state0[0]
    for t in range(T):
        # z_t = W^xh x_t + b_h + W^hh h_{t−1};  h_t = tanh z_t
        z = np.matmul(hs[t], Whh_T, out=hs[t + 1])
        z += x_proj[t]
        np.tanh(z, out=hs[t + 1])
    return Cache(inputs, hs)


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
    hs = cache.hs
    Whh = p["Whh"]
    A, T, B, H = dJ_dh_local.shape
    dJ_dh = np.empty_like(dJ_dh_local)
    dJ_dz = np.empty_like(dJ_dh_local)
    # error carried back into step k from steps after it: Σ_{t>k} ∂J_t/∂h_k (by age)
    dJ_dh_from_later = np.zeros((A, B, H), dtype=dJ_dh_local.dtype)
    for k in range(T - 1, -1, -1):
        # ∂J/∂h_k = ∂J_k/∂h_k (from outside) + ∂J_{t>k}/∂h_k (carried back through z_{k+1})
        np.add(dJ_dh_local[:, k], dJ_dh_from_later, out=dJ_dh[:, k])
        # ∂h_k/∂z_k = 1 − h_k²  (h_k = hs[k + 1])
        h_k = hs[k + 1]
        np.multiply(dJ_dh[:, k], 1 - h_k * h_k, out=dJ_dz[:, k])
        # ∂z_k/∂h_{k−1} = W^hh:  ∂J/∂h_{k−1} along this step = W^hhᵀ ∂J/∂z_k
        dJ_dh_prev = dJ_dz[:, k] @ Whh
        dJ_dh_from_later = common.age_one_step(dJ_dh_prev, truncate)
    # h0 is read by z_0 exactly as W^hh is, so it keeps every age that step 0 kept
    dJ_dh0 = dJ_dh_prev.sum(axis=0)
    grads = _weight_grads(p, cache, dJ_dz, need_dx)
    return Backward(grads.grads, grads.dJ_dx, (dJ_dh0,), dJ_dh)


def final_state(cache: Cache) -> tuple[np.ndarray, ...]:
    """The state after the last step, (h_T,), to carry into the next chunk."""
    return (cache.hs[-1],)


class _WeightGrads(NamedTuple):
    grads: dict[str, np.ndarray]
    dJ_dx: np.ndarray | None


def _weight_grads(
    p: dict[str, np.ndarray], cache: Cache, dJ_dz: np.ndarray, need_dx: bool
) -> _WeightGrads:
    """The weights are shared by every step, so their gradients sum over k: one GEMM each.

    dJ_dz: (A, T, B, H) by age.
    """
    H = p["Whh"].shape[0]
    dJ_dz_all = dJ_dz.sum(axis=0) if dJ_dz.shape[0] > 1 else dJ_dz[0]
    flat = dJ_dz_all.reshape(-1, H)
    grads: dict[str, np.ndarray] = {}
    # ∂z_k/∂W^xh = x_k
    grads["Wxh"], dJ_dx = common.input_projection_backward(dJ_dz, cache.inputs, p["Wxh"], need_dx)
    # ∂z_k/∂W^hh = h_{k−1}
    grads["Whh"] = flat.T @ cache.hs[:-1].reshape(-1, H)
    if "bh" in p:
        # ∂z_k/∂b_h = 1
        grads["bh"] = flat.sum(axis=0)
    return _WeightGrads(grads, dJ_dx)
