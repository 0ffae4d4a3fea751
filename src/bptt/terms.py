"""∂J/∂W^hh laid bare: the (t, k) terms of the double sum, and the same sum regrouped by k.

Legend: T time, B batch, H hidden size, G rows of W^hh (H rnn, 3H gru, 4H lstm).

The derivation writes, for the recurrent weight of one layer,

    ∂J/∂W^hh = Σ_t Σ_{k≤t} ∂J_t/∂h_t · ∂h_t/∂h_k · ∂h_k/∂z_k · ∂z_k/∂W^hh .

:func:`expand_whh` computes every term of that sum with the REFERENCE
(:func:`bptt.reference.loss_and_grads`, its ``contributions``) and sets them
beside the EFFICIENT backward (:func:`bptt.models.backprop`):

* the sum of all terms is the efficient dW^hh;
* grouped by k, Σ_{t≥k} ∂J_t/∂h_k (the reference's ``dJt_dh`` summed over t) is
  exactly the efficient sweep's accumulated ∂J/∂h_k (its ``dJ_dh[0, k]``: without
  truncation age row 0 holds every age) — the O(T) "shortcut" is nothing but the
  double sum regrouped.

Arrays are 0-based ([t, k] = step t, k counted from 0); the command line labels
steps 1 … T as the derivation does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bptt import models, reference
from bptt.errors import BpttError, is_int
from bptt.gradcheck import random_problem


@dataclass
class WhhExpansion:
    """The terms of ∂J/∂W^hh for one layer on a small random problem (0-based arrays).

    problem: (params, inputs (T, B), targets (T, B), h0) as from
        :func:`bptt.gradcheck.random_problem` (float64, random biases and h0).
    terms: (T, T, G, H): [t, k] the term of (t, k), zero for k > t.
    norms: (T, T): ‖terms[t, k]‖_F, NaN for k > t.
    dJt_dh: (T, T, B, H): [t, k] = ∂J_t/∂h_k (reference).
    dJ_dh_grouped: (T, B, H): [k] = Σ_{t≥k} ∂J_t/∂h_k (the terms regrouped by k).
    dJ_dh_efficient: (T, B, H): [k] = the efficient sweep's accumulated ∂J/∂h_k (its
        dJ_dh[0, k], age row 0).
    grad_sum: (G, H) Σ of all terms;  grad_efficient: (G, H) the efficient dW^hh.
    """

    cell: str
    seed: int
    problem: tuple
    terms: np.ndarray
    norms: np.ndarray
    dJt_dh: np.ndarray
    dJ_dh_grouped: np.ndarray
    dJ_dh_efficient: np.ndarray
    grad_sum: np.ndarray
    grad_efficient: np.ndarray

    @property
    def T(self) -> int:
        """Time steps of the expanded problem."""
        return int(self.terms.shape[0])

    @property
    def max_diff_grad(self) -> float:
        """max |Σ terms − efficient dW^hh|."""
        return float(np.max(np.abs(self.grad_sum - self.grad_efficient)))

    def max_diff_dJ_dh(self, k: int) -> float:
        """max |Σ_t ∂J_t/∂h_k − efficient dJ_dh[k]| (k 0-based)."""
        if not is_int(k) or not 0 <= k < self.T:
            raise BpttError(f"k must be a step 0 … {self.T - 1}, got {k!r}")
        return float(np.max(np.abs(self.dJ_dh_grouped[k] - self.dJ_dh_efficient[k])))


def expand_whh(
    cell: str = "rnn", seq_len: int = 3, hidden: int = 3, seed: int = 0, batch: int = 1
) -> WhhExpansion:
    """Every (t, k) term of ∂J/∂W^hh and the efficient backward's numbers beside them.

    One layer, float64, the problem of :func:`bptt.gradcheck.random_problem`
    (cell, hidden, seq_len, batch, 1, seed).  Returns a :class:`WhhExpansion`.
    """
    params, inputs, targets, h0 = random_problem(cell, hidden, seq_len, batch, 1, seed)
    _, _, terms = reference.loss_and_grads(params, inputs, targets, h0=h0)
    efficient = models.backprop(params, inputs, targets, h0=h0)
    contributions = terms.contributions["Whh"]  # (T, T, G, H)
    T = contributions.shape[0]
    norms = np.sqrt((contributions**2).sum(axis=(2, 3)))
    norms[np.triu_indices(T, 1)] = np.nan
    dJt_dh = terms.dJt_dh[0]  # (T, T, B, H), layer 0
    return WhhExpansion(
        cell=cell,
        seed=seed,
        problem=(params, inputs, targets, h0),
        terms=contributions,
        norms=norms,
        dJt_dh=dJt_dh,
        dJ_dh_grouped=dJt_dh.sum(axis=0),
        dJ_dh_efficient=efficient.dJ_dh[0][0],
        grad_sum=contributions.sum(axis=(0, 1)),
        grad_efficient=efficient.grads["Whh"],
    )
