"""Tests for bptt.optim: each update against its written-out formula and torch.optim, clipping."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import safetensors.numpy

from bptt import optim
from bptt.errors import BpttError, CheckpointError
from bptt.optim import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    Momentum,
    clip_by_global_norm,
    clip_by_value,
    flatten_state,
    global_norm,
    make_optimizer,
    step_count,
    unflatten_state,
)

SHAPES = {"W": (3, 4), "b": (4,)}


def _require_torch():
    """Import torch; skip if missing, unless BPTT_REQUIRE_TORCH=1 demands it (then fail)."""
    if os.environ.get("BPTT_REQUIRE_TORCH") == "1":
        import torch

        return torch
    return pytest.importorskip("torch")


def _random_params(rng: np.random.Generator, dtype=np.float64) -> dict[str, np.ndarray]:
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def _random_grads(rng: np.random.Generator, steps: int, dtype=np.float64) -> list[dict]:
    return [_random_params(rng, dtype) for _ in range(steps)]


def _copy(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in d.items()}


def assert_rel(actual: np.ndarray, expected: np.ndarray, tol: float, what: str) -> None:
    """max|a − e| / max|e| <= tol, naming the tensor and the error."""
    err = np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e}"


def _run(opt, params, grads_seq):
    state = opt.init_state(params)
    for grads in grads_seq:
        opt.update(params, _copy(grads), state)
    return state


# ---------------------------------------------------------------- formulas


def test_sgd_matches_formula():
    rng = np.random.default_rng(0)
    params, grads_seq = _random_params(rng), _random_grads(rng, 3)
    expected = _copy(params)
    lr = 0.1
    _run(SGD(lr), params, grads_seq)
    for grads in grads_seq:
        for k in expected:
            expected[k] = expected[k] - lr * grads[k]
    for k in params:
        assert_rel(params[k], expected[k], 1e-15, k)


def test_momentum_matches_formula_first_step_buf_is_grad():
    rng = np.random.default_rng(1)
    params, grads_seq = _random_params(rng), _random_grads(rng, 3)
    expected = _copy(params)
    lr, mu = 0.05, 0.9
    state = _run(Momentum(lr, momentum=mu), params, grads_seq)
    buf = None
    for grads in grads_seq:
        buf = _copy(grads) if buf is None else {k: mu * buf[k] + grads[k] for k in grads}
        for k in expected:
            expected[k] = expected[k] - lr * buf[k]
    for k in params:
        assert_rel(params[k], expected[k], 1e-15, k)
        assert_rel(state["buf"][k], buf[k], 1e-15, f"buf.{k}")
    assert int(state["step"]["t"]) == 3


def test_adagrad_matches_formula():
    rng = np.random.default_rng(2)
    params, grads_seq = _random_params(rng), _random_grads(rng, 3)
    expected = _copy(params)
    lr, eps = 0.1, 1e-10
    state = _run(Adagrad(lr, eps=eps), params, grads_seq)
    acc = {k: np.zeros(s) for k, s in SHAPES.items()}
    for grads in grads_seq:
        for k in expected:
            acc[k] = acc[k] + grads[k] ** 2
            expected[k] = expected[k] - lr * grads[k] / (np.sqrt(acc[k]) + eps)
    for k in params:
        assert_rel(params[k], expected[k], 1e-15, k)
        assert_rel(state["sum"][k], acc[k], 1e-15, f"sum.{k}")


def test_adam_matches_textbook_formula():
    rng = np.random.default_rng(3)
    params, grads_seq = _random_params(rng), _random_grads(rng, 3)
    expected = _copy(params)
    lr, (b1, b2), eps = 1e-2, (0.9, 0.999), 1e-8
    state = _run(Adam(lr, betas=(b1, b2), eps=eps), params, grads_seq)
    m = {k: np.zeros(s) for k, s in SHAPES.items()}
    v = {k: np.zeros(s) for k, s in SHAPES.items()}
    for t, grads in enumerate(grads_seq, start=1):
        for k in expected:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            m_hat = m[k] / (1 - b1**t)
            v_hat = v[k] / (1 - b2**t)
            expected[k] = expected[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    for k in params:
        assert_rel(params[k], expected[k], 1e-15, k)
        assert_rel(state["m"][k], m[k], 1e-15, f"m.{k}")
        assert_rel(state["v"][k], v[k], 1e-15, f"v.{k}")
    assert int(state["step"]["t"]) == 3


# ---------------------------------------------------------------- against torch


TORCH_CASES = [
    ("sgd", {}, lambda torch, ps, lr: torch.optim.SGD(ps, lr=lr)),
    ("momentum", {}, lambda torch, ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9)),
    ("adagrad", {}, lambda torch, ps, lr: torch.optim.Adagrad(ps, lr=lr, eps=1e-10)),
    ("adam", {}, lambda torch, ps, lr: torch.optim.Adam(ps, lr=lr, betas=(0.9, 0.999), eps=1e-8)),
]


@pytest.mark.parametrize(("name", "kw", "make_torch"), TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_matches_torch_optim_over_five_steps(name, kw, make_torch):
    torch = _require_torch()
    rng = np.random.default_rng(4)
    params, grads_seq = _random_params(rng), _random_grads(rng, 5)
    lr = 0.03
    torch_params = [torch.tensor(params[k].copy(), dtype=torch.float64) for k in SHAPES]
    for tp in torch_params:
        tp.requires_grad_(True)
    torch_opt = make_torch(torch, torch_params, lr)
    for grads in grads_seq:
        for tp, k in zip(torch_params, SHAPES, strict=True):
            tp.grad = torch.tensor(grads[k].copy(), dtype=torch.float64)
        torch_opt.step()
    _run(make_optimizer(name, lr, **kw), params, grads_seq)
    for tp, k in zip(torch_params, SHAPES, strict=True):
        assert_rel(params[k], tp.detach().numpy(), 1e-12, f"{name} {k}")


# ---------------------------------------------------------------- in place, dtype, resume


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_is_in_place_on_views_of_one_flat_buffer(name):
    rng = np.random.default_rng(5)
    flat = rng.standard_normal(16)
    params = {"W": flat[:12].reshape(3, 4), "b": flat[12:]}
    ids = {k: id(v) for k, v in params.items()}
    before = flat.copy()
    opt = make_optimizer(name, 0.1)
    state = opt.init_state(params)
    opt.update(params, _random_params(rng), state)
    assert {k: id(v) for k, v in params.items()} == ids
    assert np.shares_memory(params["W"], flat) and np.shares_memory(params["b"], flat)
    assert not np.array_equal(flat, before)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_single_flat_key_matches_per_key_update(name):
    rng = np.random.default_rng(6)
    params, grads_seq = _random_params(rng), _random_grads(rng, 3)
    flat_params = {"flat": np.concatenate([p.ravel() for p in params.values()])}
    flat_grads = [{"flat": np.concatenate([g.ravel() for g in gs.values()])} for gs in grads_seq]
    _run(make_optimizer(name, 0.1), params, grads_seq)
    _run(make_optimizer(name, 0.1), flat_params, flat_grads)
    joined = np.concatenate([p.ravel() for p in params.values()])
    np.testing.assert_array_equal(flat_params["flat"], joined)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_large_parameter_updated_in_blocks_gets_the_same_bits(name, dtype, monkeypatch):
    """A parameter larger than BLOCK_BYTES is updated block by block (views of the flattened
    arrays): the same bits as in one piece, every element, the last short block too, in
    place; arrays that are not C-contiguous are updated in one piece."""
    rng = np.random.default_rng(12)
    shapes = {"W": (3, 683), "b": (11,)}  # W: 2049 values, 32 blocks of 64 and one of 1
    params = {k: rng.standard_normal(shape).astype(dtype) for k, shape in shapes.items()}
    grads = [{k: rng.standard_normal(shape).astype(dtype) for k, shape in shapes.items()}
             for _ in range(3)]
    whole = _copy(params)
    whole_state = _run(make_optimizer(name, 0.1), whole, grads)

    monkeypatch.setattr(optim, "BLOCK_BYTES", 64 * np.dtype(dtype).itemsize)
    opt = make_optimizer(name, 0.1)
    calls, update_one = [], opt._update_one

    def counted(p, g, slots, t):
        calls.append(p.size)
        update_one(p, g, slots, t)

    monkeypatch.setattr(opt, "_update_one", counted)
    blocked = _copy(params)
    ids = {k: id(v) for k, v in blocked.items()}
    blocked_state = _run(opt, blocked, grads)
    assert calls == [*[64] * 32, 1, 11] * 3
    assert {k: id(v) for k, v in blocked.items()} == ids
    for k in shapes:
        np.testing.assert_array_equal(blocked[k], whole[k])
        for slot in opt.slots:
            np.testing.assert_array_equal(blocked_state[slot][k], whole_state[slot][k])

    # W as a transposed view (not C-contiguous): one piece, the same bits
    calls.clear()
    transposed = {"W": np.ascontiguousarray(params["W"].T).T, "b": params["b"].copy()}
    _run(opt, transposed, grads)
    assert calls == [2049, 11] * 3
    np.testing.assert_array_equal(transposed["W"], whole["W"])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_pickled_optimizer_carries_no_scratch_and_goes_on_bit_for_bit(name):
    """The scratch arrays (one or two the size of the parameters: memory, not state) used to
    be pickled and deep-copied with the optimizer, e.g. inside a fitted estimator."""
    import copy
    import pickle

    rng = np.random.default_rng(9)
    params = {"flat": rng.standard_normal(20_000)}
    grads = [{"flat": rng.standard_normal(20_000)} for _ in range(2)]
    opt = make_optimizer(name, 0.1)
    state = _run(opt, params, grads[:1])
    assert opt._scratch  # the update made its scratch
    data = pickle.dumps(opt)
    assert len(data) < 2_000  # 20,000 float64 of scratch are 160 kB
    for other in (pickle.loads(data), copy.deepcopy(opt)):
        assert other._scratch == {} and other.config() == opt.config()
        again, again_state = _copy(params), copy.deepcopy(state)
        other.update(again, _copy(grads[1]), again_state)
        opt_params, opt_state = _copy(params), copy.deepcopy(state)
        opt.update(opt_params, _copy(grads[1]), opt_state)
        np.testing.assert_array_equal(again["flat"], opt_params["flat"])
    assert opt._scratch  # the original keeps its memory


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_params_and_state_stay_float32(name):
    rng = np.random.default_rng(7)
    params = _random_params(rng, np.float32)
    opt = make_optimizer(name, 0.1)
    state = _run(opt, params, _random_grads(rng, 2, np.float32))
    assert all(p.dtype == np.float32 for p in params.values())
    for slot in opt.slots:
        assert all(a.dtype == np.float32 for a in state[slot].values())
    assert state["step"]["t"].dtype == np.int64


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_through_safetensors_is_bit_identical(name):
    rng = np.random.default_rng(8)
    params, grads_seq = _random_params(rng, np.float32), _random_grads(rng, 4, np.float32)
    straight = _copy(params)
    _run(make_optimizer(name, 0.01), straight, grads_seq)

    opt = make_optimizer(name, 0.01)
    state = opt.init_state(params)
    for grads in grads_seq[:2]:
        opt.update(params, _copy(grads), state)
    flat = {k: np.array(v, order="C") for k, v in flatten_state(state).items()}
    blob = safetensors.numpy.save(flat)
    resumed_state = unflatten_state(safetensors.numpy.load(blob))
    resumed_opt = make_optimizer(**opt.config())
    resumed_opt.check_state(params, resumed_state)
    for grads in grads_seq[2:]:
        resumed_opt.update(params, _copy(grads), resumed_state)
    for k in params:
        np.testing.assert_array_equal(params[k], straight[k])
    assert int(resumed_state["step"]["t"]) == 4


def test_check_state_refuses_state_of_another_model_or_optimizer():
    rng = np.random.default_rng(9)
    params = _random_params(rng)
    adam = Adam(0.1)
    other = {"W": np.zeros((3, 5)), "b": np.zeros(4)}
    with pytest.raises(CheckpointError, match="shape"):
        adam.check_state(params, adam.init_state(other))
    with pytest.raises(CheckpointError, match="slots"):
        adam.check_state(params, Momentum(0.1).init_state(params))


def test_mismatched_grads_raise():
    params = {"W": np.zeros((2, 2))}
    opt = SGD(0.1)
    state = opt.init_state(params)
    with pytest.raises(BpttError, match="missing"):
        opt.update(params, {"V": np.zeros((2, 2))}, state)
    with pytest.raises(BpttError, match="shape"):
        opt.update(params, {"W": np.zeros((1, 2))}, state)
    with pytest.raises(BpttError, match=r"optimizer state has slots \['step'\] but 'adam' needs"):
        Adam(0.1).update(params, {"W": np.zeros((2, 2))}, state)


@pytest.mark.parametrize("name", ["momentum", "adagrad", "adam"])
def test_update_with_a_state_of_other_parameters_raises_before_changing_anything(name):
    params = {"W": np.zeros((2, 2)), "b": np.zeros(3)}
    opt = make_optimizer(name, 0.1)
    state = opt.init_state({"W": np.zeros((2, 2))})  # made before "b" was added
    grads = {"W": np.ones((2, 2)), "b": np.ones(3)}
    with pytest.raises(BpttError, match=r"holds nothing for parameter 'b'"):
        opt.update(params, grads, state)
    assert state["step"]["t"] == 0 and not params["W"].any()  # nothing half done
    other = opt.init_state({"W": np.zeros(2), "b": np.zeros(3)})  # broadcastable, not equal
    with pytest.raises(BpttError, match=r"holds shape \(2,\) for parameter 'W' of shape"):
        opt.update(params, grads, other)


def test_a_gradient_that_is_not_an_array_raises():
    params = {"W": np.zeros((2, 2))}
    opt = SGD(0.1)
    with pytest.raises(BpttError, match="gradient 'W' must be a numpy array, got list"):
        opt.update(params, {"W": [[1.0, 1.0], [1.0, 1.0]]}, opt.init_state(params))


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("b, gb, message", [
    (np.zeros(3, dtype=np.int64), np.ones(3), r"parameter 'b' has dtype int64"),
    (np.zeros(3), np.ones(3, dtype=np.complex128), r"gradient 'b' has dtype complex128"),
])
def test_parameters_or_gradients_of_a_wrong_dtype_raise_before_changing_anything(
        name, b, gb, message):
    """An integer parameter or a complex gradient was numpy's UFuncTypeError (not a BpttError)
    raised in the middle of the update: the step counter and the parameters before it had
    already moved."""
    params = {"W": np.zeros((2, 2)), "b": b}
    opt = make_optimizer(name, 0.1)
    state = opt.init_state({"W": np.zeros((2, 2)), "b": np.zeros(3)})
    with pytest.raises(BpttError, match=message):
        opt.update(params, {"W": np.ones((2, 2)), "b": gb}, state)
    assert state["step"]["t"] == 0 and not params["W"].any()


@pytest.mark.parametrize(
    ("name", "where"),
    [(name, "parameter") for name in OPTIMIZERS]
    + [(name, "slot") for name in OPTIMIZERS if make_optimizer(name, 0.1).slots],
)
def test_a_read_only_parameter_or_state_raises_before_changing_anything(name, where):
    """A read-only parameter (np.load(mmap_mode="r"), a.flags.writeable = False) was numpy's
    ValueError "output array is read-only" in the middle of the update: the step counter
    and the parameters before it had already moved.  (SGD keeps no state arrays.)"""
    params = {"W": np.zeros((2, 2)), "b": np.zeros(3)}
    opt = make_optimizer(name, 0.1)
    state = opt.init_state(params)
    frozen = params["b"] if where == "parameter" else state[opt.slots[-1]]["b"]
    frozen.flags.writeable = False
    with pytest.raises(BpttError, match=r"^(parameter|optimizer state slot '\w+' of parameter) "
                       r"'b' is a read-only array; it is changed in place"):
        opt.update(params, {"W": np.ones((2, 2)), "b": np.ones(3)}, state)
    assert state["step"]["t"] == 0 and not params["W"].any()
    assert all(not a.any() for slot in opt.slots for a in state[slot].values())


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_init_state_and_step_count_refuse_what_is_not_theirs(name):
    """init_state(None) was a raw AttributeError, a list parameter made a state of integers
    that the first update refused, and step_count({}) was a KeyError."""
    opt = make_optimizer(name, 0.1)
    with pytest.raises(BpttError, match="params must be a dict of arrays, got NoneType"):
        opt.init_state(None)
    with pytest.raises(BpttError, match="parameter 'W' must be a numpy array, got list"):
        opt.init_state({"W": [1, 2]})
    with pytest.raises(BpttError, match="parameter 'W' has dtype int64; parameters must be float"):
        opt.init_state({"W": np.zeros(2, dtype=np.int64)})
    for state in ({}, None, {"step": 3}):
        with pytest.raises(BpttError, match=r"has no step counter state\['step'\]"):
            step_count(state)
    with pytest.raises(BpttError, match=r"no valid step counter 'step\.t'"):
        step_count({"step": {"t": 3}})
    assert step_count(opt.init_state({"W": np.zeros(2)})) == 0


@pytest.mark.parametrize("clip", [
    lambda grads: clip_by_value(grads, 0.5),
    lambda grads: clip_by_global_norm(grads, 0.5),
])
def test_clipping_refuses_gradients_that_are_not_float_arrays_before_changing_any(clip):
    """Clipping works in place: an integer gradient was numpy's UFuncTypeError after the
    gradients before it had been clipped."""
    grads = {"W": np.full((2, 2), 3.0), "b": np.array([4, 5])}
    with pytest.raises(BpttError, match=re.escape(
        "gradient 'b' is dtype int64; clipping changes gradients in place, so they must be "
        "float arrays (float32 or float64)."
    )):
        clip(grads)
    assert (grads["W"] == 3.0).all()
    with pytest.raises(BpttError, match="gradient 'b' is list; clipping"):
        clip({"W": np.ones(2), "b": [1.0]})
    frozen = np.array([4.0, 5.0])
    frozen.flags.writeable = False
    with pytest.raises(BpttError, match=r"^gradient 'b' is a read-only array; it is changed in "
                       "place"):
        clip({"W": grads["W"], "b": frozen})
    assert (grads["W"] == 3.0).all()

# ---------------------------------------------------------------- factory


def test_make_optimizer_builds_each_name_and_round_trips_config():
    for name in OPTIMIZERS:
        opt = make_optimizer(name, 0.2)
        assert opt.name == name and opt.lr == 0.2
        assert make_optimizer(**opt.config()).config() == opt.config()
    assert make_optimizer("momentum", 0.1, momentum=0.5).momentum == 0.5
    assert make_optimizer("adam", 0.1, betas=[0.8, 0.99]).betas == (0.8, 0.99)


def test_make_optimizer_rejects_unknown_name_listing_choices():
    with pytest.raises(BpttError) as info:
        make_optimizer("rmsprop", 0.1)
    message = str(info.value)
    assert "'rmsprop'" in message and all(name in message for name in OPTIMIZERS)


@pytest.mark.parametrize("lr", [0.0, -1.0, float("nan"), float("inf"), "fast", "0.1", True])
def test_make_optimizer_rejects_bad_learning_rate(lr):
    # a string or a bool is not a learning rate even when float() would take it (as torch)
    with pytest.raises(BpttError, match=f"lr\\) must be a finite number > 0, got {lr!r}$"):
        make_optimizer("sgd", lr)


def test_a_numpy_learning_rate_is_the_number_it_is():
    assert make_optimizer("adam", np.float32(0.5)).lr == 0.5
    assert type(make_optimizer("sgd", np.int64(1)).config()["lr"]) is float


def test_make_optimizer_rejects_unknown_option_and_bad_hyperparameters():
    with pytest.raises(BpttError, match="momentum"):
        make_optimizer("sgd", 0.1, momentum=0.9)
    with pytest.raises(BpttError, match="momentum"):
        Momentum(0.1, momentum=1.0)
    with pytest.raises(BpttError, match="beta2"):
        Adam(0.1, betas=(0.9, 1.5))
    with pytest.raises(BpttError, match=r"betas must be two numbers \(beta1, beta2\), got 0.9"):
        make_optimizer("adam", 0.1, betas=0.9)
    # float() would take these; they are not numbers (as lr)
    with pytest.raises(BpttError, match=r"beta1 must be a number in \[0, 1\), got '0.9'"):
        Adam(0.1, betas=("0.9", "0.999"))
    with pytest.raises(BpttError, match="beta1 must be a number in"):
        Adam(0.1, betas=(False, 0.9))
    with pytest.raises(BpttError, match="momentum must be a number in"):
        make_optimizer("momentum", 0.1, momentum="0.5")


# ---------------------------------------------------------------- clipping


def test_clip_by_value_clips_elementwise_in_place():
    g = np.array([-7.0, -5.0, 0.5, 4.9, 12.0])
    grads = {"g": g}
    clip_by_value(grads, 5.0)
    assert grads["g"] is g
    np.testing.assert_array_equal(g, [-5.0, -5.0, 0.5, 4.9, 5.0])


def test_clip_by_value_keeps_nan_and_clips_inf():
    g = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32)
    clip_by_value({"g": g}, 5.0)
    np.testing.assert_array_equal(g, np.array([np.nan, 5.0, -5.0, 1.0], dtype=np.float32))


def test_clip_by_value_is_noop_under_limit():
    g = np.array([[-1.0, 2.0], [3.0, -4.5]])
    before = g.copy()
    clip_by_value({"g": g}, 5.0)
    np.testing.assert_array_equal(g, before)


def test_global_norm_is_norm_of_all_elements():
    rng = np.random.default_rng(10)
    grads = _random_params(rng)
    joined = np.concatenate([g.ravel() for g in grads.values()])
    assert global_norm(grads) == pytest.approx(np.linalg.norm(joined), rel=1e-14)
    assert global_norm({"a": np.array([3.0]), "b": np.array([[4.0]])}) == 5.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_norm_with_scratch_memory_gives_the_same_bits(dtype):
    """The training loop's scratch for the squares changes no bit of the norm (a resumed
    run repeats an uninterrupted one), and only its first elements are used."""
    grads = _random_params(np.random.default_rng(11), dtype)
    scratch = np.full(max(g.size for g in grads.values()) + 5, np.nan)
    assert global_norm(grads, scratch) == global_norm(grads)
    largest = {"flat": max(grads.values(), key=lambda g: g.size)}
    assert global_norm(largest, scratch) == global_norm(largest)


def test_global_norm_of_gradients_whose_squares_overflow_is_still_their_norm():
    # Σ g² overflows float64 at |g| ~ 1e154: the norm (and the clipping) must not
    grads = {"Whh": np.array([3e160, 4e160]), "by": np.array([1.0])}
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert global_norm(grads) == pytest.approx(5e160, rel=1e-15)
        assert clip_by_global_norm(grads, 5.0) == pytest.approx(5e160, rel=1e-15)
    np.testing.assert_allclose(grads["Whh"], [3.0, 4.0], rtol=1e-12)
    assert global_norm({"a": np.array([np.inf, 1e200])}) == np.inf
    assert np.isnan(global_norm({"a": np.array([np.nan, 1e200]), "b": np.array([1e200])}))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_float32_gradient_whose_square_overflows_updates_without_a_warning(name):
    # g² = inf in float32 (as in torch) is IEEE's answer, not a warning to print
    params = {"W": np.ones(3, np.float32)}
    opt = make_optimizer(name, 0.1)
    state = opt.init_state(params)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        opt.update(params, {"W": np.full(3, 1e22, np.float32)}, state)
    assert np.isfinite(params["W"]).all()


def test_clip_by_global_norm_scales_by_torch_factor_and_returns_old_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}
    norm = clip_by_global_norm(grads, 1.0)
    assert norm == 5.0
    scale = 1.0 / (5.0 + 1e-6)
    np.testing.assert_array_equal(grads["a"], np.array([3.0, 0.0]) * scale)
    np.testing.assert_array_equal(grads["b"], np.array([[0.0, 4.0]]) * scale)
    assert global_norm(grads) == pytest.approx(5.0 * scale, rel=1e-15)


@pytest.mark.parametrize("over", [1.01, 1.5, 1.99])
def test_clip_by_global_norm_clips_a_norm_just_over_the_limit(over):
    # norm = over · max_norm: scaled by max_norm / (norm + 1e-6), to a norm of about max_norm
    grads = {"a": np.array([3.0, 0.0]) * over, "b": np.array([[0.0, 4.0]]) * over}
    before = {k: g.copy() for k, g in grads.items()}
    norm = clip_by_global_norm(grads, 5.0)
    assert norm == pytest.approx(5.0 * over, rel=1e-15)
    for key, g in grads.items():
        np.testing.assert_allclose(g, before[key] * 5.0 / (norm + 1e-6), rtol=1e-15)
    assert global_norm(grads) == pytest.approx(5.0, rel=1e-6)


def test_clip_by_global_norm_at_the_limit_scales_as_torch_does():
    # torch's test is the factor max_norm / (norm + 1e-6) < 1, not norm > max_norm: a norm
    # of exactly the limit is scaled (torch gives [2.99999940000012, 3.99999920000016])
    grads = {"a": np.array([3.0, 4.0])}
    assert clip_by_global_norm(grads, 5.0) == 5.0
    np.testing.assert_array_equal(grads["a"], np.array([3.0, 4.0]) * (5.0 / (5.0 + 1e-6)))
    np.testing.assert_allclose(grads["a"], [2.99999940000012, 3.99999920000016], rtol=1e-14)


def test_clip_by_global_norm_leaves_gradients_of_an_infinite_norm_untouched():
    grads = {"a": np.array([np.inf, 2.0]), "b": np.array([[1.0, -3.0]])}
    before = {k: g.copy() for k, g in grads.items()}
    assert clip_by_global_norm(grads, 1.0) == np.inf
    for key, g in grads.items():
        np.testing.assert_array_equal(g, before[key])


def test_clip_by_global_norm_is_noop_under_limit():
    grads = {"a": np.array([0.3, -0.4])}
    before = grads["a"].copy()
    assert clip_by_global_norm(grads, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(grads["a"], before)


def test_clip_by_global_norm_matches_torch():
    torch = _require_torch()
    rng = np.random.default_rng(11)
    grads = {k: 10 * g for k, g in _random_params(rng).items()}
    tensors = []
    for g in grads.values():
        tensors.append(torch.zeros(g.shape, dtype=torch.float64, requires_grad=True))
        tensors[-1].grad = torch.tensor(g.copy())
    torch_norm = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm=2.0))
    norm = clip_by_global_norm(grads, 2.0)
    assert norm == pytest.approx(torch_norm, rel=1e-14)
    for t, g in zip(tensors, grads.values(), strict=True):
        assert_rel(g, t.grad.numpy(), 1e-14, "clipped grad")


def test_clipping_rejects_bad_limits():
    with pytest.raises(BpttError, match="clip"):
        clip_by_value({"a": np.ones(2)}, 0.0)
    with pytest.raises(BpttError, match="max_norm"):
        clip_by_global_norm({"a": np.ones(2)}, -1.0)


# ---------------------------------------------------------------- state flattening


def test_flatten_unflatten_state_round_trip():
    params = {"W": np.ones((2, 3)), "layer.0.b": np.ones(3)}
    state = Adam(0.1).init_state(params)
    flat = flatten_state(state)
    assert set(flat) == {"m.W", "m.layer.0.b", "v.W", "v.layer.0.b", "step.t"}
    back = unflatten_state(flat)
    assert back.keys() == state.keys()
    for slot in state:
        assert back[slot].keys() == state[slot].keys()
        for key in state[slot]:
            assert back[slot][key] is state[slot][key]


def test_unflatten_state_rejects_names_without_slot():
    with pytest.raises(CheckpointError, match=r"slot\.key"):
        unflatten_state({"nodot": np.zeros(1)})


def test_checkpoint_tensors_round_trip_in_canonical_order():
    import bptt
    from bptt import optim

    params = bptt.init_params("lstm", 3, 4, 5, rng=np.random.default_rng(0))
    adam = optim.make_optimizer("adam", 1e-3)
    state = adam.init_state(params)
    adam.update(params, {k: np.ones_like(v) for k, v in params.items()}, state)
    tensors = optim.checkpoint_tensors(params, state)
    assert set(tensors) == {f"param.{k}" for k in params} | {
        f"opt.{slot}.{k}" for slot in ("m", "v") for k in params} | {"opt.step.t"}
    shuffled = dict(sorted(tensors.items()))  # a file gives its tensors sorted by name
    back, back_state, shapes = optim.from_checkpoint_tensors(shuffled, adam, "lstm")
    assert shapes == bptt.models.check_params(params)
    assert list(back) == list(params)  # the network's order again, not the file's
    for key, value in params.items():
        assert np.array_equal(back[key], value)
        assert np.array_equal(back_state["v"][key], state["v"][key])
    assert int(back_state["step"]["t"]) == 1
    with pytest.raises(BpttError, match="cell='gru' but params are those of a 'lstm'"):
        optim.from_checkpoint_tensors(shuffled, adam, "gru")
    del shuffled["opt.m.Whh"]
    with pytest.raises(CheckpointError):
        optim.from_checkpoint_tensors(shuffled, adam)


@pytest.mark.parametrize("counter, shown", [(np.array(-1), "-1 (int64)"),
                                            (np.array(3.0), "3.0 (float64)")])
def test_check_state_refuses_a_step_counter_that_is_not_a_count(counter, shown):
    params = _random_params(np.random.default_rng(9))
    adam = Adam(0.1)
    state = adam.init_state(params)
    state["step"]["t"] = counter
    with pytest.raises(CheckpointError, match=re.escape(f"must be an integer >= 0, got {shown}")):
        adam.check_state(params, state)


@pytest.mark.parametrize("slot", ["m", "v"])
def test_update_checks_every_slot_of_the_state_before_changing_anything(slot):
    """Adam keeps two slots: one made for other parameters failed halfway through an update
    when it was the second."""
    params = {"W": np.zeros((2, 2))}
    opt = make_optimizer("adam", 0.1)
    state = opt.init_state(params)
    state[slot]["W"] = np.zeros(2)
    with pytest.raises(BpttError, match=rf"^optimizer state slot '{slot}' holds shape \(2,\) "
                                        r"for parameter 'W' of shape \(2, 2\)"):
        opt.update(params, {"W": np.ones((2, 2))}, state)
    assert state["step"]["t"] == 0 and not params["W"].any() and not state["m"]["W"].any()


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, g, s: (None, g, s), r"^params must be a dict of arrays, got NoneType"),
        (lambda p, g, s: ((p["W"],), g, s), r"^params must be a dict of arrays, got tuple"),
        (lambda p, g, s: (p, None, s), r"^grads must be a dict of arrays, got NoneType"),
        (lambda p, g, s: (p, g, None), r"^the optimizer state must be a dict, got NoneType"),
        (lambda p, g, s: ({"W": [[0.0, 0.0]]}, g, s),
         r"^parameter 'W' must be a numpy array, got list"),
    ],
)
def test_update_names_arguments_that_are_not_dicts_of_arrays(name, change, message):
    """They were AttributeError ('NoneType' object has no attribute 'keys', 'list' object
    has no attribute 'shape') from inside the checks."""
    params, grads = {"W": np.zeros((1, 2))}, {"W": np.ones((1, 2))}
    opt = make_optimizer(name, 0.1)
    state = opt.init_state(params)
    with pytest.raises(BpttError, match=message):
        opt.update(*change(params, grads, state))
    assert state["step"]["t"] == 0 and not params["W"].any()


@pytest.mark.parametrize("name", ["momentum", "adagrad", "adam"])
@pytest.mark.parametrize("entry, shown", [([[0.0, 0.0]], "a list"),
                                          (np.zeros((1, 2), np.int64), "dtype int64")])
def test_update_refuses_a_state_slot_that_is_not_a_float_array(name, entry, shown):
    """A list in Adam's m or Adagrad's sum was silently left as it was (m never
    accumulated: every step was as if it were the first), Momentum's was a TypeError
    midway; an integer slot was numpy's UFuncTypeError after the counter had moved."""
    params, grads = {"W": np.zeros((1, 2))}, {"W": np.ones((1, 2))}
    opt = make_optimizer(name, 0.1)
    state = opt.init_state(params)
    slot = opt.slots[0]
    state[slot]["W"] = entry
    with pytest.raises(BpttError, match=rf"^optimizer state slot '{slot}' holds {shown} "
                                        r"for parameter 'W'"):
        opt.update(params, grads, state)
    assert state["step"]["t"] == 0 and not params["W"].any()


@pytest.mark.parametrize("counter", [5, None, np.zeros(2, np.int64), np.array(1.5)])
def test_update_refuses_a_step_counter_that_is_not_a_0d_integer_array(counter):
    """t = 5 (an int) was AttributeError: 'int' object has no attribute 'item'."""
    params, grads = {"W": np.zeros((1, 2))}, {"W": np.ones((1, 2))}
    opt = make_optimizer("adam", 0.1)
    state = opt.init_state(params)
    state["step"]["t"] = counter
    with pytest.raises(BpttError, match=r"^the optimizer state's step counter state\['step'\]"
                                        r"\['t'\] must be a 0-d integer numpy array"):
        opt.update(params, grads, state)
    assert not params["W"].any()


@pytest.mark.parametrize(
    "grads, message, clip_message",
    [
        (None, r"^grads must be a dict of arrays, got NoneType", None),
        ([np.ones(2)], r"^grads must be a dict of arrays, got list", None),
        ({"W": [3.0, 4.0]}, r"^gradient 'W' must be a numpy array, got list",
         r"^gradient 'W' is list; clipping changes gradients in place"),
        ({"W": np.array([3j, 4])}, r"^gradient 'W' has dtype complex128; gradients must hold "
                                   "real numbers",
         r"^gradient 'W' is dtype complex128; clipping changes gradients in place"),
    ],
)
def test_global_norm_and_clipping_name_grads_that_are_not_a_dict_of_real_arrays(
    grads, message, clip_message
):
    """global_norm of a list was a TypeError ('only integer scalar arrays can be converted'),
    of a complex gradient numpy's UFuncTypeError; clip_by_value(None) an AttributeError."""
    with pytest.raises(BpttError, match=message):
        global_norm(grads)
    for clip in (clip_by_global_norm, clip_by_value):
        with pytest.raises(BpttError, match=clip_message or message):
            clip(grads, 1.0)


@pytest.mark.parametrize("norm", ["1", -1.0, None])
def test_clip_by_global_norm_refuses_a_given_norm_that_is_no_norm(norm):
    """norm='1' was TypeError: must be real number; norm=-1.0 was returned as the norm and
    nothing clipped."""
    grads = {"W": np.full(4, 10.0)}
    if norm is None:
        assert clip_by_global_norm(grads, 1.0, norm) == 20.0
        return
    with pytest.raises(BpttError, match=r"^norm must be None or a number >= 0"):
        clip_by_global_norm(grads, 1.0, norm)
    assert (grads["W"] == 10.0).all()


@pytest.mark.parametrize("name", [["adam"], {"adam": 1}])
def test_make_optimizer_names_a_name_that_is_no_string(name):
    """make_optimizer(['adam'], …) was TypeError: unhashable type: 'list'."""
    with pytest.raises(BpttError, match=r"^unknown optimizer .*choose one of: sgd, momentum"):
        make_optimizer(name, 0.1)


# ---------------------------------------------------------------- from a mutation audit (5)


@pytest.mark.parametrize("name, kw, value", [
    ("momentum", {"momentum": 0.0}, ("momentum", 0.0)),
    ("adam", {"betas": (0.0, 0.0)}, ("betas", (0.0, 0.0))),
])
def test_a_zero_momentum_or_beta_is_allowed_as_in_torch(name, kw, value):
    """[0, 1) includes 0: SGD(momentum=0) and Adam(betas=(0, 0)) are torch's too."""
    opt = make_optimizer(name, 0.1, **kw)
    assert getattr(opt, value[0]) == value[1]
    params = {"W": np.ones(2)}
    opt.update(params, {"W": np.array([1.0, -2.0])}, opt.init_state(params))
    assert np.isfinite(params["W"]).all() and (params["W"] != 1.0).all()


def test_mismatched_grads_name_the_missing_and_the_extra_keys():
    params = {"W": np.zeros((2, 2)), "b": np.zeros(2)}
    opt = SGD(0.1)
    with pytest.raises(BpttError, match=re.escape("(missing ['W'], extra ['V'])")):
        opt.update(params, {"V": np.zeros((2, 2)), "b": np.zeros(2)}, opt.init_state(params))


def test_a_transposed_gradient_is_refused_by_its_shape_not_only_its_size():
    params = {"W": np.zeros((3, 4))}
    opt = SGD(0.1)
    with pytest.raises(BpttError, match=re.escape(
            "gradient 'W' has shape (4, 3) but the parameter has shape (3, 4); they must match.")):
        opt.update(params, {"W": np.ones((4, 3))}, opt.init_state(params))
    assert not params["W"].any()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_complex_parameter_is_refused(name):
    """Parameters must be float arrays: a complex one is named, not updated."""
    params = {"W": np.zeros(2, dtype=np.complex128)}
    with pytest.raises(BpttError, match=r"^parameter 'W' has dtype complex128; parameters must "
                                        r"be float arrays"):
        make_optimizer(name, 0.1).init_state(params)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_])
def test_integer_and_boolean_gradients_are_real_numbers_and_update(name, dtype):
    """A gradient holds real numbers: an integer (or bool) one updates as its float value."""
    params, as_float = {"W": np.zeros(3)}, {"W": np.zeros(3)}
    opt, ref = make_optimizer(name, 0.1), make_optimizer(name, 0.1)
    grad = np.array([1, 0, 1], dtype=dtype)
    opt.update(params, {"W": grad}, opt.init_state(params))
    ref.update(as_float, {"W": grad.astype(np.float64)}, ref.init_state(as_float))
    np.testing.assert_array_equal(params["W"], as_float["W"])
    assert params["W"][0] < 0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_and_float64_parameters_of_one_shape_each_update_in_their_own_precision(name):
    """The scratch arrays are kept per shape AND dtype: a float64 parameter's step made in a
    float32 scratch of the same shape would lose its low bits."""
    rng = np.random.default_rng(12)
    p32, p64 = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5)
    g32, g64 = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5)
    mixed = {"a": p32.copy(), "b": p64.copy()}
    opt = make_optimizer(name, 0.1)
    opt.update(mixed, {"a": g32, "b": g64}, opt.init_state(mixed))
    for key, p, g in (("a", p32, g32), ("b", p64, g64)):
        alone = {key: p.copy()}
        other = make_optimizer(name, 0.1)
        other.update(alone, {key: g}, other.init_state(alone))
        assert mixed[key].dtype == p.dtype
        np.testing.assert_array_equal(mixed[key], alone[key])


def test_config_keeps_the_exact_hyperparameters_and_survives_json():
    """config() is JSON-able as it is: a JSON round trip (a checkpoint's metadata) gives the
    same settings, each number exactly."""
    import json

    for opt in (SGD(0.0012345678), Momentum(0.0012345678, momentum=0.123456789),
                Adagrad(0.5, eps=1.2345e-9), Adam(3.3333e-4, betas=(0.85, 0.9876), eps=1e-7)):
        config = opt.config()
        assert json.loads(json.dumps(config)) == config
        assert make_optimizer(**config).config() == config
    assert Adam(3.3333e-4, betas=(0.85, 0.9876), eps=1e-7).config() == {
        "name": "adam", "lr": 3.3333e-4, "betas": [0.85, 0.9876], "eps": 1e-7}


def test_betas_must_be_exactly_two():
    with pytest.raises(BpttError, match=r"^betas must be two numbers \(beta1, beta2\), got "
                                        r"\(0\.9, 0\.999, 0\.5\)"):
        Adam(0.1, betas=(0.9, 0.999, 0.5))


def test_an_option_of_an_optimizer_without_options_says_it_has_none():
    with pytest.raises(BpttError, match=r"^optimizer 'sgd' has no option 'eps'; its options "
                                        r"are: none\.$"):
        make_optimizer("sgd", 0.1, eps=1e-8)


def test_check_state_refuses_extra_slots_keys_and_a_transposed_entry():
    """A resume with another optimizer (an Adam state given to SGD holds more than SGD's
    slots), a state of a model with more parameters, or a transposed entry is refused."""
    params = {"W": np.zeros((3, 4))}
    with pytest.raises(CheckpointError, match=r"^optimizer state has slots \['m', 'step', "
                                              r"'v'\] but 'sgd' needs \['step'\]"):
        SGD(0.1).check_state(params, Adam(0.1).init_state(params))
    bigger = Momentum(0.1).init_state({"W": np.zeros((3, 4)), "b": np.zeros(4)})
    with pytest.raises(CheckpointError, match=r"^optimizer slot 'buf' has keys \['W', 'b'\] "
                                              r"but the model has \['W'\]"):
        Momentum(0.1).check_state(params, bigger)
    transposed = Momentum(0.1).init_state({"W": np.zeros((4, 3))})
    with pytest.raises(CheckpointError, match=r"entry 'W' has shape \(4, 3\) but the parameter "
                                              r"has shape \(3, 4\)"):
        Momentum(0.1).check_state(params, transposed)
    state = SGD(0.1).init_state(params)
    state["step"]["u"] = np.zeros((), np.int64)
    with pytest.raises(CheckpointError, match=r"no valid step counter 'step\.t'"):
        SGD(0.1).check_state(params, state)


def test_global_norm_does_not_depend_on_the_order_of_the_keys():
    """Summed in sorted key order: a checkpoint loads its keys sorted, and a resumed run must
    repeat every bit of the norm (and so of the clipping) of an uninterrupted one."""
    # g² of "a" is 1 and of each other key 2⁻⁵⁴: added after the 1 each is lost, added
    # first they make 2⁻⁵¹, and the norm 1 + 2⁻⁵²
    grads = {"a": np.array([1.0]), **{k: np.array([2.0**-27]) for k in "bcdefghi"}}
    huge = {k: g * 2.0**600 for k, g in grads.items()}  # Σ g² overflows: the scaled sum
    for values in (grads, huge):
        scale = values["a"][0]
        reversed_keys = {k: values[k] for k in reversed(values)}
        assert global_norm(values) == global_norm(reversed_keys) == scale


def test_clip_by_global_norm_takes_a_given_norm_of_zero_and_does_not_recompute_it(
        monkeypatch):
    """norm=0.0 (all-zero gradients) is a norm; a given norm is used as it is, the gradients
    not read again for theirs."""
    from bptt import optim

    zeros = {"W": np.zeros(3)}
    assert clip_by_global_norm(zeros, 1.0, 0.0) == 0.0
    monkeypatch.setattr(optim, "global_norm", lambda *a, **k: pytest.fail("norm recomputed"))
    grads = {"W": np.array([3.0, 4.0])}
    assert clip_by_global_norm(grads, 1.0, norm=10.0) == 10.0
    np.testing.assert_array_equal(grads["W"], np.array([3.0, 4.0]) * (1.0 / (10.0 + 1e-6)))


@pytest.mark.parametrize("flat, message", [
    ({".t": np.zeros(())}, "'.t'"), ({"step.": np.zeros(())}, "'step.'"),
    ({"step": np.zeros(())}, "'step'"),
])
def test_unflatten_state_refuses_an_empty_slot_or_key(flat, message):
    with pytest.raises(CheckpointError, match=rf"^optimizer state entry {re.escape(message)} is "
                                              r"not of the form 'slot\.key'"):
        unflatten_state(flat)


def test_flatten_state_refuses_a_slot_name_with_a_dot():
    """'a.b' + '.W' would read back as slot 'a', key 'b.W'."""
    with pytest.raises(BpttError, match=r"^optimizer slot name 'a\.b' must not contain '\.'"):
        flatten_state({"a.b": {"W": np.zeros(2)}})


def test_checkpoint_tensors_are_the_arrays_themselves():
    from bptt import optim

    params = {"W": np.ones(2)}
    state = Adam(0.1).init_state(params)
    tensors = optim.checkpoint_tensors(params, state)
    assert tensors["param.W"] is params["W"] and tensors["opt.m.W"] is state["m"]["W"]
    assert tensors["opt.step.t"] is state["step"]["t"]
