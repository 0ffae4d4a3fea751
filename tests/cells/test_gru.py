"""The GRU cell: its init, its step functions, b^hn inside r ⊙ ·, and its reference step.

The whole-network witnesses (reference, finite differences, torch) are in tests/test_cells_grid.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import bptt
from bptt import reference
from bptt.cells import gru
from bptt.gradcheck import compare_arrays, numerical_gradient

TOL = 1e-8  # central differences of a smooth function at ε = 1e-6, tensors of scale ~1


def random_layer(rng, D=3, H=4, bias=True):
    p = gru.init_layer(rng, D, H, bias, np.float64)
    for name in gru.BIAS_NAMES:
        if name in p:
            p[name] = rng.normal(size=p[name].shape)
    return p


def test_init_layer_has_pytorch_shapes_and_range(rng):
    p = gru.init_layer(rng, 3, 16, True, np.float64)
    assert {k: v.shape for k, v in p.items()} == {
        "Wxh": (48, 3), "Whh": (48, 16), "bxh": (48,), "bhh": (48,)
    }
    assert all(0 < np.abs(v).max() <= 1 / 4 for v in p.values())
    assert sorted(gru.init_layer(rng, 3, 16, False, np.float32)) == ["Whh", "Wxh"]
    assert gru.init_layer(rng, 3, 16, False, np.float32)["Whh"].dtype == np.float32


def test_step_forward_is_one_step_of_the_sequence_and_step_backward_its_partials(rng):
    p = random_layer(rng)
    B, H = 2, 4
    x = rng.normal(size=(1, B, 3))
    h0 = rng.normal(size=(B, H))
    cache = gru.sequence_forward(p, x, (h0,))
    x_proj = x[0] @ p["Wxh"].T + p["bxh"]
    step = gru.step_forward(p, x_proj, h0)
    for name, saved, fresh in zip(gru.Step._fields, cache.step(0), step, strict=True):
        np.testing.assert_allclose(saved, fresh, rtol=1e-14, atol=1e-15, err_msg=name)
    upstream = rng.normal(size=(B, H))
    back = gru.step_backward(p, upstream, step, h0)

    def f():
        return float((upstream * gru.step_forward(p, x_proj, h0).h).sum())

    # a^ih = x_proj, a^hh = W^hh h_{t−1} + b^hh: ∂J/∂a^hh is ∂J/∂b^hh
    for name, ours, wrt in [
        ("dJ_da_ih", back.dJ_da_ih, x_proj),
        ("dJ_dh_prev", back.dJ_dh_prev, h0),
        ("dJ_da_hh", back.dJ_da_hh.sum(axis=0), p["bhh"]),
    ]:
        c = compare_arrays(name, ours, numerical_gradient(f, wrt))
        assert c.max_rel < TOL, f"{name}: rel {c.max_rel:.3g} at {c.worst}"


def test_b_hn_sits_inside_the_reset_product(rng):
    """Unlike the LSTM's, the GRU's two biases differ exactly in the n rows, by the factor r."""
    H = 4
    params = bptt.init_params("gru", 3, H, 3, rng=rng)
    inputs, targets = rng.integers(0, 3, (4, 2)), rng.integers(0, 3, (4, 2))
    _, grads, _ = bptt.loss_and_grads(params, inputs, targets)
    # r and z: a^ir + a^hr, so ∂J/∂b^ir = ∂J/∂b^hr (rows 0 … 2H−1)
    np.testing.assert_allclose(grads["bxh"][: 2 * H], grads["bhh"][: 2 * H], rtol=1e-13)
    assert not np.allclose(grads["bxh"][2 * H :], grads["bhh"][2 * H :])
    # moving b^hn into b^in changes the network (it would not for the r, z rows)
    moved_n = params["bhh"].copy()
    moved_n[2 * H :] = 0
    in_n = dict(params, bxh=params["bxh"] + params["bhh"] - moved_n, bhh=moved_n)
    assert not np.allclose(bptt.forward(in_n, inputs).logits, bptt.forward(params, inputs).logits)
    moved_rz = params["bhh"].copy()
    moved_rz[: 2 * H] = 0
    in_rz = dict(params, bxh=params["bxh"] + params["bhh"] - moved_rz, bhh=moved_rz)
    np.testing.assert_allclose(
        bptt.forward(in_rz, inputs).logits, bptt.forward(params, inputs).logits, rtol=1e-13
    )


def test_the_reference_step_jacobians_are_the_derivatives_of_its_forward(rng):
    """reference.gru_step's ∂h/∂a^ih, ∂h/∂a^hh and ∂h/∂h_prev, checked by finite differences."""
    p = random_layer(rng, D=3, H=3)
    B, H = 2, 3
    x = rng.normal(size=(B, 3))
    h_prev = rng.normal(size=(B, H))
    local = reference.gru_step(p, x, h_prev)
    dh_dh_prev = local.ds_ds_direct + local.ds_da_hh @ p["Whh"]
    for b in range(B):
        for i in range(H):
            def f(b=b, i=i):
                return float(reference.gru_step(p, x, h_prev).s[b, i])

            # a^ih = W^xh x + b^xh, so ∂h/∂a^ih = ∂h/∂b^xh; likewise ∂h/∂a^hh = ∂h/∂b^hh
            for name, ours, wrt in [
                ("ds_da_ih", local.ds_da_ih[b, i], p["bxh"]),
                ("ds_da_hh", local.ds_da_hh[b, i], p["bhh"]),
                ("ds_ds_prev", dh_dh_prev[b, i], h_prev),
            ]:
                numeric = numerical_gradient(f, wrt)
                numeric = numeric[b] if wrt is h_prev else numeric
                c = compare_arrays(name, ours, numeric)
                assert c.max_rel < TOL, f"{name}[{b}, {i}]: rel {c.max_rel:.3g}"


def test_the_state_carries_across_chunks_and_float32_stays_float32(rng):
    params = bptt.init_params("gru", 3, 4, 3, rng=rng, num_layers=2)
    inputs = rng.integers(0, 3, (6, 2))
    h0 = rng.normal(size=(2, 2, 4))
    full = bptt.forward(params, inputs, h0)
    first = bptt.forward(params, inputs[:3], h0)
    second = bptt.forward(params, inputs[3:], first.state)
    np.testing.assert_allclose(second.logits, full.logits[3:], rtol=1e-13)
    np.testing.assert_allclose(second.state, full.state, rtol=1e-13)
    p32 = bptt.init_params("gru", 3, 4, 3, rng=rng, dtype=np.float32)
    loss, grads, h = bptt.loss_and_grads(p32, inputs, rng.integers(0, 3, (6, 2)))
    assert all(g.dtype == np.float32 for g in grads.values())
    assert h.dtype == np.float32 and np.isfinite(loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_gates_are_exactly_0_and_1_without_overflow_warnings(rng, dtype):
    # the sweep computes σ(a) = 1 / (1 + e^{−a}): at |a| ≫ 1 e^{−a} is inf or 0, which must
    # give σ = 0 or 1 exactly, silently, never NaN; and near 0 the same σ as the step function
    p = random_layer(rng, D=3, H=4)
    ids = rng.integers(0, 3, size=(6, 2))
    h0 = (np.zeros((2, 4), dtype),)
    big = {k: (v * 1e4).astype(dtype) for k, v in p.items()}
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        cache = gru.sequence_forward(big, ids, h0)
    gates = np.stack([cache.r, cache.z])
    assert np.isin(gates, [0.0, 1.0]).mean() > 0.9 and ((gates >= 0) & (gates <= 1)).all()
    small = {k: v.astype(dtype) for k, v in p.items()}
    cache = gru.sequence_forward(small, ids, h0)
    x_proj = small["Wxh"].T[ids[0]] + small["bxh"]
    step = gru.step_forward(small, x_proj, h0[0])
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(cache.r[0], step.r, rtol=8 * eps)
    np.testing.assert_allclose(cache.z[0], step.z, rtol=8 * eps)
