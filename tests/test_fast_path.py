"""The training loop's fast path (issue 6): flat buffers, reused memory, validation once.

It must compute what the public API computes, bit for bit, and a resumed run must repeat
an uninterrupted one bit for bit (the same seed gives the same bits).
"""

from __future__ import annotations

import numpy as np
import pytest

import bptt
from bptt import heads, models, optim, train
from bptt.data import builtin_corpus

TEXT = builtin_corpus()[:6000]


def small_config(**changes) -> train.TrainConfig:
    base = dict(cell="rnn", hidden=12, seq_len=9, batch=3, steps=6, eval_every=3,
                sample_length=5, clip_norm=0.5, clip=0.05)
    return train.TrainConfig(**(base | changes)).validate()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_workspace_backprop_is_the_public_backprop_bit_for_bit(cell, layers):
    rng = np.random.default_rng(3)
    params = bptt.init_params(cell, 7, 6, 5, rng=rng, dtype=np.float32, num_layers=layers)
    copy = {k: v.copy() for k, v in params.items()}
    ws = models.Workspace(params)
    assert all(np.array_equal(params[k], copy[k]) for k in copy)
    assert all(np.shares_memory(params[k], ws.params_flat) for k in params)
    for seed in range(3):  # the reused memory carries nothing from one call to the next
        r = np.random.default_rng(seed)
        x, y = r.integers(0, 7, (5, 4)), r.integers(0, 5, (5, 4))
        h0 = models.zero_state(copy, 4) if seed == 0 else None
        fast = models.backprop(params, x, y, h0=h0, workspace=ws)
        slow = models.backprop(copy, x, y, h0=h0)
        assert fast.loss == slow.loss
        for key in copy:
            assert np.array_equal(fast.grads[key], slow.grads[key]), key
            assert np.shares_memory(fast.grads[key], ws.grads_flat)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("head", heads.HEADS)
def test_a_head_on_a_workspace_is_the_public_head_bit_for_bit(cell, head):
    """The estimators' fast path: heads.backprop on a Workspace (its memory reused, padded
    batches of other lengths, truncated or not, one or two layers) computes exactly what it
    computes without one."""
    rng = np.random.default_rng(4)
    V = 3
    for layers in (1, 2):
        params = bptt.init_params(cell, 2, 5, V, rng=rng, dtype=np.float32, num_layers=layers)
        copy = {k: v.copy() for k, v in params.items()}
        ws = models.Workspace(params)
        for T, lengths, truncate in ((6, [6, 2, 4], None), (4, [1, 4, 3], 2), (6, None, 3),
                                     (6, [5, 6, 1], None)):
            x = rng.normal(size=(T, 3, 2))
            last = heads.is_last(head)
            shape = (3,) if last else (T, 3)
            y = (rng.integers(0, V, shape) if heads.is_softmax(head)
                 else rng.normal(size=(*shape, V)))
            fast = heads.backprop(params, x, y, head, lengths, truncate=truncate, workspace=ws)
            slow = heads.backprop(copy, x, y, head, lengths, truncate=truncate)
            assert fast.loss == slow.loss
            assert np.array_equal(fast.outputs, slow.outputs)
            for key in copy:
                assert np.array_equal(fast.grads[key], slow.grads[key]), (key, T, truncate)
                assert np.shares_memory(fast.grads[key], ws.grads_flat)


@pytest.mark.parametrize("backprop, targets", [(models.backprop, np.zeros((2, 1), int)),
                                              (heads.backprop, np.zeros(1, int))],
                         ids=["models", "heads"])
def test_a_workspace_refuses_another_parameter_dict_or_another_cell(backprop, targets):
    params = bptt.init_params("rnn", 3, 4, 3, rng=np.random.default_rng(0))
    ws = models.Workspace(params)
    other = {k: v.copy() for k, v in params.items()}
    ids = np.zeros((2, 1), int)
    with pytest.raises(ValueError, match="another parameter dict"):
        backprop(other, ids, targets, workspace=ws)
    with pytest.raises(ValueError, match="cell='lstm' but params are those of a 'rnn' cell"):
        backprop(params, ids, targets, cell="lstm", workspace=ws)
    backprop(params, ids, targets, cell="rnn", workspace=ws)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_the_optimizer_on_flat_buffers_is_the_optimizer_per_key_bit_for_bit(name):
    rng = np.random.default_rng(1)
    params = bptt.init_params("lstm", 5, 4, 5, rng=rng, dtype=np.float32)
    copy = {k: v.copy() for k, v in params.items()}
    opt, opt_copy = optim.make_optimizer(name, 0.01), optim.make_optimizer(name, 0.01)
    state, state_copy = opt.init_state(params), opt_copy.init_state(copy)
    ws = models.Workspace(params)
    flat_state = optim.pack_state(state, ws.layout)
    for _ in range(3):
        grads = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in copy.items()}
        for key, g in grads.items():
            ws.grads[key][...] = g
        opt.update({"flat": ws.params_flat}, {"flat": ws.grads_flat}, flat_state)
        opt_copy.update(copy, grads, state_copy)
    for key in copy:
        assert np.array_equal(params[key], copy[key]), key
    assert optim.flatten_state(state).keys() == optim.flatten_state(state_copy).keys()
    for key, value in optim.flatten_state(state).items():
        assert np.array_equal(value, optim.flatten_state(state_copy)[key]), key


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_resumed_run_repeats_an_uninterrupted_run_bit_for_bit(tmp_path, cell, dtype):
    config = small_config(cell=cell, dtype=dtype, layers=2 if cell == "gru" else 1)
    straight = train.new_run(config, TEXT, "t", tmp_path / "straight")
    train.train(straight)
    split = train.new_run(train.TrainConfig(**(config.to_dict() | {"steps": 4})), TEXT, "t",
                          tmp_path / "split")
    train.train(split)
    resumed = train.resume_run(tmp_path / "split", TEXT, steps=6)
    train.train(resumed)
    for key in straight.params:
        assert np.array_equal(straight.params[key], resumed.params[key]), key
    a, b = optim.flatten_state(straight.opt_state), optim.flatten_state(resumed.opt_state)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    # (the split run also evaluated at its end, step 4, so its interval means differ after it)
    evals = {h["step"]: h for h in resumed.history}
    for h in straight.history:
        assert h["val_bpc"] == evals[h["step"]]["val_bpc"]
    assert straight.history[0]["train_bpc"] == evals[3]["train_bpc"]


def test_memory_alignment_does_not_change_a_bit():
    """The same numbers at another address give the same bits (no alignment-dependent sums)."""
    rng = np.random.default_rng(5)
    params = bptt.init_params("lstm", 9, 24, 9, rng=rng, dtype=np.float32)
    x, y = rng.integers(0, 9, (7, 3)), rng.integers(0, 9, (7, 3))
    first = models.backprop(params, x, y)
    for shift in (1, 3, 5):
        moved = {}
        for key, value in params.items():
            raw = np.empty(value.size + shift, np.float32)[shift:]
            raw[...] = value.ravel()
            moved[key] = raw.reshape(value.shape)
        again = models.backprop(moved, x, y)
        assert again.loss == first.loss
        for key in params:
            assert np.array_equal(again.grads[key], first.grads[key]), (key, shift)
        norm = optim.global_norm(again.grads)
        assert norm == optim.global_norm(first.grads)


def test_a_copied_workspace_owns_its_params_no_more():
    # pickle / deepcopy keep the dict's entries and the views the same objects, but each is
    # then an array of its own: the copy must not be taken for packed views of one buffer
    import copy
    import pickle

    params = bptt.init_params("gru", 4, 3, 4, rng=np.random.default_rng(0), dtype=np.float32)
    workspace = models.Workspace(params)
    assert workspace.owns(params)
    for clone in (pickle.loads(pickle.dumps((workspace, params))), copy.deepcopy((workspace,
                                                                                   params))):
        copied_workspace, copied_params = clone
        assert copied_params["Whh"] is copied_workspace._param_views["Whh"]
        assert not copied_workspace.owns(copied_params)


def test_a_released_workspace_makes_its_memory_again_and_computes_the_same_bits():
    params = bptt.init_params("lstm", 4, 5, 3, rng=np.random.default_rng(1), dtype=np.float32)
    copy = {k: v.copy() for k, v in params.items()}
    ws = models.Workspace(params)
    x, y = np.random.default_rng(2).integers(0, 3, (2, 6, 3))
    models.backprop(params, x, y, workspace=ws)
    ws.release()
    assert ws.owns(params) and not ws.buffers._arrays and not ws.buffers._children
    fast = models.backprop(params, x, y, workspace=ws)
    slow = models.backprop(copy, x, y)
    assert fast.loss == slow.loss
    assert all(np.array_equal(fast.grads[k], slow.grads[k]) for k in copy)


def test_the_flat_buffers_are_laid_out_layer_by_layer_then_the_head():
    """Mutation audit (4): the layout is the canonical order, whatever the dict's order."""
    params = bptt.init_params("lstm", 3, 4, 2, num_layers=2, rng=np.random.default_rng(0))
    shuffled = {k: params[k].copy() for k in reversed(list(params))}
    ws = models.Workspace(shuffled)
    assert list(ws.layout.keys) == list(models.canonical_order(params))
    np.testing.assert_array_equal(
        ws.params_flat, np.concatenate([params[k].reshape(-1) for k in ws.layout.keys]))


def test_a_run_whose_params_are_replaced_between_steps_trains_the_new_ones(tmp_path):
    """run.params given new arrays (weights loaded into a run between steps): the next step
    packs and updates them, not the arrays of the earlier fast path (save would write the
    new ones, never trained), as a run made with those weights would."""
    run = train.new_run(small_config(steps=4), TEXT, "t", tmp_path / "r")
    twin = train.new_run(small_config(steps=4), TEXT, "t", tmp_path / "twin")
    for r in (run, twin):
        train.train_step(r)
    run.params = {k: v.copy() for k, v in run.params.items()}
    train.train_step(run)
    train.train_step(twin)
    for key, value in twin.params.items():
        assert np.array_equal(run.params[key], value), key
