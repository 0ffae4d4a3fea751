"""The literal double sum (bptt.reference) against the efficient sweep, and the seed's six terms."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import bptt
from bptt.gradcheck import compare

TOL = 1e-12
ABS_TOL = 1e-15  # a few ulps of 1


def make_problem(seed, T, B, D, H, V, bias, ids, random_h0):
    rng = np.random.default_rng(seed)
    params = bptt.init_params("rnn", D, H, V, bias=bias, rng=rng, dtype=np.float64)
    for key in ("bh", "by"):  # non-zero, not tiny, biases
        if key in params:
            params[key] = rng.normal(size=params[key].shape)
    inputs = rng.integers(0, D, size=(T, B)) if ids else rng.normal(size=(T, B, D))
    targets = rng.integers(0, V, size=(T, B))
    h0 = rng.normal(size=(B, H)) * 0.5 if random_h0 else None
    return params, inputs, targets, h0


def assert_same(a, b, what):
    # a gradient that cancels to nearly 0 is held to the round-off of its O(1) summands:
    # Hypothesis found b_h = −2.3e-5 (H = 1, three rows) off by 4.7e-17, rel 1.03e-12
    for key, c in compare(a, b).items():
        assert c.max_rel < TOL or c.max_abs < ABS_TOL, (
            f"{what} {key}: rel {c.max_rel:.3g}, abs {c.max_abs:.3g} at {c.worst}")


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    T=st.integers(1, 12),
    B=st.integers(1, 4),
    D=st.integers(1, 8),
    H=st.integers(1, 8),
    V=st.integers(1, 8),
    bias=st.booleans(),
    ids=st.booleans(),
    random_h0=st.booleans(),
    truncate=st.one_of(st.none(), st.integers(1, 13)),
)
def test_efficient_equals_reference(seed, T, B, D, H, V, bias, ids, random_h0, truncate):
    params, inputs, targets, h0 = make_problem(seed, T, B, D, H, V, bias, ids, random_h0)
    eff = bptt.backprop(params, inputs, targets, h0=h0, truncate=truncate)
    loss, grads, terms = bptt.reference.loss_and_grads(
        params, inputs, targets, h0=h0, truncate=truncate, keep_contributions=False
    )
    assert abs(eff.loss - loss) <= TOL * abs(loss)
    assert set(grads) == set(params) == set(eff.grads)
    assert_same(eff.grads, grads, f"T={T} truncate={truncate}")
    assert_same({"h0": eff.dJ_dstate0}, {"h0": terms.dJ_dstate0}, "initial state")


def test_an_initial_state_given_as_a_list_gets_its_gradient_in_the_same_form(rng):
    # an (L, B, H) list was read as flat (B, H): the reference returned layer 0 only
    for cell in ("rnn", "gru"):
        params = bptt.init_params(cell, 4, 3, 4, num_layers=2, rng=rng, dtype=np.float64)
        ids = rng.integers(0, 4, (5, 2))
        h0 = rng.normal(size=(2, 2, 3))
        efficient = bptt.models.backprop(params, ids, ids, h0=h0).dJ_dstate0
        for state in (h0, list(h0)):
            ref = bptt.reference.loss_and_grads(params, ids, ids, h0=state)[2].dJ_dstate0
            np.testing.assert_allclose(ref, efficient, rtol=1e-12, atol=1e-14)


def test_every_truncation_agrees_and_full_is_the_limit(rng):
    params, inputs, targets, h0 = make_problem(7, 9, 3, 4, 5, 6, True, True, True)
    full = bptt.loss_and_grads(params, inputs, targets, h0=h0)[1]
    for K in range(1, 12):
        eff = bptt.loss_and_grads(params, inputs, targets, h0=h0, truncate=K)[1]
        ref = bptt.reference.loss_and_grads(params, inputs, targets, h0=h0, truncate=K)[1]
        assert_same(eff, ref, f"truncate={K}")
        if K >= 9:
            assert_same(eff, full, f"truncate={K} >= T is full BPTT")
    short = bptt.loss_and_grads(params, inputs, targets, h0=h0, truncate=2)[1]
    assert compare(short, full)["Whh"].max_rel > 1e-6, "truncation must change dW^hh"


def test_terms_regrouped_by_k_are_the_efficient_dJ_dh(rng):
    params, inputs, targets, h0 = make_problem(3, 6, 2, 4, 5, 3, True, False, True)
    eff = bptt.backprop(params, inputs, targets, h0=h0)
    _, grads, terms = bptt.reference.loss_and_grads(params, inputs, targets, h0=h0)
    # dJ_dh[k] = Σ_{t≥k} ∂J_t/∂h_k
    regrouped = terms.dJt_dh.sum(axis=1)  # (L, T_k, B, H)
    np.testing.assert_allclose(regrouped[0], eff.dJ_dh[0][0], rtol=1e-12, atol=1e-14)
    # the terms above the diagonal (k > t) are zero: J_t does not depend on later h
    T = inputs.shape[0]
    for t in range(T):
        assert not terms.dJt_dh[0, t, t + 1 :].any()
    # the contributions add up to the gradient
    for key, c in terms.contributions.items():
        np.testing.assert_allclose(c.sum(axis=(0, 1)), grads[key], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(terms.losses.sum(), eff.loss, rtol=1e-14)


def test_the_seeds_three_step_example_written_out_as_six_terms():
    """∂J/∂W^hh for T = 3 by hand: J_3 via h_3, h_2, h_1; J_2 via h_2, h_1; J_1 via h_1."""
    rng = np.random.default_rng(2024)
    D, H, V = 3, 4, 5
    params = bptt.init_params("rnn", D, H, V, bias=False, rng=rng, dtype=np.float64)
    Wxh, Whh, Why = params["Wxh"], params["Whh"], params["Why"]
    xs = rng.normal(size=(3, 1, D))
    labels = np.array([[1], [4], [0]])
    h0 = rng.normal(size=(1, H))
    # forward, seed's indices t = 1, 2, 3 (h[0] is the initial state)
    h = [h0[0]]
    for t in range(3):
        h.append(np.tanh(Wxh @ xs[t, 0] + Whh @ h[-1]))

    def dJt_dht(t):  # ∂J_t/∂h_t = W^hyᵀ (p_t − onehot)
        y = Why @ h[t]
        p = np.exp(y - y.max())
        p /= p.sum()
        p[labels[t - 1, 0]] -= 1
        return Why.T @ p

    def d(k):  # ∂h_k/∂z_k = 1 − h_k²
        return 1 - h[k] ** 2

    def back(v, k):  # ∂J_t/∂h_{k−1} from ∂J_t/∂h_k: (∂h_k/∂h_{k−1})ᵀ v = W^hhᵀ (v ⊙ (1 − h_k²))
        return Whh.T @ (v * d(k))

    e1, e2, e3 = dJt_dht(1), dJt_dht(2), dJt_dht(3)
    six_terms = {
        (3, 3): np.outer(e3 * d(3), h[2]),
        (3, 2): np.outer(back(e3, 3) * d(2), h[1]),
        (3, 1): np.outer(back(back(e3, 3), 2) * d(1), h[0]),
        (2, 2): np.outer(e2 * d(2), h[1]),
        (2, 1): np.outer(back(e2, 2) * d(1), h[0]),
        (1, 1): np.outer(e1 * d(1), h[0]),
    }
    by_hand = sum(six_terms.values())

    _, eff, _ = bptt.loss_and_grads(params, xs, labels, h0=h0)
    _, ref, terms = bptt.reference.loss_and_grads(params, xs, labels, h0=h0)
    np.testing.assert_allclose(eff["Whh"], by_hand, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ref["Whh"], by_hand, rtol=1e-12, atol=1e-15)
    for (t, k), term in six_terms.items():  # code indices are 0-based
        np.testing.assert_allclose(terms.contributions["Whh"][t - 1, k - 1], term, rtol=1e-12,
                                   atol=1e-15, err_msg=f"term (t={t}, k={k})")
