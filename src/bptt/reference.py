"""The REFERENCE BPTT: the literal double sum of the derivation, for every cell.

Legend: T time, B batch, D input size, H hidden size, V output size, L layers,
S state size of one layer (H; the LSTM's state s = [h; c] has S = 2H),
G pre-activation rows of one layer (H rnn, 3H gru, 4H lstm).

For J = Σ_t J_t and any weight W used at every step,

    ∂J/∂W = Σ_t Σ_{k≤t} ∂J_t/∂h_t · ∂h_t/∂h_k · ∂h_k/∂z_k · ∂z_k/∂W .

This module computes exactly that: for EACH loss J_t it starts from
∂J_t/∂h_t (through the head) and walks back, one explicit Jacobian matrix
∂s_k/∂s_{k−1} at a time, to every k ≤ t, adding the term of (t, k) to every
weight.  It runs its own forward, builds one-hot x_t for token ids, and uses
explicit (per batch row) Jacobian matrices: nothing is shared with the
efficient backward but the problem statement.  O(T²), slow, obviously right.

The efficient O(T) sweep that regroups this sum by k is
:func:`bptt.models.loss_and_grads` (``bptt.loss_and_grads``); the tests hold
the two equal to float64 round-off.

Truncation (``truncate=K``) keeps the terms with t − k < K; the initial state
h0 is read at step 0 like a weight, so J_t reaches it when t − 0 < K.

Stacked layers: the walk of J_t visits (layer, step) pairs from the top layer
at step t down; ∂J_t/∂s^l_k collects the path through s^l_{k+1} (later step,
same layer) and the path through s^{l+1}_k (same step, layer above).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from bptt import models, ops
from bptt.models import Shapes, State, layer_key


class LocalStep(NamedTuple):
    """One step of one layer, forward values and its local Jacobians (per batch row).

    s: (B, S) the new state;  ds_da_ih: (B, S, G) ∂s_k/∂a^ih_k where a^ih = W^xh x + b^ih;
    ds_da_hh: (B, S, G) ∂s_k/∂a^hh_k where a^hh = W^hh h_{k−1} + b^hh;
    ds_ds_direct: (B, S, S) ∂s_k/∂s_{k−1} along paths that do not pass through a^hh.
    """

    s: np.ndarray
    ds_da_ih: np.ndarray
    ds_da_hh: np.ndarray
    ds_ds_direct: np.ndarray


def diag(v: np.ndarray) -> np.ndarray:
    """A batch of diagonal matrices: (B, n) -> (B, n, n)."""
    return v[:, :, None] * np.eye(v.shape[1], dtype=v.dtype)


# ----------------------------------------------------------------------------
# the cells, one literal step each, with their local Jacobians
# ----------------------------------------------------------------------------


def rnn_step(p: dict[str, np.ndarray], x: np.ndarray, s_prev: np.ndarray) -> LocalStep:
    """z = W^xh x + W^hh h_{k−1} + b_h,  h = tanh z.   State s = h (S = H, G = H)."""
    a_ih = x @ p["Wxh"].T + p.get("bh", 0)
    a_hh = s_prev @ p["Whh"].T
    h = np.tanh(a_ih + a_hh)
    # ∂h/∂z = diag(1 − h²), and z = a^ih + a^hh
    dh_dz = diag(1 - h**2)
    # h depends on h_{k−1} only through z
    direct = np.zeros_like(dh_dz)
    return LocalStep(h, dh_dz, dh_dz, direct)


STEPS = {"rnn": rnn_step}
IH_BIAS = {"rnn": "bh", "lstm": "bxh", "gru": "bxh"}


# ----------------------------------------------------------------------------
# the terms
# ----------------------------------------------------------------------------


@dataclass
class Terms:
    """Every (t, k) term of the double sum.

    losses: (T,) J_t, each summed over the batch.
    dJt_ds: (L, T, T, B, S): [l, t, k] = ∂J_t/∂s^l_k for k ≤ t inside the window, else 0.
    contributions: key -> (T, T, *shape): [t, k] = the term of (t, k) in ∂J/∂(key)
        (recurrent-layer parameters; the head's gradient is Σ_t of its own J_t alone).
        Empty when the reference was asked not to keep them.
    dJ_dstate0: ∂J/∂(initial state), in the public form of the state.
    H: hidden size (dJt_dh = dJt_ds[..., :H]; for the LSTM dJt_dc = dJt_ds[..., H:]).
    """

    losses: np.ndarray
    dJt_ds: np.ndarray
    contributions: dict[str, np.ndarray] = field(default_factory=dict)
    dJ_dstate0: State = None
    H: int = 0

    @property
    def dJt_dh(self) -> np.ndarray:
        """(L, T, T, B, H): [l, t, k] = ∂J_t/∂h^l_k."""
        return self.dJt_ds[..., : self.H]

    @property
    def dJt_dc(self) -> np.ndarray | None:
        """(L, T, T, B, H): [l, t, k] = ∂J_t/∂c^l_k for the LSTM, else None."""
        return self.dJt_ds[..., self.H :] if self.dJt_ds.shape[-1] > self.H else None


class _Forward(NamedTuple):
    xs: list[np.ndarray]  # per layer: (T, B, Din) the layer's dense input (one-hot for ids)
    s_prev: list[np.ndarray]  # per layer: (T, B, S) the state before each step
    steps: list[list[LocalStep]]  # [layer][k]
    h_top: np.ndarray  # (T, B, H)


def _initial_states(h0: State, shapes: Shapes, B: int, dtype) -> list[np.ndarray]:
    layers, _ = models.state_to_layers(h0, shapes, B, dtype)
    return [np.concatenate(parts, axis=-1) for parts in layers]


def _literal_forward(params, shapes: Shapes, x: np.ndarray, h0: State) -> _Forward:
    step = STEPS[shapes.cell]
    dtype = params["Whh"].dtype
    T, B = x.shape[:2]
    if x.ndim == 2:  # token ids stand for one-hot vectors x_t
        x = np.eye(shapes.D, dtype=dtype)[x]
    states = _initial_states(h0, shapes, B, dtype)
    xs, s_prev, steps = [], [], []
    layer_input = x
    for layer in range(shapes.L):
        p = models.layer_params(params, layer, _names(shapes.cell))
        s = states[layer]
        prevs, layer_steps = [], []
        for k in range(T):
            prevs.append(s)
            local = step(p, layer_input[k], s)
            layer_steps.append(local)
            s = local.s
        xs.append(layer_input)
        s_prev.append(np.stack(prevs))
        steps.append(layer_steps)
        layer_input = np.stack([st.s[:, : shapes.H] for st in layer_steps])
    return _Forward(xs, s_prev, steps, layer_input)


def _names(cell: str) -> tuple[str, ...]:
    from bptt.cells import get_cell

    return get_cell(cell).PARAM_NAMES


def _vjp(v: np.ndarray, J: np.ndarray) -> np.ndarray:
    """Row vector times a Jacobian, per batch row: (B, m) · (B, m, n) -> (B, n)."""
    return np.einsum("bm,bmn->bn", v, J)


def loss_and_grads(
    params: dict[str, np.ndarray],
    inputs: Any,
    targets: Any,
    h0: State = None,
    truncate: int | None = None,
    cell: str | None = None,
    keep_contributions: bool = True,
) -> tuple[float, dict[str, np.ndarray], Terms]:
    """The literal double sum.  Same arguments as :func:`bptt.loss_and_grads`.

    Returns (loss, grads, terms): grads has exactly the keys of params; terms is a
    :class:`Terms` with every ∂J_t/∂s^l_k and (if keep_contributions) every (t, k)
    term's contribution to every recurrent weight.  O(T² · L · B · S²) time.
    """
    shapes = models.check_params(params, cell)
    dtype = params["Whh"].dtype
    x = models.check_inputs(inputs, shapes, dtype)
    labels = models.check_targets(targets, x.shape[0], x.shape[1], shapes.V)
    K = models.check_truncate(truncate)
    fwd = _literal_forward(params, shapes, x, h0)
    T, B = labels.shape
    H, L = shapes.H, shapes.L
    S = fwd.s_prev[0].shape[-1]
    Why = params["Why"]

    grads = {key: np.zeros_like(value) for key, value in params.items()}
    contributions = {
        key: np.zeros((T, T, *value.shape), dtype)
        for key, value in params.items()
        if keep_contributions and key not in models.HEAD_NAMES
    }
    dJt_ds = np.zeros((L, T, T, B, S), dtype)
    dJ_ds0 = [np.zeros((B, S), dtype) for _ in range(L)]
    losses = np.zeros(T)

    for t in range(T):
        # J_t = Σ_b −log softmax(W^hy h_t + b_y)[label_t]
        y_t = ops.linear_forward(fwd.h_top[t], Why, params.get("by"))
        losses[t], p_t = ops.cross_entropy_forward(y_t, labels[t])
        # ∂J_t/∂y_t = p_t − onehot;  ∂J_t/∂W^hy = Σ_b ∂J_t/∂y_t h_tᵀ;  ∂J_t/∂b_y = Σ_b ∂J_t/∂y_t
        dJt_dy = ops.cross_entropy_backward(p_t, labels[t])
        grads["Why"] += dJt_dy.T @ fwd.h_top[t]
        if "by" in grads:
            grads["by"] += dJt_dy.sum(axis=0)
        # ∂J_t/∂h^L_t = W^hyᵀ ∂J_t/∂y_t  (in state coordinates: the h part of s)
        dJt_dsL_t = np.zeros((B, S), dtype)
        dJt_dsL_t[:, :H] = dJt_dy @ Why
        _walk_back(params, shapes, fwd, t, K, dJt_dsL_t, grads, contributions, dJt_ds, dJ_ds0)

    terms = Terms(
        losses=losses,
        dJt_ds=dJt_ds,
        contributions=contributions,
        dJ_dstate0=_public_state(dJ_ds0, h0, shapes),
        H=H,
    )
    return float(losses.sum()), grads, terms


def _walk_back(params, shapes: Shapes, fwd: _Forward, t: int, K, dJt_dsL_t, grads,
               contributions, dJt_ds, dJ_ds0) -> None:
    """Walk the error of J_t back to every (layer, k) with k ≤ t and t − k < K, adding each term."""
    L, H = shapes.L, shapes.H
    ih_bias = IH_BIAS[shapes.cell]
    oldest = 0 if K is None else max(0, t - K + 1)
    # ∂J_t/∂s^l_{k+1} carried from the later step, per layer (zero at k = t)
    from_later = [np.zeros_like(dJt_dsL_t) for _ in range(L)]
    for k in range(t, oldest - 1, -1):
        from_above = dJt_dsL_t if k == t else np.zeros_like(dJt_dsL_t)
        for layer in range(L - 1, -1, -1):
            local = fwd.steps[layer][k]
            # ∂J_t/∂s^l_k = (path via the layer above at step k) + (path via s^l_{k+1})
            dJt_dsk = from_above + from_later[layer]
            dJt_ds[layer, t, k] = dJt_dsk
            # ∂J_t/∂a^ih_k = ∂J_t/∂s_k · ∂s_k/∂a^ih_k ;  likewise for a^hh
            dJt_da_ih = _vjp(dJt_dsk, local.ds_da_ih)
            dJt_da_hh = _vjp(dJt_dsk, local.ds_da_hh)
            h_prev = fwd.s_prev[layer][k][:, :H]
            term = {
                # ∂a^ih_k/∂W^xh = x_k,  ∂a^hh_k/∂W^hh = h_{k−1},  ∂a/∂b = 1
                "Wxh": dJt_da_ih.T @ fwd.xs[layer][k],
                "Whh": dJt_da_hh.T @ h_prev,
                ih_bias: dJt_da_ih.sum(axis=0),
                "bhh": dJt_da_hh.sum(axis=0),
            }
            for name, value in term.items():
                key = layer_key(name, layer)
                if key in grads:
                    grads[key] += value
                    if key in contributions:
                        contributions[key][t, k] = value
            p = models.layer_params(params, layer, _names(shapes.cell))
            # ∂s_k/∂s_{k−1} = ∂s_k/∂a^hh_k · [W^hh 0] + (the direct paths)
            ds_ds_prev = local.ds_ds_direct.copy()
            ds_ds_prev[:, :, :H] += local.ds_da_hh @ p["Whh"]
            from_later[layer] = _vjp(dJt_dsk, ds_ds_prev)
            if k == 0:
                # the initial state is read at step 0: ∂J_t/∂s^l_{−1}
                dJ_ds0[layer] += from_later[layer]
            # ∂s^l_k/∂x^l_k = ∂s_k/∂a^ih_k · W^xh: the path into the layer below (its h part)
            if layer > 0:
                from_above = np.zeros_like(dJt_dsL_t)
                from_above[:, :H] = dJt_da_ih @ p["Wxh"]


def _public_state(dJ_ds0: list[np.ndarray], h0: State, shapes: Shapes) -> State:
    """Per-layer (B, S) gradients -> the public state form (as h0 was given)."""
    H = shapes.H
    parts = [tuple(np.split(d, d.shape[-1] // H, axis=-1)) for d in dJ_ds0]
    first = h0[0] if isinstance(h0, (tuple, list)) else h0
    flat = h0 is not None and np.ndim(first) == 2
    return models.layers_to_state(parts, flat)
