"""The LSTM cell: its init, its step functions, its carried ∂J/∂c, and its reference step.

The whole-network witnesses (reference, finite differences, torch) are in tests/test_cells_grid.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import bptt
from bptt import reference
from bptt.cells import lstm
from bptt.gradcheck import compare_arrays, numerical_gradient

TOL = 1e-8  # central differences of a smooth function at ε = 1e-6, tensors of scale ~1


def random_layer(rng, D=3, H=4, bias=True):
    p = lstm.init_layer(rng, D, H, bias, np.float64)
    for name in lstm.BIAS_NAMES:
        if name in p:
            p[name] = rng.normal(size=p[name].shape)
    return p


def test_init_layer_has_pytorch_shapes_and_range(rng):
    p = lstm.init_layer(rng, 3, 16, True, np.float64)
    assert {k: v.shape for k, v in p.items()} == {
        "Wxh": (64, 3), "Whh": (64, 16), "bxh": (64,), "bhh": (64,)
    }
    assert all(0 < np.abs(v).max() <= 1 / 4 for v in p.values())
    assert sorted(lstm.init_layer(rng, 3, 16, False, np.float32)) == ["Whh", "Wxh"]
    assert lstm.init_layer(rng, 3, 16, False, np.float32)["Whh"].dtype == np.float32


def test_forget_bias_sets_the_f_rows_of_bxh_and_clears_those_of_bhh(rng):
    H = 5
    params = bptt.init_params("lstm", 3, H, 2, rng=rng, num_layers=2, forget_bias=1.0)
    for suffix in ("", "_l1"):
        bxh, bhh = params["bxh" + suffix], params["bhh" + suffix]
        np.testing.assert_array_equal(bxh[H : 2 * H], 1.0)
        np.testing.assert_array_equal(bhh[H : 2 * H], 0.0)
        # the other gates keep PyTorch's random init
        assert np.all(bxh[:H] != 1.0) and np.all(bhh[2 * H :] != 0.0)
    default = bptt.init_params("lstm", 3, H, 2, rng=np.random.default_rng(1))
    assert np.all(default["bhh"][H : 2 * H] != 0.0)  # off by default, as PyTorch
    with pytest.raises(ValueError, match="forget_bias needs bias=True"):
        bptt.init_params("lstm", 3, H, 2, bias=False, forget_bias=1.0)
    # a value the weights cannot hold is refused, not a NaN or inf bias (float32 overflows)
    for value, dtype in ((float("nan"), np.float64), (float("inf"), np.float64),
                         (1e40, np.float32), (10**400, np.float64), ("1", np.float64)):
        with pytest.raises(ValueError, match=r"forget_bias must be a finite number \("
                                             f"{np.dtype(dtype).name}"):
            bptt.init_params("lstm", 3, H, 2, forget_bias=value, dtype=dtype)
    with pytest.raises(ValueError, match="lstm cell only"):
        bptt.init_params("gru", 3, H, 2, forget_bias=1.0)


def test_step_forward_is_one_step_of_the_sequence_and_step_backward_its_partials(rng):
    p = random_layer(rng)
    B, H = 2, 4
    x = rng.normal(size=(1, B, 3))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    cache = lstm.sequence_forward(p, x, (h0, c0))
    x_proj = x[0] @ p["Wxh"].T + p["bxh"] + p["bhh"]
    step = lstm.step_forward(p, x_proj, h0, c0)
    for name, saved, fresh in zip(lstm.Step._fields, cache.step(0), step, strict=True):
        np.testing.assert_allclose(saved, fresh, rtol=1e-14, atol=1e-15, err_msg=name)
    # J = Σ upstream_h ⊙ h_t + Σ upstream_c ⊙ c_t: the partials of one step
    upstream_h, upstream_c = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    back = lstm.step_backward(p, upstream_h, upstream_c, step, c0)

    def f():
        s = lstm.step_forward(p, x_proj, h0, c0)
        return float((upstream_h * s.h).sum() + (upstream_c * s.c).sum())

    for name, ours, wrt in [
        ("dJ_da", back.dJ_da, x_proj),
        ("dJ_dh_prev", back.dJ_dh_prev, h0),
        ("dJ_dc_prev", back.dJ_dc_prev, c0),
    ]:
        c = compare_arrays(name, ours, numerical_gradient(f, wrt))
        assert c.max_rel < TOL, f"{name}: rel {c.max_rel:.3g} at {c.worst}"


@pytest.mark.parametrize("truncate", [None, 1, 3])
def test_the_carried_dJ_dc_is_the_reference_sum_by_age(rng, truncate):
    """Backward.dJ_dc[age, k] is the reference's ∂J_{k+age}/∂c_k (A = 1: summed over t ≥ k).

    The reference differentiates by the state s_k = [h_k; c_k], h_k held fixed; the efficient
    dJ_dc is the total, which adds the path c_k → h_k = o_k ⊙ tanh c_k inside step k:
    dJ_dc = ∂J/∂c_k|_s + ∂J/∂h_k ⊙ o_k ⊙ (1 − tanh² c_k).
    """
    T, B, D, H, V = 5, 2, 3, 4, 3
    params = bptt.init_params("lstm", D, H, V, rng=rng)
    inputs, targets = rng.integers(0, D, (T, B)), rng.integers(0, V, (T, B))
    h0 = (rng.normal(size=(B, H)), rng.normal(size=(B, H)))
    _, _, terms = reference.loss_and_grads(params, inputs, targets, h0, truncate)
    # the head's error reaches h_k from J_k alone: age 0
    A = 1 if truncate is None else truncate
    dJ_dh_local = np.zeros((A, T, B, H))
    dJ_dh_local[0] = terms.dJt_dh[0, np.arange(T), np.arange(T)]
    cache = lstm.sequence_forward(params, inputs, h0)
    back = lstm.sequence_backward(params, cache, dJ_dh_local, truncate)
    dh_dc = cache.o * (1 - cache.tanh_c**2)
    expected_dh, expected_dc = np.zeros_like(back.dJ_dh), np.zeros_like(back.dJ_dc)
    for k in range(T):
        ts = [range(k, T)] if truncate is None else [[k + a] for a in range(min(A, T - k))]
        for age, t in enumerate(ts):
            dJ_dh = terms.dJt_dh[0, list(t), k].sum(axis=0)
            expected_dh[age, k] = dJ_dh
            expected_dc[age, k] = terms.dJt_dc[0, list(t), k].sum(axis=0) + dJ_dh * dh_dc[k]
    for name, ours, theirs in [
        ("dJ_dh", back.dJ_dh, expected_dh),
        ("dJ_dc", back.dJ_dc, expected_dc),
        ("dJ_dc0", back.dJ_dstate0[1], terms.dJ_dstate0[1]),
    ]:
        c = compare_arrays(name, ours, theirs)
        assert c.max_rel < 1e-12, f"{name}: rel {c.max_rel:.3g} at {c.worst}"


def test_the_reference_step_jacobians_are_the_derivatives_of_its_forward(rng):
    """reference.lstm_step's ∂s/∂a^ih, ∂s/∂a^hh and ∂s/∂s_prev, checked by finite differences."""
    p = random_layer(rng, D=3, H=3)
    B, H = 2, 3
    x = rng.normal(size=(B, 3))
    s_prev = rng.normal(size=(B, 2 * H))
    local = reference.lstm_step(p, x, s_prev)
    # a^ih = W^xh x + b^xh, so ∂s/∂a^ih = ∂s/∂b^xh; likewise ∂s/∂a^hh = ∂s/∂b^hh
    ds_ds_prev = local.ds_ds_direct.copy()
    ds_ds_prev[:, :, :H] += local.ds_da_hh @ p["Whh"]
    for b in range(B):
        for i in range(2 * H):
            def f(b=b, i=i):
                return float(reference.lstm_step(p, x, s_prev).s[b, i])

            for name, ours, wrt in [
                ("ds_da_ih", local.ds_da_ih[b, i], p["bxh"]),
                ("ds_da_hh", local.ds_da_hh[b, i], p["bhh"]),
                ("ds_ds_prev", ds_ds_prev[b, i], s_prev),
            ]:
                numeric = numerical_gradient(f, wrt)
                numeric = numeric[b] if wrt is s_prev else numeric
                c = compare_arrays(name, ours, numeric)
                assert c.max_rel < TOL, f"{name}[{b}, {i}]: rel {c.max_rel:.3g}"


def test_the_two_biases_act_as_one_and_get_the_same_gradient(rng):
    params = bptt.init_params("lstm", 3, 4, 3, rng=rng)
    inputs, targets = rng.integers(0, 3, (4, 2)), rng.integers(0, 3, (4, 2))
    _, grads, _ = bptt.loss_and_grads(params, inputs, targets)
    np.testing.assert_array_equal(grads["bxh"], grads["bhh"])
    moved = dict(params, bxh=params["bxh"] + params["bhh"], bhh=np.zeros_like(params["bhh"]))
    np.testing.assert_allclose(
        bptt.forward(moved, inputs).logits, bptt.forward(params, inputs).logits, rtol=1e-13
    )


def test_the_state_pair_carries_across_chunks_and_float32_stays_float32(rng):
    params = bptt.init_params("lstm", 3, 4, 3, rng=rng, num_layers=2)
    inputs = rng.integers(0, 3, (6, 2))
    h0 = (rng.normal(size=(2, 2, 4)), rng.normal(size=(2, 2, 4)))
    full = bptt.forward(params, inputs, h0)
    first = bptt.forward(params, inputs[:3], h0)
    second = bptt.forward(params, inputs[3:], first.state)
    np.testing.assert_allclose(second.logits, full.logits[3:], rtol=1e-13)
    for ours, whole in zip(second.state, full.state, strict=True):
        np.testing.assert_allclose(ours, whole, rtol=1e-13)
    p32 = bptt.init_params("lstm", 3, 4, 3, rng=rng, dtype=np.float32)
    loss, grads, (h, c) = bptt.loss_and_grads(p32, inputs, rng.integers(0, 3, (6, 2)))
    assert all(g.dtype == np.float32 for g in grads.values())
    assert h.dtype == c.dtype == np.float32 and np.isfinite(loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_gates_are_exactly_0_and_1_without_overflow_warnings(rng, dtype):
    # the sweep computes σ(a) = 1 / (1 + e^{−a}): at |a| ≫ 1 e^{−a} is inf or 0, which must
    # give σ = 0 or 1 exactly, silently, never NaN; g = tanh a^g saturates at ±1
    p = random_layer(rng, D=3, H=4)
    p = {k: (v * 1e4).astype(dtype) for k, v in p.items()}
    ids = rng.integers(0, 3, size=(6, 2))
    state0 = (np.zeros((2, 4), dtype), np.zeros((2, 4), dtype))
    with np.errstate(all="raise"):
        cache = lstm.sequence_forward(p, ids, state0)
    gates = np.stack([cache.i, cache.f, cache.o])
    assert np.isin(gates, [0.0, 1.0]).mean() > 0.9 and ((gates >= 0) & (gates <= 1)).all()
    assert np.isin(cache.g, [-1.0, 1.0]).mean() > 0.9 and (np.abs(cache.g) <= 1).all()
    # and the same values as the step function written as the derivation states it
    step = lstm.step_forward(p, _x_proj(p, ids[0]), state0[0], state0[1])
    np.testing.assert_array_equal(np.sign(step.g), np.sign(cache.g[0]))


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float32, 1e-6), (np.float64, 1e-15)])
def test_tiny_pre_activations_keep_their_relative_precision(rng, dtype, rtol):
    # g = tanh a^g ≈ a^g near 0: the sweep must not lose the digits of a^g
    # (g computed as 2σ(2a) − 1 kept only |a| / eps of them: 1e-4 relative error at a ~ 1e-3)
    p = {k: (v * 1e-12).astype(dtype) for k, v in random_layer(rng, bias=False).items()}
    ids = rng.integers(0, 3, size=(1, 2))
    state0 = (np.zeros((2, 4), dtype), np.zeros((2, 4), dtype))
    cache = lstm.sequence_forward(p, ids, state0)
    a = p["Wxh"].T[ids[0]]  # a_0 = W^xh x_0 (h0 = 0, no biases), rows i f g o
    H = 4
    np.testing.assert_allclose(cache.g[0], np.tanh(a[:, 2 * H : 3 * H]), rtol=rtol)
    # and the gradients equal the reference's there too (the README's 1e-12, in float64)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    dense = rng.standard_normal((5, 2, 3)) * 1e-10
    targets = rng.integers(0, 3, (5, 2))
    grads = bptt.loss_and_grads({**p64, "Why": np.eye(3, 4), "by": np.zeros(3)}, dense, targets)[1]
    ref = reference.loss_and_grads({**p64, "Why": np.eye(3, 4), "by": np.zeros(3)}, dense, targets)[1]
    for key in grads:
        c = compare_arrays(key, grads[key], ref[key])
        assert c.passed(1e-12), c


def _x_proj(p, ids_t):
    """W^xh x_t + b^xh + b^hh for one step of token ids."""
    return p["Wxh"].T[ids_t] + p["bxh"] + p["bhh"]
