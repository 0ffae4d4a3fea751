"""An LSTM backward that takes tanh at the previous cell state, cs[t] for cs[t + 1].

Check it:  bptt gradcheck --cell lstm --backward tests/broken_backwards/lstm_tanh_c_prev.py:lstm_backward

The network (one layer, batch rows, token ids as one-hot inputs; PyTorch's gate order i, f, g, o):
    a_t = Wxh x_t + bxh + Whh h_{t-1} + bhh = (a_i, a_f, a_g, a_o), H rows each
    i_t = sigmoid(a_i), f_t = sigmoid(a_f), g_t = tanh(a_g), o_t = sigmoid(a_o)
    c_t = f_t * c_{t-1} + i_t * g_t,   h_t = o_t * tanh(c_t)
    y_t = Why h_t + by,   p_t = softmax(y_t),   J = sum over t and batch of -log p_t[target]
"""

import numpy as np


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_backward(params, inputs, targets, h0=None, truncate=None):
    """Return (loss, grads, (h_last, c_last)); grads has the keys of params plus "h0", "c0"."""
    Wxh, Whh, bxh, bhh = params["Wxh"], params["Whh"], params["bxh"], params["bhh"]
    Why, by = params["Why"], params["by"]
    T, B = inputs.shape
    H = Whh.shape[1]
    D = Wxh.shape[1]
    h_init, c_init = (np.zeros((B, H)), np.zeros((B, H))) if h0 is None else h0

    # forward: keep every state, hs[0] = h0 and hs[t + 1] = h_t (likewise cs)
    xs = np.eye(D)[inputs]  # (T, B, D) one-hot inputs
    hs, cs = [h_init], [c_init]
    gates, ps = [], []
    loss = 0.0
    for t in range(T):
        a = xs[t] @ Wxh.T + bxh + hs[t] @ Whh.T + bhh
        i = sigmoid(a[:, :H])
        f = sigmoid(a[:, H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:])
        c = f * cs[t] + i * g
        h = o * np.tanh(c)
        y = h @ Why.T + by
        p = np.exp(y - y.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss += -np.log(p[np.arange(B), targets[t]]).sum()
        hs.append(h)
        cs.append(c)
        gates.append((i, f, g, o))
        ps.append(p)

    # backward through time, last step first
    dWxh, dWhh, dbxh, dbhh = (np.zeros_like(w) for w in (Wxh, Whh, bxh, bhh))
    dWhy, dby = np.zeros_like(Why), np.zeros_like(by)
    dJ_dh_from_later = np.zeros((B, H))  # Whh^T dJ/da_{t+1}: reaches h_t from step t+1
    dJ_dc_from_later = np.zeros((B, H))  # dJ/dc_{t+1} * f_{t+1}: reaches c_t from step t+1
    for t in reversed(range(T)):
        i, f, g, o = gates[t]
        dJ_dy = ps[t].copy()
        dJ_dy[np.arange(B), targets[t]] -= 1  # dJ_t/dy_t = p_t - onehot
        dWhy += dJ_dy.T @ hs[t + 1]  # y_t = Why h_t + by
        dby += dJ_dy.sum(axis=0)
        dJ_dh = dJ_dy @ Why + dJ_dh_from_later  # from the head and from later steps
        tanh_c = np.tanh(cs[t])  # BUG: cs[t] is c_{t-1}; h_t = o_t * tanh(c_t) needs cs[t + 1]
        dJ_do = dJ_dh * tanh_c  # h_t = o_t * tanh(c_t)
        dJ_dc = dJ_dh * o * (1 - tanh_c**2) + dJ_dc_from_later  # through h_t, and c_{t+1}
        dJ_di = dJ_dc * g  # c_t = f_t * c_{t-1} + i_t * g_t
        dJ_df = dJ_dc * cs[t]  # cs[t] is c_{t-1}
        dJ_dg = dJ_dc * i
        dJ_da_i = dJ_di * i * (1 - i)  # sigmoid' = s (1 - s)
        dJ_da_f = dJ_df * f * (1 - f)
        dJ_da_g = dJ_dg * (1 - g**2)  # tanh' = 1 - tanh^2
        dJ_da_o = dJ_do * o * (1 - o)
        dJ_da = np.concatenate([dJ_da_i, dJ_da_f, dJ_da_g, dJ_da_o], axis=1)  # (B, 4H)
        dWxh += dJ_da.T @ xs[t]
        dWhh += dJ_da.T @ hs[t]  # hs[t] is h_{t-1}
        dbxh += dJ_da.sum(axis=0)
        dbhh += dJ_da.sum(axis=0)
        dJ_dh_from_later = dJ_da @ Whh  # Whh^T dJ/da_t goes back to step t-1
        dJ_dc_from_later = dJ_dc * f  # dc_t/dc_{t-1} = f_t
    grads = {"Wxh": dWxh, "Whh": dWhh, "bxh": dbxh, "bhh": dbhh, "Why": dWhy, "by": dby,
             "h0": dJ_dh_from_later, "c0": dJ_dc_from_later}
    return loss, grads, (hs[-1], cs[-1])
