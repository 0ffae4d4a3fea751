"""``bptt export`` and ``bptt import`` run as a user runs them (by their entry point, in this
process; with torch blocked, in a fresh interpreter), and the DDP example (processes).

A model trained with ``bptt train`` is exported, loaded into PyTorch with
``safetensors.torch.load_file`` + ``load_state_dict(strict=True)``, and decodes the same
greedy text there as ``bptt sample --greedy``; export -> import gives back the very same
checkpoint; files written by PyTorch import with --cell / --vocab; each bad file gives one
``bptt: error:`` line naming the key and exit code 2.  The DDP example (examples/ddp_train.py)
runs on 2 CPU processes with gloo and its loss decreases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from tests_support import bptt_here, torch_char_model

from bptt import checkpoint, interop
from bptt.sample import draw, next_token_distribution, sample_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "ddp_train.py"
TRAINED = {"rnn": 1, "lstm": 2, "gru": 2}  # cell -> layers of the trained checkpoints


def bptt_run(*args) -> subprocess.CompletedProcess:
    """``bptt ARGS`` by its entry point, in this process (:func:`tests_support.bptt_here`)."""
    return bptt_here(*args)


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("bptt: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_file) -> dict[str, Path]:
    """cell -> a run directory trained by ``bptt train`` (float64, a little training)."""
    root = tmp_path_factory.mktemp("trained")
    runs = {}
    for cell, layers in TRAINED.items():
        out = root / cell
        r = bptt_run("train", corpus_file, "--out", out, "--cell", cell, "--layers", layers,
                     "--hidden", 24, "--steps", 60, "--seq-len", 20, "--batch", 8, "--lr", 0.01,
                     "--eval-every", 80, "--sample-length", 0, "--dtype", "float64", "--quiet")
        assert r.returncode == 0, r.stderr
        runs[cell] = out
    return runs


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> dict[str, Path]:
    """cell -> the trained model exported with ``bptt export``."""
    root = tmp_path_factory.mktemp("exported")
    files = {}
    for cell, run in trained.items():
        files[cell] = root / f"{cell}.safetensors"
        r = bptt_run("export", run, files[cell])
        assert r.returncode == 0, r.stderr
        assert f"wrote {files[cell]}: {cell} model" in r.stdout
        assert "rnn.weight_ih_l0" in r.stdout and "head.weight" in r.stdout
    return files


def torch_twin_of_file(torch, path: Path):
    """What a PyTorch user does with an exported file (no bptt checkpoint code involved)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        import json

        meta = json.loads(handle.metadata()["bptt"])
    module = interop.torch_module(meta["model"])
    module.load_state_dict(load_file(path), strict=True)
    return module, meta


def torch_generate(torch, module, vocab, length, prime="", temperature=1.0, rng=None,
                   greedy=True) -> str:
    """Greedy (or sampled) decoding in PyTorch, the way bptt.sample does it."""
    index = {c: i for i, c in enumerate(vocab)}
    start = prime or ("\n" if "\n" in index else vocab[0])
    out = []
    with torch.no_grad():
        logits, state = module(torch.tensor([[index[c]] for c in start]))
        for _ in range(length):
            p = next_token_distribution(logits[-1, 0].numpy(), temperature)
            token = int(np.argmax(p)) if greedy else draw(p, rng)
            out.append(vocab[token])
            logits, state = module(torch.tensor([[token]]), state)
    return "".join(out)


# ----------------------------------------------------------------------------
# a trained model, in PyTorch
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("cell", sorted(TRAINED))
def test_trained_model_decodes_the_same_text_in_torch(torch, trained, exported, cell):
    module, meta = torch_twin_of_file(torch, exported[cell])
    vocab = meta["vocab"]
    model = checkpoint.load_model(trained[cell])
    assert vocab == model.vocab and meta["model"]["num_layers"] == TRAINED[cell]
    for prime in ("", "The "):
        r = bptt_run("sample", trained[cell], "--greedy", "--length", 150, "--prime", prime)
        assert r.returncode == 0, r.stderr
        cli_text = r.stdout[len(prime):-1]  # the prime is printed first, a newline last
        lib_text = sample_text(model.params, vocab, 150, prime=prime, greedy=True)
        assert cli_text == lib_text
        assert torch_generate(torch, module, vocab, 150, prime) == lib_text
    # sampling too: the same numpy Generator draws the same characters from torch's logits
    lib = sample_text(model.params, vocab, 150, 0.8, rng=np.random.default_rng(9))
    twin = torch_generate(torch, module, vocab, 150, temperature=0.8,
                          rng=np.random.default_rng(9), greedy=False)
    assert twin == lib


def test_export_then_import_gives_back_the_same_checkpoint(trained, exported, tmp_path):
    for cell, run in trained.items():
        out = tmp_path / cell
        r = bptt_run("import", exported[cell], out)
        assert r.returncode == 0, r.stderr
        assert f"wrote {out / 'model.safetensors'}: {cell} model" in r.stdout
        before, after = checkpoint.load_model(run), checkpoint.load_model(out)
        assert after.params.keys() == before.params.keys()
        assert all(np.array_equal(after.params[k], before.params[k]) for k in before.params)
        assert after.vocab == before.vocab and after.step == before.step
        assert after.config == before.config
        a = bptt_run("sample", run, "--length", 100, "--seed", 4)
        b = bptt_run("sample", out, "--length", 100, "--seed", 4)
        assert a.returncode == b.returncode == 0 and a.stdout == b.stdout


def test_export_refuses_to_overwrite_unless_forced(trained, tmp_path):
    target = tmp_path / "m.safetensors"
    target.write_bytes(b"precious")
    assert_one_line_error(bptt_run("export", trained["rnn"], target), "already exists", "--force")
    assert target.read_bytes() == b"precious"
    r = bptt_run("export", trained["rnn"], target, "--force")
    assert r.returncode == 0, r.stderr
    assert interop.read_torch_safetensors(target)[1]["model"]["cell"] == "rnn"
    model_file = trained["rnn"] / "model.safetensors"
    assert_one_line_error(bptt_run("export", trained["rnn"], model_file, "--force"),
                          "is the checkpoint being exported")
    assert_one_line_error(bptt_run("export", tmp_path / "nothing", tmp_path / "x.safetensors"),
                          "no checkpoint")
    assert_one_line_error(bptt_run("export", trained["rnn"], tmp_path / "no" / "x.safetensors"),
                          "does not exist")
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("name", ["model.safetensors", "train_state.safetensors"])
def test_export_never_replaces_a_training_runs_checkpoint_even_forced(trained, name):
    # another run's model or train state: --force would leave that run unable to resume
    victim = trained["gru"] / name
    before = victim.read_bytes()
    assert_one_line_error(bptt_run("export", trained["rnn"], victim, "--force"),
                          f"{victim} belongs to the training run in {trained['gru']}")
    assert victim.read_bytes() == before


def test_import_refuses_to_overwrite_a_model_or_a_training_run(trained, exported, tmp_path):
    assert_one_line_error(bptt_run("import", exported["gru"], trained["gru"]), "training run")
    out = tmp_path / "imported"
    assert bptt_run("import", exported["gru"], out).returncode == 0
    assert_one_line_error(bptt_run("import", exported["lstm"], out), "already holds", "--force")
    assert checkpoint.load_model(out).cell == "gru"
    assert bptt_run("import", exported["lstm"], out, "--force").returncode == 0
    assert checkpoint.load_model(out).cell == "lstm"
    assert_one_line_error(bptt_run("import", trained["rnn"] / "model.safetensors", tmp_path / "y"),
                          "bptt checkpoint already")


def test_import_and_export_refuse_a_directory_a_run_trains_in(trained, exported, tmp_path):
    """A new run writes its first checkpoint only at its first evaluation: an import (or an
    export) into its directory before then used to be written, and then replaced by the
    run's own model without a word.  Here the test holds the lock a training run holds."""
    from bptt import train

    out = tmp_path / "training"
    out.mkdir()
    with train.run_dir_lock(out):
        busy = f"{out} is in use by another bptt process (a run training there, or a model"
        assert_one_line_error(bptt_run("import", exported["gru"], out), busy)
        assert_one_line_error(bptt_run("export", trained["gru"], out / "model.safetensors"),
                              busy)
    assert list(out.iterdir()) == []
    assert bptt_run("import", exported["gru"], out).returncode == 0  # the run over: it may


# ----------------------------------------------------------------------------
# files written by PyTorch
# ----------------------------------------------------------------------------


@pytest.fixture
def torch_file(torch, tmp_path, corpus_file):
    """A torch-initialized 2-layer GRU character model saved with safetensors.torch.save_file."""
    from safetensors.torch import save_file

    from bptt.data import Vocab, read_text

    vocab = Vocab.from_text(read_text(corpus_file)).to_list()
    torch.manual_seed(0)
    module = interop.torch_module({"cell": "gru", "input_size": len(vocab), "hidden_size": 12,
                                   "output_size": len(vocab), "num_layers": 2,
                                   "dtype": "float64"})
    path = tmp_path / "torch.safetensors"
    save_file(module.state_dict(), path)
    return path, module, vocab


def test_import_of_a_torch_written_file_with_cell_and_vocab(torch, torch_file, corpus_file,
                                                           tmp_path):
    path, module, vocab = torch_file
    out = tmp_path / "run"
    r = bptt_run("import", path, out, "--cell", "gru", "--vocab", corpus_file)
    assert r.returncode == 0, r.stderr
    model = checkpoint.load_model(out)
    assert model.vocab == vocab and model.cell == "gru"
    ids = np.random.default_rng(0).integers(0, len(vocab), (9, 2))
    logits, _ = interop.torch_forward_from_ids(module, ids)
    from bptt import forward

    np.testing.assert_allclose(forward(model.params, ids).logits, logits.numpy(), rtol=0,
                               atol=1e-12)
    r = bptt_run("sample", out, "--greedy", "--length", 60)
    assert r.returncode == 0, r.stderr
    assert r.stdout[:-1] == torch_generate(torch, module, vocab, 60)
    # without --vocab it imports (cell read off the shapes) but says sampling needs one
    r = bptt_run("import", path, tmp_path / "novocab")
    assert r.returncode == 0 and "--vocab" in r.stdout
    assert_one_line_error(bptt_run("sample", tmp_path / "novocab"), "no vocabulary")


def write_variant(src: Path, dst: Path, change) -> Path:
    tensors = safetensors.numpy.load_file(src)
    change(tensors)
    safetensors.numpy.save_file(tensors, dst)
    return dst


@pytest.mark.parametrize(("name", "change", "flags", "needles"), [
    ("wrong_cell", lambda t: None, ["--cell", "lstm"], ["'rnn.weight_hh_l0'", "'gru' cell"]),
    ("missing_key", lambda t: t.pop("rnn.bias_hh_l1"), [], ["missing", "'rnn.bias_hh_l1'"]),
    ("missing_head", lambda t: t.pop("head.weight"), [], ["missing", "'head.weight'"]),
    ("wrong_shape", lambda t: t.update({"head.weight": np.zeros((5, 12))}), [],
     ["'head.weight'", "shape (5, 12)"]),
    ("wrong_layer_shape", lambda t: t.update({"rnn.weight_hh_l1": np.zeros((36, 11))}), [],
     ["'rnn.weight_hh_l1'", "shape (36, 11)"]),
    ("unexpected", lambda t: t.update({"embedding.weight": np.zeros((3, 3))}), [],
     ["unexpected key 'embedding.weight'"]),
    ("int_tensor", lambda t: t.update({"head.bias": np.zeros(t["head.bias"].shape, np.int32)}),
     [], ["'head.bias'", "int32"]),
])
def test_bad_torch_files_give_one_line_naming_the_key(torch_file, tmp_path, name, change, flags,
                                                      needles):
    path = write_variant(torch_file[0], tmp_path / f"{name}.safetensors", change)
    out = tmp_path / "out"
    assert_one_line_error(bptt_run("import", path, out, *flags), str(path), *needles)
    assert not (out / "model.safetensors").exists()


def test_bad_import_arguments(exported, tmp_path, corpus_file):
    pickled = tmp_path / "model.safetensors"
    import pickle

    pickled.write_bytes(pickle.dumps({"rnn.weight_hh_l0": [[0.0]]}))
    assert_one_line_error(bptt_run("import", pickled, tmp_path / "a"), "pickle")
    assert_one_line_error(bptt_run("import", tmp_path / "none.safetensors", tmp_path / "a"),
                          f"file {tmp_path / 'none.safetensors'} does not exist")
    # a torch file cut short is named for what it should be (it need not be bptt's checkpoint)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(Path(exported["gru"]).read_bytes()[:-4])
    r = bptt_run("import", truncated, tmp_path / "a")
    assert_one_line_error(r, f"{truncated} is not a usable safetensors file (", "truncated")
    assert "checkpoint" not in r.stderr
    assert_one_line_error(bptt_run("import", exported["gru"], tmp_path / "a", "--cell", "lstm"),
                          "'gru' model", "not 'lstm'")
    (tmp_path / "small.txt").write_text("abc")
    assert_one_line_error(
        bptt_run("import", exported["gru"], tmp_path / "a", "--vocab", tmp_path / "small.txt"),
        "differs from the --vocab")
    assert_one_line_error(bptt_run("import", exported["gru"], tmp_path / "a", "--cell", "cnn"),
                          "invalid choice")
    assert not (tmp_path / "a").exists()


def test_export_and_import_work_without_torch(trained, tmp_path):
    """torch is optional: with it blocked, both commands still run."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from bptt.cli import main\n"
        f"assert main(['export', {str(trained['lstm'])!r}, {str(tmp_path / 'x.safetensors')!r}]) == 0\n"
        f"assert main(['import', {str(tmp_path / 'x.safetensors')!r}, {str(tmp_path / 'back')!r}]) == 0\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    a = checkpoint.load_model(trained["lstm"]).params
    b = checkpoint.load_model(tmp_path / "back").params
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------
# the DDP example
# ----------------------------------------------------------------------------


@pytest.mark.slow
def test_ddp_example_trains_on_two_cpu_processes_and_imports_back(torch, corpus_file, tmp_path):
    run = tmp_path / "run"
    r = bptt_run("train", corpus_file, "--out", run, "--cell", "lstm", "--hidden", 32,
                 "--steps", 2, "--eval-every", 2, "--seq-len", 10, "--batch", 4,
                 "--sample-length", 0, "--quiet")
    assert r.returncode == 0, r.stderr
    model_file = tmp_path / "model.safetensors"
    assert bptt_run("export", run, model_file).returncode == 0
    trained = tmp_path / "trained.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    steps = 12
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(EXAMPLE), str(model_file), str(corpus_file), str(trained), "--steps", str(steps),
         "--seq-len", "20", "--batch", "8", "--lr", "0.01"],
        capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    losses = [float(line.split()[3]) for line in r.stdout.splitlines()
              if line.startswith("step ")]
    assert len(losses) == steps, r.stdout  # printed once per step, by rank 0 only
    assert np.mean(losses[-3:]) < losses[0] - 0.3, losses
    assert "world size 2" in r.stdout
    out = tmp_path / "back"
    r = bptt_run("import", trained, out)
    assert r.returncode == 0, r.stderr
    model = checkpoint.load_model(out)
    tensors = safetensors.numpy.load_file(trained)
    assert all(np.array_equal(v, interop.to_torch_state_dict(model.params)[k])
               for k, v in tensors.items())
    assert model.step == 2 + steps and model.cell == "lstm"
    before = checkpoint.load_model(run).params
    assert not np.array_equal(model.params["Whh"], before["Whh"])  # it did train
    r = bptt_run("sample", out, "--length", 50, "--seed", 0)
    assert r.returncode == 0 and len(r.stdout) >= 50


def test_the_ddp_examples_leave_exits_0_and_keeps_what_was_printed(torch, tmp_path):
    """leave() ends the process with os._exit (no interpreter teardown, where gloo's threads
    made torch abort a finished run now and then); it must flush first: standard output
    into a pipe is block-buffered, standard error line-buffered, and os._exit drops what a
    buffer holds."""
    code = (f"import runpy, sys; example = runpy.run_path({str(EXAMPLE)!r}); "
            "print('saved trained.safetensors'); print('no newline yet', end='', file=sys.stderr); "
            "example['leave'](); print('never')")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "saved trained.safetensors\n"
    assert r.stderr.endswith("no newline yet"), r.stderr


def test_a_sequence_task_model_imports_without_the_character_vocabulary_note(tmp_path):
    """A task model reads D features and gives V classes (D ≠ V): no vocabulary applies."""
    r = bptt_run("train", "--task", "parity", "--task-length", "4", "--hidden", "4",
                 "--steps", "2", "--eval-every", "2", "--quiet", "--out", tmp_path / "task")
    assert r.returncode == 0, r.stderr
    assert bptt_run("export", tmp_path / "task", tmp_path / "t.safetensors").returncode == 0
    r = bptt_run("import", tmp_path / "t.safetensors", tmp_path / "imported")
    assert r.returncode == 0, r.stderr
    assert "no vocabulary" in r.stdout and "--vocab" not in r.stdout


def test_a_task_model_exported_and_imported_is_still_its_estimator(tmp_path):
    """The estimator entry (its class, head, classes) and the task used to be dropped by the
    export: the model imported back could no longer be loaded as the estimator it was."""
    from bptt import SequenceClassifier

    r = bptt_run("train", "--task", "parity", "--task-length", "4", "--hidden", "4",
                 "--steps", "2", "--eval-every", "2", "--quiet", "--out", tmp_path / "task")
    assert r.returncode == 0, r.stderr
    assert bptt_run("export", tmp_path / "task", tmp_path / "t.safetensors").returncode == 0
    meta = interop.read_torch_safetensors(tmp_path / "t.safetensors")[1]
    assert meta["torch"]["input"].startswith("dense")  # features, not one-hot token ids
    r = bptt_run("import", tmp_path / "t.safetensors", tmp_path / "imported")
    assert r.returncode == 0, r.stderr
    before = SequenceClassifier.load(tmp_path / "task")
    after = SequenceClassifier.load(tmp_path / "imported")
    X = [np.array([[1.0], [0.0], [1.0], [1.0]]), np.array([[0.0], [1.0], [0.0], [0.0]])]
    assert list(after.classes_) == list(before.classes_)
    assert np.array_equal(after.predict_proba(X), before.predict_proba(X))
    saved = checkpoint.load_model(tmp_path / "task").meta
    assert checkpoint.load_model(tmp_path / "imported").meta["info"] == saved["info"]


def test_import_of_a_vanilla_rnn_without_metadata_notes_it_is_read_as_tanh(tmp_path):
    """An nn.RNN(nonlinearity='relu') has a tanh RNN's keys and shapes: a file without bptt's
    metadata cannot say which it was, so import says it read tanh (it was silent)."""
    import bptt

    params = bptt.init_params("rnn", 4, 3, 4, True, np.random.default_rng(0), np.float64)
    foreign = tmp_path / "foreign.safetensors"
    safetensors.numpy.save_file(interop.to_torch_state_dict(params), foreign)
    r = bptt_run("import", foreign, tmp_path / "a")
    assert r.returncode == 0, r.stderr
    assert "note: the file does not say its nn.RNN's nonlinearity; it was read as tanh" in r.stdout
    exported = interop.write_torch_safetensors(tmp_path / "e.safetensors", params, list("abcd"))
    r = bptt_run("import", exported, tmp_path / "b")
    assert r.returncode == 0 and "nonlinearity" not in r.stdout, r.stdout + r.stderr


def test_import_of_a_gated_cell_without_metadata_has_no_nonlinearity_note(tmp_path, capsys):
    """Only nn.RNN has a nonlinearity to choose: an LSTM's or GRU's file without bptt's
    metadata is read as it is, with no note about tanh (in-process: cli.main)."""
    import bptt
    from bptt import cli

    for cell in ("lstm", "gru"):
        params = bptt.init_params(cell, 4, 3, 4, True, np.random.default_rng(0), np.float64)
        foreign = tmp_path / f"{cell}.safetensors"
        safetensors.numpy.save_file(interop.to_torch_state_dict(params), foreign)
        assert cli.main(["import", str(foreign), str(tmp_path / cell)]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"wrote {tmp_path / cell / 'model.safetensors'}: {cell} model")
        assert "nonlinearity" not in out, out


# ---- mutation audit (5): one line, and what export prints ----


def test_an_rnn_file_whose_biases_overflow_when_added_is_one_line(tmp_path):
    """b_h = bias_ih + bias_hh overflows float32: the error line came after two lines of
    numpy's 'RuntimeWarning: overflow encountered in add'."""
    import bptt

    params = bptt.init_params("rnn", 3, 4, 3, True, np.random.default_rng(0), np.float32)
    sd = interop.to_torch_state_dict(params)
    sd["rnn.bias_ih_l0"][:] = sd["rnn.bias_hh_l0"][:] = 3e38
    path = tmp_path / "big.safetensors"
    safetensors.numpy.save_file(sd, path)
    assert_one_line_error(bptt_run("import", path, tmp_path / "out"),
                          f"{path}: the state_dict does not make a valid rnn model: "
                          "params['bh'] contains NaN or inf")
    assert not (tmp_path / "out").exists()


def test_export_says_what_it_wrote(tmp_path):
    """The model's line (its vocabulary or none), then every key and shape as read back."""
    import bptt

    run = tmp_path / "run"
    run.mkdir()
    params = bptt.init_params("gru", 4, 3, 4, True, np.random.default_rng(0), np.float32, 2)
    checkpoint.save_model(run, params, list("abcd"))
    out = tmp_path / "gru.safetensors"
    r = bptt_run("export", run, out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"wrote {out}: gru model, 2 layer(s), H=3, float32, vocabulary 4",
        "  rnn.weight_ih_l0       (9, 4)",
        "  rnn.weight_hh_l0       (9, 3)",
        "  rnn.bias_ih_l0         (9,)",
        "  rnn.bias_hh_l0         (9,)",
        "  rnn.weight_ih_l1       (9, 3)",
        "  rnn.weight_hh_l1       (9, 3)",
        "  rnn.bias_ih_l1         (9,)",
        "  rnn.bias_hh_l1         (9,)",
        "  head.weight            (4, 3)",
        "  head.bias              (4,)",
    ]
    params = bptt.init_params("rnn", 2, 3, 5, False, np.random.default_rng(0), np.float64)
    model = checkpoint.save_model(tmp_path / "dense.safetensors", params)
    r = bptt_run("export", model, tmp_path / "rnn.safetensors")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == (
        f"wrote {tmp_path / 'rnn.safetensors'}: rnn model, 1 layer(s), H=3, float64, "
        "no vocabulary")


def test_an_import_whose_write_fails_leaves_no_directory_it_made(exported, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise checkpoint.CheckpointError("cannot write it: No space left on device.")

    monkeypatch.setattr(checkpoint, "write_safetensors_atomic", full)
    r = bptt_run("import", exported["rnn"], tmp_path / "a" / "b" / "c")
    assert_one_line_error(r, "No space left on device")
    assert list(tmp_path.iterdir()) == []


# ---- the state_dicts of character models written in PyTorch under other names ----

LAYOUT_V, LAYOUT_H = 6, 5  # "abcdef": the vocabulary of the models below


@pytest.fixture
def six_chars(tmp_path) -> Path:
    (tmp_path / "six.txt").write_text("fedcba")
    return tmp_path / "six.txt"


def assert_imports_to(out: Path, logits) -> None:
    """bptt's forward of the imported model on token ids: the torch module's logits, 1e-12
    relative (float64 modules)."""
    from bptt import forward

    model = checkpoint.load_model(out)
    assert model.vocab == list("abcdef")
    ids = np.random.default_rng(5).integers(0, LAYOUT_V, (8, 3))
    expected = logits(ids)
    error = np.max(np.abs(forward(model.params, ids).logits - expected)) / np.max(np.abs(expected))
    assert error <= 1e-12, error


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(("style", "lines"), [
    ("charrnn", ["read lstm.* as the recurrent layers and fc.* as the head"]),
    ("wlm-lstm", ["read rnn.* as the recurrent layers and decoder.* as the head",
                  "folded the embedding encoder.weight into the first layer: Wxh = "
                  "rnn.weight_ih_l0 @ encoder.weightᵀ (20, 6) (exact math; logits agree to float "
                  "round-off; 'bptt export' writes it one-hot, without an embedding)"]),
    ("spro", ["read rnn.* as the recurrent layers and decoder.* as the head",
              "folded the embedding encoder.weight into the first layer: Wxh = "
              "rnn.weight_ih_l0 @ encoder.weightᵀ (15, 6) (exact math; logits agree to float "
              "round-off; 'bptt export' writes it one-hot, without an embedding)"]),
])
def test_import_reads_the_torch_character_models_practitioners_write(
        torch, tmp_path, six_chars, style, lines, layers):
    """save_file(module.state_dict()) of a CharRNN (lstm, fc), a word_language_model
    (encoder, rnn, decoder) or a char-rnn.pytorch model: imported by their shapes alone."""
    from safetensors.torch import save_file

    module, logits = torch_char_model(torch, style, layers, LAYOUT_V, LAYOUT_H)
    path = tmp_path / f"{style}.safetensors"
    save_file(module.state_dict(), path)
    r = bptt_run("import", path, tmp_path / "out", "--vocab", six_chars)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == lines
    assert_imports_to(tmp_path / "out", logits)


def test_a_tied_model_saved_once_is_imported_with_embedding_naming_the_head(
        torch, tmp_path, six_chars):
    """safetensors.torch.save_model keeps decoder.weight alone of the tied pair (save_file
    refuses shared tensors): its shapes are a one-hot model's with D = H, which import reads
    and says what to do; --embedding decoder reads the tie."""
    from safetensors.torch import save_model

    module, logits = torch_char_model(torch, "wlm-tied", 2, LAYOUT_V, LAYOUT_H)
    path = tmp_path / "tied.safetensors"
    save_model(module, path)
    r = bptt_run("import", path, tmp_path / "plain")
    assert r.returncode == 0, r.stderr
    assert "note: if decoder.weight is also the input embedding (tied weights, saved once), " \
           "import again with --embedding decoder --force" in r.stdout.splitlines()
    assert_one_line_error(
        bptt_run("import", path, tmp_path / "out", "--vocab", six_chars),
        "the vocabulary given has 6 characters but the weights take 5 inputs and give 6 "
        "outputs; if decoder.weight is also the input embedding (tied weights, saved once), "
        "say so with --embedding decoder (embedding='decoder')")
    r = bptt_run("import", path, tmp_path / "out", "--vocab", six_chars, "--embedding", "decoder")
    assert r.returncode == 0, r.stderr
    assert "folded the embedding decoder.weight into the first layer" in r.stdout
    assert_imports_to(tmp_path / "out", logits)


def test_an_ambiguous_layout_is_one_line_and_the_flags_resolve_it(torch, tmp_path, six_chars):
    """An embedding (V, H) and a head without a bias fit each other's shapes: refused, naming
    both; --head and --embedding say which."""
    from safetensors.torch import save_file

    nn = torch.nn
    torch.manual_seed(1)
    a, rnn, b = nn.Embedding(LAYOUT_V, LAYOUT_H), nn.GRU(LAYOUT_H, LAYOUT_H, 2), \
        nn.Linear(LAYOUT_H, LAYOUT_V, bias=False)
    path = tmp_path / "ambiguous.safetensors"
    save_file({**{f"a.{k}": v for k, v in a.state_dict().items()},
               **{f"rnn.{k}": v for k, v in rnn.state_dict().items()},
               **{f"b.{k}": v for k, v in b.state_dict().items()}}, path)
    out = tmp_path / "out"
    assert_one_line_error(
        bptt_run("import", path, out, "--vocab", six_chars),
        f"bptt: error: {path}: cannot tell the head from the embedding: 'a' (weight (6, 5)) and "
        "'b' (weight (6, 5)) each fit both (no bias, and H = K = 5); say which with --head "
        "PREFIX --embedding PREFIX, e.g. --head a --embedding b (head='a', embedding='b')")
    assert not out.exists()
    r = bptt_run("import", path, out, "--vocab", six_chars, "--head", "b", "--embedding", "a")
    assert r.returncode == 0, r.stderr

    def logits(ids):
        with torch.no_grad():
            return b(rnn(a(torch.from_numpy(ids)))[0]).numpy()

    assert_imports_to(out, logits)


def test_an_extra_unknown_module_is_one_line_naming_its_key(torch, tmp_path, six_chars):
    from safetensors.torch import save_file

    module, _ = torch_char_model(torch, "wlm-gru", 1, LAYOUT_V, LAYOUT_H)
    path = tmp_path / "extra.safetensors"
    save_file({**module.state_dict(), "norm.weight": torch.ones(LAYOUT_H)}, path)
    out = tmp_path / "out"
    assert_one_line_error(
        bptt_run("import", path, out, "--vocab", six_chars),
        f"{path}: unexpected key 'norm.weight' in the state_dict (expected rnn.weight_ih_l0, …, "
        "decoder.weight, decoder.bias, encoder.weight)")
    assert not out.exists()
    assert_one_line_error(bptt_run("import", path, out, "--head", "fc"),
                          f"{path}: --head 'fc' (head='fc') names no module of the state_dict; "
                          "its modules: 'decoder', 'encoder', 'norm', 'rnn'")


def test_import_help_names_the_layout_options():
    r = bptt_run("import", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for needle in ("--rnn PREFIX", "--head PREFIX", "--embedding PREFIX",
                   "word_language_model: encoder, rnn, decoder", "is folded into"):
        assert needle in text, needle


def test_import_says_what_it_wrote_and_a_note_only_where_one_applies(tmp_path, capsys):
    """The model's line, then (a character model without a vocabulary) how to give one."""
    import bptt
    from bptt import cli

    params = bptt.init_params("gru", 4, 3, 4, True, np.random.default_rng(0), np.float64, 2)
    foreign = tmp_path / "gru.safetensors"
    safetensors.numpy.save_file(interop.to_torch_state_dict(params), foreign)
    assert cli.main(["import", str(foreign), str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {tmp_path / 'a' / 'model.safetensors'}: gru model, 2 layer(s), H=3, float64, "
        "no vocabulary",
        "note: without a vocabulary 'bptt sample' cannot use it; import again with --vocab "
        "FILE --force",
    ]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("abcd", encoding="utf-8")
    assert cli.main(["import", str(foreign), str(tmp_path / "a"), "--vocab", str(vocab),
                     "--force"]) == 0
    assert capsys.readouterr().out == (
        f"wrote {tmp_path / 'a' / 'model.safetensors'}: gru model, 2 layer(s), H=3, float64, "
        "vocabulary 4\n")
    assert checkpoint.load_model(tmp_path / "a").vocab == list("abcd")
