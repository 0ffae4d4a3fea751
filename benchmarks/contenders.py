"""The contenders: each builds, from bptt's initial weights, a runner whose ``step()`` is one
training step (forward, the total loss, BPTT through all T steps, the optimizer update) and
returns the loss of that step's forward pass.  ``sync()`` waits for queued work (JAX).

Inputs.  bptt and JAX read token ids and gather the columns of W^xh (what a one-hot
product is).  PyTorch's nn.RNN/LSTM/GRU take dense inputs only, so torch gets the ids as
one-hot vectors (T, B, V), built once outside the timed steps: its input projection is
then a GEMM of T·B × V by V × G, forward and (for ∂J/∂W^ih) backward: 4·V·G FLOPs a row
more than the 6·(G·H + V·H) we count (a third to a half more at H = 100, an eighth at
H = 512).  What that costs it, measured against the same network with a 1-wide input
(2026-11-27, interleaved rounds; the time with one-hot rows ÷ the time without): the LSTM
1.31–1.34 at H = 100, B = 32, 1.19 at H = 256, B = 32 and 1.15 at H = 100, B = 1; the GRU
1.10–1.14 at H = 100, B = 32; the vanilla RNN 1.02–1.13.  The gather is bptt's (and JAX's)
because its inputs are token ids, which nn.RNN/LSTM/GRU cannot take; one-hot rows are how
a user of them feeds characters, and how the cross-checks in tests/ feed it.  The FLOPs we
report (config.model_flops) leave the input projection out for everyone.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.config import Config
from benchmarks.naive import NaiveLoop
from bptt import models, optim


class BpttRunner:
    """bptt as ``bptt train`` runs it: a Workspace (flat buffers, memory reused, parameters
    validated once) and the optimizer on the flat buffers; clipping to ±clip if asked."""

    def __init__(self, config: Config, params: dict, ids: np.ndarray, targets: np.ndarray,
                 threads: int) -> None:
        self.params = {k: v.copy() for k, v in params.items()}
        self.workspace = models.Workspace(self.params)
        self.optimizer = optim.make_optimizer(config.optimizer, config.lr)
        self.opt_state = optim.pack_state(self.optimizer.init_state(self.params),
                                          self.workspace.layout)
        self.flat_params = {"flat": self.workspace.params_flat}
        self.flat_grads = {"flat": self.workspace.grads_flat}
        self.ids, self.targets, self.clip = ids, targets, config.clip

    def step(self) -> float:
        result = models.backprop(self.params, self.ids, self.targets, workspace=self.workspace)
        if self.clip is not None:
            optim.clip_by_value(self.flat_grads, self.clip)
        self.optimizer.update(self.flat_params, self.flat_grads, self.opt_state)
        return result.loss

    def sync(self) -> None:
        pass


class NaiveRunner:
    """The textbook per-step loop (naive.py); vanilla RNN, one sequence only."""

    def __init__(self, config: Config, params: dict, ids: np.ndarray, targets: np.ndarray,
                 threads: int) -> None:
        self.loop = NaiveLoop(params, ids, targets, config.lr, config.clip)

    def step(self) -> float:
        return self.loop.step()

    def sync(self) -> None:
        pass


class TorchRunner:
    """PyTorch CPU eager: nn.RNN(tanh)/LSTM/GRU + nn.Linear + cross_entropy(sum) + torch.optim.

    The vanilla RNN's single bias b_h is torch's bias_ih (bias_hh starts at 0 and trains,
    as any nn.RNN's does).  Adam/Adagrad with bptt's hyper-parameters; default
    implementation (what a user gets); clip_grad_value_ when clipping.
    """

    def __init__(self, config: Config, params: dict, ids: np.ndarray, targets: np.ndarray,
                 threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        dtype = getattr(torch, config.dtype)
        V, H = config.V, config.H
        kinds = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
        options = {"nonlinearity": "tanh"} if config.cell == "rnn" else {}
        self.net = kinds[config.cell](V, H, bias=True, dtype=dtype, **options)
        self.head = torch.nn.Linear(H, V, bias=True, dtype=dtype)
        with torch.no_grad():
            self.net.weight_ih_l0.copy_(torch.from_numpy(params["Wxh"]))
            self.net.weight_hh_l0.copy_(torch.from_numpy(params["Whh"]))
            if config.cell == "rnn":
                self.net.bias_ih_l0.copy_(torch.from_numpy(params["bh"]))
                self.net.bias_hh_l0.zero_()
            else:
                self.net.bias_ih_l0.copy_(torch.from_numpy(params["bxh"]))
                self.net.bias_hh_l0.copy_(torch.from_numpy(params["bhh"]))
            self.head.weight.copy_(torch.from_numpy(params["Why"]))
            self.head.bias.copy_(torch.from_numpy(params["by"]))
        self.x = torch.from_numpy(np.eye(V, dtype=config.dtype)[ids])  # one-hot (T, B, V)
        self.y = torch.from_numpy(targets.reshape(-1).astype(np.int64))
        weights = [*self.net.parameters(), *self.head.parameters()]
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(weights, lr=config.lr)
        else:
            self.optimizer = torch.optim.Adagrad(weights, lr=config.lr, eps=1e-10)
        self.weights, self.clip, self.V = weights, config.clip, V

    def step(self) -> float:
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        out, _ = self.net(self.x)
        logits = self.head(out).reshape(-1, self.V)
        loss = torch.nn.functional.cross_entropy(logits, self.y, reduction="sum")
        loss.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_value_(self.weights, self.clip)
        self.optimizer.step()
        return loss.item()

    def sync(self) -> None:
        pass


class JaxRunner:
    """jax.jit of one whole training step: loss and gradient (lax.scan over time, reverse-mode
    autodiff) and the optimizer update, compiled once (the first step), the parameter and
    moment buffers donated.  Token ids gather the columns of W^xh, as bptt does."""

    def __init__(self, config: Config, params: dict, ids: np.ndarray, targets: np.ndarray,
                 threads: int) -> None:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)  # float64 for the checks; dtypes are explicit
        self.jax = jax
        self.p = {k: jnp.asarray(v) for k, v in params.items()}
        names = ("m", "v") if config.optimizer == "adam" else ("sum",)
        self.slots = {s: {k: jnp.zeros_like(v) for k, v in self.p.items()} for s in names}
        self.t = jnp.zeros((), dtype=jnp.int32)
        self.ids, self.targets = jnp.asarray(ids), jnp.asarray(targets)
        self.fn = _jax_step(config)

    def step(self) -> Any:
        self.p, self.slots, self.t, loss = self.fn(self.p, self.slots, self.t, self.ids,
                                                   self.targets)
        return loss

    def sync(self) -> None:
        self.jax.block_until_ready(self.p)


def _jax_loss(cell: str) -> Callable:
    import jax
    import jax.numpy as jnp
    from jax import lax

    def loss(p, ids, targets):
        H = p["Whh"].shape[1]
        x_proj = jnp.take(p["Wxh"].T, ids, axis=0)  # W^xh x_t for one-hot x_t: a gather
        B = ids.shape[1]
        h0 = jnp.zeros((B, H), dtype=p["Whh"].dtype)
        if cell == "rnn":
            x_proj = x_proj + p["bh"]

            def step(h, xp):
                h = jnp.tanh(xp + h @ p["Whh"].T)
                return h, h

            state = h0
        elif cell == "lstm":
            x_proj = x_proj + p["bxh"] + p["bhh"]

            def step(hc, xp):
                h, c = hc
                a = xp + h @ p["Whh"].T
                i, f, g, o = jnp.split(a, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h

            state = (h0, h0)
        else:
            x_proj = x_proj + p["bxh"]

            def step(h, xp):
                a_hh = h @ p["Whh"].T + p["bhh"]
                x_r, x_z, x_n = jnp.split(xp, 3, axis=-1)
                h_r, h_z, h_n = jnp.split(a_hh, 3, axis=-1)
                r = jax.nn.sigmoid(x_r + h_r)
                z = jax.nn.sigmoid(x_z + h_z)
                n = jnp.tanh(x_n + r * h_n)
                h = (1 - z) * n + z * h
                return h, h

            state = h0
        _, hs = lax.scan(step, state, x_proj)
        logits = hs @ p["Why"].T + p["by"]
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.sum(jnp.take_along_axis(logp, targets[..., None], axis=-1))

    return loss


def _jax_step(config: Config) -> Callable:
    import jax
    import jax.numpy as jnp

    value_and_grad = jax.value_and_grad(_jax_loss(config.cell))
    lr, clip = config.lr, config.clip
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def step(p, slots, t, ids, targets):
        loss, g = value_and_grad(p, ids, targets)
        if clip is not None:
            g = {k: jnp.clip(v, -clip, clip) for k, v in g.items()}
        t = t + 1
        if config.optimizer == "adam":
            m = {k: slots["m"][k] + (1 - beta1) * (g[k] - slots["m"][k]) for k in p}
            v = {k: beta2 * slots["v"][k] + (1 - beta2) * g[k] * g[k] for k in p}
            tf = t.astype(p["Whh"].dtype)
            step_size = lr / (1 - beta1**tf)
            correction = jnp.sqrt(1 - beta2**tf)
            p = {k: p[k] - step_size * m[k] / (jnp.sqrt(v[k]) / correction + eps) for k in p}
            slots = {"m": m, "v": v}
        else:
            total = {k: slots["sum"][k] + g[k] * g[k] for k in p}
            p = {k: p[k] - lr * g[k] / (jnp.sqrt(total[k]) + 1e-10) for k in p}
            slots = {"sum": total}
        return p, slots, t, loss

    return jax.jit(step, donate_argnums=(0, 1))


@dataclass(frozen=True)
class Contender:
    """A contender: its name, whether it can run here (None, or why not), the problems it
    takes, and how to build its runner."""

    name: str
    missing: Callable[[], str | None]
    takes: Callable[[Config], bool]
    make: Callable[..., Any]


def _missing(module: str, install: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({install})"
        return None

    return check


CONTENDERS = {
    "bptt": Contender("bptt", lambda: None, lambda c: True, BpttRunner),
    "torch": Contender("torch", _missing("torch", "pip install torch==2.13.0"),
                       lambda c: True, TorchRunner),
    "jax": Contender("jax", _missing("jax", "pip install 'bptt[benchmarks]'"),
                     lambda c: True, JaxRunner),
    # the textbook loop is min-char-rnn's: one sequence, Adagrad (not the grid's Adam)
    "naive": Contender("naive", lambda: None,
                       lambda c: c.cell == "rnn" and c.B == 1 and c.optimizer == "adagrad",
                       NaiveRunner),
}
