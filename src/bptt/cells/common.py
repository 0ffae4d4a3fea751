"""What every cell shares: the input projection and the bookkeeping of truncation.

Legend: T time, B batch, D input size, H hidden size, A ages (see below).

Ages.  Truncated BPTT with window K keeps, of the double sum
Σ_t Σ_{k≤t} ∂J_t/∂h_t ∂h_t/∂h_k ∂h_k/∂z_k ∂z_k/∂W, only the terms with
t − k < K.  The age of a gradient at step k is a = t − k, the distance back
to the loss J_t it came from.  The efficient backward therefore carries its
error vectors by age: an array (A, B, H) with A = K, where moving from step k
to k − 1 makes every age one older and drops the age that reaches K.  Without
truncation every age is kept, and since the sum is linear they can all be
added up at once: A = 1 and the single row holds Σ_t ∂J_t/∂h_k.  That is the
whole of the "shortcut": the same sum, regrouped by k.
"""

from __future__ import annotations

import numpy as np

from bptt import ops


def num_ages(truncate: int | None) -> int:
    """A: rows of age kept by the backward sweep (1 = all ages summed, full BPTT)."""
    return 1 if truncate is None else truncate


def age_one_step(back: np.ndarray, truncate: int | None) -> np.ndarray:
    """Error arriving at step k−1 from step k: every age grows by one.

    back: (A, B, H) = ∂J_t/∂h_{k−1} along the one-step path, indexed by the age
    t − k it had at step k.  Full BPTT (A = 1): the sum needs no shifting.
    Truncated (A = K): age a at k is age a + 1 at k − 1; the oldest is dropped.
    """
    if truncate is None:
        return back
    older = np.zeros_like(back)
    older[1:] = back[:-1]
    return older


def is_token_ids(inputs: np.ndarray) -> bool:
    """True when inputs are token ids (T, B) standing for one-hot x_t, False for dense (T, B, D)."""
    return inputs.ndim == 2


def input_projection(W: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """W x_t for every t and row: (T, B, D) dense or (T, B) ids -> (T, B, rows of W)."""
    if is_token_ids(inputs):
        return ops.embedding_forward(W, inputs)
    return inputs @ W.T


def input_projection_backward(
    dJ_dproj: np.ndarray, inputs: np.ndarray, W: np.ndarray, need_dx: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Partials of proj = W x_t, summed over all rows and ages.

    dJ_dproj: (A, T, B, G) by age.  Returns (dJ_dW (G, D), dJ_dx (A, T, B, D) or None).
    ∂proj/∂W = x_t (a column scatter for token ids);  ∂proj/∂x_t = W.
    """
    G = W.shape[0]
    dJ_dproj_all_ages = dJ_dproj.sum(axis=0) if dJ_dproj.shape[0] > 1 else dJ_dproj[0]
    if is_token_ids(inputs):
        dJ_dW = ops.embedding_backward(dJ_dproj_all_ages, inputs, W.shape[1])
    else:
        dJ_dW = dJ_dproj_all_ages.reshape(-1, G).T @ inputs.reshape(-1, W.shape[1])
    dJ_dx = dJ_dproj @ W if need_dx else None
    return dJ_dW, dJ_dx
