"""The checker itself: relative errors, worst entries, finite differences that leave no trace."""

from __future__ import annotations

import numpy as np
import pytest

import bptt
from bptt.gradcheck import compare, compare_arrays, numerical_gradient, numerical_grads


def test_relative_error_is_measured_on_the_tensor_scale():
    a = np.array([[1.0, 2.0], [3.0, -4.0]])
    b = a.copy()
    b[1, 0] += 0.08
    c = compare_arrays("W", a, b)
    assert c.worst == (1, 0)
    assert c.max_abs == pytest.approx(0.08)
    assert c.max_rel == pytest.approx(0.08 / 8.0)
    assert (c.a_worst, c.b_worst) == (3.0, pytest.approx(3.08))
    assert compare_arrays("z", np.zeros(3), np.zeros(3)).max_rel == 0.0
    assert not c.passed(1e-3) and c.passed(0.1)


def test_a_nan_under_test_fails_and_a_nan_of_the_witness_is_not_checked():
    # a NaN backward passed the README's `relative_error(...) < 1e-12` (NaN was ignored)
    assert bptt.gradcheck.relative_error(np.full(3, np.nan), np.ones(3)) == np.inf
    c = compare_arrays("W", np.array([1.0, np.inf, 2.0]), np.array([1.0, 5.0, 2.0]))
    assert (c.max_rel, c.worst, c.a_worst) == (np.inf, (1,), np.inf) and not c.passed(1e-3)
    # sampled finite differences leave NaN where they did not look: those entries are skipped
    assert compare_arrays("W", np.array([1.0, 7.0]), np.array([1.0, np.nan])).max_rel == 0.0


def test_numerical_grads_checks_its_arguments_as_loss_and_grads_does():
    params = bptt.init_params("rnn", 3, 2, 3, rng=np.random.default_rng(0), dtype=np.float64)
    ids = np.zeros((4, 2), np.int64)
    for call, message in (
        (lambda: numerical_grads(params, ids[:, 0], ids[:, 0]), r"inputs has shape \(4,\)"),
        (lambda: numerical_grads(None, ids, ids), "params must be a dict of arrays"),
        (lambda: numerical_grads(params, ids, ids, eps=0), "eps must be a finite number > 0"),
        (lambda: numerical_grads(params, ids, ids, sample=2.5), "sample must be an integer"),
    ):
        with pytest.raises(bptt.BpttError, match=message):
            call()


def test_arguments_of_the_wrong_kind_are_bptt_errors():
    # a raw TypeError and AttributeError before
    with pytest.raises(bptt.BpttError, match="compare takes two dicts of gradients, got list"):
        compare([np.ones(2)], [np.ones(2)])
    with pytest.raises(bptt.BpttError, match="x must be the numpy array f reads, got list"):
        numerical_gradient(lambda: 0.0, [1.0, 2.0])


def test_shape_and_key_mismatches_are_errors():
    with pytest.raises(ValueError, match=r"shapes differ, \(2,\) vs \(3,\)"):
        compare_arrays("W", np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="gradient keys differ"):
        compare({"a": np.zeros(1)}, {"b": np.zeros(1)})


def test_numerical_gradient_restores_the_array_and_samples(rng):
    x = rng.normal(size=(3, 4))
    before = x.copy()
    g = numerical_gradient(lambda: float((x**3).sum()), x, indices=np.array([0, 5]))
    np.testing.assert_array_equal(x, before)
    assert np.isnan(g).sum() == 10
    np.testing.assert_allclose(g.reshape(-1)[[0, 5]], 3 * x.reshape(-1)[[0, 5]] ** 2, rtol=1e-8)


def test_numerical_gradient_refuses_float32():
    with pytest.raises(ValueError, match="float64"):
        numerical_gradient(lambda: 0.0, np.zeros(2, np.float32))


def test_numerical_grads_does_not_touch_the_callers_arrays(rng):
    params = bptt.init_params("rnn", 2, 3, 2, rng=rng)
    saved = {k: v.copy() for k, v in params.items()}
    h0 = rng.normal(size=(1, 3))
    h0_saved = h0.copy()
    grads, dh0 = numerical_grads(params, rng.integers(0, 2, (3, 1)), rng.integers(0, 2, (3, 1)), h0)
    assert all(np.array_equal(params[k], saved[k]) for k in params)
    np.testing.assert_array_equal(h0, h0_saved)
    assert dh0.shape == h0.shape and set(grads) == set(params)


def test_a_wrong_gradient_is_caught(rng):
    params = bptt.init_params("rnn", 3, 4, 3, rng=rng)
    inputs, targets = rng.integers(0, 3, (4, 2)), rng.integers(0, 3, (4, 2))
    _, grads, _ = bptt.loss_and_grads(params, inputs, targets)
    numeric, _ = numerical_grads(params, inputs, targets)
    grads["Whh"] = grads["Whh"].T  # the transposed-weight-gradient bug
    report = compare(grads, numeric)
    assert report["Whh"].max_rel > 1e-3
    assert all(report[k].max_rel < 1e-7 for k in params if k != "Whh")


@pytest.mark.parametrize("rng", [0, np.random.RandomState(0)])
def test_numerical_grads_names_an_rng_that_is_no_generator(rng):
    """rng=0 was AttributeError: 'int' object has no attribute 'choice', once sampling began."""
    params = bptt.init_params("rnn", 3, 4, 3, rng=np.random.default_rng(0))
    ids = np.random.default_rng(1).integers(0, 3, (4, 2))
    with pytest.raises(bptt.BpttError, match=r"^rng must be a numpy Generator"):
        numerical_grads(params, ids, ids, sample=2, rng=rng)


@pytest.mark.parametrize("seed", [-1, 1.5, np.random.default_rng(0)])
def test_fourth_order_differences_take_a_seed_that_is_a_seed(seed):
    """seed=-1 was numpy's 'expected non-negative integer'; a Generator was taken and drew
    different entries for ε and 2ε, so the entries not drawn by both came back NaN."""
    params = bptt.init_params("rnn", 3, 4, 3, rng=np.random.default_rng(0))
    ids = np.random.default_rng(1).integers(0, 3, (4, 2))
    with pytest.raises(bptt.BpttError, match=r"^seed must be an integer from 0 to 2\^63-1"):
        bptt.gradcheck.numerical_grads_fourth_order(params, ids, ids, sample=2, seed=seed)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eps": 0}, r"^eps must be a finite number > 0"),
        ({"eps": "1e-6"}, r"^eps must be a finite number > 0"),
        ({"indices": np.array([3])}, r"^indices must be flat indices of x in \[0, 3\)"),
        ({"indices": [-4]}, r"^indices must be flat indices of x in \[0, 3\)"),
        ({"indices": [0.5]}, r"^indices must be flat indices of x in \[0, 3\)"),
    ],
)
def test_numerical_gradient_names_a_bad_eps_or_index(kwargs, message):
    """eps=0 was ZeroDivisionError, an index past the end numpy's IndexError."""
    x = np.ones(3)
    with pytest.raises(bptt.BpttError, match=message):
        numerical_gradient(lambda: float(x.sum()), x, **kwargs)
    assert (x == 1).all()


@pytest.mark.parametrize("value", ["no", 0, "False"])
def test_switches_are_booleans_not_truthy_values(value):
    # "no" is a true value in Python: taken as one, it ran torch (or kept every term) silently
    from bptt import gradcheck, reference

    params = bptt.init_params("rnn", 3, 2, 3, True, np.random.default_rng(0), np.float64)
    ids = np.zeros((2, 1), dtype=np.int64)
    with pytest.raises(bptt.BpttError, match=r"^use_torch \(or None\) must be True or False"):
        gradcheck.check_model("rnn", use_torch=value)
    with pytest.raises(bptt.BpttError, match=r"^keep_contributions must be True or False"):
        reference.loss_and_grads(params, ids, ids, keep_contributions=value)
