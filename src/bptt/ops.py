"""Analytic partials: each operation's forward and, right under it, its backward.

Dimension letters used throughout bptt:
    T  time steps          B  batch rows (independent sequences)
    D  input size (for token ids: the vocabulary of the input, one-hot)
    H  hidden size         V  output size (vocabulary of the targets)
    L  stacked layers

Every backward here is a local derivative (a partial of one operation), derived in
docs/derivation.md (the heads': docs/tasks.md) and tested in tests/test_ops.py against
central finite differences in float64.  Arrays are rows: a batch of column vectors of the math
is a (…, n) array, so ``W x`` is written ``x @ W.T``.
"""

from __future__ import annotations

import functools

import numpy as np

# ----------------------------------------------------------------------------
# softmax + cross-entropy:  p = softmax(y),  J = Σ_rows −log p[label]
# ----------------------------------------------------------------------------


def any_outside(x: np.ndarray, n: int) -> bool:
    """True when some integer of ``x`` lies outside [0, n): ONE max over x read as unsigned
    (a negative integer, so read, is at least 2^(bits−1), larger than any n its type can
    reach), by the ufunc's own reduction (x.max() adds a Python layer that a training step
    on a tiny problem feels).  When n exceeds every value of x's signed type (int8 ids of
    a vocabulary of 300), read unsigned a negative one could fall below n: then only a
    negative integer lies outside, ONE min."""
    if not x.size:
        return False
    if x.dtype.kind == "i":
        # the type's largest value 2^(bits−1) − 1, by shifts (np.iinfo costs 1 µs a call)
        if n > (1 << (8 * x.itemsize - 1)) - 1:
            return bool(np.minimum.reduce(x, axis=None) < 0)
        x = x.view(x.dtype.str.replace("i", "u"))
    return bool(np.maximum.reduce(x, axis=None) >= n)


def log_softmax(y: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, stable (log-sum-exp with the max removed).

    y: (..., V) logits.  Returns (..., V) log-probabilities.
    """
    y_max = y.max(axis=-1, keepdims=True)
    with np.errstate(over="ignore"):  # logits more than the float range apart: −inf, p = 0
        shifted = y - y_max
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(y: np.ndarray) -> np.ndarray:
    """softmax over the last axis, stable.  y: (..., V) -> p: (..., V), rows sum to 1."""
    with np.errstate(over="ignore"):  # logits more than the float range apart: −inf, p = 0
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
    # ∂J_t/∂y_t = p_t − onehot(label_t): p, with 1 taken from the label's entry
    dJ_dy = p.copy()
    np.put_along_axis(
        dJ_dy, labels[..., None], np.take_along_axis(p, labels[..., None], axis=-1) - 1, axis=-1
    )
    return dJ_dy


def cross_entropy_and_partial(
    y: np.ndarray,
    labels: np.ndarray,
    out: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """J and ∂J/∂y = p − onehot(labels) at once, in place: forward and backward fused.

    y: (N, V) logits (one row per t and b), labels: (N,).  out: (N, V) receives
    ∂J/∂y (it may be y itself: the logits are then overwritten).  Returns (J, dJ_dy),
    J the TOTAL Σ_rows −log p[label], as :func:`cross_entropy_forward` then
    :func:`cross_entropy_backward` compute it, with fewer passes over the rows:

        s = y − max y                  (stable: the largest exponent is e⁰)
        −log p[label] = log Σ e^s − s[label]
        ∂J/∂y = e^s / Σ e^s − onehot(label)

    mask: (N,) of 0/1 or None: J = Σ_rows m · (−log p[label]) and ∂J/∂y = m ⊙ (p − onehot),
    as :func:`cross_entropy_masked_forward` and :func:`cross_entropy_masked_backward`.
    """
    N, V = y.shape
    if out is None:  # rows laid out one after another, whatever y's layout (a transpose)
        out = np.empty_like(y, order="C")
    at_label = np.arange(0, N * V, V) + labels  # flat index of (row, label[row])
    # (the ufuncs' own reductions: np.sum / y.max add a Python layer a tiny problem feels)
    with np.errstate(over="ignore"):  # logits more than the float range apart: −inf, p = 0
        shifted = np.subtract(y, np.maximum.reduce(y, axis=1, keepdims=True), out=out)
    flat = shifted.reshape(-1)
    if not np.may_share_memory(flat, shifted):
        raise ValueError("out must be a C-contiguous (N, V) array")
    picked = flat[at_label]
    np.exp(shifted, out=shifted)
    total = np.add.reduce(shifted, axis=1, keepdims=True)
    per_row = np.log(total[:, 0]) - picked
    if mask is not None:
        per_row *= mask
    J = float(np.add.reduce(per_row))
    # ∂J/∂y = p − onehot(label): p = e^s / Σ e^s, then 1 taken from each label's entry
    dJ_dy = np.divide(shifted, total, out=shifted)
    flat[at_label] -= 1
    if mask is not None:
        # a masked row's loss is not in J: its ∂J/∂y is 0
        dJ_dy *= mask[:, None]
    return J, dJ_dy


# ----------------------------------------------------------------------------
# elementwise nonlinearities; derivatives from the OUTPUT, as the forward saved it
# ----------------------------------------------------------------------------


def tanh_forward(z: np.ndarray) -> np.ndarray:
    """h = tanh(z)."""
    return np.tanh(z)


def tanh_backward(dJ_dh: np.ndarray, h: np.ndarray) -> np.ndarray:
    """dJ_dz = dJ_dh ⊙ ∂h/∂z with ∂h/∂z = 1 − h² (h = tanh z, the forward's output)."""
    return dJ_dh * (1 - h * h)


def sigmoid_forward(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """s = σ(a) = 1 / (1 + e^{−a}), computed as ½ (1 + tanh(a/2)).

    The same function (1 / (1 + e^{−a}) = ½ (1 + tanh(a/2)) exactly), stable for every a
    with no branch and no boolean mask: tanh saturates to ±1 instead of overflowing.  Its
    round-off is relative to 1 (far in the negative tail, where σ(a) < 1e-16, the result
    is 0 or off by a few ulp of 1), which is what every user of a gate sees anyway.
    out: where to write s (may be a itself).
    """
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    # ½ + ½ τ equals ½ (1 + τ) to the last bit: halving is exact in binary floating point
    np.multiply(out, 0.5, out=out)
    return np.add(out, 0.5, out=out)


def sigmoid_backward(dJ_ds: np.ndarray, s: np.ndarray) -> np.ndarray:
    """dJ_da = dJ_ds ⊙ ∂s/∂a with ∂s/∂a = s (1 − s) (s = σ(a), the forward's output)."""
    return dJ_ds * s * (1 - s)


def sigmoid_slope(s: np.ndarray, out: np.ndarray) -> np.ndarray:
    """∂s/∂a = s (1 − s) for s = σ(a), from the output, written into ``out`` (the cells'
    sweeps compute it for every step at once, without temporaries)."""
    np.subtract(1, s, out=out)
    out *= s
    return out


# ----------------------------------------------------------------------------
# embedding: token ids stand for one-hot x_t, so W x_t is a column gather
# ----------------------------------------------------------------------------


def embedding_forward(W: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """W x for one-hot x given by token ids: column ``ids`` of W.

    W: (H, D), ids: (...) integers in [0, D).  Returns (..., H) = W[:, ids]ᵀ.
    """
    return W.T[ids]


def embedding_backward(
    dJ_dout: np.ndarray,
    ids: np.ndarray,
    D: int,
    out: np.ndarray | None = None,
    one_hot: np.ndarray | None = None,
) -> np.ndarray:
    """∂J/∂W for out = W x (x = onehot(ids)): column d of W gets Σ of dJ_dout over rows with id d.

    dJ_dout: (..., H), ids: (...).  Returns dJ_dW: (H, D); out: an (H, D) array to write
    into (then returned).  one_hot: an (N, D) array of dJ_dout's dtype, N = ids.size, for
    the one-hot rows below: memory kept between calls (a fresh array that size costs a
    page fault per 4 KiB whenever the allocator has given its pages back; measured 0.3 ms
    a training step at N = 1600, D = 100).  Three ways to the same sum, by what is fastest
    for the sizes (measured on a 2-core machine; every way gives the same bits in every run
    for the same sizes):

    * a few columns (D and D·H small, a character vocabulary; or D small and dJ_dout
      strided, as a sweep in columns leaves it): the product the one-hot inputs stand
      for, dJ_doutᵀ · onehot(ids), one GEMM over all rows;
    * narrow rows: ``np.add.at`` on a flattened 1-D index (element d·H + j gets
      dJ_dout[row, j] for every row with id d), numpy's fast form of a scatter-add;
    * wide rows: one add per row.
    """
    H = dJ_dout.shape[-1]
    dJ_dout_rows = dJ_dout.reshape(-1, H)
    flat_ids = ids.reshape(-1)
    if uses_one_hot(dJ_dout, D):
        # onehot(ids): rows ``ids`` of the identity
        identity = _identity(D, dJ_dout_rows.dtype.str)
        if one_hot is None or any_outside(flat_ids, D):
            one_hot = identity.take(flat_ids, axis=0)
        else:  # every id in [0, D): mode 'clip' changes none, and lets take write unbuffered
            identity.take(flat_ids, axis=0, out=one_hot, mode="clip")
        return np.matmul(dJ_dout_rows.T, one_hot, out=out)
    # the scatters add whole rows of dJ_dout into rows of dJ_dWᵀ (D, H)
    dJ_dWT = np.zeros((D, H), dtype=dJ_dout.dtype)
    if H >= WIDE_ROWS:
        dJ_dout_rows = np.ascontiguousarray(dJ_dout_rows)
        for row, d in enumerate(flat_ids.tolist()):
            dJ_dWT[d] += dJ_dout_rows[row]
    else:
        index = (flat_ids[:, None] * H + np.arange(H)).reshape(-1)
        np.add.at(dJ_dWT.reshape(-1), index, np.ascontiguousarray(dJ_dout_rows).reshape(-1))
    if out is None:
        return dJ_dWT.T
    np.copyto(out, dJ_dWT.T)
    return out


def uses_one_hot(dJ_dout: np.ndarray, D: int) -> bool:
    """Whether :func:`embedding_backward` takes the one-hot product for ``dJ_dout`` (…, H)
    and D columns: D and D·H small, or D small and the rows strided (columns of a sweep,
    which the scatters would have to copy into rows)."""
    rows = dJ_dout.reshape(-1, dJ_dout.shape[-1])
    strided = rows.strides[-1] != rows.itemsize
    return D <= ONE_HOT_MAX_COLUMNS and (D * rows.shape[1] <= ONE_HOT_MAX_SIZE or strided)


@functools.lru_cache(maxsize=16)
def _identity(D: int, dtype: str) -> np.ndarray:
    """The (D, D) identity, whose rows are the one-hot vectors (made once per D and dtype,
    read-only)."""
    eye = np.eye(D, dtype=dtype)
    eye.flags.writeable = False
    return eye


ONE_HOT_MAX_COLUMNS = 128
ONE_HOT_MAX_SIZE = 1 << 17
"""Up to D columns and D·H elements the one-hot GEMM is the fastest scatter-add (measured:
at D ≤ 100 it beats the others for H up to 1024 and loses from H = 2048, and at D = 300
it loses already at H = 100)."""

WIDE_ROWS = 256
"""Rows at least this wide are scattered one row at a time (measured: faster from here)."""


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
    dJ_dout_rows = dJ_dout.reshape(-1, m)
    # ∂out/∂x = W
    dJ_dx = dJ_dout @ W
    # ∂out/∂W = x, summed over the rows
    dJ_dW = dJ_dout_rows.T @ x.reshape(-1, n)
    # ∂out/∂b = 1, summed over the rows
    dJ_db = dJ_dout_rows.sum(axis=0)
    return dJ_dx, dJ_dW, dJ_db


# ----------------------------------------------------------------------------
# heads beyond the language model (bptt.heads): a mask over steps, squared error,
# and reading each sequence's own last step.  m is 1 on a real step, 0 on padding.
# ----------------------------------------------------------------------------


def cross_entropy_masked_forward(
    y: np.ndarray, labels: np.ndarray, mask: np.ndarray
) -> tuple[float, np.ndarray]:
    """J = Σ_rows m · (−log softmax(y)[label]): the total cross-entropy of the real rows, and p.

    y: (..., V) logits, labels: (...) integers in [0, V) (any valid label on a masked row),
    mask: (...) of 0/1 (or bool).  Returns (J, p), p = softmax(y) of shape (..., V).
    """
    logp = log_softmax(y)
    picked = np.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    return float(-(picked * mask).sum()), np.exp(logp)


def cross_entropy_masked_backward(
    p: np.ndarray, labels: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """∂J/∂y = m ⊙ (p − onehot(labels)): a masked row gets exactly zero.

    p: (..., V) from the forward, labels: (...), mask: (...).  Returns dJ_dy: (..., V).
    """
    return cross_entropy_backward(p, labels) * mask[..., None]


def squared_error_forward(
    y: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """J = Σ_rows m · ½ ‖y − target‖²  (the TOTAL, with the ½ of docs/tasks.md), and y − target.

    y, target: (..., V); mask: (...) of 0/1 or None (every row counts).
    Returns (J, residual) with residual = y − target (..., V), what the backward needs.
    torch's equal: 0.5 · mse_loss(y, target, reduction="sum") over the real rows.
    """
    residual = y - target
    per_row = 0.5 * (residual * residual).sum(axis=-1)
    if mask is not None:
        per_row = per_row * mask
    return float(per_row.sum()), residual


def squared_error_backward(residual: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """∂J/∂y = m ⊙ (y − target)  (∂(½ r·r)/∂r = r, ∂r/∂y = 1).

    residual: (..., V) = y − target from the forward; mask: (...) or None.  Returns dJ_dy.
    """
    if mask is None:
        return residual.copy()
    return residual * mask[..., None]


def last_step_forward(x: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """x_last[b] = x[n_b − 1, b]: each sequence's own last real step (n_b = lengths[b]).

    x: (T, B, ...), lengths: (B,) integers in [1, T], or None (every n_b = T).
    Returns (B, ...).
    """
    if lengths is None:
        return x[-1].copy()
    return x[lengths - 1, np.arange(x.shape[1])]


def last_step_backward(dJ_dlast: np.ndarray, lengths: np.ndarray | None, T: int) -> np.ndarray:
    """∂J/∂x from ∂J/∂x_last:  ∂x_last[b]/∂x[t, b] = [t = n_b − 1], a scatter; zero elsewhere.

    dJ_dlast: (B, ...), lengths: (B,) or None (n_b = T).  Returns dJ_dx: (T, B, ...).
    """
    B = dJ_dlast.shape[0]
    dJ_dx = np.zeros((T, *dJ_dlast.shape), dtype=dJ_dlast.dtype)
    steps = np.full(B, T - 1) if lengths is None else lengths - 1
    dJ_dx[steps, np.arange(B)] = dJ_dlast
    return dJ_dx
