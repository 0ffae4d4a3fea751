"""The textbook training step of min-char-rnn, written here: the baseline bptt must beat.

One sequence (B = 1), column vectors, one step at a time: a one-hot x_t, matrix-vector
products for every step forward, the per-step backward accumulating every gradient with
``+=``, every gradient clipped to ±clip, then Adagrad.  Written the plain way on purpose
(no batching over time, no preallocation): it is what bptt's regrouping is measured
against.  Parameters are bptt's (Wxh (H, V), Whh (H, H), bh (H,), Why (V, H), by (V,)),
the loss is the same total, and the initial state is zero, as in every contender.
"""

from __future__ import annotations

import numpy as np


class NaiveLoop:
    """min-char-rnn's loop on copies of bptt parameters; :meth:`step` trains one sequence."""

    def __init__(self, params: dict[str, np.ndarray], ids: np.ndarray, targets: np.ndarray,
                 lr: float, clip: float | None, eps: float = 1e-10) -> None:
        if ids.ndim != 2 or ids.shape[1] != 1:
            raise ValueError("the naive loop trains one sequence: ids must be (T, 1)")
        self.p = {
            "Wxh": params["Wxh"].copy(),
            "Whh": params["Whh"].copy(),
            "bh": params["bh"].reshape(-1, 1).copy(),
            "Why": params["Why"].copy(),
            "by": params["by"].reshape(-1, 1).copy(),
        }
        self.inputs = [int(i) for i in ids[:, 0]]
        self.targets = [int(i) for i in targets[:, 0]]
        self.lr, self.clip, self.eps = lr, clip, eps
        self.memory = {k: np.zeros_like(v) for k, v in self.p.items()}  # Adagrad's Σ g²

    def loss_and_grads(self) -> tuple[float, dict[str, np.ndarray]]:
        """Forward and backward through the sequence, one step at a time."""
        Wxh, Whh, bh, Why, by = (self.p[k] for k in ("Wxh", "Whh", "bh", "Why", "by"))
        H, V = Wxh.shape
        xs, hs, ps = {}, {-1: np.zeros((H, 1), dtype=Wxh.dtype)}, {}
        loss = 0.0
        for t, (i, label) in enumerate(zip(self.inputs, self.targets, strict=True)):
            xs[t] = np.zeros((V, 1), dtype=Wxh.dtype)
            xs[t][i] = 1
            hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
            # softmax as min-char-rnn writes it, with no shift by the max (its logits stay
            # small: the first-loss check would see an overflow's NaN), and e^y made once
            e = np.exp(np.dot(Why, hs[t]) + by)
            ps[t] = e / np.sum(e)
            loss += -np.log(ps[t][label, 0])
        grads = {k: np.zeros_like(v) for k, v in self.p.items()}
        dJ_dh_from_later = np.zeros_like(hs[0])
        for t in reversed(range(len(self.inputs))):
            dJ_dy = np.copy(ps[t])
            dJ_dy[self.targets[t]] -= 1
            grads["Why"] += np.dot(dJ_dy, hs[t].T)
            grads["by"] += dJ_dy
            dJ_dh = np.dot(Why.T, dJ_dy) + dJ_dh_from_later
            dJ_dz = (1 - hs[t] * hs[t]) * dJ_dh
            grads["bh"] += dJ_dz
            grads["Wxh"] += np.dot(dJ_dz, xs[t].T)
            grads["Whh"] += np.dot(dJ_dz, hs[t - 1].T)
            dJ_dh_from_later = np.dot(Whh.T, dJ_dz)
        return float(loss), grads

    def step(self) -> float:
        """One training step: loss and gradients, clip to ±clip, Adagrad.  Returns the loss."""
        loss, grads = self.loss_and_grads()
        for key, g in grads.items():
            if self.clip is not None:
                np.clip(g, -self.clip, self.clip, out=g)
            self.memory[key] += g * g
            self.p[key] -= self.lr * g / (np.sqrt(self.memory[key]) + self.eps)
        return loss
