"""Analytic partials: each operation's forward and, right under it, its backward.

Dimension letters used throughout bptt:
    T  time steps          B  batch rows (independent sequences)
    D  input size (for token ids: the vocabulary of the input, one-hot)
    H  hidden size         V  output size (vocabulary of the targets)
    L  stacked layers

Every backward here is a local derivative (a partial of one operation), derived
in docs/derivation.md and tested in tests/test_ops.py against central finite
differences in float64.  Arrays are rows: a batch of column vectors of the math
is a (…, n) array, so ``W x`` is written ``x @ W.T``.
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------
# softmax + cross-entropy:  p = softmax(y),  J = Σ_rows −log p[label]
# ----------------------------------------------------------------------------


def log_softmax(y: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, stable (log-sum-exp with the max removed).

    y: (..., V) logits.  Returns (..., V) log-probabilities.
    """
    y_max = y.max(axis=-1, keepdims=True)
    shifted = y - y_max
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(y: np.ndarray) -> np.ndarray:
    """softmax over the last axis, stable.  y: (..., V) -> p: (..., V), rows sum to 1."""
    e = np.exp(y - y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy_forward(y: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """The TOTAL cross-entropy of softmax(y) against integer labels, and p.

    y: (..., V) logits, labels: (...) integers in [0, V).
    Returns (J, p): J = Σ −log p[label] over every leading index (time and
    batch: the total, not the mean), p = softmax(y) of shape (..., V).
    """
    logp = log_softmax(y)
    picked = np.take_along_axis(logp, labels[..., None], axis=-1)
    return float(-picked.sum()), np.exp(logp)


def cross_entropy_backward(p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """∂J_t/∂y_t = p_t − onehot(labels_t), for every row at once.

    p: (..., V) probabilities from the forward, labels: (...).
    Returns dJ_dy: (..., V).  (Each J_t depends only on its own y_t.)
    """
    dJ_dy = p.copy()
    np.put_along_axis(
        dJ_dy, labels[..., None], np.take_along_axis(p, labels[..., None], axis=-1) - 1, axis=-1
    )
    return dJ_dy


# ----------------------------------------------------------------------------
# elementwise nonlinearities; derivatives from the OUTPUT, as the forward saved it
# ----------------------------------------------------------------------------


def tanh_forward(z: np.ndarray) -> np.ndarray:
    """h = tanh(z)."""
    return np.tanh(z)


def tanh_backward(dJ_dh: np.ndarray, h: np.ndarray) -> np.ndarray:
    """dJ_dz = dJ_dh ⊙ ∂h/∂z with ∂h/∂z = 1 − h² (h = tanh z, the forward's output)."""
    return dJ_dh * (1 - h * h)


def sigmoid_forward(a: np.ndarray) -> np.ndarray:
    """s = σ(a) = 1 / (1 + e^{−a}), stable for large |a|."""
    out = np.empty_like(a)
    pos = a >= 0
    out[pos] = 1 / (1 + np.exp(-a[pos]))
    e = np.exp(a[~pos])
    out[~pos] = e / (1 + e)
    return out


def sigmoid_backward(dJ_ds: np.ndarray, s: np.ndarray) -> np.ndarray:
    """dJ_da = dJ_ds ⊙ ∂s/∂a with ∂s/∂a = s (1 − s) (s = σ(a), the forward's output)."""
    return dJ_ds * s * (1 - s)


# ----------------------------------------------------------------------------
# embedding: token ids stand for one-hot x_t, so W x_t is a column gather
# ----------------------------------------------------------------------------


def embedding_forward(W: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """W x for one-hot x given by token ids: column ``ids`` of W.

    W: (H, D), ids: (...) integers in [0, D).  Returns (..., H) = W[:, ids]ᵀ.
    """
    return W.T[ids]


def embedding_backward(dJ_dout: np.ndarray, ids: np.ndarray, D: int) -> np.ndarray:
    """∂J/∂W for out = W x (x = onehot(ids)): column d of W gets Σ of dJ_dout over rows with id d.

    dJ_dout: (..., H), ids: (...).  Returns dJ_dW: (H, D).  A scatter-add on a
    flattened 1-D index (the fast form of ``np.add.at``).
    """
    H = dJ_dout.shape[-1]
    dJ_dWT = np.zeros((D, H), dtype=dJ_dout.dtype)
    np.add.at(dJ_dWT, ids.reshape(-1), dJ_dout.reshape(-1, H))
    return dJ_dWT.T


# ----------------------------------------------------------------------------
# linear map: out = x Wᵀ + b over rows
# ----------------------------------------------------------------------------


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """out = W x + b for every row x.  x: (..., n), W: (m, n), b: (m,) or None -> (..., m)."""
    out = x @ W.T
    if b is not None:
        out += b
    return out


def linear_backward(
    dJ_dout: np.ndarray, x: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partials of out = W x + b summed over all rows.

    dJ_dout: (..., m), x: (..., n).  Returns (dJ_dx (..., n), dJ_dW (m, n), dJ_db (m,)):
    ∂out/∂x = W  -> dJ_dx = dJ_dout W;   ∂out/∂W = x -> dJ_dW = Σ_rows dJ_doutᵀ x;
    ∂out/∂b = 1 -> dJ_db = Σ_rows dJ_dout.
    """
    m, n = W.shape
    g = dJ_dout.reshape(-1, m)
    dJ_dx = dJ_dout @ W
    dJ_dW = g.T @ x.reshape(-1, n)
    dJ_db = g.sum(axis=0)
    return dJ_dx, dJ_dW, dJ_db
