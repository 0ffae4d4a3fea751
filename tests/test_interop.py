"""bptt.interop: a bptt model and its PyTorch twin give identical outputs and gradients, both ways.

Grid: every cell × layers 1..3 × bias.  Export -> load_state_dict(strict=True) -> torch forward
equals bptt forward (float64, 1e-12); one step's gradients equal (autograd with
cross_entropy(reduction="sum") vs bptt.loss_and_grads, rel 1e-10) and so do the weights after
one SGD step; a torch-initialized module imports to the same forward; to_torch -> from_torch is
exact.  Then the errors: each bad state_dict names its key.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy
import tests_support

import bptt
from bptt import checkpoint, interop, models
from bptt.errors import BpttError, CheckpointError

CELLS = ("rnn", "lstm", "gru")
GRID = [(cell, layers, bias) for cell in CELLS for layers in (1, 2, 3) for bias in (True, False)]
GRID_IDS = [f"{c}-L{n}-{'bias' if b else 'nobias'}" for c, n, b in GRID]
D, H, V, T, B = 7, 5, 6, 6, 3


def make_params(cell: str, layers: int, bias: bool, seed: int = 0, dtype=np.float64) -> dict:
    return bptt.init_params(cell, D, H, V, bias, np.random.default_rng(seed), dtype, layers)


def make_batch(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, D, (T, B)), rng.integers(0, V, (T, B))


def make_state(cell: str, layers: int, seed: int = 2):
    """A non-zero initial state in the public form (L, B, H), (h, c) for the LSTM."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(-0.5, 0.5, (layers, B, H))
    return (h, rng.uniform(-0.5, 0.5, (layers, B, H))) if cell == "lstm" else h


def to_tensors(torch, state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(torch.from_numpy(s) for s in state)
    return torch.from_numpy(state)


def to_numpy(state):
    return tuple(s.detach().numpy() for s in state) if isinstance(state, tuple) \
        else state.detach().numpy()


def twin(torch, params):
    """Export -> torch_module -> load_state_dict(strict=True), as a user would."""
    module = interop.torch_module(interop.model_config(params))
    sd = {k: torch.from_numpy(v) for k, v in interop.to_torch_state_dict(params).items()}
    result = module.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return module


def assert_close(a, b, atol=1e-12):
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,),
                    strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ----------------------------------------------------------------------------
# the grid
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "layers", "bias"), GRID, ids=GRID_IDS)
def test_exported_twin_forward_equals_bptt_forward(torch, cell, layers, bias):
    params = make_params(cell, layers, bias)
    module = twin(torch, params)
    ids, _ = make_batch()
    for h0 in (None, make_state(cell, layers)):
        fwd = bptt.forward(params, ids, h0)
        logits, h_n = module(torch.from_numpy(ids), to_tensors(torch, h0))
        assert logits.dtype == torch.float64
        assert_close(logits.detach().numpy(), fwd.logits)
        assert_close(to_numpy(h_n), fwd.state)


def _grads_with_bias_hh_unfrozen(torch, params, ids, labels, h0) -> dict[str, np.ndarray]:
    """Autograd's gradients of the vanilla RNN twin with its bias_hh trained as well."""
    module = twin(torch, params)
    for name, p in module.rnn.named_parameters():
        if name.startswith("bias_hh"):
            p.requires_grad_(True)
    logits, _ = module(torch.from_numpy(ids), to_tensors(torch, h0))
    torch.nn.functional.cross_entropy(logits.reshape(T * B, V), torch.from_numpy(labels).reshape(-1),
                                      reduction="sum").backward()
    return {k: p.grad.numpy() for k, p in module.state_dict(keep_vars=True).items()}


@pytest.mark.parametrize(("cell", "layers", "bias"), GRID, ids=GRID_IDS)
def test_gradients_and_one_sgd_step_equal(torch, cell, layers, bias):
    params = make_params(cell, layers, bias, seed=3)
    module = twin(torch, params)
    ids, labels = make_batch(seed=4)
    h0 = make_state(cell, layers, seed=5)
    # bptt: J = Σ_t Σ_b −log p_t[label] and its efficient BPTT gradient
    loss, grads, _ = bptt.loss_and_grads(params, ids, labels, h0)
    # torch: the same J by autograd
    logits, _ = module(torch.from_numpy(ids), to_tensors(torch, h0))
    J = torch.nn.functional.cross_entropy(logits.reshape(T * B, V),
                                          torch.from_numpy(labels).reshape(-1), reduction="sum")
    J.backward()
    assert abs(J.item() - loss) <= 1e-12 * abs(loss)
    expected = interop.to_torch_grads(grads)
    unfrozen = _grads_with_bias_hh_unfrozen(torch, params, ids, labels, h0) if (
        cell == "rnn" and bias) else {}
    for key, p in module.state_dict(keep_vars=True).items():
        if cell == "rnn" and key.startswith("rnn.bias_hh"):
            assert not p.requires_grad and p.grad is None  # frozen: b_h moves through bias_ih
            # what autograd gives a user who trains bias_hh too: ∂J/∂b_h, as to_torch_grads says
            assert rel_err(unfrozen[key], expected[key]) <= 1e-10, key
            continue
        assert rel_err(p.grad.numpy(), expected[key]) <= 1e-10, key
    # one SGD step on each side, then the weights and the forward still agree
    lr = 0.1
    torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=lr).step()
    stepped = {k: params[k] - lr * grads[k] for k in params}
    back = interop.from_torch_module(module)
    assert back.keys() == stepped.keys()
    for key in stepped:
        np.testing.assert_allclose(back[key], stepped[key], rtol=0, atol=1e-12, err_msg=key)
    with torch.no_grad():
        logits, _ = module(torch.from_numpy(ids), to_tensors(torch, h0))
    assert_close(logits.numpy(), bptt.forward(stepped, ids, h0).logits)


@pytest.mark.parametrize(("cell", "layers", "bias"), GRID, ids=GRID_IDS)
def test_torch_initialized_module_imports_to_the_same_forward(torch, cell, layers, bias):
    torch.manual_seed(layers * 10 + bias)
    config = {"cell": cell, "input_size": D, "hidden_size": H, "output_size": V,
              "num_layers": layers, "bias": bias, "dtype": "float64"}
    module = interop.torch_module(config)
    if cell == "rnn" and bias:  # PyTorch initialises both biases: their sum is b_h
        assert all(getattr(module.rnn, f"bias_hh_l{l}").abs().sum() > 0 for l in range(layers))
    params = interop.from_torch_state_dict(module.state_dict(), cell=cell)
    assert interop.model_config(params) == {**config, "head_bias": bias}
    ids, _ = make_batch(seed=6)
    h0 = make_state(cell, layers, seed=7)
    logits, h_n = interop.torch_forward_from_ids(module, ids, to_tensors(torch, h0))
    fwd = bptt.forward(params, ids, h0)
    assert_close(logits.numpy(), fwd.logits)
    assert_close(to_numpy(h_n), fwd.state)


@pytest.mark.parametrize(("cell", "layers", "bias"), GRID, ids=GRID_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_exact(cell, layers, bias, dtype):
    params = make_params(cell, layers, bias, seed=8, dtype=dtype)
    sd = interop.to_torch_state_dict(params)
    back = interop.from_torch_state_dict(sd, cell=cell)
    assert back.keys() == params.keys()
    for key in params:
        assert back[key].dtype == params[key].dtype
        assert np.array_equal(back[key], params[key]), key
    # and the state_dict itself survives a second trip unchanged
    again = interop.to_torch_state_dict(back)
    assert list(again) == list(sd)
    assert all(np.array_equal(again[k], sd[k]) for k in sd)


def test_state_dict_names_and_shapes_are_pytorchs(torch):
    for cell, gates in (("rnn", 1), ("lstm", 4), ("gru", 3)):
        params = make_params(cell, 2, True)
        sd = interop.to_torch_state_dict(params)
        reference = interop.torch_module(interop.model_config(params)).state_dict()
        assert list(sd) == list(reference)
        assert {k: v.shape for k, v in sd.items()} == {k: tuple(v.shape)
                                                       for k, v in reference.items()}
        assert sd["rnn.weight_ih_l0"].shape == (gates * H, D)
        assert sd["rnn.weight_ih_l1"].shape == (gates * H, H)
        assert sd["head.weight"].shape == (V, H)
    rnn = interop.to_torch_state_dict(make_params("rnn", 2, True))
    params = make_params("rnn", 2, True)
    assert np.array_equal(rnn["rnn.bias_ih_l1"], params["bh_l1"])
    assert not rnn["rnn.bias_hh_l1"].any()
    assert not any("bias" in k for k in interop.to_torch_state_dict(make_params("gru", 2, False)))


def test_token_j_is_column_j_of_weight_ih(torch):
    """One-hot input: the ids path equals the dense one-hot path, and x_t = e_j picks column j."""
    params = make_params("lstm", 1, True)
    module = twin(torch, params)
    ids, _ = make_batch()
    dense = np.eye(D)[ids]  # (T, B, D)
    with torch.no_grad():
        a, _ = module(torch.from_numpy(ids))
        b, _ = module(torch.from_numpy(dense))
    assert torch.equal(a, b)
    W = interop.to_torch_state_dict(params)["rnn.weight_ih_l0"]
    assert np.array_equal(W @ np.eye(D)[3], W[:, 3])


def test_dense_inputs_and_float32(torch):
    params = make_params("gru", 2, True, dtype=np.float32)
    module = interop.to_torch_module(params)
    assert module.rnn.weight_hh_l0.dtype == torch.float32
    x = np.random.default_rng(0).normal(size=(T, B, D)).astype(np.float32)
    with torch.no_grad():
        logits, _ = module(torch.from_numpy(x))
    np.testing.assert_allclose(logits.numpy(), bptt.forward(params, x).logits, atol=1e-5)


@pytest.mark.parametrize("D_in", [1, 3])
def test_dense_integer_and_boolean_inputs_are_read_as_bptt_reads_them(torch, D_in):
    """Dense (T, B, D) inputs of integers (a task's bits) are numbers, cast to the weights'
    dtype, as bptt.forward takes them: not token ids to one-hot encode (a torch error, or
    for D = 1 a 'Class values must be smaller than num_classes')."""
    params = bptt.init_params("gru", D_in, 4, 2, rng=np.random.default_rng(0), dtype=np.float64)
    module = interop.to_torch_module(params)
    bits = np.random.default_rng(1).integers(0, 2, (T, B, D_in))
    expected = bptt.forward(params, bits).logits
    with torch.no_grad():
        for x in (torch.from_numpy(bits), torch.from_numpy(bits.astype(bool))):
            logits, _ = module(x)
            np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_ddp_prefix_and_torch_tensors_are_accepted(torch):
    params = make_params("lstm", 2, True)
    module = interop.to_torch_module(params)
    wrapped = {f"module.{k}": v for k, v in module.state_dict().items()}
    back = interop.from_torch_state_dict(wrapped)
    assert all(np.array_equal(back[k], params[k]) for k in params)


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_compiled_and_doubly_wrapped_state_dicts_are_accepted(prefix):
    # torch.compile(module).state_dict() puts _orig_mod. before every key; a compiled module
    # inside DDP, or DDP inside compile, has both
    params = make_params("gru", 2, True)
    sd = {prefix + k: v for k, v in interop.to_torch_state_dict(params).items()}
    back = interop.from_torch_state_dict(sd)
    assert all(np.array_equal(back[k], params[k]) for k in params)


def test_a_prefix_on_some_keys_only_is_an_unexpected_key():
    sd = interop.to_torch_state_dict(make_params("rnn", 1, True))
    sd["_orig_mod.head.bias"] = sd.pop("head.bias")
    with pytest.raises(CheckpointError, match=re.escape("unexpected key '_orig_mod.head.bias'")):
        interop.from_torch_state_dict(sd)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, importing its compiler
def test_torch_compile_state_dict_imports(torch):
    module = interop.to_torch_module(make_params("lstm", 1, True))
    compiled = torch.compile(module)  # wrapping only: nothing is compiled before a call
    back = interop.from_torch_state_dict(compiled.state_dict())
    assert all(np.array_equal(back[k], v) for k, v in interop.from_torch_module(module).items())


# ----------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------


def test_written_file_loads_strictly_with_safetensors_torch(torch, tmp_path):
    from safetensors.torch import load_file

    vocab = list("abcdefg")  # a character model: D = V = 7
    params = bptt.init_params("lstm", 7, H, 7, True, np.random.default_rng(0), np.float64, 2)
    path = interop.write_torch_safetensors(tmp_path / "m.safetensors", params, vocab,
                                           {"lr": 0.1}, step=7)
    sd, meta = interop.read_torch_safetensors(path)
    assert list(sd) == list(interop.to_torch_state_dict(params))
    assert meta["kind"] == "torch_state_dict" and meta["vocab"] == vocab and meta["step"] == 7
    assert meta["model"] == interop.model_config(params) and meta["config"] == {"lr": 0.1}
    module = interop.torch_module(meta["model"])
    module.load_state_dict(load_file(path), strict=True)
    ids, _ = make_batch()
    with torch.no_grad():
        logits, _ = module(torch.from_numpy(ids))
    assert_close(logits.numpy(), bptt.forward(params, ids).logits)
    # a model that is not a character model exports without a vocabulary
    interop.write_torch_safetensors(tmp_path / "n.safetensors", make_params("rnn", 1, False))
    assert interop.read_torch_safetensors(tmp_path / "n.safetensors")[1]["vocab"] is None


def test_foreign_file_without_metadata_is_read(torch, tmp_path):
    from safetensors.torch import save_file

    module = interop.torch_module({"cell": "gru", "input_size": D, "hidden_size": H,
                                   "output_size": V, "num_layers": 2, "dtype": "float64"})
    save_file(module.state_dict(), tmp_path / "f.safetensors")
    params, meta = interop.params_from_file(tmp_path / "f.safetensors")
    assert meta is None and models.infer_cell(params) == "gru"
    with pytest.raises(CheckpointError, match=re.escape("'rnn.weight_hh_l0'")):
        interop.params_from_file(tmp_path / "f.safetensors", cell="lstm")


def test_hostile_files_are_refused(tmp_path):
    pickled = tmp_path / "p.safetensors"
    pickled.write_bytes(pickle.dumps({"rnn.weight_hh_l0": np.zeros((2, 2))}))
    with pytest.raises(CheckpointError, match="pickle"):
        interop.read_torch_safetensors(pickled)
    with pytest.raises(CheckpointError, match="does not exist"):
        interop.read_torch_safetensors(tmp_path / "missing.safetensors")
    blob = safetensors.numpy.save({"x": np.zeros(4)}, metadata={"bptt": "{not json"})
    (tmp_path / "badmeta.safetensors").write_bytes(blob)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        interop.read_torch_safetensors(tmp_path / "badmeta.safetensors")
    meta = {"format": "bptt", "format_version": 99, "kind": "torch_state_dict"}
    blob = safetensors.numpy.save({"x": np.zeros(4)}, metadata={"bptt": json.dumps(meta)})
    (tmp_path / "v99.safetensors").write_bytes(blob)
    with pytest.raises(CheckpointError, match="version 99"):
        interop.read_torch_safetensors(tmp_path / "v99.safetensors")


# ----------------------------------------------------------------------------
# errors name the key
# ----------------------------------------------------------------------------


def good_sd(cell="gru", layers=2, bias=True):
    return interop.to_torch_state_dict(make_params(cell, layers, bias))


def without(sd, key):
    return {k: v for k, v in sd.items() if k != key}


@pytest.mark.parametrize(("make_bad", "key", "what"), [
    (lambda: without(good_sd(), "rnn.bias_hh_l1"), "rnn.bias_hh_l1", "missing"),
    (lambda: without(good_sd(), "rnn.weight_ih_l1"), "rnn.weight_ih_l1", "missing"),
    (lambda: without(good_sd(), "head.weight"), "head.weight", "missing"),
    (lambda: without(good_sd(), "rnn.weight_hh_l0"), "rnn.weight_hh_l0", "missing"),
    (lambda: {**good_sd(), "rnn.weight_ih_l0_reverse": np.zeros((15, D))},
     "rnn.weight_ih_l0_reverse", "bidirectional"),
    (lambda: {**good_sd(), "embedding.weight": np.zeros((D, 4))}, "embedding.weight", "unexpected"),
    (lambda: {**good_sd(), "rnn.weight_hr_l0": np.zeros((H, 2))}, "rnn.weight_hr_l0",
     "LSTM projections, proj_size > 0, are not supported"),
    (lambda: {**good_sd(), "head.weight": np.zeros((V, H + 1))}, "head.weight", "shape"),
    (lambda: {**good_sd(), "rnn.weight_ih_l1": np.zeros((3 * H, D))}, "rnn.weight_ih_l1", "shape"),
    (lambda: {**good_sd(), "rnn.bias_ih_l0": np.zeros(3 * H + 1)}, "rnn.bias_ih_l0", "shape"),
    (lambda: {**good_sd(), "rnn.weight_hh_l1": np.zeros((3 * H, H), np.int64)},
     "rnn.weight_hh_l1", "dtype"),
    (lambda: {**good_sd(), "head.bias": np.full(V, np.nan)}, "head.bias", "NaN"),
])
def test_bad_state_dicts_name_the_key(make_bad, key, what):
    with pytest.raises(CheckpointError, match=re.escape(repr(key))) as info:
        interop.from_torch_state_dict(make_bad(), cell="gru")
    assert what in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("have", "want"), [("gru", "lstm"), ("lstm", "rnn"), ("rnn", "gru")])
def test_wrong_cell_names_weight_hh_and_the_gate_count(have, want):
    with pytest.raises(CheckpointError, match=re.escape("'rnn.weight_hh_l0'")) as info:
        interop.from_torch_state_dict(good_sd(have), cell=want)
    assert f"a {have!r} cell" in str(info.value) and f"cell={want!r}" in str(info.value)


def test_other_mistakes():
    with pytest.raises(BpttError, match="unknown cell"):
        interop.from_torch_state_dict(good_sd(), cell="transformer")
    with pytest.raises(CheckpointError, match="dict"):
        interop.from_torch_state_dict([1, 2])
    params = make_params("lstm", 2, True)
    del params["bxh_l1"], params["bhh_l1"]
    with pytest.raises(BpttError, match="bxh_l1"):
        interop.to_torch_state_dict(params)
    sd = good_sd("rnn")
    sd["rnn.weight_hh_l0"] = np.zeros((2 * H, H))
    with pytest.raises(CheckpointError, match=re.escape("'rnn.weight_hh_l0'")):
        interop.from_torch_state_dict(sd)


def test_torch_module_config_is_checked(torch):
    with pytest.raises(BpttError, match="missing hidden_size"):
        interop.torch_module({"cell": "rnn", "input_size": 3, "output_size": 3})
    with pytest.raises(BpttError, match="unknown cell"):
        interop.torch_module({"cell": "tcn", "input_size": 3, "hidden_size": 3,
                              "output_size": 3})
    with pytest.raises(BpttError, match="num_layers"):
        interop.torch_module({"cell": "rnn", "input_size": 3, "hidden_size": 3,
                              "output_size": 3, "num_layers": 0})
    assert interop.CharRNN is type(interop.torch_module(
        {"cell": "rnn", "input_size": 3, "hidden_size": 3, "output_size": 3}))
    # numpy sizes are the ints they are (torch itself refuses them); a numpy dtype is not torch's
    gru = {"cell": "gru", "input_size": 5, "hidden_size": np.int64(4), "output_size": 6}
    assert interop.torch_module(gru).rnn.hidden_size == 4
    with pytest.raises(BpttError, match="dtype must be a torch floating-point dtype"):
        interop.torch_module(gru, dtype=np.float64)
    assert next(interop.torch_module(gru, dtype=torch.float16).parameters()).dtype == torch.float16
    # the bias flags are True or False: the string "false" was a true value, biases and all
    for key in ("bias", "head_bias"):
        with pytest.raises(BpttError, match=f"config {key} must be True or False, got 'false'"):
            interop.torch_module({**gru, key: "false"})
    no_bias = interop.torch_module({**gru, "bias": np.False_})
    assert not no_bias.rnn.bias and no_bias.head.bias is None


def test_interop_imports_and_converts_without_torch(tmp_path):
    """torch is optional: with it blocked, conversion and files work; torch_module says why not."""
    code = f"""
import sys
sys.modules["torch"] = None
import numpy as np
import bptt
from bptt import interop
from bptt.errors import BpttError
p = bptt.init_params("lstm", 4, 3, 4, True, np.random.default_rng(0), np.float64, 2)
interop.write_torch_safetensors({str(tmp_path / 'x.safetensors')!r}, p, list("abcd"))
back, meta = interop.params_from_file({str(tmp_path / 'x.safetensors')!r})
assert all(np.array_equal(back[k], p[k]) for k in p)
try:
    interop.torch_module(meta["model"])
except BpttError as exc:
    print("refused:", exc)
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "refused: this needs PyTorch" in r.stdout


def test_bfloat16_is_refused_naming_the_key(torch, tmp_path):
    from safetensors.torch import save_file

    module = interop.torch_module({"cell": "gru", "input_size": 3, "hidden_size": 2,
                                   "output_size": 3}).to(torch.bfloat16)
    with pytest.raises(CheckpointError, match=re.escape("'rnn.weight_ih_l0'")):
        interop.from_torch_module(module)
    save_file(module.state_dict(), tmp_path / "bf16.safetensors")
    with pytest.raises(CheckpointError, match="BF16"):
        interop.params_from_file(tmp_path / "bf16.safetensors")


def test_a_relu_rnn_is_refused(torch):
    # its state_dict is a tanh RNN's: taken as one, its logits were silently 0.5 off
    module = interop.torch_module({"cell": "rnn", "input_size": 3, "hidden_size": 2,
                                   "output_size": 3})
    module.rnn.nonlinearity = "relu"
    with pytest.raises(BpttError, match="nonlinearity='relu'; bptt's RNN is tanh only"):
        interop.from_torch_module(module)


def test_a_relu_rnn_of_any_class_is_refused(torch):
    # torch runs an RNN by its mode: a subclass of nn.RNN, or nn.RNNBase("RNN_RELU"), is a
    # ReLU RNN that the check by class name "RNN" let through, its logits silently wrong
    class MyRNN(torch.nn.RNN):
        pass

    for rnn in (MyRNN(3, 2, nonlinearity="relu"), torch.nn.RNNBase("RNN_RELU", 3, 2)):
        module = interop.torch_module({"cell": "rnn", "input_size": 3, "hidden_size": 2,
                                       "output_size": 3})
        module.rnn = rnn
        with pytest.raises(BpttError, match=f"{type(rnn).__name__} has nonlinearity='relu'"):
            interop.from_torch_module(module)


def test_a_users_mistake_with_torch_is_a_bptt_error_not_torchs(torch):
    # each of these was a raw AttributeError, TypeError, RuntimeError or IndexError
    with pytest.raises(BpttError, match=r"module must be a torch\.nn\.Module, got dict"):
        interop.from_torch_module(good_sd())
    for dtype in ("bogus", np.float16):
        with pytest.raises(BpttError, match="dtype must be float32 or float64"):
            interop.from_torch_state_dict(good_sd(), dtype=dtype)
    params = make_params("gru", 1, True)
    module = interop.to_torch_module(params)
    with pytest.raises(BpttError, match=rf"ids holds token id {D} outside \[0, {D}\)"):
        interop.torch_forward_from_ids(module, np.full((2, 2), D))
    # a tensor off the CPU is torch's to check: it runs where it is (here the meta device)
    logits, _ = interop.torch_forward_from_ids(module.to("meta"),
                                               torch.zeros((2, 2), dtype=torch.long, device="meta"))
    assert logits.device.type == "meta" and logits.shape == (2, 2, V)
    ids = np.zeros((T, B), np.int64)
    with pytest.raises(BpttError, match=f"outside \\[0, {V}\\)"):
        interop.torch_loss_and_grads(params, ids, ids + V)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: interop.to_torch_state_dict(None), "params must be a dict of arrays, got NoneType"),
    (lambda: interop.to_torch_grads([("Whh", 1)]), "grads must be a dict of arrays, got list"),
    (lambda: interop.model_config(None), "params must be a dict of arrays, got NoneType"),
    (lambda: interop.export_meta(None), "params must be a dict of arrays, got NoneType"),
    (lambda: interop.from_torch_state_dict({**good_sd(), "head.bias": [[1.0], [1.0, 2.0]]}),
     "'head.bias' cannot become a NumPy array"),
], ids=["to_torch_state_dict", "to_torch_grads", "model_config", "export_meta", "ragged"])
def test_arguments_of_the_wrong_type_are_bptt_errors(call, message):
    # each was a TypeError or ValueError from dict() or np.asarray, not one BpttError line
    with pytest.raises(BpttError, match=re.escape(message)):
        call()


def test_a_vocab_that_is_no_list_is_a_bptt_error(tmp_path):
    path = interop.write_torch_safetensors(tmp_path / "t.safetensors", make_params("gru", 1, True))
    with pytest.raises(BpttError, match="vocab must be a list of characters, got int"):
        interop.import_file(path, tmp_path / "run", vocab=5)
    assert not (tmp_path / "run").exists()


def test_torch_arguments_of_the_wrong_type_are_bptt_errors(torch):
    ids = np.zeros((T, B), np.int64)
    with pytest.raises(BpttError, match="params must be a dict of arrays, got NoneType"):
        interop.torch_loss_and_grads(None, ids, ids)
    with pytest.raises(BpttError, match="params must be a dict of arrays, got NoneType"):
        interop.to_torch_module(None)
    with pytest.raises(BpttError, match=r"module must be a torch\.nn\.Module, got type"):
        interop.from_torch_module(interop.CharRNN)  # the class, not a module
    config = {**interop.model_config(make_params("gru", 1, True)), "dtype": ["float32"]}
    with pytest.raises(BpttError, match="config dtype must be float32 or float64"):
        interop.torch_module(config)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_forward_from_ids_takes_bptts_numpy_state(torch, cell):
    # a NumPy h0 (bptt's state, to carry across chunks) was an AttributeError from torch
    params = make_params(cell, 2, True)
    module = interop.to_torch_module(params)
    ids, _ = make_batch()
    h0 = make_state(cell, 2)
    fwd = bptt.forward(params, ids, h0)
    logits, h_n = interop.torch_forward_from_ids(module, ids, h0)
    assert_close(logits.numpy(), fwd.logits)
    assert_close(to_numpy(h_n), fwd.state)
    h = h0[0] if cell == "lstm" else h0
    wrong = (h[:1], h[:1]) if cell == "lstm" else h[:1]
    with pytest.raises(BpttError, match=re.escape(f"h0 has shape (1, {B}, {H}), expected")):
        interop.torch_forward_from_ids(module, ids, wrong)
    with pytest.raises(BpttError, match="h0 of the module's"):
        interop.torch_forward_from_ids(module, ids, h if cell == "lstm" else (h, h))
    with pytest.raises(BpttError, match=re.escape("ids has shape (0, 3): need T >= 1")):
        interop.torch_forward_from_ids(module, np.zeros((0, 3), np.int64))


def test_torch_forward_from_ids_checks_the_form_and_kind_of_h0(torch):
    # an LSTM's pair may come as a list (bptt reads h0 so); three parts, text, or no module
    # at all are one BpttError line; NumPy parts take the module's dtype, whatever theirs
    ids, _ = make_batch()
    lstm = interop.to_torch_module(make_params("lstm", 2, True))
    h, c = make_state("lstm", 2)
    expected, _ = interop.torch_forward_from_ids(lstm, ids, (h, c))
    assert torch.equal(interop.torch_forward_from_ids(lstm, ids, [h, c])[0], expected)
    # a GRU's h0 as a list is nested rows of one array (L, B, H), as bptt reads it: not a pair
    gru = interop.to_torch_module(make_params("gru", 2, True))
    h_gru = make_state("gru", 2)
    assert torch.equal(interop.torch_forward_from_ids(gru, ids, h_gru.tolist())[0],
                       interop.torch_forward_from_ids(gru, ids, h_gru)[0])
    with pytest.raises(BpttError, match=re.escape("h0 of the module's LSTM must be the pair")):
        interop.torch_forward_from_ids(lstm, ids, (h, c, c))
    # one (h, c) pair per layer has the shapes of (h0, c0) for two layers; it ran, misread
    with pytest.raises(BpttError, match=re.escape("h0 of the module's LSTM is the pair (h0, c0), "
                                                  "each (L, B, H), not a pair per layer")):
        interop.torch_forward_from_ids(lstm, ids, [(h[0], c[0]), (h[1], c[1])])
    with pytest.raises(BpttError, match="h0 must hold real numbers, got dtype <U1"):
        interop.torch_forward_from_ids(lstm, ids, (np.full(h.shape, "a"), c))
    gru32 = interop.to_torch_module(make_params("gru", 2, True, dtype=np.float32))
    h64 = make_state("gru", 2)  # float64 NumPy for a float32 module
    logits, h_n = interop.torch_forward_from_ids(gru32, ids, h64)
    assert logits.dtype == h_n.dtype == torch.float32
    zeros = interop.torch_forward_from_ids(gru32, ids, np.zeros((2, B, H), np.int64))[0]
    assert torch.equal(zeros, interop.torch_forward_from_ids(gru32, ids)[0])
    # tensors of another dtype too (they failed inside torch: "mat1 and mat2 must have the
    # same dtype", and for the LSTM "get_mkldnn_dtype: unsupported data type")
    lstm32 = interop.to_torch_module(make_params("lstm", 2, True, dtype=np.float32))
    for module, state in ((gru32, torch.from_numpy(h64)),
                          (lstm32, (torch.from_numpy(h), torch.from_numpy(c)))):
        as_given = interop.torch_forward_from_ids(module, ids, state)[0]
        numpy_state = tuple(s.numpy() for s in state) if isinstance(state, tuple) else h64
        assert torch.equal(as_given, interop.torch_forward_from_ids(module, ids, numpy_state)[0])
    with pytest.raises(BpttError, match=r"module must be a torch\.nn\.Module, got NoneType"):
        interop.torch_forward_from_ids(None, ids)


def test_torch_forward_from_ids_refuses_a_batch_first_rnn(torch):
    # the (T, B) ids were read as (B, T): logits 0.26 off bptt's, and no error
    module = interop.to_torch_module(make_params("gru", 2, True))
    module.rnn.batch_first = True
    ids, _ = make_batch()
    with pytest.raises(BpttError, match=re.escape("the module's GRU has batch_first=True")):
        interop.torch_forward_from_ids(module, ids)


def test_an_unknown_cell_is_named_before_the_state_dict_is_read():
    with pytest.raises(BpttError, match="unknown cell 'lstmm'"):
        interop.from_torch_state_dict({}, cell="lstmm")


def test_import_takes_a_vocab_that_is_the_files_own(tmp_path):
    # (the vocab given, any sequence of its characters, is compared as a list)
    params = bptt.init_params("gru", 6, H, 6, rng=np.random.default_rng(0))
    path = interop.write_torch_safetensors(tmp_path / "t.safetensors", params, list("abcdef"))
    assert interop.import_file(path, tmp_path / "run", vocab="abcdef").vocab == list("abcdef")


def test_export_refuses_recurrent_biases_in_some_layers_only():
    # a torch module has one bias flag: the metadata would describe a module torch cannot build
    params = make_params("gru", 2, True)
    del params["bxh_l1"], params["bhh_l1"]
    with pytest.raises(BpttError, match="biases in some layers but not"):
        interop.export_meta(params)


def test_an_export_import_file_would_refuse_is_not_written(tmp_path):
    params = make_params("rnn", 1, True)
    path = tmp_path / "t.safetensors"
    with pytest.raises(CheckpointError, match=r"not saved: .* a vocabulary of 3 characters"):
        interop.write_torch_safetensors(path, params, list("abc"), {}, 0)
    with pytest.raises(BpttError, match="step must be an integer >= 0, got -1"):
        interop.write_torch_safetensors(path, params, None, {}, -1)
    assert not path.exists()


def test_a_file_whose_metadata_misstates_the_dtype_is_refused(tmp_path):
    # the documented torch_module(meta["model"]) would build float32 for float64 weights
    params = make_params("lstm", 1, True)
    path = interop.write_torch_safetensors(tmp_path / "t.safetensors", params, None, {}, 0)
    tensors, meta = checkpoint.read_safetensors(path)
    meta["model"]["dtype"] = "float32"
    checkpoint.write_safetensors_atomic(path, tensors, meta)
    with pytest.raises(CheckpointError, match="metadata says dtype='float32' but the weights"):
        interop.params_from_file(path)


def file_hashes(root) -> dict[str, str]:
    """Every regular file under ``root`` -> the sha256 of its bytes."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("vocab", "message"), [
    (list("aaaabc"), "'a' twice"),
    (["ab", "c", "d", "e", "f", "g"], "single character"),
    ("abcdef", "JSON list"),
    (list("abc"), "vocabulary has 3 characters"),
], ids=["duplicate", "multi-character", "string", "wrong-size"])
def test_import_checks_the_vocabulary_before_writing_anything(tmp_path, vocab, message):
    """A bad vocabulary in the metadata is refused naming the input file; nothing is written."""
    from tests_support import write_export_with_vocab

    params = bptt.init_params("gru", 6, H, 6, True, np.random.default_rng(0), np.float64)
    good = interop.write_torch_safetensors(tmp_path / "good.safetensors", params, list("abcdef"))
    interop.import_file(good, tmp_path / "out")
    bad = write_export_with_vocab(tmp_path / "bad.safetensors", params, vocab)
    before = file_hashes(tmp_path)
    for out, overwrite in ((tmp_path / "out", True), (tmp_path / "fresh", False)):
        with pytest.raises(BpttError, match=re.escape(message)) as caught:
            interop.import_file(bad, out, overwrite=overwrite)
        assert str(bad) in str(caught.value)
    assert file_hashes(tmp_path) == before
    assert not (tmp_path / "fresh").exists()


def test_import_never_replaces_the_file_it_reads(tmp_path):
    params = bptt.init_params("rnn", 4, H, 4, True, np.random.default_rng(0), np.float64)
    (tmp_path / "d").mkdir()
    source = interop.write_torch_safetensors(tmp_path / "d" / "model.safetensors", params,
                                             list("abcd"))
    before = file_hashes(tmp_path)
    with pytest.raises(BpttError, match="is the file being imported"):
        interop.import_file(source, tmp_path / "d", overwrite=True)
    assert file_hashes(tmp_path) == before


@pytest.mark.parametrize("cell", [["lstm"], {"cell": "lstm"}])
def test_a_cell_that_is_no_name_is_refused_not_a_type_error(tmp_path, cell):
    # an export carries no checksums (other programs rewrite it): its metadata's cell, or the
    # cell= given, as a list or dict was a TypeError (unhashable) and a traceback from import
    with pytest.raises(BpttError, match="unknown cell"):
        interop.from_torch_state_dict(good_sd(), cell=cell)
    path = interop.write_torch_safetensors(tmp_path / "t.safetensors", make_params("lstm", 1, True))
    tensors, meta = checkpoint.read_safetensors(path)
    meta["model"]["cell"] = cell
    safetensors.numpy.save_file(tensors, str(path), metadata={"bptt": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="its bptt metadata has no valid 'model' entry"):
        interop.params_from_file(path)
    with pytest.raises(CheckpointError, match="no valid 'model' entry"):
        interop.import_file(path, tmp_path / "run")


def test_a_float16_state_dict_becomes_float32_with_the_same_values():
    # from_torch_state_dict's documented default: float16 becomes float32 (bptt's least dtype)
    sd = {k: v.astype(np.float16) for k, v in good_sd("lstm", 1).items()}
    params = interop.from_torch_state_dict(sd)
    assert {v.dtype for v in params.values()} == {np.dtype(np.float32)}
    assert np.array_equal(params["Whh"], sd["rnn.weight_hh_l0"].astype(np.float32))
    assert np.array_equal(params["by"], sd["head.bias"].astype(np.float32))


def test_the_export_metadata_describes_the_torch_module():
    meta = interop.export_meta(make_params("gru", 2, True))
    assert meta["torch"] == {"module": "bptt.interop.CharRNN", "rnn": "torch.nn.GRU",
                             "batch_first": False,
                             "input": "one-hot: token j is column j of rnn.weight_ih_l0"}


def test_torch_module_defaults_are_one_layer_float32_with_biases(torch):
    module = interop.torch_module({"cell": "lstm", "input_size": 3, "hidden_size": 4,
                                   "output_size": 5})
    assert module.rnn.num_layers == 1 and module.rnn.bias and module.head.bias is not None
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    no_bias = interop.torch_module({"cell": "gru", "input_size": 3, "hidden_size": 4,
                                    "output_size": 5, "bias": False})
    assert not no_bias.rnn.bias and no_bias.head.bias is None  # head_bias defaults to bias


@pytest.mark.parametrize("key", ["input_size", "hidden_size", "output_size", "num_layers"])
def test_a_file_whose_metadata_misstates_a_size_is_refused(tmp_path, key):
    params = make_params("gru", 2, True)
    path = interop.write_torch_safetensors(tmp_path / "t.safetensors", params, None, {}, 0)
    tensors, meta = checkpoint.read_safetensors(path)
    stated = meta["model"][key] + 1
    meta["model"][key] = stated
    checkpoint.write_safetensors_atomic(path, tensors, meta)
    found = {"input_size": D, "hidden_size": H, "output_size": V, "num_layers": 2}[key]
    with pytest.raises(CheckpointError, match=re.escape(
            f"metadata says {key}={stated} but the weights have {found}.")):
        interop.params_from_file(path)


def test_import_refuses_a_vocab_that_fits_the_inputs_but_not_the_outputs(tmp_path):
    # D = 7 inputs, V = 6 outputs: 7 characters name the inputs, but output 6 has none
    path = interop.write_torch_safetensors(tmp_path / "t.safetensors", make_params("rnn", 1, True))
    with pytest.raises(CheckpointError, match=re.escape(
            "the vocabulary given has 7 characters but the weights take 7 inputs and give "
            "6 outputs")):
        interop.import_file(path, tmp_path / "run", vocab=list("abcdefg"))
    assert not (tmp_path / "run").exists()


def test_the_state_dict_holds_copies_not_views_of_the_parameters():
    params = make_params("lstm", 2, True)
    before = {k: v.copy() for k, v in params.items()}
    for value in interop.to_torch_state_dict(params).values():
        value += 1.0
    assert all(np.array_equal(params[k], before[k]) for k in params)


@pytest.mark.parametrize("step", [-1, True, "12", 2.5, None])
def test_an_export_whose_step_is_no_count_is_refused_naming_it_before_anything_is_made(
        tmp_path, step):
    # (an export carries no checksums: its metadata may have been written by another program)
    params = bptt.init_params("gru", 4, H, 4, True, np.random.default_rng(0), np.float64)
    path = interop.write_torch_safetensors(tmp_path / "t.safetensors", params, list("abcd"),
                                           {}, 5)
    tensors, meta = checkpoint.read_safetensors(path)
    meta["step"] = step
    checkpoint.write_safetensors_atomic(path, tensors, meta, checksums=False)
    with pytest.raises(CheckpointError, match=re.escape(
            f"{path}: its bptt metadata cannot be imported: step must be an integer >= 0, "
            f"got {step!r}")):
        interop.import_file(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rnn_biases_whose_sum_overflows_are_refused_without_a_warning():
    """b_h = bias_ih + bias_hh overflows float32: one CheckpointError, and no numpy
    RuntimeWarning before it (a second and third line on bptt import's stderr)."""
    import warnings

    sd = interop.to_torch_state_dict(make_params("rnn", 1, True, dtype=np.float32))
    sd["rnn.bias_ih_l0"][:] = sd["rnn.bias_hh_l0"][:] = 3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError, match=re.escape(
                "the state_dict does not make a valid rnn model: params['bh'] contains NaN or "
                "inf")):
            interop.from_torch_state_dict(sd)


# ---- mutation audit (5): what the earlier tests let through ----


def test_model_config_refuses_recurrent_biases_in_some_layers_only():
    # what torch_module builds from: a module with bias=False would drop layer 0's biases
    params = make_params("lstm", 2, True)
    del params["bxh_l1"], params["bhh_l1"]
    with pytest.raises(BpttError, match="biases in some layers but not bxh_l1, bhh_l1"):
        interop.model_config(params)


@pytest.mark.parametrize(("sd", "message"), [
    # one bias of layer 0 without the other: the missing one is named (not "unexpected")
    (lambda: without(good_sd(), "rnn.bias_hh_l0"),
     "the state_dict is missing the key 'rnn.bias_hh_l0' (gru, H=5)"),
    # a bias in layer 1 but none in layer 0: refused, never dropped silently
    (lambda: without(without(good_sd(), "rnn.bias_ih_l0"), "rnn.bias_hh_l0"),
     "unexpected key 'rnn.bias_ih_l1' in the state_dict of a gru model"),
    (lambda: {**good_sd(), "rnn.weight_hh_l0": np.zeros(15)},
     "'rnn.weight_hh_l0' has shape (15,), expected (G·H, H)"),
    (lambda: {**good_sd(), "rnn.weight_hh_l0": np.zeros((0, 0))},
     "'rnn.weight_hh_l0' has shape (0, 0): expected (H, H) rnn, (3H, H) gru or (4H, H) lstm"),
    (lambda: {**good_sd(), "rnn.weight_hh_l0": np.zeros((7, 5))},
     "'rnn.weight_hh_l0' has shape (7, 5): expected (H, H) rnn, (3H, H) gru or (4H, H) lstm"),
    (lambda: {0: np.zeros((15, 5))}, "state_dict key 0 is not a string"),
], ids=["one-bias-missing", "biases-of-layer-1-only", "weight_hh-1d", "weight_hh-empty",
        "weight_hh-no-gate-count", "key-not-a-string"])
def test_a_state_dict_that_is_no_models_is_one_checkpoint_error(sd, message):
    with pytest.raises(CheckpointError) as info:
        interop.from_torch_state_dict(sd())
    assert str(info.value) == message


def test_import_into_a_file_says_so(tmp_path):
    # (not "cannot create the directory ...: File exists", said once it is being made)
    path = interop.write_torch_safetensors(tmp_path / "t.safetensors", make_params("gru", 1, True))
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BpttError, match=re.escape(
            f"{tmp_path / 'notes.txt'} is a file; give a directory to import into")):
        interop.import_file(path, tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_import_checks_the_directory_again_once_it_holds_the_lock(tmp_path, monkeypatch):
    """A model written into the directory between the first check and the lock (a run that
    started meanwhile) is not replaced without overwrite."""
    path = interop.write_torch_safetensors(tmp_path / "t.safetensors", make_params("gru", 1, True))
    out = tmp_path / "out"
    make_dir = checkpoint.make_dir

    def make_dir_then_a_model_appears(directory):
        make_dir(directory)
        (directory / checkpoint.MODEL_FILE).write_bytes(b"someone else's")

    monkeypatch.setattr(checkpoint, "make_dir", make_dir_then_a_model_appears)
    with pytest.raises(BpttError, match=re.escape(f"{out} already holds model.safetensors")):
        interop.import_file(path, out)
    assert (out / checkpoint.MODEL_FILE).read_bytes() == b"someone else's"


def test_export_without_overwrite_keeps_a_file_written_there_meanwhile(tmp_path,
                                                                        monkeypatch):
    """Two 'bptt export RUN out.safetensors' at once both found no out.safetensors, and the
    second replaced the first's: both said 'wrote out.safetensors'."""
    source = checkpoint.save_model(tmp_path / "m.safetensors", make_params("gru", 1, True))
    out = tmp_path / "out.safetensors"
    real_write = checkpoint._write_synced

    def write_then_another_appears(file, blob):
        real_write(file, blob)
        out.write_bytes(b"the other export's")

    monkeypatch.setattr(checkpoint, "_write_synced", write_then_another_appears)
    with pytest.raises(CheckpointError, match=re.escape(f"{out} already exists")):
        interop.export_checkpoint(source, out)
    assert out.read_bytes() == b"the other export's"
    monkeypatch.undo()
    interop.export_checkpoint(source, out, overwrite=True)  # --force replaces it
    assert interop.read_torch_safetensors(out)[1]["model"]["cell"] == "gru"


def test_export_to_a_directory_says_so(tmp_path):
    """Not "already exists; overwrite it with --force" (which --force would not fix)."""
    source = checkpoint.save_model(tmp_path / "m.safetensors", make_params("gru", 1, True))
    (tmp_path / "out").mkdir()
    for overwrite in (False, True):
        with pytest.raises(BpttError, match=re.escape(
                f"{tmp_path / 'out'} is a directory; give the name of the .safetensors file "
                "to write")):
            interop.export_checkpoint(source, tmp_path / "out", overwrite=overwrite)
    assert list((tmp_path / "out").iterdir()) == []


# ----------------------------------------------------------------------------
# the state_dicts of character models written in PyTorch under other names
# ----------------------------------------------------------------------------


def torch_char_model(torch, style: str, layers: int, seed: int = 0):
    """:func:`tests_support.torch_char_model` of this file's sizes (V tokens, hidden size H)."""
    return tests_support.torch_char_model(torch, style, layers, V, H, seed)


def token_ids(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (T, B))


STYLES = ["charrnn", "wlm-lstm", "wlm-gru", "wlm-rnn", "wlm-tied", "spro"]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("style", STYLES)
def test_other_layouts_import_to_the_torch_modules_logits(torch, style, layers):
    """Read off the state_dict's shapes alone: bptt's forward on token ids gives the torch
    module's logits to 1e-12 relative (float64); an embedding folded, W^xh = W_ih Eᵀ (G, V)."""
    module, logits = torch_char_model(torch, style, layers)
    params = interop.from_torch_state_dict(module.state_dict())
    assert params["Wxh"].shape[1] == V and params["Wxh"].dtype == np.float64
    ids = token_ids()
    assert rel_err(bptt.forward(params, ids).logits, logits(ids)) <= 1e-12


@pytest.mark.parametrize(("style", "expected"), [
    ("charrnn", interop.Layout("lstm", "fc", None)),
    ("wlm-lstm", interop.Layout("rnn", "decoder", "encoder")),
    ("wlm-tied", interop.Layout("rnn", "decoder", "encoder")),  # both names: not ambiguous
    ("spro", interop.Layout("rnn", "decoder", "encoder")),
])
def test_read_layout_names_the_modules(torch, style, expected):
    module, _ = torch_char_model(torch, style, 2)
    assert interop.read_layout(module.state_dict()) == expected
    assert interop.read_layout(interop.to_torch_state_dict(make_params("gru", 2, True))) \
        == interop.BPTT_LAYOUT


def test_the_fold_is_computed_in_float64_and_cast(torch):
    """A float32 module's W^xh is (W_ih Eᵀ) in float64, cast once to float32 (not a float32
    product), and its logits agree with torch's to float32 round-off."""
    module, _ = torch_char_model(torch, "spro", 1)
    module = module.float()
    sd = module.state_dict()
    params = interop.from_torch_state_dict(sd)
    W_ih, E = sd["rnn.weight_ih_l0"].double().numpy(), sd["encoder.weight"].double().numpy()
    assert params["Wxh"].dtype == np.float32
    assert np.array_equal(params["Wxh"], (W_ih @ E.T).astype(np.float32))
    assert np.array_equal(interop.fold_embedding(W_ih, E, np.float32), params["Wxh"])
    ids = token_ids()
    with torch.no_grad():
        expected = module(torch.from_numpy(ids)).numpy()
    assert rel_err(bptt.forward(params, ids).logits.astype(np.float64), expected) <= 1e-5


def test_nested_and_wrapped_modules_are_found_and_may_be_named_with_the_wrapper(torch):
    """``model.rnn`` inside a wrapper class, inside DDP (``module.``): found by structure, and
    ``rnn=`` may be given as the user sees the key (with the wrapper's prefix, a final dot)."""
    module, logits = torch_char_model(torch, "wlm-gru", 2)
    sd = {f"module.model.{k}": v for k, v in module.state_dict().items()}
    ids = token_ids()
    for given in ({}, {"rnn": "module.model.rnn.", "head": "model.decoder",
                       "embedding": "module.model.encoder"}):
        params = interop.from_torch_state_dict(sd, **given)
        assert rel_err(bptt.forward(params, ids).logits, logits(ids)) <= 1e-12
    assert interop.read_layout(sd) == interop.Layout("model.rnn", "model.decoder",
                                                     "model.encoder")


def ambiguous_sd(torch):
    """An embedding (V, K = H) and a head without a bias: each fits both by shape."""
    nn = torch.nn
    torch.manual_seed(4)
    a, rnn, b = nn.Embedding(V, H), nn.GRU(H, H), nn.Linear(H, V, bias=False)
    sd = {**{f"a.{k}": v for k, v in a.state_dict().items()},
          **{f"rnn.{k}": v for k, v in rnn.state_dict().items()},
          **{f"b.{k}": v for k, v in b.state_dict().items()}}

    def logits(ids):
        with torch.no_grad():
            return b(rnn(a(torch.from_numpy(ids)))[0]).numpy()

    return sd, logits


def test_an_ambiguous_layout_is_refused_naming_the_candidates_and_resolved_by_naming_them(
        torch):
    sd, logits = ambiguous_sd(torch)
    with pytest.raises(CheckpointError) as info:
        interop.from_torch_state_dict(sd)
    assert str(info.value) == (
        f"cannot tell the head from the embedding: 'a' (weight ({V}, {H})) and 'b' (weight "
        f"({V}, {H})) each fit both (no bias, and H = K = {H}); say which with --head PREFIX "
        "--embedding PREFIX, e.g. --head a --embedding b (head='a', embedding='b')")
    ids = token_ids()
    for given in ({"head": "b", "embedding": "a"}, {"head": "b"}, {"embedding": "a"}):
        params = interop.from_torch_state_dict(sd, **given)
        assert rel_err(bptt.forward(params, ids).logits, logits(ids)) <= 1e-12, given


@pytest.mark.parametrize(("extra", "given", "message"), [
    # an unknown module: named, with the layout that was read
    ({"norm.weight": (H,), "norm.bias": (H,)}, {},
     "unexpected key 'norm.weight' in the state_dict (expected lstm.weight_ih_l0, …, fc.weight, "
     "fc.bias)"),
    ({"scale": (1,)}, {},
     "unexpected key 'scale' in the state_dict (expected lstm.weight_ih_l0, …, fc.weight, "
     "fc.bias)"),
    # a second recurrent module: both named; once one is chosen, the other is unexpected
    ({"lstm2.weight_ih_l0": (4 * H, H), "lstm2.weight_hh_l0": (4 * H, H)}, {},
     "the state_dict has 2 recurrent modules ('lstm', 'lstm2'); bptt imports one: say which "
     "with --rnn PREFIX (rnn=)"),
    ({"lstm2.weight_ih_l0": (4 * H, H), "lstm2.weight_hh_l0": (4 * H, H)}, {"rnn": "lstm"},
     "unexpected key 'lstm2.weight_ih_l0' in the state_dict (expected lstm.weight_ih_l0, …, "
     "fc.weight, fc.bias)"),
    # a second head
    ({"fc2.weight": (V, H), "fc2.bias": (V,)}, {},
     f"the state_dict has 2 modules that fit the head (weight (V, {H}), bias (V,) or none): "
     "'fc', 'fc2'; say which with --head PREFIX (head=)"),
    ({"fc2.weight": (V, H), "fc2.bias": (V,)}, {"head": "fc2"},
     "unexpected key 'fc.weight' in the state_dict (expected lstm.weight_ih_l0, …, fc2.weight, "
     "fc2.bias)"),
    # a module given that is not there
    ({}, {"embedding": "encoder"},
     "--embedding 'encoder' (embedding='encoder') names no module of the state_dict; its "
     "modules: 'fc', 'lstm'"),
    # an embedding given whose width is not the input size of weight_ih_l0
    ({"emb.weight": (V, 3)}, {"embedding": "emb"},
     f"'emb.weight' has shape ({V}, 3), expected (D, {V}): an embedding gives "
     f"'lstm.weight_ih_l0' its {V} inputs"),
], ids=["unknown-module", "unknown-key", "two-rnns", "two-rnns-named", "two-heads",
        "two-heads-named", "no-such-module", "embedding-width"])
def test_a_layout_that_does_not_fit_is_one_line_naming_the_keys(torch, extra, given, message):
    module, _ = torch_char_model(torch, "charrnn", 1)
    sd = {**module.state_dict(), **{k: np.zeros(shape) for k, shape in extra.items()}}
    with pytest.raises(CheckpointError) as info:
        interop.from_torch_state_dict(sd, **given)
    assert str(info.value) == message


def test_a_module_name_that_is_no_string_is_a_bptt_error():
    with pytest.raises(BpttError, match="head must be a module name \\(a str\\), got int"):
        interop.from_torch_state_dict(good_sd(), head=3)


def test_from_torch_module_takes_the_names_too(torch):
    sd, _ = ambiguous_sd(torch)
    nn = torch.nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.rnn, self.b = nn.Embedding(V, H), nn.GRU(H, H), nn.Linear(H, V, bias=False)

    module = Model()
    module.load_state_dict(sd)
    assert all(np.array_equal(v, interop.from_torch_state_dict(sd, head="b")[k])
               for k, v in interop.from_torch_module(module, head="b").items())


def test_an_imported_embedding_exports_as_bptts_one_hot_layout(torch, tmp_path):
    """The fold is what the import keeps: an export writes rnn.weight_ih_l0 = W_ih Eᵀ (G, V),
    no embedding, and reads back to the very same parameters."""
    module, logits = torch_char_model(torch, "wlm-lstm", 2)
    params = interop.from_torch_state_dict(module.state_dict())
    path = interop.write_torch_safetensors(tmp_path / "e.safetensors", params, list("abcdefg"[:V]))
    sd, _ = interop.read_torch_safetensors(path)
    assert list(sd) == list(interop.to_torch_state_dict(params))
    assert sd["rnn.weight_ih_l0"].shape == (4 * H, V)
    back, _ = interop.params_from_file(path)
    assert all(np.array_equal(back[k], v) for k, v in params.items())
