"""Broken on purpose: tanh' is computed as 1 - tanh(h_t)^2, applying tanh to h_t = tanh(z_t) once more.

Check it:  bptt gradcheck --backward tests/broken_backwards/tanh_applied_twice.py:rnn_backward

Everything else is tests/broken_backwards/correct.py; the line with the bug says BUG.
"""

import numpy as np


def rnn_backward(params, inputs, targets, h0=None, truncate=None):
    """Return (loss, grads, h_last); grads has the keys of params plus "h0"."""
    Wxh, Whh, bh = params["Wxh"], params["Whh"], params["bh"]
    Why, by = params["Why"], params["by"]
    T, B = inputs.shape
    H, D = Wxh.shape
    if h0 is None:
        h0 = np.zeros((B, H))

    # forward: keep every hidden state, hs[0] = h0 and hs[t + 1] = h_t
    xs = np.eye(D)[inputs]  # (T, B, D) one-hot inputs
    hs = [h0]
    ps = []
    loss = 0.0
    for t in range(T):
        z = xs[t] @ Wxh.T + hs[t] @ Whh.T + bh  # z_t = Wxh x_t + Whh h_{t-1} + bh
        h = np.tanh(z)
        y = h @ Why.T + by
        p = np.exp(y - y.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss += -np.log(p[np.arange(B), targets[t]]).sum()
        hs.append(h)
        ps.append(p)

    # backward through time, last step first
    dWxh, dWhh, dbh = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(bh)
    dWhy, dby = np.zeros_like(Why), np.zeros_like(by)
    dJ_dh_from_later = np.zeros((B, H))  # Whh^T dJ/dz_{t+1}: the error coming from later steps
    for t in reversed(range(T)):
        dJ_dy = ps[t].copy()
        dJ_dy[np.arange(B), targets[t]] -= 1  # dJ_t/dy_t = p_t - onehot
        dWhy += dJ_dy.T @ hs[t + 1]  # y_t = Why h_t + by
        dby += dJ_dy.sum(axis=0)
        dJ_dh = dJ_dy @ Why + dJ_dh_from_later  # from the head and from later steps
        dJ_dz = dJ_dh * (1 - np.tanh(hs[t + 1]) ** 2)  # BUG: h_t is already tanh(z_t)
        dWxh += dJ_dz.T @ xs[t]
        dWhh += dJ_dz.T @ hs[t]  # hs[t] is h_{t-1}
        dbh += dJ_dz.sum(axis=0)
        dJ_dh_from_later = dJ_dz @ Whh  # Whh^T dJ/dz_t goes back to step t-1
    grads = {"Wxh": dWxh, "Whh": dWhh, "bh": dbh, "Why": dWhy, "by": dby,
             "h0": dJ_dh_from_later}
    return loss, grads, hs[-1]
