"""The checker itself: relative errors, worst entries, finite differences that leave no trace."""

from __future__ import annotations

import warnings

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


def test_gradients_near_float64s_largest_are_compared_without_overflow():
    """a − b and |a| + |b| overflowed (RuntimeWarnings): 1e308 against a small witness had
    a relative error of 0 or NaN where the scale became inf."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opposite = compare_arrays("W", np.array([1.5e308, -1.5e308]),
                                  np.array([-1.5e308, 1.5e308]))
        far = compare_arrays("W", np.full(3, 1e308), np.array([0.5, -1e307, 1e308]))
    assert (opposite.max_rel, opposite.max_abs, opposite.worst) == (1.0, np.inf, (0,))
    # the scale is |a| + |b| = 2e308 at the last entry: past float64's largest, yet counted
    assert far.max_rel == pytest.approx(0.55) and far.max_abs == pytest.approx(1.1e308)
    assert far.worst == (1,) and not far.passed(1e-3)


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


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_numerical_grads_gives_dJ_dh0_in_the_form_backprop_gives_it(cell, rng):
    # an RNN's or GRU's h0 as nested lists is one (L, B, H) array to the forward; its
    # ∂J/∂h0 came back as a tuple of the list's rows, (B, H) each (or (H,) for (B, H))
    params = bptt.init_params(cell, 3, 4, 3, rng=rng, dtype=np.float64, num_layers=2)
    ids = rng.integers(0, 3, (3, 2))
    h = rng.normal(size=(2, 2, 4))
    h0 = [h.tolist(), (h / 2).tolist()] if cell == "lstm" else h.tolist()
    expected = bptt.backprop(params, ids, ids, h0=h0).dJ_dstate0
    _, dh0 = numerical_grads(params, ids, ids, h0)
    assert type(dh0) is type(expected)
    for numeric, exact in zip(*((dh0, expected) if cell == "lstm" else ((dh0,), (expected,))),
                              strict=True):
        assert numeric.shape == exact.shape == (2, 2, 4)
        np.testing.assert_allclose(numeric, exact, rtol=1e-6, atol=1e-8)
    with pytest.raises(bptt.BpttError, match="must be a pair" if cell == "lstm" else "shape"):
        numerical_grads(params, ids, ids, h[:1] if cell != "lstm" else h)


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


# ---- mutation audit (4): what no test pinned ----


def test_numerical_gradient_refuses_a_view_it_could_not_perturb_and_2d_indices():
    x = np.ones((3, 4))[:, :2]  # reshape(-1) of it is a copy: f would never see a change
    with pytest.raises(bptt.BpttError, match=r"^numerical_gradient needs x C-contiguous, not "
                       "in Fortran order nor a strided view"):
        numerical_gradient(lambda: float(x.sum()), x)
    y = np.ones(3)
    with pytest.raises(bptt.BpttError, match=r"^indices must be flat indices of x in \[0, 3\)"):
        numerical_gradient(lambda: float(y.sum()), y, indices=np.array([[0, 1]]))


def test_numerical_gradient_names_a_read_only_or_fortran_ordered_x():
    """A read-only x was numpy's "assignment destination is read-only" from the middle of
    the loop; a Fortran-ordered one, contiguous, was told it is not contiguous."""
    x = np.arange(6.0).reshape(2, 3)
    x.flags.writeable = False
    with pytest.raises(bptt.BpttError, match=r"^x is a read-only array: numerical_gradient "
                       "perturbs it in place"):
        numerical_gradient(lambda: float((x**2).sum()), x)
    y = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(bptt.BpttError, match=r"^numerical_gradient needs x C-contiguous, not "
                       r"in Fortran order .*np\.ascontiguousarray\(x\)"):
        numerical_gradient(lambda: float((y**2).sum()), y)


def test_sampled_differences_check_exactly_sample_entries_and_sample_is_at_least_one(rng):
    params = bptt.init_params("rnn", 3, 4, 3, rng=rng)
    ids = rng.integers(0, 3, (3, 2))
    grads, dh0 = numerical_grads(params, ids, ids, sample=3)
    for key, g in [*grads.items(), ("h0", dh0)]:
        assert np.count_nonzero(~np.isnan(g)) == min(3, g.size), key
    with pytest.raises(bptt.BpttError, match=r"^sample must be an integer >= 1, got 0$"):
        numerical_grads(params, ids, ids, sample=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_the_fourth_order_stencil_is_four_thirds_of_d_eps_less_a_third_of_d_2eps(cell):
    from bptt.gradcheck import numerical_grads_fourth_order

    params, ids, labels, h0 = bptt.gradcheck.random_problem(cell, 2, 2, 1, 1, seed=3)
    eps = 1e-3
    near, near_h0 = numerical_grads(params, ids, labels, h0, eps, 4, np.random.default_rng(7))
    far, far_h0 = numerical_grads(params, ids, labels, h0, 2 * eps, 4, np.random.default_rng(7))
    grads, dh0 = numerical_grads_fourth_order(params, ids, labels, h0, eps, sample=4, seed=7)
    for key in params:
        np.testing.assert_array_equal(grads[key], (4 * near[key] - far[key]) / 3, err_msg=key)
    pairs = zip(near_h0, far_h0, strict=True) if cell == "lstm" else [(near_h0, far_h0)]
    expected_h0 = [(4 * a - b) / 3 for a, b in pairs]
    assert isinstance(dh0, tuple) == (cell == "lstm")
    for got, want in zip(dh0 if cell == "lstm" else [dh0], expected_h0, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_comparison_passes_at_its_tolerance_and_a_witness_that_computed_nothing_is_no_error():
    at = bptt.gradcheck.Comparison("W", 1e-7, 1e-7, (0,), 1.0, 1.0)
    assert at.passed(1e-7) and not at.passed(0.99e-7)
    c = compare_arrays("W", np.ones(3), np.full(3, np.nan))
    assert (c.max_rel, c.max_abs, c.worst) == (0.0, 0.0, ())


def test_compare_names_the_keys_only_one_side_has():
    with pytest.raises(bptt.BpttError, match=r"^gradient keys differ: \['b'\]$"):
        compare({"a": np.zeros(1), "b": np.zeros(1)}, {"a": np.zeros(1)})


def test_a_row_is_judged_by_each_witness_tolerance_and_worst_relative_to_it():
    from bptt.gradcheck import Comparison, Row

    ref = Comparison("W", 1e-11, 1e-11, (0,), 1.0, 1.0)  # 10 times its tolerance 1e-12
    fd = Comparison("W", 5e-8, 5e-8, (0,), 1.0, 1.0)  # within its 1e-7, though larger
    row = Row("rnn", 1, "W", ref, fd)
    assert [(name, tol) for name, _, tol in row.witnesses()] == [
        ("reference", 1e-12), ("finite differences", 1e-7)]
    assert row.worst is ref and not row.passed
    assert Row("rnn", 1, "W", Comparison("W", 0.0, 0.0, (), 0.0, 0.0), fd).passed


def test_random_problem_follows_its_seed():
    from bptt.gradcheck import random_problem

    first, again, other = (random_problem("rnn", 2, 3, 2, 1, s) for s in (0, 0, 1))
    assert all(np.array_equal(first[0][k], again[0][k]) for k in first[0])
    assert not np.array_equal(first[0]["Whh"], other[0]["Whh"])


def test_check_model_uses_the_fourth_order_stencil_and_compares_the_whole_lstm_state():
    from bptt.gradcheck import check_model, numerical_grads_fourth_order, random_problem

    rows = {r.name: r for r in check_model("lstm", hidden=2, seq_len=2, batch=1, seed=4)}
    params, ids, labels, h0 = random_problem("lstm", 2, 2, 1, 1, seed=4)
    eff = bptt.backprop(params, ids, labels, h0=h0)
    stencil, stencil_h0 = numerical_grads_fourth_order(params, ids, labels, h0)
    for key in params:
        assert rows[key].vs_numeric == compare_arrays(key, eff.grads[key], stencil[key]), key
    assert rows["h0"].vs_numeric == compare_arrays("h0", np.stack(eff.dJ_dstate0),
                                                   np.stack(stencil_h0))


def test_check_model_names_a_missing_torch(monkeypatch):
    monkeypatch.setattr(bptt.gradcheck, "_torch_available", lambda: False)
    with pytest.raises(bptt.BpttError, match=r"^torch is not installed: pip install torch, or "
                       "leave the torch witness off$"):
        bptt.gradcheck.check_model("rnn", 2, 2, 1, use_torch=True)
    assert bptt.gradcheck.check_model("rnn", 2, 2, 1, use_torch=None)[0].vs_torch is None


def test_numerical_grads_reads_weights_and_a_state_of_any_memory_order(rng):
    """Transposed (Fortran-order) weights and state pass loss_and_grads; numerical_grads copied
    them in their own order and refused its copies: "needs a contiguous array"."""
    params = bptt.init_params("rnn", 2, 3, 2, rng=rng)
    ids, labels = rng.integers(0, 2, (3, 2)), rng.integers(0, 2, (3, 2))
    h0 = rng.normal(size=(1, 2, 3))
    fortran = {k: np.asfortranarray(v) for k, v in params.items()}
    h0_transposed = np.ascontiguousarray(h0.transpose(2, 1, 0)).transpose(2, 1, 0)
    grads, dh0 = numerical_grads(fortran, ids, labels, h0_transposed)
    expected, expected_dh0 = numerical_grads(params, ids, labels, h0)
    for key in params:
        np.testing.assert_array_equal(grads[key], expected[key])
    np.testing.assert_array_equal(dh0, expected_dh0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_numerical_grads_are_central_differences_of_forward_loss_bit_for_bit(cell):
    """The loss is checked once and evaluated without checking its arguments again: every
    entry is still (J(θ + ε) − J(θ − ε)) / 2ε of bptt.forward_loss, to the last bit."""
    params, inputs, targets, h0 = bptt.gradcheck.random_problem(cell, 3, 4, 2, 2, 1)
    eps = 1e-5
    grads, dJ_dh0 = numerical_grads(params, inputs, targets, h0, eps=eps)
    parts = list(h0) if cell == "lstm" else [h0]
    d_parts = list(dJ_dh0) if cell == "lstm" else [dJ_dh0]
    rng = np.random.default_rng(2)
    tensors = [(params[key], grads[key], key, None) for key in params]
    tensors += [(part, d_part, "h0", i)
                for i, (part, d_part) in enumerate(zip(parts, d_parts, strict=True))]
    for value, grad, key, part in tensors:
        for index in rng.choice(value.size, size=min(3, value.size), replace=False):
            loss = []
            for sign in (1, -1):
                moved = value.copy()
                moved.reshape(-1)[index] += sign * eps
                if part is None:
                    loss.append(bptt.forward_loss({**params, key: moved}, inputs, targets, h0))
                else:
                    state = parts.copy()
                    state[part] = moved
                    state = tuple(state) if cell == "lstm" else state[0]
                    loss.append(bptt.forward_loss(params, inputs, targets, state))
            assert grad.reshape(-1)[index] == (loss[0] - loss[1]) / (2 * eps), (key, index)


# ---- mutation audit (5): gradcheck.py and its command ----


def test_sampled_differences_without_a_generator_check_the_same_entries_every_run():
    """rng None stands for default_rng(0): a rerun checks the same entries (a fresh
    Generator each call made the NaN pattern, and a reported worst entry, change)."""
    params, ids, labels, h0 = bptt.gradcheck.random_problem("rnn", 3, 3, 2, 1, seed=0)
    first, first_h0 = numerical_grads(params, ids, labels, h0, sample=2)
    again, again_h0 = numerical_grads(params, ids, labels, h0, sample=2)
    seeded, _ = numerical_grads(params, ids, labels, h0, sample=2, rng=np.random.default_rng(0))
    for key in params:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
        np.testing.assert_array_equal(first[key], seeded[key], err_msg=key)
    np.testing.assert_array_equal(first_h0, again_h0)


def test_entries_the_witness_did_not_compute_are_neither_errors_nor_the_worst():
    """A NaN under test where the witness has none is not an error; the worst entry is one
    the witness computed (an entry it skipped was named the worst, with NaN as its value)."""
    both = compare_arrays("W", np.array([1.0, np.nan]), np.array([1.0, np.nan]))
    assert (both.max_rel, both.worst) == (0.0, (0,))
    skipped = compare_arrays("W", np.array([1.0, 2.0]), np.array([np.nan, 2.0]))
    assert (skipped.max_rel, skipped.worst, skipped.a_worst, skipped.b_worst) == (
        0.0, (1,), 2.0, 2.0)


def test_the_scale_of_tensors_near_zero_is_held_at_tiny():
    """rel = max |a − b| / max(max (|a| + |b|), 1e-300): below the floor, the error is
    measured against 1e-300."""
    assert bptt.gradcheck.relative_error(np.array([1e-301]), np.zeros(1)) == pytest.approx(
        0.1, rel=1e-12)
    assert bptt.gradcheck.relative_error(np.array([4e-300]), np.zeros(1)) == 1.0


def test_the_torch_witness_is_held_to_its_own_tolerance():
    """1e-9 is within finite differences' 1e-7 but not torch's 1e-10 (float64 autograd)."""
    from bptt.gradcheck import Comparison, Row

    ok = Comparison("W", 0.0, 0.0, (), 0.0, 0.0)
    row = Row("rnn", 1, "W", ok, ok, Comparison("W", 1e-9, 1e-9, (0,), 1.0, 1.0))
    assert row.witnesses()[2][::2] == ("torch", 1e-10)
    assert not row.passed
    assert Row("rnn", 1, "W", ok, ok, Comparison("W", 1e-10, 1e-10, (0,), 1.0, 1.0)).passed
