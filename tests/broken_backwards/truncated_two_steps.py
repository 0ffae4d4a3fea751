"""Broken on purpose (for full BPTT): each loss is walked back only two steps, WildML-style.

Check it:  bptt gradcheck --backward tests/broken_backwards/truncated_two_steps.py:rnn_backward
It IS right for truncated BPTT with a window of 2:
           bptt gradcheck --backward tests/broken_backwards/truncated_two_steps.py:rnn_backward --truncate 2

Each J_t is walked back by its own inner loop (the double sum written out), but the
inner loop stops after `bptt_truncate` steps.
"""

import numpy as np


def rnn_backward(params, inputs, targets, h0=None, truncate=None):
    """Return (loss, grads); grads has the keys of params."""
    bptt_truncate = 2  # BUG for full BPTT: the inner loop should reach back to the first step
    Wxh, Whh, bh = params["Wxh"], params["Whh"], params["bh"]
    Why, by = params["Why"], params["by"]
    T, B = inputs.shape
    H, D = Wxh.shape
    if h0 is None:
        h0 = np.zeros((B, H))

    # forward: keep every hidden state, hs[0] = h0 and hs[t + 1] = h_t
    xs = np.eye(D)[inputs]
    hs = [h0]
    ps = []
    loss = 0.0
    for t in range(T):
        h = np.tanh(xs[t] @ Wxh.T + hs[t] @ Whh.T + bh)
        y = h @ Why.T + by
        p = np.exp(y - y.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss += -np.log(p[np.arange(B), targets[t]]).sum()
        hs.append(h)
        ps.append(p)

    dWxh, dWhh, dbh = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(bh)
    dWhy, dby = np.zeros_like(Why), np.zeros_like(by)
    for t in range(T):
        dJt_dy = ps[t].copy()
        dJt_dy[np.arange(B), targets[t]] -= 1  # dJ_t/dy_t = p_t - onehot
        dWhy += dJt_dy.T @ hs[t + 1]
        dby += dJt_dy.sum(axis=0)
        dJt_dh = dJt_dy @ Why  # dJ_t/dh_t
        # walk J_t back: k = t, t-1, ... (but only bptt_truncate steps)
        for k in range(t, max(-1, t - bptt_truncate), -1):
            dJt_dz = dJt_dh * (1 - hs[k + 1] ** 2)
            dWxh += dJt_dz.T @ xs[k]
            dWhh += dJt_dz.T @ hs[k]
            dbh += dJt_dz.sum(axis=0)
            dJt_dh = dJt_dz @ Whh  # dJ_t/dh_{k-1}
    grads = {"Wxh": dWxh, "Whh": dWhh, "bh": dbh, "Why": dWhy, "by": dby}
    return loss, grads
