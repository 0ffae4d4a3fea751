"""The third witness: a float64 PyTorch twin (nn.RNN/LSTM/GRU + Linear) and its place in check_model."""

from __future__ import annotations

import numpy as np
import pytest

import bptt
from bptt import gradcheck, interop


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_torch_witness_agrees_with_the_efficient_backward(torch, cell, layers):
    params, inputs, targets, h0 = gradcheck.random_problem(cell, 3, 4, 2, layers, seed=5)
    loss, grads, dJ_dh0 = interop.torch_loss_and_grads(params, inputs, targets, h0)
    mine = bptt.backprop(params, inputs, targets, h0=h0)
    assert loss == pytest.approx(mine.loss, rel=1e-13)
    for key in params:
        assert gradcheck.relative_error(grads[key], mine.grads[key]) < 1e-12, key
    assert gradcheck.relative_error(gradcheck._flat(dJ_dh0), gradcheck._flat(mine.dJ_dstate0)) < 1e-12


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("form", ["flat (B, H)", "(L, B, H)", "a list per layer"])
def test_the_torch_witness_reads_h0_in_every_form_bptt_reads(torch, cell, form):
    """It used to reshape any array of the right size ((H, B) for (B, H)) and to raise
    numpy's or torch's own errors on a per-layer list."""
    layers = 1 if form.startswith("flat") else 2
    params, inputs, targets, h0 = gradcheck.random_problem(cell, 3, 4, 2, layers, seed=6)
    parts = h0 if cell == "lstm" else (h0,)
    if form.startswith("flat"):
        parts = tuple(p[0] for p in parts)
    elif form.startswith("a list"):
        parts = tuple(list(p) for p in parts)
    state = parts if cell == "lstm" else parts[0]
    loss, _, dJ_dh0 = interop.torch_loss_and_grads(params, inputs, targets, state)
    mine = bptt.backprop(params, inputs, targets, h0=state)
    assert loss == pytest.approx(mine.loss, rel=1e-13)
    for ours, theirs in zip(*(d if cell == "lstm" else (d,) for d in (mine.dJ_dstate0, dJ_dh0)),
                            strict=True):
        assert ours.shape == theirs.shape
        assert gradcheck.relative_error(theirs, ours) < 1e-12


def test_the_torch_witness_refuses_the_h0_bptt_refuses(torch):
    params, inputs, targets, h0 = gradcheck.random_problem("rnn", 3, 4, 2, 1, seed=6)
    B, H = h0.shape[1:]
    for bad, message in ((np.ones((H, B)), rf"h0 has shape \({H}, {B}\), expected \(L, B, H\)"),
                         (np.full((B, H), np.nan), "h0 contains NaN or inf")):
        with pytest.raises(bptt.BpttError, match=message):
            interop.torch_loss_and_grads(params, inputs, targets, bad)


def test_the_twin_maps_weights_as_documented(torch):
    params = bptt.init_params("lstm", 3, 2, 4, rng=np.random.default_rng(0), num_layers=2)
    module = interop.to_torch_module(params)
    rnn, head = module.rnn, module.head
    np.testing.assert_array_equal(rnn.weight_hh_l1.detach().numpy(), params["Whh_l1"])
    np.testing.assert_array_equal(rnn.bias_ih_l0.detach().numpy(), params["bxh"])
    np.testing.assert_array_equal(head.weight.detach().numpy(), params["Why"])
    vanilla = bptt.init_params("rnn", 3, 2, 4, rng=np.random.default_rng(0))
    rnn = interop.to_torch_module(vanilla).rnn
    assert not rnn.bias_hh_l0.detach().numpy().any() and not rnn.bias_hh_l0.requires_grad


def test_check_model_runs_torch_as_a_third_witness(torch):
    rows = gradcheck.check_model("gru", hidden=3, seq_len=3, batch=2, layers=1, use_torch=True)
    assert all(r.vs_torch is not None and r.passed for r in rows)
    assert [w[0] for w in rows[0].witnesses()] == ["reference", "finite differences", "torch"]
    assert gradcheck.check_model("rnn", 2, 2, 1, 1)[0].vs_torch is None  # off by default


def test_a_row_fails_on_its_worst_witness():
    ok = gradcheck.compare_arrays("W", np.ones(2), np.ones(2))
    bad = gradcheck.compare_arrays("W", np.ones(2), np.array([1.0, 1.1]))
    row = gradcheck.Row("rnn", 1, "W", ok, ok, bad)
    assert not row.passed and row.worst is bad
    assert gradcheck.Row("rnn", 1, "W", ok, ok).passed


def test_the_fourth_order_stencil_resolves_small_gradients_of_a_deep_lstm():
    # H = 3, T = 4, two LSTM layers: the bottom layer's gradients are ~1e-5 while J ≈ 10, and the
    # plain central difference D(1e-6) misses the 1e-7 bar there; the stencil does not
    params, inputs, targets, h0 = gradcheck.random_problem("lstm", 3, 4, 2, 2, seed=0)
    mine = bptt.backprop(params, inputs, targets, h0=h0).grads
    plain, _ = gradcheck.numerical_grads(params, inputs, targets, h0)
    stencil, _ = gradcheck.numerical_grads_fourth_order(params, inputs, targets, h0)
    assert gradcheck.relative_error(mine["Wxh"], plain["Wxh"]) > 1e-7
    assert max(gradcheck.relative_error(mine[k], stencil[k]) for k in params) < 1e-7


def test_check_model_runs_torch_when_it_is_importable_and_not_told(torch):
    """Mutation audit (4): use_torch=None means "when torch is importable"."""
    rows = gradcheck.check_model("rnn", 2, 2, 1, 1, use_torch=None)
    assert all(r.vs_torch is not None and r.passed for r in rows)
