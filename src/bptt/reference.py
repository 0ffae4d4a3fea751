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
explicit (per batch row) Jacobian matrices: nothing of the recurrence is shared
with the efficient backward (what is: the argument checks, and ops.py's
cross-entropy with its partial p − onehot).  O(T²), slow, obviously right.

The efficient O(T) sweep that regroups this sum by k is
:func:`bptt.models.loss_and_grads` (``bptt.loss_and_grads``); the tests hold
the two equal to float64 round-off.

Truncation (``truncate=K``) keeps the terms with t − k < K; the initial state
h0 is read at step 0 like a weight, so J_t reaches it when t − 0 < K.

Stacked layers: the walk of J_t visits (layer, step) pairs from the top layer
at step t down; ∂J_t/∂s^l_k collects the path through s^l_{k+1} (later step,
same layer) and the path through s^{l+1}_k (same step, layer above).

Heads (``head=``, see :mod:`bptt.heads`) and lengths.  J_t is the loss read at step t:
for "softmax_each"/"mse_each" the sum over the sequences b with t < n_b (real steps), for
"softmax_last"/"mse_last" the sum over the sequences whose LAST real step is t
(n_b − 1 = t), so a batch of full-length sequences has one loss, J_{T−1}, walked back to
every k.  Rows without a loss at t start their walk from zero.  The losses are taken on
the rows that have one at t only (−log softmax with ops.py's unmasked cross_entropy_forward
and cross_entropy_backward, ½ ‖y − r‖² written out here), not with the masks that the
efficient path, :func:`bptt.heads.backprop` (``bptt.task_loss_and_grads``), uses for the
"each" heads; the tests hold the two equal (tests/test_heads.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from bptt import heads, models, ops
from bptt.errors import check_bool
from bptt.models import Shapes, State, layer_key


class LocalStep(NamedTuple):
    """One step of one layer, forward values and its local Jacobians (per batch row).

    s: (B, S) the new state;
    ds_da_ih: (B, S, G) ∂s_k/∂a^ih_k where a^ih = W^xh x + b^xh (b_h for the RNN);
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


def lstm_step(p: dict[str, np.ndarray], x: np.ndarray, s_prev: np.ndarray) -> LocalStep:
    """The LSTM (gates i, f, g, o).   State s = [h; c] (S = 2H), G = 4H.

        a = a^ih + a^hh,  a^ih = W^xh x + b^xh,  a^hh = W^hh h_{k−1} + b^hh
        i = σ(a^i),  f = σ(a^f),  g = tanh(a^g),  o = σ(a^o)
        c = f ⊙ c_{k−1} + i ⊙ g,   h = o ⊙ tanh(c)

    Efficient counterpart: :func:`bptt.cells.lstm.sequence_backward`.
    """
    H = s_prev.shape[1] // 2
    h_prev, c_prev = s_prev[:, :H], s_prev[:, H:]
    a_ih = x @ p["Wxh"].T + p.get("bxh", 0)
    a_hh = h_prev @ p["Whh"].T + p.get("bhh", 0)
    a = a_ih + a_hh
    a_i, a_f, a_g, a_o = (a[:, q * H : (q + 1) * H] for q in range(4))
    i, f, o = ops.sigmoid_forward(a_i), ops.sigmoid_forward(a_f), ops.sigmoid_forward(a_o)
    g = np.tanh(a_g)
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    B = x.shape[0]
    zero = np.zeros((B, H, H), dtype=a.dtype)
    # gate activations by their pre-activations: ∂σ(u)/∂u = σ(1 − σ), ∂tanh(u)/∂u = 1 − tanh²
    di_dai, df_daf = diag(i * (1 - i)), diag(f * (1 - f))
    dg_dag, do_dao = diag(1 - g**2), diag(o * (1 - o))
    # c = f ⊙ c_{k−1} + i ⊙ g:  ∂c/∂i = diag(g), ∂c/∂f = diag(c_{k−1}), ∂c/∂g = diag(i),
    # ∂c/∂c_{k−1} = diag(f)
    dc_di, dc_df, dc_dg, dc_dc_prev = diag(g), diag(c_prev), diag(i), diag(f)
    # h = o ⊙ tanh c:  ∂h/∂o = diag(tanh c),  ∂h/∂c = diag(o ⊙ (1 − tanh² c))
    dh_do, dh_dc = diag(np.tanh(c)), diag(o * (1 - np.tanh(c) ** 2))
    # ∂c/∂a = [∂c/∂i ∂i/∂a^i,  ∂c/∂f ∂f/∂a^f,  ∂c/∂g ∂g/∂a^g,  0]       (H × 4H)
    dc_da = np.concatenate([dc_di @ di_dai, dc_df @ df_daf, dc_dg @ dg_dag, zero], axis=2)
    # ∂h/∂a = ∂h/∂c ∂c/∂a + [0, 0, 0, ∂h/∂o ∂o/∂a^o]                    (H × 4H)
    dh_da = dh_dc @ dc_da + np.concatenate([zero, zero, zero, dh_do @ do_dao], axis=2)
    # s = [h; c], and a = a^ih + a^hh: ∂s/∂a^ih = ∂s/∂a^hh = ∂s/∂a        (2H × 4H)
    ds_da = np.concatenate([dh_da, dc_da], axis=1)
    # paths from s_{k−1} = [h_{k−1}; c_{k−1}] that skip a^hh: only c_{k−1}, through c
    #   ∂h/∂c_{k−1} = ∂h/∂c ∂c/∂c_{k−1},   ∂c/∂c_{k−1} = diag(f);   nothing from h_{k−1}
    direct = np.concatenate(
        [
            np.concatenate([zero, dh_dc @ dc_dc_prev], axis=2),
            np.concatenate([zero, dc_dc_prev], axis=2),
        ],
        axis=1,
    )
    return LocalStep(np.concatenate([h, c], axis=1), ds_da, ds_da, direct)


def gru_step(p: dict[str, np.ndarray], x: np.ndarray, s_prev: np.ndarray) -> LocalStep:
    """The GRU (gates r, z, n).   State s = h (S = H), G = 3H.

        a^ih = W^xh x + b^xh = (a^ir, a^iz, a^in),  a^hh = W^hh h_{k−1} + b^hh = (a^hr, a^hz, a^hn)
        r = σ(a^ir + a^hr),  z = σ(a^iz + a^hz),  n = tanh(a^in + r ⊙ a^hn)
        h = (1 − z) ⊙ n + z ⊙ h_{k−1}

    Efficient counterpart: :func:`bptt.cells.gru.sequence_backward`.
    """
    H = s_prev.shape[1]
    h_prev = s_prev
    a_ih = x @ p["Wxh"].T + p.get("bxh", 0)
    a_hh = h_prev @ p["Whh"].T + p.get("bhh", 0)
    a_ir, a_iz, a_in = (a_ih[:, q * H : (q + 1) * H] for q in range(3))
    a_hr, a_hz, a_hn = (a_hh[:, q * H : (q + 1) * H] for q in range(3))
    r = ops.sigmoid_forward(a_ir + a_hr)
    z = ops.sigmoid_forward(a_iz + a_hz)
    n = np.tanh(a_in + r * a_hn)
    h = (1 - z) * n + z * h_prev
    # h = (1 − z) ⊙ n + z ⊙ h_{k−1}:  ∂h/∂n = diag(1 − z),  ∂h/∂z = diag(h_{k−1} − n)
    dh_dn, dh_dz = diag(1 - z), diag(h_prev - n)
    # n = tanh(a^n), a^n = a^in + r ⊙ a^hn:  ∂n/∂a^n = diag(1 − n²)
    dn_dan = diag(1 - n**2)
    # ∂a^n/∂a^in = I,  ∂a^n/∂r = diag(a^hn),  ∂a^n/∂a^hn = diag(r)
    dan_dr, dan_dahn = diag(a_hn), diag(r)
    # r = σ(a^ir + a^hr):  ∂r/∂a^ir = ∂r/∂a^hr = diag(r(1 − r));  likewise z
    dr_dar, dz_daz = diag(r * (1 - r)), diag(z * (1 - z))
    # ∂h/∂a^r = ∂h/∂n ∂n/∂a^n ∂a^n/∂r ∂r/∂a^r  (for a^ir and a^hr alike)
    dh_dar = dh_dn @ dn_dan @ dan_dr @ dr_dar
    # ∂h/∂a^z = ∂h/∂z ∂z/∂a^z
    dh_daz = dh_dz @ dz_daz
    # ∂h/∂a^in = ∂h/∂n ∂n/∂a^n · I;   ∂h/∂a^hn = ∂h/∂n ∂n/∂a^n ∂a^n/∂a^hn  (b^hn inside r ⊙ ·)
    dh_dain = dh_dn @ dn_dan
    dh_dahn = dh_dn @ dn_dan @ dan_dahn
    ds_da_ih = np.concatenate([dh_dar, dh_daz, dh_dain], axis=2)
    ds_da_hh = np.concatenate([dh_dar, dh_daz, dh_dahn], axis=2)
    # the path from h_{k−1} that skips a^hh: z ⊙ h_{k−1}, ∂h/∂h_{k−1} = diag(z)
    direct = diag(z)
    return LocalStep(h, ds_da_ih, ds_da_hh, direct)


STEPS = {"rnn": rnn_step, "lstm": lstm_step, "gru": gru_step}
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
        These are partials by the state s_k = [h_k; c_k]: ∂J_t/∂c_k holds h_k fixed (the path
        c_k → h_k lies inside step k's Jacobians), so it is the error reaching c_k through
        c_{k+1} only; the efficient Backward.dJ_dc of cells/lstm.py is the total.
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
    flat: bool  # h0 came as (B, H), not (L, B, H): ∂J/∂h0 goes back in the same form


def _initial_states(
    h0: State, shapes: Shapes, B: int, dtype
) -> tuple[list[np.ndarray], bool]:
    """Per layer the initial state s_{−1} = [h0; c0] (B, S), read by step 0, and whether h0
    came as (B, H) (read as the efficient path reads it: an (L, B, H) list is not a flat one)."""
    layers, flat = models.state_to_layers(h0, shapes, B, dtype)
    return [np.concatenate(parts, axis=-1) for parts in layers], flat


def _literal_forward(params, shapes: Shapes, x: np.ndarray, h0: State) -> _Forward:
    step = STEPS[shapes.cell]
    dtype = params["Whh"].dtype
    T, B = x.shape[:2]
    if x.ndim == 2:  # token ids stand for one-hot vectors x_t
        x = np.eye(shapes.D, dtype=dtype)[x]
    states, flat = _initial_states(h0, shapes, B, dtype)
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
    return _Forward(xs, s_prev, steps, layer_input, flat)


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
    head: str = "softmax_each",
    lengths: Any = None,
) -> tuple[float, dict[str, np.ndarray], Terms]:
    """The literal double sum.  Same arguments as :func:`bptt.loss_and_grads`, plus the
    ``head`` and ``lengths`` of :func:`bptt.heads.task_loss_and_grads` (whose targets then
    follow that head's shapes).

    Returns (loss, grads, terms): grads has exactly the keys of params; terms is a
    :class:`Terms` with every ∂J_t/∂s^l_k and (if keep_contributions) every (t, k)
    term's contribution to every recurrent weight.  O(T² · L · B · S · G · H) time: T² from
    walking every J_t back on its own (the sum not regrouped), and S · G · H because every
    step back forms the full Jacobian ∂s_k/∂s_{k−1} = ∂s_k/∂a^hh_k [W^hh 0] + … anew, a matrix
    product (O(B·H³) for the RNN), before multiplying the error by it (only O(B·S²)).
    """
    shapes = models.check_params(params, cell)
    keep_contributions = check_bool("keep_contributions", keep_contributions)
    dtype = params["Whh"].dtype
    x = models.check_inputs(inputs, shapes, dtype)
    T, B = x.shape[:2]
    head = heads.check_head(head)
    n = heads.check_lengths(lengths, T, B)
    if head == "softmax_each" and n is None:
        labels = models.check_targets(targets, T, B, shapes.V)
    else:
        labels = heads.check_head_targets(head, targets, T, B, shapes.V, n, dtype)
    n = np.full(B, T) if n is None else n
    K = models.check_truncate(truncate)
    fwd = _literal_forward(params, shapes, x, h0)
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
        # the sequences with a loss at step t: every real step, or only the last one
        rows = np.flatnonzero(n - 1 == t) if heads.is_last(head) else np.flatnonzero(t < n)
        if rows.size == 0:
            continue  # J_t = 0: nothing to walk back
        # y_t = W^hy h_t + b_y
        y_t = ops.linear_forward(fwd.h_top[t], Why, params.get("by"))
        losses[t], dJt_dy = _head_step(head, y_t, labels, t, rows)
        # ∂J_t/∂W^hy = Σ_b ∂J_t/∂y_t h_tᵀ;  ∂J_t/∂b_y = Σ_b ∂J_t/∂y_t
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
        dJ_dstate0=_public_state(dJ_ds0, fwd.flat, shapes),
        H=H,
    )
    return float(losses.sum()), grads, terms


def _head_step(
    head: str, y_t: np.ndarray, targets: np.ndarray, t: int, rows: np.ndarray
) -> tuple[float, np.ndarray]:
    """J_t and ∂J_t/∂y_t (B, V) from the rows that have a loss at step t (zero elsewhere).

    targets: labels (T, B) / (B,), or values (T, B, V) / (B, V), as the head reads them.
    """
    target_t = targets[rows] if heads.is_last(head) else targets[t, rows]
    dJt_dy = np.zeros_like(y_t)
    if heads.is_softmax(head):
        # J_t = Σ_b −log softmax(y_t)[c];   ∂J_t/∂y_t = p_t − onehot(c)   (on those rows)
        J_t, p_t = ops.cross_entropy_forward(y_t[rows], target_t)
        dJt_dy[rows] = ops.cross_entropy_backward(p_t, target_t)
        return J_t, dJt_dy
    # J_t = Σ_b ½ ‖y_t − r‖²;   ∂J_t/∂y_t = y_t − r   (on those rows)
    residual = y_t[rows] - target_t
    dJt_dy[rows] = residual
    return float(0.5 * np.sum(residual * residual)), dJt_dy


def _walk_back(params, shapes: Shapes, fwd: _Forward, t: int, K, dJt_dsL_t, grads,
               contributions, dJt_ds, dJ_ds0) -> None:
    """Walk the error of J_t back to every (layer, k) with k ≤ t and t − k < K, adding each term."""
    L, H = shapes.L, shapes.H
    ih_bias = IH_BIAS[shapes.cell]
    oldest = 0 if K is None else max(0, t - K + 1)
    layers = [models.layer_params(params, layer, _names(shapes.cell)) for layer in range(L)]
    # per layer, the part of ∂J_t/∂s^l_k that comes through s^l_{k+1}:
    # ∂J_t/∂s^l_{k+1} · ∂s_{k+1}/∂s_k, carried from the later step (zero at k = t)
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
            p = layers[layer]
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


def _public_state(dJ_ds0: list[np.ndarray], flat: bool, shapes: Shapes) -> State:
    """Per-layer (B, S) gradients -> the public state form (flat: h0 came as (B, H))."""
    H = shapes.H
    parts = [tuple(np.split(d, d.shape[-1] // H, axis=-1)) for d in dJ_ds0]
    return models.layers_to_state(parts, flat)
