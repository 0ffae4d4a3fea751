"""Every cell, stacked 1 … 3 deep, against its three witnesses: the grid of issue 4.

cell ∈ {rnn, lstm, gru} × num_layers 1 … 3 × bias × token ids / dense × truncate ∈ {None, 1, 2},
float64, small random shapes, random NON-ZERO biases and initial states (h0, and c0 for the
LSTM), random targets with at least two distinct labels.

* the reference double sum (bptt.reference): < 1e-12 relative, every truncation, and each
  layer's ∂J/∂h_k by age equals the reference's ∂J_t/∂h_k with t = k + age;
* central finite differences (full BPTT): < 1e-7 relative for every parameter and initial state;
* PyTorch autograd (nn.RNN / nn.LSTM / nn.GRU + nn.Linear + cross_entropy(sum), float64, full
  BPTT): gradients < 1e-10 relative including the initial state, forward outputs < 1e-12;
* T = 1 against all three; T = 240 efficient only against torch; saturated weights against
  finite differences.

Relative error is gradcheck's: max |a − b| over the tensor's own scale max(|a| + |b|).
"""

from __future__ import annotations

import itertools
import zlib
from typing import Any, NamedTuple

import numpy as np
import pytest

import bptt
from bptt import models
from bptt.cells import get_cell
from bptt.gradcheck import compare_arrays, numerical_grads

CELLS = ("rnn", "lstm", "gru")
REF_TOL = 1e-12
FD_TOL = 1e-7
TORCH_TOL = 1e-10
FORWARD_TOL = 1e-12

# Finite differences: the fourth-order central stencil (4 D(ε) − D(2ε)) / 3, D the central
# difference of gradcheck.numerical_grads, with ε = 1e-4.  Why not D(1e-6) alone: the bottom
# layer of a 3-layer (or saturated 2-layer) LSTM gets gradients of 1e-3 while J ≈ 20, and D's
# round-off, about 2 ulp(J)/2ε ≈ 5e-9 absolute, is then 1e-6 of that tensor's scale (measured:
# up to 9e-7, and 4e-6 saturated), above the 1e-7 bar.  The stencil cancels D's ε² truncation
# error, leaving ε⁴ f⁽⁵⁾/30 (≈ 3e-18 f⁽⁵⁾: negligible even with saturated weights, where
# ε = 1e-3 was not), so ε can grow a hundredfold and the round-off shrinks with it (≈ 1e-10
# absolute).  Measured: grid worst 8e-9, saturated worst 2e-8 relative.  Tensors larger than
# FD_SAMPLE entries are checked at FD_SAMPLE random entries (the same ones for both ε).
FD_EPS = 1e-4
FD_SAMPLE = 24


class Problem(NamedTuple):
    cell: str
    params: dict[str, np.ndarray]
    inputs: np.ndarray
    targets: np.ndarray
    h0: Any  # (L, B, H), or the pair (h0, c0) for the LSTM


def seed_of(*parts: object) -> int:
    """A stable seed for one test case (hash() of a str changes between runs)."""
    return zlib.crc32(repr(parts).encode())


def make_problem(
    cell: str, L: int, bias: bool, ids: bool, seed: int, T: int | None = None, scale: float = 1.0,
    B: int | None = None,
) -> Problem:
    """A random float64 problem; T in 2 … 6 and B in 2 … 5 unless given; the layers' Wxh,
    Whh multiplied by scale."""
    rng = np.random.default_rng(seed)
    T = int(rng.integers(2, 7)) if T is None else T
    B_drawn, D, H, V = (int(v) for v in rng.integers(2, 6, size=4))
    B = B_drawn if B is None else B
    params = bptt.init_params(
        cell, D, H, V, bias=bias, rng=rng, dtype=np.float64, num_layers=L
    )
    for key in params:
        if key.split("_l")[0] in ("bh", "bxh", "bhh", "by"):  # non-zero, not tiny, biases
            params[key] = rng.normal(size=params[key].shape)
        elif key not in models.HEAD_NAMES:
            params[key] = params[key] * scale
    inputs = rng.integers(0, D, size=(T, B)) if ids else rng.normal(size=(T, B, D))
    targets = rng.integers(0, V, size=(T, B))
    if np.all(targets == targets.flat[0]):  # not one label everywhere
        targets[0, 0] = (targets[0, 0] + 1) % V
    h0 = rng.normal(size=(L, B, H)) * 0.5
    if cell == "lstm":
        h0 = (h0, rng.normal(size=(L, B, H)))
    return Problem(cell, params, inputs, targets, h0)


def state_dict(cell: str, state: Any) -> dict[str, np.ndarray]:
    """The initial-state gradient (or state) as named tensors: h0, and c0 for the LSTM."""
    names = get_cell(cell).STATE_NAMES
    parts = state if len(names) > 1 else (state,)
    return {f"{name}0": np.asarray(part) for name, part in zip(names, parts, strict=True)}


def assert_agree(ours: dict, theirs: dict, tol: float, witness: str) -> float:
    """Every tensor within tol; the message names the tensor, the witness and both errors."""
    assert set(ours) == set(theirs), f"{witness}: keys differ {sorted(set(ours) ^ set(theirs))}"
    worst = 0.0
    for key in ours:
        c = compare_arrays(key, ours[key], theirs[key])
        worst = max(worst, c.max_rel)
        assert c.max_rel < tol, (
            f"{key} vs {witness}: relative error {c.max_rel:.3g} (tol {tol:g}), absolute error "
            f"{c.max_abs:.3g} at {c.worst}: ours {c.a_worst!r}, {witness} {c.b_worst!r}"
        )
    return worst


def efficient(problem: Problem, truncate: int | None = None) -> models.Result:
    return bptt.backprop(problem.params, problem.inputs, problem.targets, problem.h0, truncate)


def with_state(cell: str, grads: dict, dstate: Any) -> dict[str, np.ndarray]:
    return dict(grads, **state_dict(cell, dstate))


def finite_differences(problem: Problem) -> dict[str, np.ndarray]:
    """∂J/∂θ and ∂J/∂(initial state) by the fourth-order stencil (see FD_EPS)."""
    p = problem
    estimates = []
    for eps in (FD_EPS, 2 * FD_EPS):
        rng = np.random.default_rng(0)  # the same sampled entries for both ε
        grads, dstate = numerical_grads(
            p.params, p.inputs, p.targets, p.h0, eps=eps, sample=FD_SAMPLE, rng=rng
        )
        estimates.append(with_state(p.cell, grads, dstate))
    near, far = estimates
    return {key: (4 * near[key] - far[key]) / 3 for key in near}


# ----------------------------------------------------------------------------
# the PyTorch twin
# ----------------------------------------------------------------------------

TORCH_MODULES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


class TorchRun(NamedTuple):
    loss: float
    logits: np.ndarray
    state: dict[str, np.ndarray]  # final h (and c), (L, B, H)
    grads: dict[str, np.ndarray]  # our keys, plus h0 (and c0)


def torch_run(torch, problem: Problem) -> TorchRun:
    """nn.RNN/LSTM/GRU + Linear + cross_entropy(sum) in float64 holding our weights.

    Our key layer_key(name, l) is torch's f"{TORCH_NAMES[name]}_l{l}"; the vanilla RNN's
    single bias bh is bias_ih with bias_hh = 0.
    """
    p = problem.params
    shapes = models.check_params(p)
    L, D, H, V = shapes.L, shapes.D, shapes.H, shapes.V
    bias = "Why" in p and "by" in p
    options = {"nonlinearity": "tanh"} if problem.cell == "rnn" else {}
    net = getattr(torch.nn, TORCH_MODULES[problem.cell])(
        D, H, num_layers=L, bias=bias, dtype=torch.float64, **options
    )
    head = torch.nn.Linear(H, V, bias=bias, dtype=torch.float64)
    tensors = {}
    with torch.no_grad():
        for layer in range(L):
            for name in get_cell(problem.cell).PARAM_NAMES:
                key = models.layer_key(name, layer)
                if key in p:
                    tensors[key] = getattr(net, f"{models.TORCH_NAMES[name]}_l{layer}")
                    tensors[key].copy_(torch.from_numpy(p[key]))
            if problem.cell == "rnn" and bias:
                getattr(net, f"bias_hh_l{layer}").zero_()
        tensors["Why"] = head.weight
        head.weight.copy_(torch.from_numpy(p["Why"]))
        if bias:
            tensors["by"] = head.bias
            head.bias.copy_(torch.from_numpy(p["by"]))
    x = np.eye(D)[problem.inputs] if problem.inputs.ndim == 2 else problem.inputs
    state0 = {k: torch.tensor(v, requires_grad=True) for k, v in state_dict(
        problem.cell, problem.h0).items()}
    hx = tuple(state0.values()) if problem.cell == "lstm" else state0["h0"]
    out, final = net(torch.from_numpy(x), hx)
    logits = head(out)
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, V), torch.from_numpy(problem.targets).reshape(-1), reduction="sum"
    )
    loss.backward()
    grads = {key: t.grad.numpy() for key, t in tensors.items()}
    grads.update({key: t.grad.numpy() for key, t in state0.items()})
    final = final if isinstance(final, tuple) else (final,)
    names = get_cell(problem.cell).STATE_NAMES
    state = {name: f.detach().numpy() for name, f in zip(names, final, strict=True)}
    return TorchRun(loss.item(), logits.detach().numpy(), state, grads)


def assert_torch_agrees(torch, problem: Problem, result: models.Result) -> tuple[float, float]:
    """Forward (logits, final state, loss) < 1e-12 and gradients < 1e-10 against torch."""
    theirs = torch_run(torch, problem)
    fwd = bptt.forward(problem.params, problem.inputs, problem.h0)
    ours_forward = {"logits": fwd.logits, **state_dict(problem.cell, fwd.state)}
    ours_forward["loss"] = np.array(result.loss)
    theirs_forward = {"logits": theirs.logits, **{f"{k}0": v for k, v in theirs.state.items()}}
    theirs_forward["loss"] = np.array(theirs.loss)
    forward_err = assert_agree(ours_forward, theirs_forward, FORWARD_TOL, "torch forward")
    ours = with_state(problem.cell, result.grads, result.dJ_dstate0)
    grad_err = assert_agree(ours, theirs.grads, TORCH_TOL, "torch autograd")
    return forward_err, grad_err


# ----------------------------------------------------------------------------
# the grid
# ----------------------------------------------------------------------------

GRID = [
    pytest.param(cell, L, bias, ids, id=f"{cell}-L{L}-{'bias' if bias else 'nobias'}-"
                 f"{'ids' if ids else 'dense'}")
    for cell, L, bias, ids in itertools.product(CELLS, (1, 2, 3), (True, False), (True, False))
]


def assert_equals_reference(problem: Problem, truncate: int | None, witness: str):
    """Loss, every gradient and ∂J/∂(initial state) against the reference double sum;
    returns (the efficient result, the reference's Terms)."""
    result = efficient(problem, truncate)
    loss, grads, terms = bptt.reference.loss_and_grads(
        problem.params, problem.inputs, problem.targets, problem.h0, truncate,
        keep_contributions=False,
    )
    assert abs(result.loss - loss) <= REF_TOL * abs(loss)
    assert_agree(
        with_state(problem.cell, result.grads, result.dJ_dstate0),
        with_state(problem.cell, grads, terms.dJ_dstate0),
        REF_TOL,
        f"{witness} (truncate={truncate})",
    )
    return result, terms


@pytest.mark.parametrize("truncate", [None, 1, 2])
@pytest.mark.parametrize("cell, L, bias, ids", GRID)
def test_efficient_equals_the_reference_double_sum(cell, L, bias, ids, truncate):
    problem = make_problem(cell, L, bias, ids, seed_of(cell, L, bias, ids))
    result, terms = assert_equals_reference(problem, truncate, "reference")
    # the regrouping itself: row `age` of layer l's ∂J/∂h_k is ∂J_{k+age}/∂h_k
    # (A = 1: the sum over every t ≥ k)
    T = problem.targets.shape[0]
    for layer in range(L):
        by_age = result.dJ_dh[layer]
        expected = np.zeros_like(by_age)
        for k in range(T):
            if truncate is None:
                expected[0, k] = terms.dJt_dh[layer, k:, k].sum(axis=0)
            else:
                for age in range(min(truncate, T - k)):
                    expected[age, k] = terms.dJt_dh[layer, k + age, k]
        assert_agree({f"dJ_dh layer {layer}": by_age}, {f"dJ_dh layer {layer}": expected},
                     REF_TOL, f"reference ∂J_t/∂h_k (truncate={truncate})")


@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("ids", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_a_batch_of_one_equals_the_reference_double_sum(cell, ids, truncate):
    # B = 1 takes branches of its own in the sweeps (a row is then a column: one gather of
    # rows for the input projection, views instead of copies for the weight gradients)
    problem = make_problem(cell, 2, True, ids, seed_of("B=1", cell, ids), B=1)
    assert_equals_reference(problem, truncate, "reference, B = 1")


@pytest.mark.parametrize("cell, L, bias, ids", GRID)
def test_finite_differences_agree_for_every_parameter_and_initial_state(cell, L, bias, ids):
    problem = make_problem(cell, L, bias, ids, seed_of(cell, L, bias, ids))
    result = efficient(problem)
    ours = with_state(cell, result.grads, result.dJ_dstate0)
    assert_agree(ours, finite_differences(problem), FD_TOL, "finite differences")


@pytest.mark.parametrize("cell, L, bias, ids", GRID)
def test_pytorch_autograd_and_forward_agree(torch, cell, L, bias, ids):
    problem = make_problem(cell, L, bias, ids, seed_of(cell, L, bias, ids))
    assert_torch_agrees(torch, problem, efficient(problem))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("L", [1, 3])
def test_one_step_against_all_three_witnesses(torch, cell, L):
    problem = make_problem(cell, L, True, L == 1, seed_of("T=1", cell, L), T=1)
    result = efficient(problem)
    _, grads, terms = bptt.reference.loss_and_grads(
        problem.params, problem.inputs, problem.targets, problem.h0
    )
    ours = with_state(cell, result.grads, result.dJ_dstate0)
    assert_agree(ours, with_state(cell, grads, terms.dJ_dstate0), REF_TOL, "reference")
    assert_agree(ours, finite_differences(problem), FD_TOL, "finite differences")
    assert_torch_agrees(torch, problem, result)


@pytest.mark.parametrize("cell", CELLS)
def test_a_long_sequence_against_pytorch(torch, cell):
    problem = make_problem(cell, 2, True, True, seed_of("long", cell), T=240)
    assert_torch_agrees(torch, problem, efficient(problem))


# Saturation: the layers' weights ×5 push many pre-activations to |a| of several units, where
# σ' and tanh' are below 0.05 (checked below, per layer).  The finite-difference bar stays 1e-7
# relative to each tensor's scale (gradcheck's relative error), met thanks to the stencil above:
# plain D(1e-6) reaches 8e-7 here on the 2-layer LSTM, round-off against tiny bottom gradients.
SATURATION_SCALE = 5.0


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("L", [1, 2])
def test_saturated_weights_still_pass_finite_differences(cell, L):
    problem = make_problem(cell, L, True, False, seed_of("saturated", cell, L),
                           scale=SATURATION_SCALE)
    fwd = bptt.forward(problem.params, problem.inputs, problem.h0)
    saturated = [_saturated_fraction(cache) for cache in fwd.caches]
    # (a layer above sees inputs h in (−1, 1), smaller than the dense x below: less saturated)
    assert saturated[0] > 0.35 and min(saturated) > 0.1, f"not saturated: fractions {saturated}"
    result = efficient(problem)
    ours = with_state(cell, result.grads, result.dJ_dstate0)
    assert_agree(ours, finite_differences(problem), FD_TOL, "finite differences (saturated)")


def _saturated_fraction(cache) -> float:
    """Fraction of the layer's activations whose derivative is below 0.05."""
    if hasattr(cache, "o"):  # lstm: σ' = σ(1 − σ), tanh' = 1 − g²
        sig = np.concatenate([cache.i, cache.f, cache.o])
        return float(np.mean(np.concatenate([(sig * (1 - sig)).ravel(),
                                             (1 - cache.g**2).ravel()]) < 0.05))
    if hasattr(cache, "r"):  # gru
        sig = np.concatenate([cache.r, cache.z])
        return float(np.mean(np.concatenate([(sig * (1 - sig)).ravel(),
                                             (1 - cache.n**2).ravel()]) < 0.05))
    return float(np.mean(1 - cache.hs[1:] ** 2 < 0.05))


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_a_sweep_given_the_last_sweeps_final_state_in_the_same_memory_continues_it(cell, B):
    """A chunk's final state is a view of the forward's memory (final_state); the next
    chunk's forward, given it as its initial state with the same reusable memory, must read
    it before writing over that memory."""
    from bptt.cells import common

    rng = np.random.default_rng(3)
    T, D, H = 4, 5, 6
    module = get_cell(cell)
    p = module.init_layer(rng, D, H, True, np.float64)
    first, second = rng.integers(0, D, size=(2, T, B))
    state0 = tuple(rng.normal(size=(B, H)) for _ in module.STATE_NAMES)
    work = common.Buffers()
    carried = module.final_state(module.sequence_forward(p, first, state0, work))
    copied = tuple(s.copy() for s in carried)
    expected = module.sequence_forward(p, second, copied, None).hs.copy()
    np.testing.assert_array_equal(module.sequence_forward(p, second, carried, work).hs, expected)
