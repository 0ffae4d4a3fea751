"""A GRU backward that keeps the previous state with 1 − z (Chung et al.), not z (PyTorch).

Check it:  bptt gradcheck --cell gru --backward tests/broken_backwards/gru_z_swapped.py:gru_backward

The network (one layer, batch rows, token ids as one-hot inputs; PyTorch's gate order r, z, n):
    a_ih = Wxh x_t + bxh = (a_ir, a_iz, a_in),  a_hh = Whh h_{t-1} + bhh = (a_hr, a_hz, a_hn)
    r_t = sigmoid(a_ir + a_hr), z_t = sigmoid(a_iz + a_hz), n_t = tanh(a_in + r_t * a_hn)
    h_t = z_t * n_t + (1 - z_t) * h_{t-1}   (BUG: PyTorch's is (1 - z_t) * n_t + z_t * h_{t-1})
    y_t = Why h_t + by,   p_t = softmax(y_t),   J = sum over t and batch of -log p_t[target]
"""

import numpy as np


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def gru_backward(params, inputs, targets, h0=None, truncate=None):
    """Return (loss, grads, h_last); grads has the keys of params plus "h0"."""
    Wxh, Whh, bxh, bhh = params["Wxh"], params["Whh"], params["bxh"], params["bhh"]
    Why, by = params["Why"], params["by"]
    T, B = inputs.shape
    H = Whh.shape[1]
    D = Wxh.shape[1]
    if h0 is None:
        h0 = np.zeros((B, H))

    # forward: keep every state, hs[0] = h0 and hs[t + 1] = h_t
    xs = np.eye(D)[inputs]  # (T, B, D) one-hot inputs
    hs = [h0]
    gates, ps = [], []
    loss = 0.0
    for t in range(T):
        a_ih = xs[t] @ Wxh.T + bxh
        a_hh = hs[t] @ Whh.T + bhh
        r = sigmoid(a_ih[:, :H] + a_hh[:, :H])
        z = sigmoid(a_ih[:, H:2 * H] + a_hh[:, H:2 * H])
        a_hn = a_hh[:, 2 * H:]
        n = np.tanh(a_ih[:, 2 * H:] + r * a_hn)
        h = z * n + (1 - z) * hs[t]  # BUG: the other convention
        y = h @ Why.T + by
        p = np.exp(y - y.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss += -np.log(p[np.arange(B), targets[t]]).sum()
        hs.append(h)
        gates.append((r, z, n, a_hn))
        ps.append(p)

    # backward through time, last step first
    dWxh, dWhh, dbxh, dbhh = (np.zeros_like(w) for w in (Wxh, Whh, bxh, bhh))
    dWhy, dby = np.zeros_like(Why), np.zeros_like(by)
    dJ_dh_from_later = np.zeros((B, H))  # the error reaching h_t from step t+1
    for t in reversed(range(T)):
        r, z, n, a_hn = gates[t]
        dJ_dy = ps[t].copy()
        dJ_dy[np.arange(B), targets[t]] -= 1  # dJ_t/dy_t = p_t - onehot
        dWhy += dJ_dy.T @ hs[t + 1]  # y_t = Why h_t + by
        dby += dJ_dy.sum(axis=0)
        dJ_dh = dJ_dy @ Why + dJ_dh_from_later  # from the head and from later steps
        dJ_dn = dJ_dh * z  # h_t = z_t n_t + (1 - z_t) h_{t-1}
        dJ_dz = dJ_dh * (n - hs[t])  # hs[t] is h_{t-1}
        dJ_da_n = dJ_dn * (1 - n**2)  # tanh' = 1 - tanh^2;  a_n = a_in + r a_hn
        dJ_dr = dJ_da_n * a_hn
        dJ_da_r = dJ_dr * r * (1 - r)  # sigmoid' = s (1 - s)
        dJ_da_z = dJ_dz * z * (1 - z)
        dJ_da_ih = np.concatenate([dJ_da_r, dJ_da_z, dJ_da_n], axis=1)  # (B, 3H)
        dJ_da_hh = np.concatenate([dJ_da_r, dJ_da_z, dJ_da_n * r], axis=1)  # a_hn sits in r *
        dWxh += dJ_da_ih.T @ xs[t]
        dbxh += dJ_da_ih.sum(axis=0)
        dWhh += dJ_da_hh.T @ hs[t]
        dbhh += dJ_da_hh.sum(axis=0)
        # to step t-1: through Whh, and through (1 - z_t) h_{t-1} directly
        dJ_dh_from_later = dJ_da_hh @ Whh + dJ_dh * (1 - z)
    grads = {"Wxh": dWxh, "Whh": dWhh, "bxh": dbxh, "bhh": dbhh, "Why": dWhy, "by": dby,
             "h0": dJ_dh_from_later}
    return loss, grads, hs[-1]
