"""The training library: settings, one step, divergence, checkpoints and exact resume."""

from __future__ import annotations

import csv
import math
import re
import shutil
import warnings

import numpy as np
import pytest

from bptt import checkpoint, models, optim, train
from bptt.data import StreamBatcher, Vocab, builtin_corpus
from bptt.errors import BpttError, CheckpointError, DataError
from bptt.sample import sample_text

TEXT = builtin_corpus()[:8000]


def small_config(**changes) -> train.TrainConfig:
    base = dict(cell="rnn", hidden=16, seq_len=10, batch=4, steps=6, eval_every=3,
                sample_length=10, dtype="float64")
    return train.TrainConfig(**(base | changes)).validate()


def test_config_refuses_unknown_keys_and_wrong_types():
    with pytest.raises(ValueError, match="unknown config key"):
        train.TrainConfig.from_dict({"hidden_size": 3})
    with pytest.raises(ValueError, match="config key 'hidden' has the wrong type"):
        train.TrainConfig.from_dict({"hidden": "big"})
    with pytest.raises(ValueError, match="config key 'lr' has the wrong type"):
        train.TrainConfig.from_dict({"lr": [1]})
    # JSON true is no number of steps (Python's bool is an int): named as the wrong type
    for key, expected in (("steps", "int"), ("lr", "float"), ("clip", "float | None")):
        with pytest.raises(BpttError, match=re.escape(
                f"config key '{key}' has the wrong type: got bool True, expected {expected}")):
            train.TrainConfig.from_dict({key: True})
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        train.TrainConfig.from_dict({"lr": -1})
    with pytest.raises(ValueError, match="unknown cell 'tcn'"):
        train.TrainConfig.from_dict({"cell": "tcn"})
    assert train.TrainConfig.from_dict({"lr": 1, "clip": None}).lr == 1.0


def test_numpy_numbers_are_settings_like_python_ones_and_their_run_checkpoints(tmp_path):
    # a sweep over np.arange(...) gives numpy numbers: the first checkpoint used to fail
    # (the settings are JSON) with a TypeError after the training steps had run
    config = small_config(hidden=np.int64(8), steps=np.int64(2), eval_every=np.int32(2),
                          lr=np.float32(0.01), clip_norm=np.int64(5), val_fraction=np.float64(0.1))
    assert (config.hidden, config.steps, config.lr) == (8, 2, pytest.approx(0.01))
    assert all(type(v) in (int, float, str, type(None)) for v in config.to_dict().values())
    run = train.new_run(config, TEXT, "test", tmp_path / "r")
    assert train.train(run)
    assert checkpoint.read_safetensors(tmp_path / "r" / train.STATE_FILE)[1]["step"] == 2


def test_the_defaults_are_the_ones_the_readme_gives():
    """README: LSTM, H = 128, T = 50, B = 32, Adam 3e-3, global-norm clip 5, float32, 3000
    steps, evaluated on the last 5% every 250 steps."""
    d = train.TrainConfig().validate()
    assert (d.cell, d.hidden, d.layers, d.seq_len, d.batch, d.optimizer, d.lr) == \
        ("lstm", 128, 1, 50, 32, "adam", 3e-3)
    assert (d.clip_norm, d.clip, d.dtype, d.steps, d.eval_every, d.checkpoint_every,
            d.val_fraction) == (5.0, None, "float32", 3000, 250, None, 0.05)


def test_from_dict_changes_only_the_given_settings_of_its_base():
    """What `bptt train --config FILE --hidden 8` does: the flags over the file's settings."""
    base = train.TrainConfig.from_dict({"steps": 7, "lr": 0.5})
    config = train.TrainConfig.from_dict({"hidden": 8}, base=base)
    assert (config.steps, config.lr, config.hidden) == (7, 0.5, 8)
    assert base.hidden == 128


@pytest.mark.parametrize(("bad", "message"), [
    (dict(val_fraction="0.1"), "val_fraction must be between 0 and 1, got '0.1'"),
    (dict(lr="0.1"), "lr must be a finite number > 0, got '0.1'"),
    (dict(hidden=8.0), "hidden must be an integer >= 1, got 8.0"),
    (dict(seed=np.bool_(True)), "seed must be an integer from 0 to 2^63-1"),
    # what --seed takes, as a setting of a --config file too (numpy takes any size)
    (dict(seed=2**64), "seed must be an integer from 0 to 2^63-1, got 18446744073709551616"),
    # each named: it was "hidden, layers or seq_len is …", and a batch was not refused
    (dict(seq_len=train.MAX_SEQ_LEN + 1),
     "seq_len is unreasonably large for this machine (at most 1,000,000)"),
    (dict(layers=train.MAX_LAYERS + 1), "layers is unreasonably large for this machine (at most 64)"),
    (dict(batch=10**8),
     "batch is unreasonably large for this machine (at most 65,536)"),
    # the bounds: no validation text, or no training text; not split_train_val's later error
    (dict(val_fraction=0), "val_fraction must be between 0 and 1, got 0"),
    (dict(val_fraction=1.0), "val_fraction must be between 0 and 1, got 1.0"),
    # 0 would be taken for "not given" (every eval_every steps), silently
    (dict(checkpoint_every=0), "checkpoint_every must be an integer >= 1, got 0"),
    (dict(clip=-1), "clip must be a finite number > 0, got -1"),
    (dict(clip_norm=0), "clip_norm must be a finite number > 0, got 0"),
    (dict(sample_length=-1), "sample_length must be an integer >= 0, got -1"),
    (dict(errors="ignore"), "unknown errors policy 'ignore': choose strict or replace"),
    (dict(init_from=""), "init_from must be a path, got an empty string"),
])
def test_a_setting_of_the_wrong_kind_is_one_clear_error(bad, message):
    with pytest.raises(BpttError, match=re.escape(message)):
        small_config(**bad)


def test_each_size_limit_is_itself_allowed():
    """The limits are the largest sizes taken ("at most"), the next ones refused."""
    limits = (train.MAX_HIDDEN, train.MAX_LAYERS, train.MAX_SEQ_LEN, train.MAX_BATCH)
    train.check_sizes(*limits)
    for i, name in enumerate(("hidden", "layers", "seq_len", "batch")):
        over = [*limits[:i], limits[i] + 1, *limits[i + 1:]]
        with pytest.raises(BpttError, match=f"^{name} is unreasonably large for this machine "
                                            rf"\(at most {limits[i]:,}\)$"):
            train.check_sizes(*over)


def test_a_config_number_beyond_every_float_is_refused_as_not_finite():
    """A --config file's "lr": 10**400 (an int, as JSON reads it) was an OverflowError
    traceback where the int became a float."""
    with pytest.raises(BpttError, match=re.escape(f"lr must be a finite number > 0, got {10**400}")):
        train.TrainConfig.from_dict({"lr": 10**400})


def test_a_step_carries_the_state_and_lowers_the_loss(tmp_path):
    run = train.new_run(small_config(lr=0.01), TEXT, "test", tmp_path / "r")
    first = train.train_step(run)
    assert run.step == 1 and run.state.shape == (1, 4, 16)
    for _ in range(40):
        last = train.train_step(run)
    assert last.loss < first.loss
    assert last.bpc == pytest.approx(last.loss / math.log(2))


@pytest.mark.parametrize("cell, clips", [("rnn", dict(clip_norm=0.5)),
                                         ("lstm", dict(clip=0.01, clip_norm=None)),
                                         # both: the global norm first, then each element
                                         ("gru", dict(clip=0.01, clip_norm=0.5))])
def test_train_step_is_backprop_the_clips_and_the_update_with_the_state_carried(tmp_path,
                                                                               cell, clips):
    """train_step, written out per key from the public pieces: the next chunk, BPTT from
    the state the last chunk left (none at a new epoch), the clipping asked for (here it
    changes the gradients), one optimizer update.  Fifteen steps cross an epoch."""
    text = TEXT[:500]
    config = small_config(cell=cell, lr=0.01, **clips)
    run = train.new_run(config, text, "t", tmp_path / "r")
    _, train_ids, _ = train.prepare_text(text, config)
    batches = StreamBatcher(train_ids, config.batch, config.seq_len)
    assert batches.chunks_per_epoch < 15
    params = {k: v.copy() for k, v in run.params.items()}
    optimizer = optim.make_optimizer(config.optimizer, config.lr)
    state = optimizer.init_state(params)
    carried, epochs = None, 0
    for _ in range(15):
        inputs, targets, new_epoch = batches.next_batch()
        epochs += new_epoch
        result = models.backprop(params, inputs, targets, h0=None if new_epoch else carried)
        norm = optim.global_norm(result.grads)
        if config.clip_norm is not None:
            assert norm > config.clip_norm
            optim.clip_by_global_norm(result.grads, config.clip_norm)
        if config.clip is not None:
            assert max(np.abs(g).max() for g in result.grads.values()) > config.clip
            optim.clip_by_value(result.grads, config.clip)
        optimizer.update(params, result.grads, state)
        carried = result.state
        stats = train.train_step(run)
        assert stats.loss == pytest.approx(result.loss / targets.size, rel=1e-12)
        assert stats.grad_norm == pytest.approx(norm, rel=1e-12)
        for key, value in params.items():
            np.testing.assert_allclose(run.params[key], value, rtol=1e-10, atol=1e-13)
    assert epochs == 2


def test_evaluate_is_the_mean_bits_per_character_of_the_validation_text(tmp_path):
    run = train.new_run(small_config(), TEXT, "test", tmp_path / "r")
    bpc = train.evaluate(run.params, run.val_ids, run.config)
    # one stream through the whole validation text gives the same number when it divides evenly
    ids = run.val_ids
    T = run.config.seq_len
    B = (len(ids) - 1) // T if (len(ids) - 1) // T < run.config.batch else run.config.batch
    n = (len(ids) - 1) // B // T * T
    total = 0.0
    for b in range(B):
        start = b * ((len(ids) - 1) // B)
        fwd = models.forward(run.params, ids[start:start + n, None])
        total += models.ops.cross_entropy_forward(fwd.logits, ids[start + 1:start + n + 1, None])[0]
    assert bpc == pytest.approx(total / (B * n) / math.log(2), rel=1e-10)


def _evaluate_chunk_by_chunk(params, val_ids, config) -> float:
    """evaluate's number the plain way: models.forward (validating, fresh memory) per chunk."""
    T = min(config.seq_len, len(val_ids) - 1)
    batches = StreamBatcher(val_ids, max(1, min(config.batch, (len(val_ids) - 1) // T)), T)
    total, chars, state = 0.0, 0, None
    for _ in range(batches.chunks_per_epoch):
        inputs, targets, _ = batches.next_batch()
        fwd = models.forward(params, inputs, state)
        total += models.ops.cross_entropy_forward(fwd.logits, targets)[0]
        chars, state = chars + targets.size, fwd.state
    return total / chars / math.log(2)


@pytest.mark.parametrize("cell, layers", [("lstm", 1), ("gru", 2), ("rnn", 2)])
def test_evaluate_gives_the_plain_forward_passes_bits_and_sees_weights_changed_in_place(
        tmp_path, cell, layers):
    """evaluate shares memory between its chunks (and what the cells make of the weights):
    the number is bit for bit that of a fresh forward pass per chunk, and an evaluation after
    the training step changed the weights in place (as the fast path does) sees the new ones."""
    run = train.new_run(small_config(cell=cell, layers=layers, batch=3), TEXT, "test",
                        tmp_path / "r")
    before = train.evaluate(run.params, run.val_ids, run.config)
    assert before == _evaluate_chunk_by_chunk(run.params, run.val_ids, run.config)
    for _ in range(3):
        train.train_step(run)  # (updates the weights in place, in the fast path's buffer)
    after = train.evaluate(run.params, run.val_ids, run.config)
    assert after == _evaluate_chunk_by_chunk(run.params, run.val_ids, run.config) != before


def test_evaluate_scores_a_validation_text_shorter_than_a_sequence_whole(tmp_path):
    """8 validation characters and seq_len 10: one stream of 7 steps predicts characters 1 … 7
    from 0 … 6 (the whole text; not a DataError at the first evaluation, after training)."""
    run = train.new_run(small_config(val_fraction=0.001), TEXT, "test", tmp_path / "r")
    ids = run.val_ids
    assert len(ids) == 8 < run.config.seq_len
    fwd = models.forward(run.params, ids[:-1, None])
    nats = models.ops.cross_entropy_forward(fwd.logits, ids[1:, None])[0]
    assert train.evaluate(run.params, ids, run.config) == pytest.approx(nats / 7 / math.log(2),
                                                                       rel=1e-12)


def test_evaluate_reads_as_many_streams_as_a_short_validation_text_holds(tmp_path):
    """35 validation characters, seq_len 10, batch 4: three streams of 11 positions (34 // 3),
    each scoring one chunk of 10 (all the streams of 10 the text holds; not fewer)."""
    run = train.new_run(small_config(), TEXT, "test", tmp_path / "r")
    ids = run.val_ids[:35]
    total = 0.0
    for b in range(3):
        fwd = models.forward(run.params, ids[11 * b:11 * b + 10, None])
        total += models.ops.cross_entropy_forward(fwd.logits, ids[11 * b + 1:11 * b + 11, None])[0]
    assert train.evaluate(run.params, ids, run.config) == pytest.approx(
        total / 30 / math.log(2), rel=1e-12)


def test_evaluate_scores_the_validation_text_up_to_eval_max_chars(tmp_path, monkeypatch):
    """What --val-fraction's help and docs/corpora.md say: at most the first EVAL_MAX_CHARS."""
    run = train.new_run(small_config(), TEXT * 4, "test", tmp_path / "r")
    cap = len(run.val_ids) // 2
    whole = train.evaluate(run.params, run.val_ids, run.config)
    monkeypatch.setattr(train, "EVAL_MAX_CHARS", cap)
    assert train.evaluate(run.params, run.val_ids, run.config) == train.evaluate(
        run.params, run.val_ids[:cap], run.config) != whole


def test_divergence_stops_keeps_the_last_good_checkpoint_and_never_saves_nan(tmp_path, monkeypatch):
    run = train.new_run(small_config(steps=10, eval_every=2), TEXT, "test", tmp_path / "r")
    real = models.backprop
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        result = real(*args, **kwargs)
        if calls["n"] == 5:
            result.grads["Whh"][0, 0] = np.nan
        return result

    monkeypatch.setattr(models, "backprop", poisoned)
    with pytest.raises(train.DivergedError, match="diverged at step 5"):
        train.train(run)
    saved = checkpoint.load_model(tmp_path / "r")
    assert saved.step == 4
    assert all(np.isfinite(v).all() for v in saved.params.values())


@pytest.mark.parametrize("every", [None, 1])
def test_an_update_that_overflows_a_weight_at_an_evaluation_is_divergence(tmp_path, monkeypatch,
                                                                          every):
    """The step's loss and gradients were finite, its update made a weight inf: at the step's
    evaluation (and its checkpoint), DivergedError of that step (not the forward's error about
    a user's bad parameters), and the checkpoint before it is kept."""
    out = tmp_path / "r"
    run = train.new_run(small_config(steps=6, eval_every=2, checkpoint_every=every), TEXT, "t",
                        out)
    real_step = train.train_step

    def overflowing(run):
        stats = real_step(run)
        if run.step == 4:
            run.params["Why"][0, 0] = np.inf
        return stats

    monkeypatch.setattr(train, "train_step", overflowing)
    with pytest.raises(train.DivergedError, match="diverged at step 4"):
        train.train(run)
    assert checkpoint.load_model(out).step == (3 if every else 2)
    assert checkpoint.read_safetensors(out / train.STATE_FILE)[1]["step"] == (3 if every else 2)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_learning_rate_that_blows_up_ends_in_one_diverged_error_without_warnings(tmp_path,
                                                                                    optimizer):
    config = small_config(cell="lstm", dtype="float32", steps=30, eval_every=100, lr=1e38,
                          optimizer=optimizer)
    run = train.new_run(config, TEXT, "test", tmp_path / "r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would fail the test
        with pytest.raises(train.DivergedError, match="diverged at step"):
            for _ in range(30):
                train.train_step(run)


def test_should_stop_saves_the_last_completed_step(tmp_path):
    run = train.new_run(small_config(steps=50, eval_every=100), TEXT, "test", tmp_path / "r")
    asked = iter([False, False, False, True])
    events = []
    assert train.train(run, events.append, should_stop=lambda: next(asked)) is False
    assert [(e.kind, e.step) for e in events] == [("step", 1), ("step", 2), ("step", 3),
                                                  ("checkpoint", 3)]
    resumed = train.resume_run(tmp_path / "r", TEXT)
    assert resumed.step == 3
    for key in run.params:
        assert np.array_equal(run.params[key], resumed.params[key])
    # and everything else a resume goes on from: the optimizer's moments and counter, the
    # carried state, the batch position, the random generator
    for slot, values in run.opt_state.items():
        for key, value in values.items():
            assert np.array_equal(resumed.opt_state[slot][key], value), (slot, key)
    assert np.array_equal(resumed.state, run.state)
    assert resumed.batches.state_dict() == run.batches.state_dict()
    assert resumed.rng.bit_generator.state == run.rng.bit_generator.state


def test_resume_refuses_another_text(tmp_path):
    run = train.new_run(small_config(), TEXT, "test", tmp_path / "r")
    train.train(run)
    with pytest.raises(ValueError, match="resume with the same text"):
        train.resume_run(tmp_path / "r", ("a" if TEXT[0] != "a" else "b") + TEXT[1:])
    # the same length and training part, another validation part: its numbers would not be
    # those of the run
    other_tail = TEXT[:-5] + ("a" if TEXT[-5] != "a" else "b") + TEXT[-4:]
    with pytest.raises(ValueError, match=r"resume with the same text: its validation part"):
        train.resume_run(tmp_path / "r", other_tail, steps=7)
    assert train.resume_run(tmp_path / "r", TEXT, steps=7).step == 6


def test_lstm_state_is_carried_and_checkpointed(tmp_path):
    run = train.new_run(small_config(cell="lstm", steps=2, eval_every=1), TEXT, "t", tmp_path / "r")
    train.train(run)
    resumed = train.resume_run(tmp_path / "r", TEXT)
    assert isinstance(resumed.state, tuple) and len(resumed.state) == 2
    np.testing.assert_array_equal(resumed.state[1], run.state[1])


def test_free_out_dir_skips_every_directory_that_holds_a_checkpoint(tmp_path):
    base = tmp_path / "runs" / "train"
    assert train.free_out_dir(base) == base
    base.mkdir(parents=True)
    assert train.free_out_dir(base) == base  # an empty directory is free
    (base / "model.safetensors").write_bytes(b"")
    second = tmp_path / "runs" / "train-2"
    second.mkdir()
    (second / train.STATE_FILE).write_bytes(b"")  # a kill after the first train state
    assert train.free_out_dir(base) == tmp_path / "runs" / "train-3"
    with pytest.raises(BpttError, match=re.escape(
            f"{second} already holds a checkpoint; continue it with --resume {second} or "
            "choose another --out")):
        train.check_fresh_out(second)


def test_an_out_that_is_a_file_or_under_one_is_named_as_such(tmp_path):
    """--out at a file said "cannot create the output directory X: File exists"."""
    blocker = tmp_path / "one.txt"
    blocker.write_text("keep")
    with pytest.raises(BpttError, match=re.escape(
            f"the output directory {blocker} is a file; choose another --out")):
        train.make_out_dir(blocker)
    with pytest.raises(BpttError, match=re.escape(
            f"cannot create the output directory {blocker / 'run'}: Not a directory; choose "
            "another --out")):
        train.make_out_dir(blocker / "run")
    assert blocker.read_text() == "keep"
    too_long = tmp_path / ("a" * 300)
    with pytest.raises(BpttError, match=re.escape(
            f"cannot create the output directory {too_long}: File name too long; choose "
            "another --out")):
        train.make_out_dir(too_long)


def test_a_checkpoint_removes_the_temporaries_a_killed_write_left(tmp_path):
    """A run SIGKILLed in its first checkpoint's write leaves only a temporary (no run file:
    the directory is free); the next run there removes it at its checkpoint, and only the
    temporaries of a run's files."""
    out = tmp_path / "r"
    out.mkdir()
    left = [out / f"{checkpoint.TEMP_PREFIX}{train.STATE_FILE}.0123456789ab",
            out / f"{checkpoint.TEMP_PREFIX}{train.METRICS_FILE}"]
    theirs = out / f"{checkpoint.TEMP_PREFIX}notes.txt"
    for file in [*left, theirs]:
        file.write_bytes(b"partial")
    assert train.free_out_dir(out) == out
    run = train.new_run(small_config(steps=2, eval_every=2), TEXT, "t", out)
    assert train.train(run)
    assert not any(file.exists() for file in left) and theirs.exists()


def test_free_out_dir_skips_a_file_of_the_same_name(tmp_path):
    base = tmp_path / "runs" / "train"
    base.parent.mkdir()
    base.write_text("not a run")
    assert train.free_out_dir(base) == tmp_path / "runs" / "train-2"


def test_a_fixed_vocabulary_without_the_unknown_character_token_is_refused():
    """--unk names a character of the vocabulary: a fixed one (a model's) without it is one
    clear DataError, even for a text it covers whole (the token would never be read)."""
    vocab = Vocab.from_list(sorted(set(TEXT)))
    assert "~" not in vocab.chars
    with pytest.raises(DataError, match=re.escape(
            "the unknown-character token '~' is not in the vocabulary; use the --unk character "
            "the model was trained with (or none).")):
        train.prepare_text(TEXT, small_config(unk="~"), vocab)


def test_an_encoded_corpus_of_another_vocabulary_is_refused(tmp_path):
    """The ids of a cached corpus index its own vocabulary: with a model's other one they
    would be read as other characters, silently."""
    from bptt.corpus import encode_files

    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    encoded = encode_files([path], tmp_path / "cache")
    other = Vocab.from_list([*sorted(set(TEXT)), "~"])
    with pytest.raises(DataError, match="the encoded corpus has another vocabulary than the "
                                        "model; encode it with the model's vocabulary"):
        train.prepare_text(encoded, small_config(), other)
    vocab, train_ids, val_ids = train.prepare_text(encoded, small_config(), encoded.vocab)
    assert vocab == encoded.vocab and len(train_ids) + len(val_ids) == len(TEXT)


def test_an_empty_cache_dir_is_refused():
    with pytest.raises(BpttError, match="cache_dir must be a path, got an empty string"):
        small_config(cache_dir="")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run on text stopped at step 5, in the middle of its second evaluation interval."""
    out = tmp_path_factory.mktemp("saved") / "run"
    run = train.new_run(small_config(cell="lstm", steps=9, eval_every=3), TEXT, "t", out)
    asked = iter([False] * 5 + [True])
    assert not train.train(run, should_stop=lambda: next(asked))
    return out


def _damage(saved_run, tmp_path, change):
    """A copy of ``saved_run`` whose train state's (tensors, metadata) ``change`` edited."""
    out = tmp_path / "damaged"
    shutil.copytree(saved_run, out)
    tensors, meta = checkpoint.read_safetensors(out / train.STATE_FILE)
    change(tensors, meta)
    checkpoint.write_safetensors_atomic(out / train.STATE_FILE, tensors, meta)
    return out


def _set(key, value):
    return lambda tensors, meta: meta.__setitem__(key, value)


DAMAGED_TEXT_STATES = {
    "history-not-a-list": (_set("history", "x"), "its history must be a list of rows"),
    "history-row-of-strings": (_set("history", [{"step": "a"}]),
                               "history row 0 must have exactly the columns step, train_bpc"),
    "history-value-not-a-number": (
        lambda t, m: m["history"][0].__setitem__("val_bpc", "low"),
        "history row 0 has a val_bpc that is not a number: 'low'"),
    "history-after-the-step": (lambda t, m: m["history"][0].__setitem__("step", 6),
                               "history row 0 is at step 6"),
    "history-steps-repeated": (lambda t, m: m["history"].append(dict(m["history"][0])),
                               "history row 1 is at step 3; the rows' steps must be integers "
                               "that increase, from 1 to the run's step 5"),
    "history-row-with-another-column": (
        lambda t, m: m["history"][0].__setitem__("loss", 1.0),
        "history row 0 must have exactly the columns step, train_bpc, val_bpc, chars_per_sec"),
    "data-not-an-object": (_set("data", [1]),
                           "its 'data' must be an object and its 'corpus' a string"),
    "corpus-not-a-string": (_set("corpus", 5),
                            "its 'data' must be an object and its 'corpus' a string"),
    "corpus-files-not-paths": (_set("corpus_files", [1]),
                               "its 'corpus_files' must be a list of paths"),
    "step-negative": (_set("step", -5), "its step must be an integer >= 0, got -5"),
    "step-a-string": (_set("step", "5"), "its step must be an integer >= 0, got '5'"),
    "step-not-the-optimizer's": (_set("step", 6),
                                 "the optimizer's step counter is 5 but the run is at step 6"),
    "optimizer-counter-negative": (
        lambda t, m: t.__setitem__("opt.step.t", np.array(-1)),
        "the optimizer's step counter 'step.t' must be an integer >= 0, got -1"),
    "optimizer-counter-a-float": (
        lambda t, m: t.__setitem__("opt.step.t", np.array(5.0)),
        "the optimizer's step counter 'step.t' must be an integer >= 0, got 5.0"),
    "hidden-not-the-weights'": (lambda t, m: m["config"].__setitem__("hidden", 17),
                                "its settings say hidden size 17 but its weights have 16"),
    "dtype-not-the-weights'": (lambda t, m: m["config"].__setitem__("dtype", "float32"),
                               "its settings say dtype float32 but its weights have float64"),
    "vocabulary-not-the-weights'": (lambda t, m: m.__setitem__("vocab", m["vocab"][:-1]),
                                    "its settings say inputs (the vocabulary)"),
    "batch-position-huge": (lambda t, m: m["data"].__setitem__("position", 10**30),
                            "the batch position is 1000000000000000000000000000000 but the run "
                            "is at step 5"),
    "carry-of-another-shape": (lambda t, m: t.__setitem__("carry.1", t["carry.1"][:, :2]),
                               "its carried hidden state must be 2 finite float64 array(s)"),
    "carry-of-another-dtype": (
        lambda t, m: t.__setitem__("carry.1", t["carry.1"].astype(np.float32)),
        "its carried hidden state must be 2 finite float64 array(s)"),
    # a run past its first step carries a state: none would restart it from zeros, silently
    "carry-missing": (lambda t, m: [t.pop("carry.0"), t.pop("carry.1")],
                      "its carried hidden state must be 2 finite float64 array(s) of shape "
                      "(L, B, H) = (1, 4, 16)"),
    "carry-not-finite": (lambda t, m: t["carry.0"].__setitem__((0, 0, 0), np.nan),
                         "its carried hidden state must be 2 finite float64 array(s)"),
    "rng-out-of-range": (lambda t, m: m["rng"]["state"].__setitem__("state", -1),
                         "the saved random generator state is invalid"),
    "interval-not-numbers": (_set("interval_losses", ["x"]),
                             "its interval_losses must be a list of finite numbers"),
    "interval-not-finite": (_set("interval_losses", [1.0, float("inf")]),
                            "its interval_losses must be a list of finite numbers"),
    "interval-longer-than-the-steps": (
        _set("interval_losses", [1.0] * 3),
        "it holds 3 interval losses but only 2 steps were trained since the last evaluation"),
}


@pytest.mark.parametrize("change, message", DAMAGED_TEXT_STATES.values(),
                         ids=DAMAGED_TEXT_STATES.keys())
def test_a_damaged_train_state_is_refused_before_anything_is_trained(saved_run, tmp_path,
                                                                      change, message):
    out = _damage(saved_run, tmp_path, change)
    with pytest.raises(CheckpointError) as caught:
        train.resume_run(out, TEXT)
    assert str(caught.value).startswith(f"{out / train.STATE_FILE} is damaged")
    assert message in str(caught.value)


def test_the_saved_run_itself_resumes(saved_run, tmp_path):
    run = train.resume_run(_damage(saved_run, tmp_path, lambda t, m: None), TEXT)
    assert run.step == 5 and len(run.interval_losses) == 2 and len(run.history) == 1


def test_metrics_after_a_stop_mid_interval_are_those_of_a_run_never_stopped(tmp_path):
    config = small_config(steps=9, eval_every=4)
    straight = train.new_run(config, TEXT, "t", tmp_path / "straight")
    assert train.train(straight)
    stopped = train.new_run(config, TEXT, "t", tmp_path / "stopped")
    asked = iter([False] * 6 + [True])
    assert not train.train(stopped, should_stop=lambda: next(asked))
    resumed = train.resume_run(tmp_path / "stopped", TEXT)
    assert resumed.interval_losses == stopped.interval_losses and len(stopped.interval_losses) == 2
    assert train.train(resumed)

    def without_speed(directory):
        lines = (directory / train.METRICS_FILE).read_text().splitlines()
        return [line.rsplit(",", 1)[0] for line in lines]

    assert [row["step"] for row in resumed.history] == [4, 8, 9]
    assert without_speed(tmp_path / "stopped") == without_speed(tmp_path / "straight")


def test_going_on_past_an_end_off_the_eval_schedule_gives_the_metrics_of_one_run(tmp_path):
    # a run evaluates its last step (9, not a multiple of 4); continued to 12 steps, that row
    # must go and steps 9 … 12 must still be one interval, as in a run never stopped at 9
    straight = train.new_run(small_config(steps=12, eval_every=4), TEXT, "t", tmp_path / "a")
    assert train.train(straight)
    first = train.new_run(small_config(steps=9, eval_every=4), TEXT, "t", tmp_path / "b")
    assert train.train(first)
    assert [row["step"] for row in first.history] == [4, 8, 9] and len(first.interval_losses) == 1
    assert (tmp_path / "b" / "loss.png").exists()
    again = train.resume_run(tmp_path / "b", TEXT)  # opened at its end: the row stays
    assert [row["step"] for row in again.history] == [4, 8, 9]
    longer = train.resume_run(tmp_path / "b", TEXT, steps=12)
    assert [row["step"] for row in longer.history] == [4, 8]
    assert train.train(longer)
    lines = {d: (tmp_path / d / train.METRICS_FILE).read_text().splitlines() for d in "ab"}
    assert [line.rsplit(",", 1)[0] for line in lines["b"]] == \
        [line.rsplit(",", 1)[0] for line in lines["a"]]
    for key in straight.params:
        assert np.array_equal(straight.params[key], longer.params[key])


def test_a_row_on_the_old_schedule_survives_a_stop_under_a_new_eval_every(tmp_path):
    # a run ends at step 8 on its schedule (eval_every 4); resumed with --eval-every 3 and
    # stopped before its first step, it saves eval_every 3 with the row of step 8 last: that
    # row is no evaluation of an end off the schedule, and going on must keep it
    out = tmp_path / "run"
    assert train.train(train.new_run(small_config(steps=8, eval_every=4), TEXT, "t", out))
    resumed = train.resume_run(out, TEXT, steps=12, eval_every=3)
    assert not train.train(resumed, should_stop=lambda: True)
    again = train.resume_run(out, TEXT)
    assert [row["step"] for row in again.history] == [4, 8] and again.interval_losses == []
    assert train.train(again)
    assert [row["step"] for row in again.history] == [4, 8, 9, 12]


def _cut_short_at_its_end(config, out, monkeypatch) -> train.Run:
    """A run killed at its last checkpoint between the train state's write and the model's."""
    run = train.new_run(config, TEXT, "t", out)
    save_model = checkpoint.save_model

    def killed_at_the_end(directory, params, vocab, settings, step):
        if step == config.steps:
            raise KeyboardInterrupt  # (a SIGKILL there: nothing after the train state)
        return save_model(directory, params, vocab, settings, step)

    monkeypatch.setattr(checkpoint, "save_model", killed_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        train.train(run)
    monkeypatch.setattr(checkpoint, "save_model", save_model)
    return run


def test_a_checkpoint_cut_short_at_the_end_is_completed_from_the_train_state(tmp_path,
                                                                            monkeypatch):
    # the train state is at the end, so a resume trains nothing and no later checkpoint comes:
    # the model of step 3 and a metrics.csv without the row of step 6 would stay
    config = small_config(steps=6, eval_every=3)
    assert train.train(train.new_run(config, TEXT, "t", tmp_path / "straight"))
    run = _cut_short_at_its_end(config, tmp_path / "cut", monkeypatch)
    stale = [checkpoint.MODEL_FILE, train.METRICS_FILE]
    assert train.stale_files(tmp_path / "cut", 6, run.history) == stale
    assert train.complete_checkpoint(tmp_path / "cut") == stale
    files = {d: [(tmp_path / d / name).read_bytes() for name in stale] for d in ("straight", "cut")}
    assert files["cut"][0] == files["straight"][0]  # the model, byte for byte

    def without_speed(lines: bytes) -> list[str]:
        return [line.rsplit(",", 1)[0] for line in lines.decode().splitlines()]

    assert without_speed(files["cut"][1]) == without_speed(files["straight"][1])
    assert train.complete_checkpoint(tmp_path / "cut") == []


def test_complete_checkpoint_writes_a_model_and_a_metrics_csv_that_are_not_there(tmp_path):
    # a kill at the run's first checkpoint, after the train state: no model.safetensors yet,
    # and (stopped before the first evaluation) an empty history whose metrics.csv is missing
    out = tmp_path / "run"
    run = train.new_run(small_config(steps=6, eval_every=4), TEXT, "t", out)
    assert not train.train(run, should_stop=lambda: run.step >= 2)
    assert run.history == []
    (out / checkpoint.MODEL_FILE).unlink()
    (out / train.METRICS_FILE).unlink()
    stale = [checkpoint.MODEL_FILE, train.METRICS_FILE]
    assert train.stale_files(out, 2, []) == stale
    assert train.complete_checkpoint(out) == stale
    assert checkpoint.load_model(out / checkpoint.MODEL_FILE).step == 2
    assert (out / train.METRICS_FILE).read_text().splitlines() == [",".join(train.HISTORY_COLUMNS)]
    assert train.complete_checkpoint(out) == []


@pytest.fixture(scope="module")
def ended_off_schedule(tmp_path_factory):
    """A run that ended at step 6 with eval_every 4: rows 4 and 6, the loss of step 6 kept."""
    out = tmp_path_factory.mktemp("ended") / "run"
    assert train.train(train.new_run(small_config(steps=6, eval_every=4), TEXT, "t", out))
    return out


def test_an_older_train_state_without_interval_losses_goes_on_without_its_off_schedule_row(
        ended_off_schedule, tmp_path):
    # (a train state of before the interval losses were saved: the row of an end off the
    # schedule is told by eval_every)
    out = _damage(ended_off_schedule, tmp_path, lambda t, m: m.pop("interval_losses"))
    assert [row["step"] for row in train.resume_run(out, TEXT).history] == [4, 6]
    longer = train.resume_run(out, TEXT, steps=8)
    assert [row["step"] for row in longer.history] == [4] and longer.interval_losses == []


def test_an_older_train_state_without_interval_losses_that_ended_on_its_schedule_keeps_its_row(
        tmp_path):
    # (its last row, step 8 with eval_every 4, is an evaluation on the schedule: going on
    # keeps it, and the next interval starts after it)
    out = tmp_path / "run"
    assert train.train(train.new_run(small_config(steps=8, eval_every=4), TEXT, "t", out))
    old = _damage(out, tmp_path, lambda t, m: m.pop("interval_losses"))
    longer = train.resume_run(old, TEXT, steps=10)
    assert [row["step"] for row in longer.history] == [4, 8] and longer.interval_losses == []


@pytest.mark.parametrize("losses", [0, {}, ""])
def test_interval_losses_that_are_no_list_are_refused_after_an_end_off_the_schedule(
        ended_off_schedule, tmp_path, losses):
    out = _damage(ended_off_schedule, tmp_path, _set("interval_losses", losses))
    with pytest.raises(CheckpointError, match="its interval_losses must be a list of finite"):
        train.resume_run(out, TEXT)


def test_a_resume_checks_the_validation_text_an_evaluation_scores_not_past_it(tmp_path,
                                                                             monkeypatch):
    # the fingerprint covers the first EVAL_MAX_CHARS validation ids, what is scored: a text
    # differing only past them gives the run's numbers (and a huge one is not read whole)
    monkeypatch.setattr(train, "EVAL_MAX_CHARS", 20)
    run = train.new_run(small_config(steps=2, eval_every=2), TEXT, "t", tmp_path / "r")
    assert train.train(run)
    assert len(run.val_ids) > 25
    changed = "a" if TEXT[-2] != "a" else "b"
    assert train.resume_run(tmp_path / "r", TEXT[:-2] + changed + TEXT[-1]).step == 2
    scored = len(TEXT) - len(run.val_ids) + 5  # a character the evaluation reads
    with pytest.raises(ValueError, match="its validation part"):
        train.resume_run(tmp_path / "r", TEXT[:scored] + changed + TEXT[scored + 1:])


def test_a_stop_draws_loss_png_from_the_history_it_saves(tmp_path, monkeypatch):
    # a run ends at step 6 (rows 4 and 6, off the schedule) and draws them; continued to 12
    # and stopped at 9, its metrics.csv has rows 4 and 8: loss.png must not keep row 6
    out = tmp_path / "run"
    assert train.train(train.new_run(small_config(steps=6, eval_every=4), TEXT, "t", out))
    drawn = []
    write_plot = train.write_plot
    monkeypatch.setattr(train, "write_plot",
                        lambda run: drawn.append([r["step"] for r in run.history]) or
                        write_plot(run))
    longer = train.resume_run(out, TEXT, steps=12)
    assert not train.train(longer, should_stop=lambda: longer.step >= 9)
    assert drawn == [[4, 8]] and (out / train.PLOT_FILE).exists()
    stopped = train.new_run(small_config(steps=6, eval_every=4), TEXT, "t", tmp_path / "new")
    assert not train.train(stopped, should_stop=lambda: stopped.step >= 2)
    assert drawn == [[4, 8]]  # nothing to draw before the first evaluation


def test_a_train_state_without_interval_losses_resumes_with_an_empty_interval(saved_run,
                                                                             tmp_path):
    out = _damage(saved_run, tmp_path, lambda t, m: m.pop("interval_losses"))
    assert train.resume_run(out, TEXT).interval_losses == []


def test_no_samples_are_made_when_the_sample_length_is_0(tmp_path, monkeypatch):
    run = train.new_run(small_config(steps=2, eval_every=1, sample_length=50), TEXT, "t",
                        tmp_path / "r")

    def refuse(*args, **kwargs):
        raise AssertionError("sampled although nothing shows the samples")

    monkeypatch.setattr(train, "sample_text", refuse)
    events = []
    assert train.train(run, events.append, sample_length=0)
    evals = [e for e in events if e.kind == "eval"]
    assert len(evals) == 2 and all(e.sample is None for e in evals)
    assert run.config.sample_length == 50  # the saved settings keep the run's own


def _run_to(out, steps: int, seed: int = 0) -> None:
    run = train.new_run(small_config(steps=steps, eval_every=2, seed=seed), TEXT, "t", out)
    assert train.train(run)


def test_a_resume_keeps_a_model_that_is_not_the_runs_own(tmp_path):
    """The run rewrites DIR/model.safetensors at its next checkpoint: a model put there from
    elsewhere (another run's, even of the same shapes and step) is refused, unchanged; the
    model of an earlier checkpoint of the same run (a kill between the train state's write
    and the model's) is the run's own."""
    _run_to(tmp_path / "run", 4)
    _run_to(tmp_path / "other", 4, seed=1)  # the same shapes and step, other weights
    _run_to(tmp_path / "earlier", 2)  # the run's own model at step 2 (the same seed)
    model = tmp_path / "run" / checkpoint.MODEL_FILE
    for source in ("other", "earlier"):
        shutil.copy(tmp_path / source / checkpoint.MODEL_FILE, model)
        if source == "other":
            before = model.read_bytes()
            with pytest.raises(CheckpointError, match="is not the model of the run whose train "
                               r"state is beside it \(step 4\); the run would overwrite it"):
                train.resume_run(tmp_path / "run", TEXT)
            assert model.read_bytes() == before
        else:
            assert train.resume_run(tmp_path / "run", TEXT).step == 4
    model.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="The run would overwrite it; move it away"):
        train.resume_run(tmp_path / "run", TEXT)
    model.unlink()
    assert train.resume_run(tmp_path / "run", TEXT).step == 4


@pytest.mark.parametrize("name", ["steps", "eval_every"])
def test_a_resume_refuses_a_new_steps_or_eval_every_of_0(saved_run, tmp_path, name):
    # 0 was taken for "not given" (None) and the saved value kept; -1 was refused
    out = _damage(saved_run, tmp_path, lambda t, m: None)
    for bad in (0, -1):
        with pytest.raises(BpttError, match=f"{name} must be an integer >= 1, got {bad}"):
            train.resume_run(out, TEXT, **{name: bad})


def test_chars_per_sec_counts_every_stream_and_metrics_csv_holds_the_history(tmp_path,
                                                                             monkeypatch):
    """A step reads seq_len characters of each of the batch's streams: under a clock that
    moves 2 s per step, T·B / 2 characters per second; metrics.csv holds the history's
    numbers to the precision it is written with (bpc: 6 decimals, speed: 1)."""
    ticks = iter(range(1000, 2000, 2))  # (a clock's time is since some moment, not the run's start)
    monkeypatch.setattr(train, "time", type("Clock", (), {"perf_counter": lambda: next(ticks)}))
    config = small_config(steps=6, eval_every=3)
    run = train.new_run(config, TEXT, "t", tmp_path / "r")
    events = []
    assert train.train(run, events.append)
    speeds = [e.chars_per_sec for e in events if e.kind == "step"]
    assert speeds == [config.seq_len * config.batch / 2] * 6
    with (tmp_path / "r" / train.METRICS_FILE).open(encoding="utf-8", newline="") as lines:
        rows = list(csv.DictReader(lines))
    assert [int(row["step"]) for row in rows] == [3, 6]
    for row, saved in zip(rows, run.history, strict=True):
        assert float(row["chars_per_sec"]) == saved["chars_per_sec"] == 20.0
        for key in ("train_bpc", "val_bpc"):
            assert float(row[key]) == pytest.approx(saved[key], abs=5e-7)


def test_a_history_row_is_the_mean_training_bpc_of_its_interval_and_the_evaluation_of_its_step(
        tmp_path):
    """Row s: train_bpc the mean of the bits per character of the steps since the last row on
    the schedule (an end off it, 7, is the mean of its own interval: step 7 alone), val_bpc
    the evaluation of the weights after step s; metrics.csv holds the rows."""
    run = train.new_run(small_config(steps=7, eval_every=3), TEXT, "t", tmp_path / "r")
    step_bpc, evaluated = {}, {}

    def on_event(event):
        if event.kind == "step":
            step_bpc[event.step] = event.stats.bpc
        elif event.kind == "eval":
            evaluated[event.step] = (event.val_bpc,
                                     train.evaluate(run.params, run.val_ids, run.config))

    assert train.train(run, on_event)
    assert [row["step"] for row in run.history] == [3, 6, 7]
    for row, steps in zip(run.history, ([1, 2, 3], [4, 5, 6], [7]), strict=True):
        assert row["train_bpc"] == float(np.mean([step_bpc[s] for s in steps]))
        assert row["val_bpc"] == evaluated[row["step"]][0] == evaluated[row["step"]][1]
    assert step_bpc[7] != step_bpc[6]


def test_checkpoints_are_written_every_checkpoint_every_steps_and_at_the_end(tmp_path,
                                                                            monkeypatch):
    """checkpoint_every: a checkpoint each multiple of it (not of eval_every) and at the last
    step; without it, each multiple of eval_every and the last step."""
    saved = []
    save = train.save
    monkeypatch.setattr(train, "save", lambda run: saved.append(run.step) or save(run))
    for every, expected in ((2, [2, 4, 5]), (None, [4, 5])):
        saved.clear()
        out = tmp_path / f"every-{every}"
        run = train.new_run(small_config(steps=5, eval_every=4, checkpoint_every=every), TEXT,
                            "t", out)
        events = []
        assert train.train(run, events.append)
        assert saved == [e.step for e in events if e.kind == "checkpoint"] == expected
        assert [e.step for e in events if e.kind == "eval"] == [4, 5]
        assert checkpoint.read_safetensors(out / train.STATE_FILE)[1]["step"] == 5
        assert (events[-1].kind, events[-1].step) == ("done", 5)


def test_an_evaluation_samples_at_the_runs_temperature_from_a_generator_of_its_step(tmp_path):
    """The sample shown at step s is sample_text at config.temperature with the generator
    seeded [seed, s] (the same, whenever the run was resumed)."""
    config = small_config(steps=4, eval_every=2, sample_length=60, temperature=0.3, seed=7)
    run = train.new_run(config, TEXT, "t", tmp_path / "r")
    samples = {}

    def on_event(event):
        if event.kind == "eval":
            samples[event.step] = (event.sample, {k: v.copy() for k, v in run.params.items()})

    assert train.train(run, on_event)
    assert sorted(samples) == [2, 4]
    for step, (shown, params) in samples.items():
        expected = sample_text(params, run.vocab.chars, 60, 0.3,
                               rng=np.random.default_rng([7, step]))
        assert shown == expected and len(shown) == 60


@pytest.fixture(scope="module")
def float32_model(tmp_path_factory):
    """The directory of a finished 2-step run (float32, unk '~'), a model to fine-tune."""
    out = tmp_path_factory.mktemp("base") / "run"
    config = small_config(steps=2, eval_every=2, dtype="float32", unk="~")
    assert train.train(train.new_run(config, TEXT, "t", out))
    return out


def test_fine_tuning_casts_the_weights_to_the_runs_dtype_and_resumes(float32_model, tmp_path):
    init = checkpoint.load_model(float32_model)
    config = small_config(steps=2, eval_every=2, unk="~")  # float64
    run = train.new_run(config, TEXT, "t", tmp_path / "tuned", init=init)
    assert all(p.dtype == np.float64 for p in run.params.values())
    for key, value in init.params.items():
        np.testing.assert_array_equal(run.params[key], value.astype(np.float64))
    assert train.train(run)
    assert train.resume_run(tmp_path / "tuned", TEXT, steps=3).step == 2


def test_fine_tuning_refuses_a_model_without_a_vocabulary(float32_model, tmp_path):
    """A model of a task (or an import without vocab) reads no characters: one clear error."""
    init = checkpoint.load_model(float32_model)
    init.vocab = None
    with pytest.raises(CheckpointError, match=re.escape(
            "the model to fine-tune has no vocabulary; it is not a character model, so it "
            "cannot be fine-tuned on text.")):
        train.new_run(small_config(unk="~"), TEXT, "t", tmp_path / "tuned", init=init)
    assert not (tmp_path / "tuned").exists()


@pytest.mark.parametrize("change, message", [
    (dict(hidden=8), "the model to fine-tune has hidden=16 but the settings say hidden=8; "
                     "the model's shape comes from --init-from, so leave out --hidden."),
    (dict(cell="gru"), "the model to fine-tune has cell=rnn but the settings say cell=gru"),
    (dict(unk=None), "the model to fine-tune has the unknown-character token '~' but the "
                     "settings say unk=None"),
])
def test_fine_tuning_refuses_settings_that_are_not_the_models(float32_model, tmp_path, change,
                                                              message):
    init = checkpoint.load_model(float32_model)
    config = small_config(**({"unk": "~"} | change))
    with pytest.raises(BpttError, match=re.escape(message)):
        train.new_run(config, TEXT, "t", tmp_path / "tuned", init=init)
    assert not (tmp_path / "tuned").exists()


def test_loss_png_names_a_corpus_of_thousands_of_files_in_one_short_title(tmp_path, monkeypatch):
    # the title held every path: 3,000 files took matplotlib ~5 s to lay out at each checkpoint
    from matplotlib.axes import Axes

    titles = []
    set_title = Axes.set_title
    monkeypatch.setattr(Axes, "set_title",
                        lambda ax, label, *a, **k: titles.append(label) or set_title(ax, label))
    files = [f"data/part-{i:05d}.txt" for i in range(3000)]
    run = train.new_run(small_config(steps=2, eval_every=2), TEXT, " + ".join(files),
                        tmp_path / "r", files=files)
    assert train.train(run)
    assert titles == ["rnn, H=16, L=1: data/part-00000.txt + 2,999 more files"]
    run.corpus, run.files = "d/" + "x" * 200 + ".txt", ("d/" + "x" * 200 + ".txt",)
    one = train.plot_corpus_name(run)
    assert len(one) == train.PLOT_CORPUS_CHARS and one.startswith("d/xx") and one[-1] == "…"
    run.corpus, run.files = "a.txt + b.txt", ("a.txt", "b.txt")
    assert train.plot_corpus_name(run) == "a.txt + b.txt"
    # a name of PLOT_CORPUS_CHARS is kept whole, of one file or of several
    for files in (("c/" + "y" * 78,), ("c/" + "y" * 36, "e/" + "z" * 37)):
        run.corpus, run.files = " + ".join(files), files
        assert len(run.corpus) == train.PLOT_CORPUS_CHARS
        assert train.plot_corpus_name(run) == run.corpus
    # the first of many files printable too (a byte that is not UTF-8 as \xff: matplotlib
    # refuses the lone surrogate Python keeps for it), then cut to fit
    files = ("d/\udcff" + "x" * 100 + ".txt", "b.txt")
    run.corpus, run.files = " + ".join(files), files
    assert train.plot_corpus_name(run) == "d/\\xff" + "x" * 58 + "… + 1 more files"
