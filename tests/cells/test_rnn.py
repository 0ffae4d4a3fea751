"""The vanilla RNN cell: step functions, and the third witness, PyTorch autograd (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import bptt
from bptt.cells import rnn
from bptt.gradcheck import compare_arrays, numerical_gradient


def torch_twin(torch, params, bias):
    """nn.RNN(tanh) + nn.Linear holding the same weights (bias_ih = b_h, bias_hh = 0)."""
    H, D = params["Wxh"].shape
    V = params["Why"].shape[0]
    net = torch.nn.RNN(D, H, nonlinearity="tanh", bias=bias, dtype=torch.float64)
    head = torch.nn.Linear(H, V, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.from_numpy(params["Wxh"]))
        net.weight_hh_l0.copy_(torch.from_numpy(params["Whh"]))
        head.weight.copy_(torch.from_numpy(params["Why"]))
        if bias:
            net.bias_ih_l0.copy_(torch.from_numpy(params["bh"]))
            net.bias_hh_l0.zero_()
            head.bias.copy_(torch.from_numpy(params["by"]))
    return net, head


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bias", [True, False])
def test_pytorch_autograd_agrees(torch, seed, bias):
    rng = np.random.default_rng(seed)
    T, B, D, H, V = (int(v) for v in rng.integers(1, 9, size=5))
    params = bptt.init_params("rnn", D, H, V, bias=bias, rng=rng, dtype=np.float64)
    ids = seed % 2 == 0
    inputs = rng.integers(0, D, size=(T, B)) if ids else rng.normal(size=(T, B, D))
    targets = rng.integers(0, V, size=(T, B))
    h0 = rng.normal(size=(1, B, H))
    result = bptt.backprop(params, inputs, targets, h0=h0)

    net, head = torch_twin(torch, params, bias)
    x = np.eye(D)[inputs] if ids else inputs
    h0_t = torch.tensor(h0, requires_grad=True)
    out, h_n = net(torch.from_numpy(x), h0_t)
    loss = torch.nn.functional.cross_entropy(
        head(out).reshape(-1, V), torch.from_numpy(targets).reshape(-1), reduction="sum"
    )
    loss.backward()
    assert abs(loss.item() - result.loss) <= 1e-12 * abs(loss.item())
    np.testing.assert_allclose(result.state, h_n.detach().numpy(), rtol=1e-12, atol=1e-14)
    theirs = {"Wxh": net.weight_ih_l0.grad, "Whh": net.weight_hh_l0.grad, "Why": head.weight.grad}
    if bias:
        theirs |= {"bh": net.bias_ih_l0.grad, "by": head.bias.grad}
    theirs["h0"] = h0_t.grad
    ours = dict(result.grads, h0=result.dJ_dstate0)
    for key, g in theirs.items():
        c = compare_arrays(key, ours[key], g.numpy())
        assert c.max_rel < 1e-10, f"{key}: rel {c.max_rel:.3g} vs torch at {c.worst}"


def test_step_forward_and_backward_are_one_step_of_the_sequence(rng):
    p = bptt.init_params("rnn", 3, 4, 2, rng=rng)
    x = rng.normal(size=(1, 2, 3))
    h0 = rng.normal(size=(2, 4))
    cache = rnn.sequence_forward(p, x, (h0,))
    x_proj = x[0] @ p["Wxh"].T + p["bh"]
    h1 = rnn.step_forward(p, x_proj, h0)
    np.testing.assert_allclose(h1, cache.hs[1], rtol=1e-15)
    upstream = rng.normal(size=(2, 4))
    dJ_dz, dJ_dh_prev = rnn.step_backward(p, upstream, h1)

    def f():
        return float((upstream * rnn.step_forward(p, x_proj, h0)).sum())

    assert compare_arrays("dJ_dh_prev", dJ_dh_prev, numerical_gradient(f, h0)).max_rel < 1e-8
    assert compare_arrays("dJ_dz", dJ_dz, numerical_gradient(f, x_proj)).max_rel < 1e-8
