"""The problems benchmarked: sizes, data, initial weights, and the FLOPs of one step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

import bptt

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


@dataclass(frozen=True)
class Config:
    """One benchmark point: a character LM (token ids in, V classes out) and its optimizer.

    cell, hidden size H, batch B (streams), sequence length T, vocabulary V (input and
    output), dtype, optimizer (with lr and, for min-char-rnn, elementwise clipping).
    """

    cell: str
    H: int
    B: int
    T: int = 50
    V: int = 100
    dtype: str = "float32"
    optimizer: str = "adam"
    lr: float = 1e-3
    clip: float | None = None

    @property
    def chars(self) -> int:
        """Characters per training step: T·B."""
        return self.T * self.B

    @property
    def label(self) -> str:
        return f"{self.cell} H={self.H} B={self.B} T={self.T} V={self.V} {self.dtype}"

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)


MIN_CHAR = Config("rnn", H=100, B=1, T=25, V=65, dtype="float64", optimizer="adagrad",
                  lr=0.1, clip=5.0)
"""min-char-rnn's configuration: H=100, T=25, a vocabulary of about 65, float64,
Adagrad (lr 0.1), every gradient clipped to ±5."""


def grid(quick: bool) -> list[Config]:
    """cell ∈ {rnn, lstm, gru} × H ∈ {100, 256, 512} × B ∈ {1, 32}, T=50, V=100, float32.

    quick: H ∈ {100, 256} only.
    """
    sizes = (100, 256) if quick else (100, 256, 512)
    return [Config(cell, H, B) for cell in ("rnn", "lstm", "gru") for H in sizes for B in (1, 32)]


def model_flops(config: Config) -> int:
    """FLOPs of the matrix products of one training step (the nominal work, the same for all).

    Per step and row: the recurrent product W^hh h (2·G·H, G = gates·H rows) forward, and
    twice backward (W^hhᵀ ∂J/∂a and ∂J/∂W^hh); the head W^hy h (2·V·H) forward and twice
    backward (W^hyᵀ ∂J/∂y and ∂J/∂W^hy).  The input projection of one-hot inputs is a
    gather (no FLOPs) and elementwise work is not counted.
    """
    G = GATES[config.cell] * config.H
    per_row = 3 * 2 * G * config.H + 3 * 2 * config.V * config.H
    return per_row * config.T * config.B


def make_data(config: Config, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random token ids (T, B) and next-token targets (T, B) in [0, V)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, config.V, size=(config.T + 1, config.B))
    return ids[:-1].copy(), ids[1:].copy()


def make_params(config: Config, seed: int = 0) -> dict[str, np.ndarray]:
    """bptt's initial parameters (PyTorch's initialisation), with biases."""
    return bptt.init_params(config.cell, config.V, config.H, config.V, bias=True,
                            rng=np.random.default_rng(seed), dtype=np.dtype(config.dtype))
