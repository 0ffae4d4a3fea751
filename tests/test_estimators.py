"""bptt.SequenceClassifier and bptt.SequenceRegressor: scikit-learn's conventions, kept.

fit/predict round trips (a list of sequences and the same data padded agree), save/load gives
identical predictions from a safetensors file (no pickle), get_params/set_params, a small task
learned to a stated accuracy in seconds, and every bad input one clear ValueError.
"""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

import bptt
from bptt import checkpoint, estimators, tasks
from bptt.errors import BpttError, CheckpointError, DivergedError
from bptt.estimators import NotFittedError, as_padded, r2_score


def ragged(rng, n: int, D: int, low: int = 2, high: int = 7) -> list[np.ndarray]:
    return [rng.normal(size=(int(rng.integers(low, high + 1)), D)) for _ in range(n)]


def small(cls, **kw):
    settings = dict(cell="gru", hidden_size=8, epochs=2, batch_size=8, random_state=0,
                    dtype="float64")
    settings.update(kw)
    return cls(**settings)


@pytest.fixture
def tweets():
    return tasks.tweets(300, 10, np.random.default_rng(3))


def as_list(data: tasks.Dataset) -> list[np.ndarray]:
    return [data.X[i, : data.lengths[i]] for i in range(len(data.y))]


# ----------------------------------------------------------------------------
# the five lines, and the round trips
# ----------------------------------------------------------------------------


def test_classify_variable_length_sequences_in_five_lines(tweets):
    X, y = as_list(tweets), tweets.y  # a list of (T_i, 3) arrays, labels "negative"/"positive"
    clf = bptt.SequenceClassifier(hidden_size=16, epochs=3, random_state=0)
    clf.fit(X[:200], y[:200])
    proba = clf.predict_proba(X[200:])
    assert clf.predict(X[200:]).shape == (100,) and set(clf.predict(X)) <= set(clf.classes_)
    assert proba.shape == (100, 2) and np.allclose(proba.sum(axis=1), 1)
    assert clf.classes_.tolist() == ["negative", "positive"]
    assert 0 <= clf.score(X[200:], y[200:]) <= 1
    assert len(clf.loss_curve_) == clf.n_iter_ == 3 and clf.n_steps_ == 3 * 7


def test_a_list_and_the_same_data_padded_give_the_same_predictions(tweets):
    X = as_list(tweets)
    clf = small(bptt.SequenceClassifier).fit(X, tweets.y)
    garbage = tweets.X.copy()
    for i, n in enumerate(tweets.lengths):
        garbage[i, n:] = 1e3  # padding values are ignored
    from_list = clf.predict_proba(X)
    from_padded = clf.predict_proba(garbage, lengths=tweets.lengths)
    np.testing.assert_allclose(from_padded, from_list, rtol=1e-12, atol=1e-15)
    refit = small(bptt.SequenceClassifier).fit(garbage, tweets.y, lengths=tweets.lengths)
    for key in clf.params_:
        np.testing.assert_allclose(refit.params_[key], clf.params_[key], rtol=1e-12, atol=1e-14)


def test_the_same_random_state_fits_the_same_weights(tweets):
    a = small(bptt.SequenceClassifier).fit(as_list(tweets), tweets.y)
    b = small(bptt.SequenceClassifier).fit(as_list(tweets), tweets.y)
    assert all(np.array_equal(a.params_[k], b.params_[k]) for k in a.params_)


def test_regressor_predicts_the_shape_y_had_and_scores_r2(rng):
    X = ragged(rng, 40, 2)
    y1 = np.array([x[:, 0].sum() for x in X])
    reg = small(bptt.SequenceRegressor).fit(X, y1)
    assert reg.predict(X).shape == (40,) and reg.n_outputs_ == 1
    y2 = np.stack([y1, -y1], axis=1)
    reg2 = small(bptt.SequenceRegressor).fit(X, y2)
    assert reg2.predict(X).shape == (40, 2) and reg2.n_outputs_ == 2
    pred = reg2.predict(X)
    assert reg2.score(X, y2) == pytest.approx(r2_score(y2, pred))
    expected = np.mean([1 - np.sum((y2[:, j] - pred[:, j]) ** 2)
                        / np.sum((y2[:, j] - y2[:, j].mean()) ** 2) for j in range(2)])
    assert reg2.score(X, y2) == pytest.approx(expected, rel=1e-12)


def test_per_step_classifier_and_regressor(rng):
    X = [rng.integers(0, 2, size=(int(n), 1)).astype(float) for n in rng.integers(2, 9, 60)]
    running = [np.cumsum(x[:, 0]).astype(int) % 2 for x in X]  # the parity so far
    clf = small(bptt.SequenceClassifier, per_step=True, epochs=25, lr=3e-2).fit(X, running)
    predictions = clf.predict(X)
    assert [len(p) for p in predictions] == [len(x) for x in X]
    assert clf.score(X, running) > 0.9  # the running parity needs only one step of memory
    proba = clf.predict_proba(X[:3])
    assert [p.shape for p in proba] == [(len(x), 2) for x in X[:3]]
    sums = [np.cumsum(x[:, 0]) for x in X]
    reg = small(bptt.SequenceRegressor, per_step=True).fit(X, sums)
    assert [p.shape for p in reg.predict(X)] == [(len(x),) for x in X]
    padded, lengths = as_padded(X)
    y_padded = np.zeros(padded.shape[:2])
    for i, s in enumerate(sums):
        y_padded[i, : len(s)] = s
    assert reg.score(padded, y_padded, lengths=lengths) == pytest.approx(reg.score(X, sums))


# ----------------------------------------------------------------------------
# a small task, learned
# ----------------------------------------------------------------------------


def test_parity_of_length_8_is_learned_to_95_percent_in_seconds():
    """LSTM, H = 16, Adam 1e-2: trained on 2,000 bit strings of random lengths 1 … 8 (the
    lengths machinery), tested on 500 new strings of length exactly 8.  Measured: 94% after
    3 epochs, 100% after 4 (under a second)."""
    rng = np.random.default_rng(0)
    train = tasks.parity(2000, 8, rng, variable=True)
    test = tasks.parity(500, 8, rng)
    clf = bptt.SequenceClassifier(cell="lstm", hidden_size=16, lr=1e-2, epochs=8,
                                  batch_size=32, random_state=0)
    clf.fit(train.X, train.y, lengths=train.lengths,
            callback=lambda epoch, loss: clf.score(test.X, test.y) >= 0.99)
    assert clf.score(test.X, test.y) >= 0.95


def test_adding_problem_of_length_10_reaches_mse_below_0_01():
    """LSTM, H = 16: 1,500 sequences, T = 10 (the mean predictor scores 0.167).  Measured
    (2026-11-27): MSE 0.0063 after 5 epochs, 0.0015 after 7 (under a second)."""
    rng = np.random.default_rng(1)
    train, test = tasks.adding(1500, 10, rng), tasks.adding(300, 10, rng)
    reg = bptt.SequenceRegressor(cell="lstm", hidden_size=16, lr=1e-2, epochs=10,
                                 batch_size=32, random_state=0)
    reg.fit(train.X, train.y,
            callback=lambda e, loss: np.mean((reg.predict(test.X) - test.y) ** 2) < 0.003)
    assert np.mean((reg.predict(test.X) - test.y) ** 2) < 0.01
    assert reg.score(test.X, test.y) > 0.9


# ----------------------------------------------------------------------------
# saving and parameters
# ----------------------------------------------------------------------------


def test_save_and_load_give_identical_predictions(tmp_path, tweets):
    clf = small(bptt.SequenceClassifier, cell="lstm", num_layers=2).fit(as_list(tweets),
                                                                          tweets.y)
    path = clf.save(tmp_path / "clf.safetensors")
    assert path.read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle
    loaded = bptt.SequenceClassifier.load(path)
    assert loaded.get_params() == clf.get_params()
    assert loaded.classes_.tolist() == clf.classes_.tolist()
    assert np.array_equal(loaded.predict_proba(as_list(tweets)), clf.predict_proba(
        as_list(tweets)))
    assert loaded.n_iter_ == clf.n_iter_ and loaded.loss_curve_ == clf.loss_curve_
    assert checkpoint.load_model(path).cell == "lstm"  # also a plain bptt model file
    reg = small(bptt.SequenceRegressor).fit(as_list(tweets), np.arange(300.0) / 300)
    reg.save(tmp_path)  # a directory: DIR/model.safetensors
    again = bptt.SequenceRegressor.load(tmp_path)
    assert np.array_equal(again.predict(as_list(tweets)), reg.predict(as_list(tweets)))
    with pytest.raises(CheckpointError, match="holds a SequenceRegressor"):
        bptt.SequenceClassifier.load(tmp_path)
    loaded.fit(as_list(tweets)[:50], tweets.y[:50])  # a loaded estimator fits again


def test_a_per_step_model_is_saved_and_loaded_as_one(tmp_path):
    """The file states the per-step head; load takes it and predicts every step as before."""
    rng = np.random.default_rng(0)
    X = ragged(rng, 12, 2)
    for cls, y in ((bptt.SequenceClassifier, [(x[:, 0] > 0).astype(int) for x in X]),
                   (bptt.SequenceRegressor, [x[:, 0] - x[:, 1] for x in X])):
        est = small(cls, per_step=True, epochs=1).fit(X, y)
        loaded = cls.load(est.save(tmp_path / f"{cls.__name__}.safetensors"))
        assert loaded.per_step and loaded.score(X, y) == est.score(X, y)
        for a, b in zip(loaded.predict(X), est.predict(X), strict=True):
            np.testing.assert_array_equal(a, b)
    # a file whose head is not that of its per_step setting is refused
    path = est.save(tmp_path / "r.safetensors")
    tensors, meta = checkpoint.read_safetensors(path)
    meta["estimator"]["head"] = "mse_last"
    checkpoint.write_safetensors_atomic(path, tensors, meta)
    with pytest.raises(CheckpointError, match=re.escape("head 'mse_last' does not fit per_step")):
        bptt.SequenceRegressor.load(path)


@pytest.mark.parametrize(("n_features_in", "message"), [
    ("x", "holds a damaged estimator"), (5, "n_features_in is 5 but the weights take 2"),
])
def test_load_refuses_a_feature_count_that_is_not_the_weights(tmp_path, n_features_in, message):
    path = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, GOOD_Y).save(tmp_path / "c.st")
    tensors, meta = checkpoint.read_safetensors(path)
    meta["estimator"]["n_features_in"] = n_features_in
    checkpoint.write_safetensors_atomic(path, tensors, meta)
    with pytest.raises(CheckpointError, match=message):
        bptt.SequenceClassifier.load(path)


def test_a_loaded_regressor_predicts_the_shape_its_y_had(tmp_path):
    """(N,) for a y of one column given as (N,), (N, V) for V columns, also (N, 1)."""
    for y in (np.array([0.5, 1.0, 2.0]), np.array([[0.5], [1.0], [2.0]]),
              np.array([[0.5, 1.0], [1.0, 0.0], [2.0, 1.5]])):
        reg = small(bptt.SequenceRegressor, epochs=1).fit(GOOD_X, y)
        loaded = bptt.SequenceRegressor.load(reg.save(tmp_path / "r.safetensors"))
        assert loaded.n_outputs_ == reg.n_outputs_ and loaded.predict(GOOD_X).shape == y.shape
        np.testing.assert_array_equal(loaded.predict(GOOD_X), reg.predict(GOOD_X))


def test_boolean_and_float_classes_are_saved_and_loaded_as_they_are(tmp_path):
    for y in (np.array([True, False, True]), np.array([0.0, 1.0, 0.0])):
        clf = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, y)
        loaded = bptt.SequenceClassifier.load(clf.save(tmp_path / "c.safetensors"))
        assert loaded.classes_.dtype == y.dtype
        np.testing.assert_array_equal(loaded.classes_, np.unique(y))
        np.testing.assert_array_equal(loaded.predict(GOOD_X), clf.predict(GOOD_X))


def test_an_estimator_seeded_by_a_generator_saves_with_no_random_state(tmp_path):
    """A Generator is not JSON (its seed is gone anyway): the file states None."""
    clf = small(bptt.SequenceClassifier, epochs=1, random_state=np.random.default_rng(0))
    loaded = bptt.SequenceClassifier.load(clf.fit(GOOD_X, GOOD_Y).save(tmp_path / "c.st"))
    assert loaded.random_state is None
    np.testing.assert_array_equal(loaded.predict_proba(GOOD_X), clf.predict_proba(GOOD_X))


def test_load_refuses_classes_that_are_not_the_output_size(tmp_path):
    path = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, GOOD_Y).save(tmp_path / "c.st")
    tensors, meta = checkpoint.read_safetensors(path)
    meta["estimator"]["classes"] = [0, 1, 2]
    checkpoint.write_safetensors_atomic(path, tensors, meta)
    with pytest.raises(CheckpointError, match="the saved classes do not match the output size"):
        bptt.SequenceClassifier.load(path)


def test_load_refuses_a_dtype_that_is_not_the_weights(tmp_path):
    path = small(bptt.SequenceClassifier, epochs=1, dtype="float32").fit(GOOD_X, GOOD_Y).save(
        tmp_path / "c.st")
    tensors, meta = checkpoint.read_safetensors(path)
    meta["config"]["dtype"] = "float64"
    checkpoint.write_safetensors_atomic(path, tensors, meta)
    with pytest.raises(CheckpointError, match=re.escape("weights of dtype float32 but "
                                                        "dtype='float64'")):
        bptt.SequenceClassifier.load(path)


def test_a_loaded_estimator_with_a_random_state_trains_on_reproducibly(tmp_path, tweets):
    """Its generator is made again from random_state: two loads of one file take the
    minibatches in the same order, and partial_fit gives the same weights."""
    X, y = as_list(tweets)[:60], tweets.y[:60]
    path = small(bptt.SequenceClassifier, epochs=1).fit(X, y).save(tmp_path / "c.st")
    a, b = (bptt.SequenceClassifier.load(path).partial_fit(X, y) for _ in range(2))
    for key in a.params_:
        np.testing.assert_array_equal(a.params_[key], b.params_[key])


@pytest.mark.parametrize(("setting", "stated"), [("cell", "rnn"), ("hidden_size", 16),
                                                 ("num_layers", 2)])
def test_load_refuses_settings_that_are_not_the_weights(tmp_path, setting, stated):
    # get_params() and clone() would describe another model than the one predicting
    path = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, GOOD_Y).save(tmp_path / "c.st")
    tensors, meta = checkpoint.read_safetensors(path)
    meta["config"][setting] = stated
    checkpoint.write_safetensors_atomic(path, tensors, meta)
    with pytest.raises(CheckpointError, match=f"settings say .*{stated!r}.* but the weights are "
                                              "those of a gru with H=8, L=1"):
        bptt.SequenceClassifier.load(path)


def test_settings_changed_after_fit_do_not_make_a_file_that_load_refuses(tmp_path):
    """set_params changes the network of the next fit; save wrote the changed settings beside
    the fitted weights, a file load refused ("its settings say cell 'rnn' … but the weights
    are those of a lstm").  It states the weights' own cell, sizes and dtype."""
    clf = small(bptt.SequenceClassifier, cell="lstm", epochs=1, forget_bias=1.0)
    clf.fit(GOOD_X, GOOD_Y)
    clf.set_params(cell="rnn", hidden_size=3, num_layers=2, dtype="float32", lr=0.5)
    loaded = bptt.SequenceClassifier.load(clf.save(tmp_path / "c.st"))
    np.testing.assert_array_equal(loaded.predict_proba(GOOD_X), clf.predict_proba(GOOD_X))
    assert (loaded.cell, loaded.hidden_size, loaded.num_layers, loaded.dtype, loaded.lr,
            loaded.forget_bias) == ("lstm", 8, 1, "float64", 0.5, 1.0)
    clf.set_params(cell="gru")  # forget_bias=1.0 with a gru: refused; the weights' lstm takes it
    assert bptt.SequenceClassifier.load(clf.save(tmp_path / "c.st")).forget_bias == 1.0
    gru = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, GOOD_Y)
    gru.set_params(cell="lstm", forget_bias=2.0)  # what an lstm of the next fit would take
    assert bptt.SequenceClassifier.load(gru.save(tmp_path / "g.st")).forget_bias is None
    gru.set_params(lr=-1.0)
    with pytest.raises(BpttError, match="lr must be a finite number > 0"):
        gru.save(tmp_path / "bad.st")  # refused, not written for load to refuse
    assert not (tmp_path / "bad.st").exists()


def test_numpy_settings_are_taken_as_the_values_they_are(tmp_path):
    # np.float64 is how bptt.init_params and numpy spell a dtype; np.float32(1) a number
    clf = small(bptt.SequenceClassifier, cell="lstm", dtype=np.float32, epochs=1,
                forget_bias=np.float32(1.0), hidden_size=np.int64(8)).fit(GOOD_X, GOOD_Y)
    assert clf.params_["Whh"].dtype == np.float32 and clf.get_params()["dtype"] is np.float32
    loaded = bptt.SequenceClassifier.load(clf.save(tmp_path / "c.st"))
    assert loaded.get_params()["dtype"] == "float32"
    assert np.array_equal(loaded.predict_proba(GOOD_X), clf.predict_proba(GOOD_X))
    with pytest.raises(BpttError, match="dtype must be 'float32' or 'float64', got None"):
        small(bptt.SequenceClassifier, dtype=None).fit(GOOD_X, GOOD_Y)


def test_save_refuses_a_training_runs_model_and_changes_nothing(tmp_path, tweets):
    """A ``bptt train`` run's directory (it holds train_state.safetensors) keeps its files."""
    import hashlib

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.safetensors", "train_state.safetensors"):
        (run / name).write_bytes(name.encode())
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir()}
    clf = small(bptt.SequenceClassifier, epochs=1).fit(as_list(tweets)[:40], tweets.y[:40])
    for target in (run, run / "model.safetensors", run / "train_state.safetensors"):
        with pytest.raises(BpttError, match=re.escape(f"{run} holds a training run")):
            clf.save(target)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir()} == digest
    assert clf.save(run / "clf.safetensors") == run / "clf.safetensors"  # another name: fine



def test_save_refuses_the_model_file_of_a_directory_a_run_trains_in(tmp_path, tweets):
    """A new run writes its first checkpoint (and train state) only at its first evaluation:
    a save into its directory before then would be replaced by the run's model without a
    word.  Here the test holds the lock a training run holds."""
    from bptt import train

    run = tmp_path / "training"
    run.mkdir()
    clf = small(bptt.SequenceClassifier, epochs=1).fit(as_list(tweets)[:40], tweets.y[:40])
    with train.run_dir_lock(run):
        for target in (run, run / "model.safetensors"):
            with pytest.raises(BpttError, match=re.escape(
                f"{run} is in use by another bptt process (a run training there, or a model "
                "being saved into it), which may replace model.safetensors; wait for it to "
                "end, or save the estimator in another directory"
            )):
                clf.save(target)
        assert list(run.iterdir()) == []
        assert clf.save(run / "clf.safetensors") == run / "clf.safetensors"  # not a run's file
    assert clf.save(run) == run / "model.safetensors"  # the run over: it may


def test_save_refuses_info_that_is_not_a_dict(tmp_path, tweets):
    clf = small(bptt.SequenceClassifier, epochs=1).fit(as_list(tweets)[:40], tweets.y[:40])
    with pytest.raises(BpttError, match=re.escape("info must be a dict (of JSON-able values), "
                                                  "got str")):
        clf.save(tmp_path / "clf.safetensors", info="notadict")
    assert list(tmp_path.iterdir()) == []

def test_save_never_replaces_what_is_not_a_regular_file(tmp_path, tweets):
    import os
    import stat

    clf = small(bptt.SequenceClassifier, epochs=1).fit(as_list(tweets)[:40], tweets.y[:40])
    os.mkfifo(tmp_path / "pipe.safetensors")
    (tmp_path / "d" / "model.safetensors").mkdir(parents=True)
    for target, kind in ((tmp_path / "pipe.safetensors", "a FIFO"), (tmp_path / "d", "a directory")):
        with pytest.raises(CheckpointError, match=f"is {kind}"):
            clf.save(target)
    assert stat.S_ISFIFO((tmp_path / "pipe.safetensors").stat().st_mode)
    assert (tmp_path / "d" / "model.safetensors").is_dir()


def test_a_restored_training_state_goes_on_as_the_fit_would_have(tweets):
    X, y = as_list(tweets), tweets.y
    for cls, target in ((bptt.SequenceClassifier, y), (bptt.SequenceRegressor,
                                                        np.arange(300.0) / 300)):
        fitted = small(cls, cell="lstm").fit(X, target)
        tensors, meta = fitted._train_state()
        copy = {k: v.copy() for k, v in tensors.items()}
        again = small(cls, cell="lstm")
        again._restore_train_state(copy, meta)
        fitted.partial_fit(X, target)
        again.partial_fit(X, target)
        for key, value in fitted.params_.items():
            assert np.array_equal(again.params_[key], value), (cls.__name__, key)
        assert again.loss_curve_ == fitted.loss_curve_ and again.n_steps_ == fitted.n_steps_
        assert again.n_iter_ == fitted.n_iter_ == 3 and again.n_steps_ == 3 * 38  # (epochs, steps)
        with pytest.raises(CheckpointError, match="do not fit this estimator"):
            small(cls, cell="lstm", hidden_size=4)._restore_train_state(copy, meta)
        with pytest.raises(CheckpointError, match="not float32"):
            small(cls, cell="lstm", dtype="float32")._restore_train_state(copy, meta)
        with pytest.raises(CheckpointError, match=re.escape(
                "(hidden size, layers, features) are (8, 1, 3), expected (8, 1, 4)")):
            small(cls, cell="lstm")._restore_train_state(copy, {**meta, "n_features_in": 4})


def test_the_flat_update_is_the_per_key_update_to_the_last_bit(tweets, monkeypatch):
    """Training updates one flat buffer (bptt.flat) instead of looping over params_'s keys:
    the same arithmetic element by element, so the same weights bit for bit."""
    from bptt import heads, optim
    from bptt.estimators import _batch

    def per_key_step(self, x, n, targets, rows):  # the update written key by key
        inputs, lengths, y = _batch(x, n, targets, rows, self.per_step)
        result = heads.backprop(self.params_, inputs, y, self._head, lengths)
        norm = optim.global_norm(result.grads)
        optim.clip_by_global_norm(result.grads, float(self.clip_norm), norm=norm)
        self._optimizer.update(self.params_, result.grads, self._opt_state)
        self.n_steps_ += 1
        return result.loss, len(rows)

    X, y = as_list(tweets), tweets.y
    for optimizer in ("adam", "adagrad", "momentum"):
        flat_fit = small(bptt.SequenceClassifier, optimizer=optimizer, clip_norm=0.5,
                         dtype="float32").fit(X, y)
        buffer = flat_fit._flat.params["flat"]
        assert all(np.shares_memory(v, buffer) for v in flat_fit.params_.values())
        with monkeypatch.context() as patch:
            patch.setattr(bptt.SequenceClassifier, "_step", per_key_step)
            keyed = small(bptt.SequenceClassifier, optimizer=optimizer, clip_norm=0.5,
                          dtype="float32").fit(X, y)
        for key, value in keyed.params_.items():
            assert np.array_equal(flat_fit.params_[key], value), (optimizer, key)
        assert flat_fit.loss_curve_ == keyed.loss_curve_


def test_a_copied_estimator_trains_its_own_copy(tweets):
    """Copies (pickle, deepcopy) hold plain arrays, no views: the buffers are made again, and
    the copy goes on exactly as the original does."""
    import copy
    import pickle

    X, y = as_list(tweets), tweets.y
    original = small(bptt.SequenceClassifier).fit(X, y)
    packed = original._flat
    copies = [pickle.loads(pickle.dumps(original)), copy.deepcopy(original)]
    assert "_flat" not in pickle.loads(pickle.dumps(original)).__dict__
    assert original._flat is packed  # a copy leaves the original's buffers where they were
    original.partial_fit(X, y)
    for other in copies:
        before = {k: v.copy() for k, v in other.params_.items()}
        other.partial_fit(X, y)
        for key, value in original.params_.items():
            assert np.array_equal(other.params_[key], value), key
            assert not np.array_equal(before[key], value), key  # it did train


def test_get_params_and_set_params_follow_scikit_learn():
    clf = bptt.SequenceClassifier(hidden_size=7, random_state=3)
    params = clf.get_params()
    assert params["hidden_size"] == 7 and params["cell"] == "lstm"
    assert list(params) == ["cell", "hidden_size", "num_layers", "optimizer", "lr", "epochs",
                            "batch_size", "clip_norm", "truncate", "per_step", "forget_bias",
                            "dtype", "random_state"]
    assert type(clf)(**params).get_params() == params  # what sklearn.base.clone does
    assert clf.set_params(lr=0.5, epochs=2) is clf and clf.lr == 0.5
    with pytest.raises(BpttError, match="invalid parameter 'hiden_size'"):
        clf.set_params(hiden_size=3)
    assert repr(clf) == "SequenceClassifier(hidden_size=7, lr=0.5, epochs=2, random_state=3)"
    # a setting equal to its default is left out, whatever object holds it
    defaults = bptt.SequenceRegressor(lr=float("0.01"), clip_norm=float("5"),
                                      dtype="".join(["float", "32"]))
    assert repr(defaults) == "SequenceRegressor()"
    assert bptt.SequenceRegressor._estimator_type == "regressor"


def test_the_scikit_learn_tags_say_classifier_or_regressor_fitted_on_3d_input(monkeypatch):
    """scikit-learn >= 1.6 reads an estimator's kind from its tags (is_classifier, and so
    cross_val_score's stratified folds for a classifier): every tag given is pinned.
    (scikit-learn is optional: sklearn.utils is stood in for by its five tag classes, each
    returning its name and the arguments it was given.)"""
    utils = types.ModuleType("sklearn.utils")
    for name in ("Tags", "TargetTags", "ClassifierTags", "RegressorTags", "InputTags"):
        setattr(utils, name, lambda _name=name, **given: (_name, given))
    monkeypatch.setitem(sys.modules, "sklearn", types.ModuleType("sklearn"))
    monkeypatch.setitem(sys.modules, "sklearn.utils", utils)
    three_d = ("InputTags", {"two_d_array": False, "three_d_array": True})
    assert bptt.SequenceClassifier(random_state=0).__sklearn_tags__() == ("Tags", {
        "estimator_type": "classifier",
        "target_tags": ("TargetTags", {"required": True, "multi_output": False}),
        "classifier_tags": ("ClassifierTags", {"multi_class": True}),
        "regressor_tags": None, "input_tags": three_d, "non_deterministic": False})
    # y may be (N, V).  Without a random_state each fit draws other initial weights, but
    # scikit-learn's non_deterministic means "not deterministic given a fixed random_state"
    # (its checks fix one before they compare two fits): still False
    assert bptt.SequenceRegressor().__sklearn_tags__() == ("Tags", {
        "estimator_type": "regressor",
        "target_tags": ("TargetTags", {"required": True, "multi_output": True}),
        "classifier_tags": None, "regressor_tags": ("RegressorTags", {}),
        "input_tags": three_d, "non_deterministic": False})


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------

GOOD_X = [np.ones((3, 2)), np.ones((5, 2)), np.zeros((2, 2))]
GOOD_Y = np.array([0, 1, 0])


def test_a_refused_first_partial_fit_leaves_the_classifier_unfitted():
    """classes= of another kind than y is refused; the classes it gave used to stay, so a
    right second call was refused too."""
    clf = small(bptt.SequenceClassifier)
    with pytest.raises(bptt.BpttError, match="not seen in fit"):
        clf.partial_fit(GOOD_X, ["a", "b", "a"], classes=[0, 1])
    assert not hasattr(clf, "classes_") and not hasattr(clf, "params_")
    clf.partial_fit(GOOD_X, ["a", "b", "a"])
    assert clf.classes_.tolist() == ["a", "b"]


def test_a_later_partial_fit_refuses_other_classes_and_takes_the_same():
    """The output layer has a row per class of the first call (scikit-learn's rule): other
    classes later are refused, not silently ignored; the same ones, or none, are taken."""
    clf = small(bptt.SequenceClassifier)
    clf.partial_fit(GOOD_X, GOOD_Y, classes=[0, 1])
    steps = clf.n_steps_
    with pytest.raises(bptt.BpttError, match=re.escape("classes=[0, 1, 2] is not the classes_ "
                                                       "of the first call, [0, 1]")):
        clf.partial_fit(GOOD_X, GOOD_Y, classes=[0, 1, 2])
    assert clf.classes_.tolist() == [0, 1] and clf.n_steps_ == steps
    clf.partial_fit(GOOD_X, GOOD_Y, classes=[1, 0])
    clf.partial_fit(GOOD_X, GOOD_Y)
    assert clf.classes_.tolist() == [0, 1] and clf.n_steps_ > steps


# NaN on the padding of sequence 0 (ignored), inf on a real step of sequence 1 (named)
NAN_PADDED_INF_REAL = np.ones((2, 4, 2))
NAN_PADDED_INF_REAL[0, 3], NAN_PADDED_INF_REAL[1, 1] = np.nan, np.inf


@pytest.mark.parametrize("X, y, kw, message", [
    (np.array([np.ones((3, 2)), np.ones((5, 2))], dtype=object), [0, 1], {}, "ragged array"),
    (np.ones((3, 4)), GOOD_Y, {}, "a padded X must be (N, T, D)"),
    (np.ones((3, 4, 2, 1)), GOOD_Y, {}, "X has shape (3, 4, 2, 1): a padded X must be (N, T, D)"),
    (np.ones((3, 0, 2)), GOOD_Y, {}, "X has shape (3, 0, 2): need at least one sequence and "
                                     "one step"),
    ([np.ones((3, 2)), np.ones((3, 1))], [0, 1], {}, "X[1] has 1 features per step but X[0] "
                                                      "has 2"),
    (NAN_PADDED_INF_REAL, [0, 1], {"lengths": [3, 4]}, "X contains NaN or inf (sequence 1, on "
                                                       "a real step)"),
    (np.ones((3, 4, 2)), GOOD_Y, {"lengths": [4, 5, 1]}, "between 1 and T"),
    (np.ones((3, 4, 2)), GOOD_Y, {"lengths": [4, 4]}, "lengths has shape"),
    (GOOD_X, GOOD_Y, {"lengths": [3, 5, 2]}, "lengths= goes with a padded"),
    (GOOD_X, np.array([0, 1]), {}, "y has 2 entries but X has 3 sequences"),
    (GOOD_X, np.array([[0, 1, 0]]), {}, "y has 1 entries but X has 3"),
    ([np.ones((3, 2)), np.array([[1.0, np.nan]])], [0, 1], {}, "NaN or inf (sequence 1)"),
    (np.stack([np.ones((4, 2)), np.full((4, 2), np.inf)]), [0, 1], {}, "NaN or inf"),
    ([np.ones((3, 2)), np.ones((3, 3))], [0, 1], {}, "X[1] has 3 features"),
    ([np.ones((0, 2))], [0], {}, "T_i >= 1"),
    ([], [], {}, "X is empty"),
    ("abc", [0], {}, "X must be a list"),
    (GOOD_X, np.array([1, 1, 1]), {}, "one class only (1): need"),  # not np.int64(1)
    (GOOD_X, np.array([2.0, 2.0, 2.0]), {}, "one class only (2.0): need"),
    (GOOD_X, [None, None, 1], {}, "labels must be numbers, booleans or strings"),
    (GOOD_X, [1, "a", 1], {}, "y mixes strings with other labels"),
    (GOOD_X, np.array([[0], [1], [0]]), {}, "y has shape (3, 1): one label per sequence, (N,)"),
    (GOOD_X, np.array([0.0, np.nan, 1.0]), {}, "y contains NaN or inf"),
    ([["a", "b"]], [0], {}, "numeric"),
])
def test_bad_input_to_fit_is_one_clear_value_error(X, y, kw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        small(bptt.SequenceClassifier).fit(X, y, **kw)


def test_padding_after_the_length_may_hold_nan():
    X = np.ones((2, 4, 2))
    X[0, 3] = np.nan
    clf = small(bptt.SequenceClassifier, epochs=1).fit(X, [0, 1], lengths=[3, 4])
    assert np.isfinite(clf.predict_proba(X, lengths=[3, 4])).all()


@pytest.mark.parametrize("bad, message", [
    (dict(cell="transformer"), "cell must be one of"),
    (dict(hidden_size=0), "hidden_size must be an integer >= 1"),
    (dict(epochs=1.5), "epochs must be an integer"),
    (dict(lr=-1.0), "lr must be a finite number > 0"),
    (dict(clip_norm=float("nan")), "clip_norm must be"),
    (dict(optimizer="lbfgs"), "optimizer must be one of"),
    (dict(truncate=0), "truncate must be None"),
    (dict(dtype="float16"), "dtype must be"),
    (dict(random_state=-1), "random_state must be"),
    (dict(forget_bias=1.0, cell="gru"), "lstm cell only"),
    (dict(forget_bias=10**400, cell="lstm"), "forget_bias must be a finite number"),
    (dict(per_step="yes"), "per_step must be"),
])
def test_bad_constructor_arguments_are_refused_by_fit(bad, message):
    clf = small(bptt.SequenceClassifier, **bad)  # stored as given, like scikit-learn
    with pytest.raises(BpttError, match=re.escape(message)):
        clf.fit(GOOD_X, GOOD_Y)


def test_bad_input_after_fit():
    clf = small(bptt.SequenceClassifier, epochs=1)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        clf.predict(GOOD_X)
    with pytest.raises(NotFittedError):
        clf.save("x.safetensors")
    clf.fit(GOOD_X, np.array(["cat", "dog", "cat"]))
    with pytest.raises(BpttError, match=re.escape("label(s) ['emu'] not seen in fit")):
        clf.score(GOOD_X, np.array(["cat", "emu", "dog"]))
    with pytest.raises(BpttError, match=re.escape("label(s) ['a', 'b', 'c', 'd', 'e'] not seen "
                                                  "in fit; the classes are ['cat', 'dog']")):
        clf.score([np.ones((2, 2))] * 6, list("fedcba"))  # the first five, sorted
    with pytest.raises(BpttError, match="fitted with 2"):
        clf.predict([np.ones((3, 5))])
    with pytest.raises(BpttError, match="y has 2 entries"):
        clf.score(GOOD_X, ["cat", "dog"])
    reg = small(bptt.SequenceRegressor, epochs=1).fit(GOOD_X, [0.5, 1.0, np.pi])
    before = reg.predict(GOOD_X)
    with pytest.raises(BpttError, match="NaN or inf"):
        reg.fit(GOOD_X, [0.5, np.nan, 1.0])
    np.testing.assert_array_equal(reg.predict(GOOD_X), before)  # a refused fit keeps the model
    with pytest.raises(BpttError, match="one class only"):
        clf.fit(GOOD_X, ["cat", "cat", "cat"])
    assert clf.classes_.tolist() == ["cat", "dog"]
    per_step = small(bptt.SequenceRegressor, per_step=True, epochs=1)
    with pytest.raises(BpttError, match="y\\[1\\] has 4 steps but X\\[1\\] has 5"):
        per_step.fit(GOOD_X, [np.ones(3), np.ones(4), np.ones(2)])


def test_numbers_beyond_float32_are_refused_before_the_fitted_model_is_touched():
    """A finite float64 beyond float32's range is inf once cast: it used to pass the NaN
    check, reach the first training step (numpy's overflow warnings on the way) and be
    refused there, after fit had put fresh untrained weights in place of the fitted ones."""
    reg = small(bptt.SequenceRegressor, epochs=1, dtype="float32").fit(GOOD_X, [0.5, 1.0, 2.0])
    before = reg.predict(GOOD_X)
    big_X = [x + 1e39 for x in GOOD_X]
    for X, y in ((big_X, [0.5, 1.0, 2.0]), (np.stack([np.ones((3, 2)), np.full((3, 2), 1e39)]),
                                             [0.5, 1.0]), (GOOD_X, [0.5, 1e39, 2.0])):
        name = "y" if X is GOOD_X else "X"
        with pytest.raises(BpttError, match=f"{name} holds numbers too large for float32"):
            with np.errstate(all="raise"):  # no RuntimeWarning on the way
                reg.fit(X, y)
        np.testing.assert_array_equal(reg.predict(GOOD_X), before)
    assert reg.n_steps_ == 1
    with pytest.raises(BpttError, match="X holds numbers too large for float32"):
        reg.predict(big_X)
    small(bptt.SequenceRegressor, epochs=1).fit(big_X, [0.5, 1e39, 2.0])  # float64: fine


def test_score_reads_data_in_the_weights_dtype_not_a_dtype_set_since_the_fit():
    """set_params(dtype=...) is for the next fit: scoring the fitted float32 network still
    casts X and y to float32 (the same R² to the bit, and a y beyond float32 refused)."""
    y = [0.5, 1.0, 2.0]
    reg = small(bptt.SequenceRegressor, epochs=1, dtype="float32").fit(GOOD_X, y)
    before = reg.score(GOOD_X, y)
    reg.set_params(dtype="float64")
    assert reg.score(GOOD_X, y) == before
    with pytest.raises(BpttError, match="y holds numbers too large for float32"):
        reg.score(GOOD_X, [0.5, 1e39, 2.0])


def test_a_new_fit_takes_sequences_of_another_number_of_features():
    clf = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, GOOD_Y)
    clf.fit([np.ones((len(x), 3)) for x in GOOD_X], GOOD_Y)
    assert clf.n_features_in_ == 3 and clf.params_["Wxh"].shape[1] == 3
    with pytest.raises(BpttError, match="X has 2 features per step but the model was fitted "
                                        "with 3"):
        clf.score(GOOD_X, GOOD_Y)


def test_a_fit_refused_for_its_y_leaves_the_outputs_of_the_fitted_model():
    """y of two columns holding NaN is refused before anything of the fitted model changes:
    the number of outputs and whether y was one column stay those of its weights."""
    reg = small(bptt.SequenceRegressor, epochs=1).fit(GOOD_X, [0.5, 1.0, 2.0])
    with pytest.raises(BpttError, match="y contains NaN or inf"):
        reg.fit(GOOD_X, [[0.5, np.nan], [1.0, 1.0], [2.0, 2.0]])
    assert reg.n_outputs_ == 1 and reg.predict(GOOD_X).shape == (3,)
    reg.partial_fit(GOOD_X, [0.5, 1.0, 2.0])


def test_a_forget_bias_beyond_the_dtype_is_refused_before_the_fitted_model_is_set_aside():
    """init_params refused forget_bias=1e39 in float32, but only after fit had taken the
    fitted weights away: the estimator was left unfitted (inf was refused in time)."""
    clf = small(bptt.SequenceClassifier, cell="lstm", epochs=1, dtype="float32")
    clf.fit(GOOD_X, GOOD_Y)
    before = clf.predict_proba(GOOD_X)
    clf.set_params(forget_bias=1e39)
    with pytest.raises(BpttError, match=re.escape("forget_bias must be a finite number (float32)")):
        clf.fit(GOOD_X, GOOD_Y)
    np.testing.assert_array_equal(clf.predict_proba(GOOD_X), before)
    clf.set_params(dtype="float64").fit(GOOD_X, GOOD_Y)  # 1e39 is a float64
    assert np.all(clf.params_["bxh"][8:16] == 1e39)


def test_a_fitted_estimator_does_not_keep_the_memory_of_its_training_steps():
    """The Workspace keeps the sweeps' arrays from one step to the next; once fit is done the
    estimator lets them go (an LSTM H=64 fitted at T=400 kept 116 MB for 72 kB of weights)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 120, 2))
    tracemalloc.start()
    try:
        reg = small(bptt.SequenceRegressor, cell="lstm", hidden_size=16, epochs=1, batch_size=16)
        reg.fit(X, np.ones(16))
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak > 4_000_000 and held < 500_000, (held, peak)
    before = {k: v.copy() for k, v in reg.params_.items()}
    reg.partial_fit(X, np.ones(16))  # the memory is made again
    assert not np.array_equal(before["Whh"], reg.params_["Whh"])


def test_a_fit_ended_by_an_exception_lets_go_of_its_memory_too():
    """A fit stopped by its callback raising (Ctrl-C in it), or by a DivergedError, ends
    there: the sweeps' memory goes as at a normal end."""
    reg = small(bptt.SequenceRegressor, cell="lstm", epochs=3)

    def interrupted(epoch, loss):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reg.fit(GOOD_X, [0.5, 1.0, 2.0], callback=interrupted)
    buffers = reg._flat.workspace.buffers
    assert reg.n_iter_ == 1 and not buffers._arrays and not buffers._children


def test_a_divergence_on_huge_regression_targets_names_their_scale():
    """Squared errors of targets near 1e20 overflow float32 whatever the step size: the
    error says to scale y; a divergence of unit targets (a step far too large) does not."""
    X = np.random.default_rng(0).normal(size=(8, 4, 2))
    huge = small(bptt.SequenceRegressor, dtype="float32")
    with pytest.raises(DivergedError, match=re.escape(
            "clip the gradients (clip_norm); the targets reach |y| = 3e+20: scale them to about "
            "unit size (e.g. subtract their mean and divide by their standard deviation)")):
        huge.fit(X, np.full(8, 3e20))
    too_fast = small(bptt.SequenceRegressor, dtype="float32", lr=1e30, clip_norm=None)
    with pytest.raises(DivergedError) as diverged:
        too_fast.fit(X, np.linspace(-1, 1, 8))
    assert str(diverged.value).endswith("clip the gradients (clip_norm)")


def test_a_large_target_is_named_whatever_its_sign():
    """|y| from LARGE_TARGET = 1e3 on is named: targets near −3e20 overflow as those near 3e20."""
    cause = small(bptt.SequenceRegressor)._divergence_cause
    assert cause(np.array([0.5, -999.0])) == ""
    assert cause(np.array([0.5, -1e3])) == (
        "the targets reach |y| = 1e+03: scale them to about unit size (e.g. subtract their mean "
        "and divide by their standard deviation)")


def test_a_divergence_of_the_update_names_large_targets_too():
    """A step whose loss and gradients are finite but whose update overflows (lr = 1e34)."""
    X = np.random.default_rng(0).normal(size=(8, 4, 2))
    reg = small(bptt.SequenceRegressor, dtype="float32", optimizer="sgd", lr=1e34, clip_norm=None)
    with pytest.raises(DivergedError, match=re.escape("(clip_norm); the targets reach |y| = 5e+03:")):
        reg.fit(X, np.full(8, 5e3))


def test_partial_fit_takes_a_learning_rate_set_since_the_fit_and_refuses_another_optimizer():
    """set_params(lr=…) between partial_fit calls (a decay by hand, as torch's param_groups)
    was validated and then ignored: the optimizer kept the lr of the first call."""
    X = [np.linspace(-1, 1, 4)[:, None] * (i + 1) for i in range(3)]
    y = np.array([0.5, -0.5, 1.0])
    reg = small(bptt.SequenceRegressor, optimizer="sgd", lr=0.1, epochs=1).fit(X, y)
    weights = {k: v.copy() for k, v in reg.params_.items()}
    reg.set_params(lr=1e-300).partial_fit(X, y)  # SGD: p − lr·g, no step at this size
    assert all(np.array_equal(reg.params_[k], v) for k, v in weights.items())
    reg.set_params(optimizer="adam")
    with pytest.raises(BpttError, match=re.escape(
            "optimizer='adam' but the fitted network's is 'sgd', and partial_fit goes on with "
            "it: call fit to start afresh with optimizer='adam', or set optimizer back")):
        reg.partial_fit(X, y)
    assert reg.n_steps_ == 2 and isinstance(reg.fit(X, y)._optimizer, bptt.optim.Adam)


@pytest.mark.parametrize("changed, message", [
    (dict(cell="lstm"), "cell='lstm' but the fitted network's is 'gru'"),
    (dict(hidden_size=16), "hidden_size=16 but the fitted network's is 8"),
    (dict(num_layers=2), "num_layers=2 but the fitted network's is 1"),
    (dict(dtype="float32"), "dtype='float32' but the fitted network's is 'float64'"),
])
def test_partial_fit_refuses_a_network_changed_by_set_params_since_the_fit(changed, message):
    """partial_fit went on with the fitted network whatever set_params had changed since:
    the settings said one network, the weights were another's (save stated the weights')."""
    clf = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, GOOD_Y)
    weights = {k: v.copy() for k, v in clf.params_.items()}
    clf.set_params(**changed)
    with pytest.raises(BpttError, match=re.escape(message)):
        clf.partial_fit(GOOD_X, GOOD_Y)
    assert clf.n_steps_ == 1 and all(np.array_equal(clf.params_[k], v) for k, v in weights.items())
    clf.set_params(**{k: small(bptt.SequenceClassifier).get_params()[k] for k in changed})
    assert clf.partial_fit(GOOD_X, GOOD_Y).n_steps_ == 2


def test_partial_fit_compares_the_dtype_not_its_spelling():
    """dtype=np.float32 is the fitted float32, whichever way numpy spells it; another is named
    as numpy names it."""
    clf = small(bptt.SequenceClassifier, epochs=1, dtype=np.float32).fit(GOOD_X, GOOD_Y)
    clf.set_params(dtype=np.dtype("float32")).partial_fit(GOOD_X, GOOD_Y)
    assert clf.n_steps_ == 2
    clf.set_params(dtype=np.float64)
    with pytest.raises(BpttError, match=re.escape(
            "dtype='float64' but the fitted network's is 'float32'")):
        clf.partial_fit(GOOD_X, GOOD_Y)


@pytest.mark.parametrize("bad, message", [
    (dict(batch_size=0), "batch_size must be an integer >= 1"),  # was range()'s ValueError
    (dict(batch_size=2.5), "batch_size must be an integer >= 1"),  # was taken as 2
    (dict(clip_norm=-1.0), "clip_norm must be a finite number > 0"),  # refused mid-step
    (dict(truncate=0), "truncate must be None"),  # refused mid-step
    (dict(per_step="yes"), "per_step must be True or False"),
])
def test_partial_fit_checks_the_settings_set_since_the_fit(bad, message):
    """partial_fit checked the settings at its first call only, but every step reads
    batch_size, truncate, clip_norm and per_step: a bad one set since was used, or refused
    by a step after the epoch's order had been drawn (the refused call changed the state)."""
    clf = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, GOOD_Y)
    rng_state = clf._rng.bit_generator.state
    weights = {k: v.copy() for k, v in clf.params_.items()}
    clf.set_params(**bad)
    with pytest.raises(BpttError, match=re.escape(message)):
        clf.partial_fit(GOOD_X, GOOD_Y)
    assert clf._rng.bit_generator.state == rng_state and clf.n_steps_ == 1
    assert all(np.array_equal(clf.params_[k], v) for k, v in weights.items())


# ----------------------------------------------------------------------------
# the numbers a fit reports and takes, against computations of their own
# ----------------------------------------------------------------------------


def initial_params(cls, D: int, outputs: int, **kw) -> dict[str, np.ndarray]:
    """The network ``small(cls, **kw)`` starts from: init_params on default_rng(random_state)."""
    est = small(cls, **kw)
    return bptt.init_params(est.cell, D, est.hidden_size, outputs, True,
                            np.random.default_rng(est.random_state), np.float64, est.num_layers)


def logits_of(params: dict[str, np.ndarray], seq: np.ndarray) -> np.ndarray:
    """y_t = W^hy h_t + b_y at every step of one sequence (T_i, D), by bptt.forward."""
    return bptt.forward(params, seq[:, None, :]).logits[:, 0]


def cross_entropy(logits: np.ndarray, label: int) -> float:
    return float(np.logaddexp.reduce(logits) - logits[label])


@pytest.mark.parametrize(("cls", "per_step"), [
    (bptt.SequenceClassifier, False), (bptt.SequenceClassifier, True),
    (bptt.SequenceRegressor, False), (bptt.SequenceRegressor, True),
], ids=["classifier", "classifier-per-step", "regressor", "regressor-per-step"])
@pytest.mark.parametrize("batch_size", [11, 4], ids=["one-batch", "three-batches"])
def test_the_first_epochs_loss_is_the_initial_networks_mean_loss_over_all_the_data(
        cls, per_step, batch_size):
    # one minibatch holding every sequence: its J, at the initial weights, over all of them;
    # three minibatches, SGD steps too small to move a float64 weight (lr = 1e-300): the sum
    # of their J over the predictions of all three
    rng = np.random.default_rng(5)
    X = ragged(rng, 11, 3)
    classify = cls is bptt.SequenceClassifier
    if per_step:
        y = [rng.integers(0, 3, len(x)) if classify else rng.normal(size=(len(x), 2)) for x in X]
    else:
        y = rng.integers(0, 3, len(X)) if classify else rng.normal(size=(len(X), 2))
    est = small(cls, epochs=1, batch_size=batch_size, per_step=per_step, optimizer="sgd",
                lr=1e-300).fit(X, y)
    params = initial_params(cls, 3, 3 if classify else 2)
    losses = []
    for seq, target in zip(X, y, strict=True):
        logits = logits_of(params, seq)
        steps = range(len(seq)) if per_step else [len(seq) - 1]
        target = target if per_step else [target] * len(seq)
        for t in steps:  # classifier: nats; regressor: the squared error per value
            losses.append(cross_entropy(logits[t], target[t]) if classify
                          else float(np.mean((logits[t] - target[t]) ** 2)))
    assert est.n_steps_ == -(-len(X) // batch_size)
    np.testing.assert_allclose(est.loss_curve_, [np.mean(losses)], rtol=1e-12)


@pytest.mark.parametrize(("truncate", "clip_norm"), [(None, None), (2, None), (None, 0.05)])
def test_one_sgd_step_is_the_step_on_the_gradient_of_the_total_loss(truncate, clip_norm):
    """θ − lr · ∇J (truncated to t − k < K; clipped to a global norm c as torch's
    clip_grad_norm_: ∇J · c / (‖∇J‖ + 1e-6))."""
    from bptt import heads

    rng = np.random.default_rng(6)
    X = ragged(rng, 9, 2, low=4, high=8)
    y = rng.integers(0, 2, len(X))
    est = small(bptt.SequenceClassifier, epochs=1, batch_size=len(X), optimizer="sgd", lr=0.5,
                truncate=truncate, clip_norm=clip_norm).fit(X, y)
    params = initial_params(bptt.SequenceClassifier, 2, 2)
    x, n = as_padded(X)
    inputs = x.transpose(1, 0, 2)
    grads = heads.backprop(params, inputs, y, "softmax_last", n, truncate=truncate).grads
    full = heads.backprop(params, inputs, y, "softmax_last", n).grads
    if truncate is not None:  # (else the test would not see truncate dropped)
        assert not np.allclose(grads["Whh"], full["Whh"])
    norm = np.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    scale = 1.0 if clip_norm is None else min(1.0, clip_norm / (norm + 1e-6))
    assert scale < 1 or clip_norm is None
    for key, value in params.items():
        np.testing.assert_allclose(est.params_[key], value - 0.5 * scale * grads[key],
                                   rtol=1e-10, atol=1e-13, err_msg=key)


def test_a_callback_returning_true_stops_the_fit_after_that_epoch():
    rng = np.random.default_rng(7)
    X = ragged(rng, 20, 2)
    calls = []
    est = small(bptt.SequenceClassifier, epochs=5).fit(
        X, rng.integers(0, 2, 20), callback=lambda epoch, loss: calls.append((epoch, loss))
        or epoch == 2)
    assert est.n_iter_ == 2 and calls == [(1, est.loss_curve_[0]), (2, est.loss_curve_[1])]


def test_a_callback_that_is_not_callable_is_refused_before_the_fitted_model_is_touched():
    """It was called only after the first epoch: Python's TypeError, the fitted model
    replaced by one trained for an epoch."""
    clf = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, GOOD_Y)
    before = clf.predict_proba(GOOD_X)
    with pytest.raises(BpttError, match=re.escape("callback must be a function of (epoch, "
                                                  "mean_loss) or None, got 3")):
        clf.fit(GOOD_X, GOOD_Y, callback=3)
    np.testing.assert_array_equal(clf.predict_proba(GOOD_X), before)
    assert clf.n_steps_ == 1


def test_forget_bias_on_a_cell_without_a_forget_gate_is_refused():
    with pytest.raises(BpttError, match=re.escape(
            "forget_bias applies to the lstm cell only, not 'gru'")):
        small(bptt.SequenceClassifier, forget_bias=1.0).fit([np.ones((3, 1))] * 2, [0, 1])
    # refused by fit's checks, before the fitted model is set aside (init_params's own
    # refusal came after: the fitted gru was lost)
    clf = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, GOOD_Y)
    before = clf.predict_proba(GOOD_X)
    with pytest.raises(BpttError, match="forget_bias applies to the lstm cell only, not 'gru'"):
        clf.set_params(forget_bias=1.0).fit(GOOD_X, GOOD_Y)
    np.testing.assert_array_equal(clf.predict_proba(GOOD_X), before)


@pytest.mark.parametrize("per_step", [False, True])
def test_predictions_are_the_same_one_sequence_or_chunk_at_a_time(per_step, monkeypatch):
    """predict runs PREDICT_CHUNK sequences per forward pass: the last chunk, and a single
    sequence, are predicted as in one pass over them all."""
    rng = np.random.default_rng(1)
    X = ragged(rng, 5, 2)
    y = [np.arange(len(x)) % 2 for x in X] if per_step else np.arange(5) % 2
    clf = small(bptt.SequenceClassifier, per_step=per_step, epochs=1).fit(X, y)
    whole = clf.predict_proba(X)
    monkeypatch.setattr(estimators, "PREDICT_CHUNK", 2)
    for i in range(5):
        np.testing.assert_allclose(clf.predict_proba(X[i:i + 1])[0], whole[i], rtol=1e-12)
    for a, b in zip(clf.predict_proba(X), whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_one_dimensional_sequences_are_one_feature_per_step_of_the_dtype_asked():
    x, n = as_padded([np.arange(3.0), np.arange(1.0, 3.0)], dtype=np.float32)
    assert x.dtype == np.float32 and x.shape == (2, 3, 1) and n.tolist() == [3, 2]
    assert x[:, :, 0].tolist() == [[0, 1, 2], [1, 2, 0]]


def test_boolean_steps_are_read_as_0_and_1_in_a_list_or_a_padded_array():
    bits = np.array([[[True], [False], [True]], [[False], [True], [False]]])
    for X, kw in ((bits, {"lengths": [3, 2]}), ([bits[0], bits[1, :2]], {})):
        x, n = as_padded(X, dtype=np.float64, **kw)
        assert x.dtype == np.float64 and n.tolist() == [3, 2]
        assert x[:, :, 0].tolist() == [[1, 0, 1], [0, 1, 0]]


def test_save_into_a_path_without_suffix_keeps_info_steps_and_the_classes_dtype(tmp_path):
    rng = np.random.default_rng(8)
    X = ragged(rng, 10, 2)
    clf = small(bptt.SequenceClassifier).fit(X, np.array([3, 5] * 5, dtype=np.int32))
    # a path without a suffix is a directory, never the file itself: made (with its
    # parents) when missing, as `bptt import` and `bptt train --out` make theirs, but not
    # before what would refuse the save has been checked
    with pytest.raises(BpttError, match="checkpoint metadata must be JSON"):
        clf.save(tmp_path / "runs" / "run", info={"task": object()})
    assert list(tmp_path.iterdir()) == []
    file = clf.save(tmp_path / "runs" / "run", info={"task": "mine"})
    assert file == tmp_path / "runs" / "run" / "model.safetensors" and file.is_file()
    # a file's own name: its directory must exist
    with pytest.raises(CheckpointError, match="other does not exist; create it first"):
        clf.save(tmp_path / "other" / "clf.safetensors")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(BpttError, match=re.escape(
            f"cannot create the directory {tmp_path / 'a_file' / 'run'}: ")):
        clf.save(tmp_path / "a_file" / "run")
    assert checkpoint.load_model(file).meta["info"] == {"task": "mine"}
    back = bptt.SequenceClassifier.load(file)
    assert back.n_steps_ == clf.n_steps_ == 4
    assert back.classes_.dtype == np.int32 and back.classes_.tolist() == [3, 5]


def test_partial_fit_refuses_classes_of_one_label():
    with pytest.raises(BpttError, match="classes must hold at least two labels"):
        small(bptt.SequenceClassifier).partial_fit([np.ones((2, 1))] * 2, [1, 1], classes=[1])


def test_score_refuses_y_with_another_number_of_outputs():
    rng = np.random.default_rng(9)
    X = ragged(rng, 6, 2)
    reg = small(bptt.SequenceRegressor).fit(X, rng.normal(size=6))
    with pytest.raises(BpttError, match=re.escape("y has 2 outputs but the model has 1")):
        reg.score(X, rng.normal(size=(6, 2)))


def test_r2_of_a_constant_target_is_one_if_predicted_exactly_else_zero():
    assert r2_score(np.array([3.0, 3.0]), np.array([3.0, 3.0])) == 1.0
    assert r2_score(np.array([3.0, 3.0]), np.array([3.0, 4.0])) == 0.0
    assert r2_score(np.array([3.0, 3.0]), np.array([3.0, 5.0])) == 0.0  # not 1 − SS_res
    # columns averaged: 1 − 2/2 = 0 for the first, 1 (constant, exact) for the second
    assert r2_score(np.array([[1.0, 2.0], [3.0, 2.0]]), np.array([[2.0, 2.0], [2.0, 2.0]])) == 0.5


def test_per_step_probabilities_and_r2_are_those_of_each_real_step():
    from bptt import ops

    rng = np.random.default_rng(10)
    X = ragged(rng, 8, 2)
    clf = small(bptt.SequenceClassifier, per_step=True).fit(
        X, [rng.integers(0, 3, len(x)) for x in X])
    for seq, proba in zip(X, clf.predict_proba(X), strict=True):
        np.testing.assert_allclose(proba, ops.softmax(logits_of(clf.params_, seq)), rtol=1e-12)
    y = [rng.normal(size=len(x)) for x in X]
    reg = small(bptt.SequenceRegressor, per_step=True).fit(X, y)
    truth = np.concatenate(y)
    predicted = np.concatenate([logits_of(reg.params_, seq)[:, 0] for seq in X])
    r2 = 1 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert reg.score(X, y) == pytest.approx(r2, rel=1e-12)


def test_each_epoch_steps_through_the_sequences_in_a_new_random_order():
    """batch_size 1, sgd: epoch e's steps take the sequences in the order of the e-th
    permutation drawn from the generator that drew the initial weights."""
    from bptt import heads

    rng = np.random.default_rng(11)
    X = ragged(rng, 5, 2)
    y = np.array([0, 1, 1, 0, 1])
    est = small(bptt.SequenceClassifier, epochs=2, batch_size=1, optimizer="sgd", lr=0.3,
                clip_norm=None).fit(X, y)
    draw = np.random.default_rng(0)
    params = bptt.init_params("gru", 2, 8, 2, True, draw, np.float64, 1)
    orders = [draw.permutation(5) for _ in range(2)]
    assert orders[0].tolist() != list(range(5)) and orders[0].tolist() != orders[1].tolist()
    for i in np.concatenate(orders):
        grads = heads.backprop(params, X[i][:, None, :], y[i:i + 1], "softmax_last").grads
        params = {k: v - 0.3 * grads[k] for k, v in params.items()}
    for key, value in params.items():
        np.testing.assert_allclose(est.params_[key], value, rtol=1e-10, atol=1e-13, err_msg=key)


def test_per_step_predictions_are_the_class_labels():
    rng = np.random.default_rng(12)
    X = ragged(rng, 12, 2)
    names = np.array(["cold", "hot", "warm"])
    y = [names[rng.integers(0, 3, len(x))] for x in X]
    clf = small(bptt.SequenceClassifier, per_step=True).fit(X, y)
    for seq, predicted in zip(X, clf.predict(X), strict=True):
        expected = clf.classes_[bptt.forward(clf.params_, seq[:, None, :]).logits[:, 0].argmax(-1)]
        assert predicted.tolist() == expected.tolist() and set(predicted) <= set(names)


def test_sequences_without_features_or_targets_without_values_are_refused_before_the_fit():
    """X with 0 features per step (or y of 0 columns) reached init_params, whose error named
    its input_size (output_size), after fit had set the fitted model aside: it was lost."""
    clf = small(bptt.SequenceClassifier, epochs=1).fit(GOOD_X, GOOD_Y)
    before = clf.predict_proba(GOOD_X)
    for X in ([np.ones((3, 0))] * 3, np.ones((3, 4, 0))):
        with pytest.raises(BpttError, match=re.escape("X has 0 features per step")):
            clf.fit(X, GOOD_Y)
        np.testing.assert_array_equal(clf.predict_proba(GOOD_X), before)
    reg = small(bptt.SequenceRegressor, epochs=1).fit(GOOD_X, [0.5, 1.0, 2.0])
    per_step = small(bptt.SequenceRegressor, epochs=1, per_step=True)
    for est, y in ((reg, np.ones((3, 0))), (per_step, [np.ones((len(x), 0)) for x in GOOD_X])):
        with pytest.raises(BpttError, match=re.escape("y has 0 values per target")):
            est.fit(GOOD_X, y)
    assert reg.n_outputs_ == 1 and reg.predict(GOOD_X).shape == (3,)


@pytest.mark.parametrize("cls, per_step, y, message", [
    (bptt.SequenceClassifier, False, np.array(1), "y has no entries but X has 3 sequences"),
    (bptt.SequenceRegressor, False, np.array(1.0), "y has no entries but X has 3 sequences"),
    (bptt.SequenceClassifier, False, [[0, 1], [1], [0]], "y must be a rectangular array"),
    (bptt.SequenceRegressor, False, [[0.5, 1.0], [1.0], [2.0]], "y must be a rectangular array"),
    (bptt.SequenceClassifier, True, [[0, 1, 0], [[1], [0, 1], 0, 1, 0], [0, 1]],
     "y[1] must be a rectangular array"),
    (bptt.SequenceRegressor, True, [np.ones(3), [[1.0], [0.5, 1.0], 0, 1, 0], np.ones(2)],
     "y[1] must be a rectangular array"),
])
def test_y_numpy_cannot_make_an_array_of_is_one_clear_error(cls, per_step, y, message):
    """A 0-d array y raised len()'s TypeError, a ragged y numpy's own ValueError."""
    with pytest.raises(BpttError, match=re.escape(message)):
        small(cls, per_step=per_step).fit(GOOD_X, y)


@pytest.mark.parametrize("cls, X, y, message", [
    (bptt.SequenceRegressor, np.ones((3, 4, 2)), np.ones((3, 5)),
     "y has shape (3, 5): per-step targets padded like X must be (N, T) = (3, 4) or (N, T, V)"),
    (bptt.SequenceRegressor, np.ones((3, 4, 2)), np.ones((3, 4, 2, 1)),
     "y has shape (3, 4, 2, 1): per-step targets padded like X must be (N, T) = (3, 4) or "
     "(N, T, V)"),
    (bptt.SequenceRegressor, GOOD_X, [np.ones(3), np.ones(5), np.ones(2), np.ones(2)],
     "y has 4 sequences but X has 3"),
    (bptt.SequenceRegressor, GOOD_X, [np.ones(4), np.ones(5), np.ones(2)],
     "y[0] has 4 steps but X[0] has 3"),  # (a longer y, as a shorter one, is refused)
    (bptt.SequenceRegressor, GOOD_X, [np.ones((3, 2)), np.ones((5, 1)), np.ones((2, 2))],
     "per-step y: every step must hold the same number of values"),
    (bptt.SequenceClassifier, GOOD_X, [np.ones((len(x), 2), dtype=int) for x in GOOD_X],
     "per-step y: every step must hold one label"),
])
def test_per_step_targets_of_another_shape_than_x_are_one_clear_error(cls, X, y, message):
    """Targets longer than their sequence, of a padded length other than X's, or of another
    number of values per step: refused in words, not cut, broadcast or an IndexError."""
    with pytest.raises(BpttError, match=re.escape(message)):
        small(cls, per_step=True).fit(X, y)


def test_per_step_targets_of_integers_and_floats_are_all_read_as_numbers():
    """The padded targets take the dtype of them all: a float sequence after an integer one
    keeps its fractions (the first sequence's dtype would have made 0.5 a 0)."""
    mixed = [np.arange(3), np.full(5, 0.5), np.full(2, 0.25)]
    floats = [a.astype(np.float64) for a in mixed]
    a = small(bptt.SequenceRegressor, per_step=True, epochs=1).fit(GOOD_X, mixed)
    b = small(bptt.SequenceRegressor, per_step=True, epochs=1).fit(GOOD_X, floats)
    assert a.loss_curve_ == b.loss_curve_
    for key in a.params_:
        np.testing.assert_array_equal(a.params_[key], b.params_[key])


@pytest.mark.parametrize("y", [
    [["a", "b", "a"], ["b", 1, "a", "a", "b"], ["a", "b"]],  # mixed inside one sequence
    [np.array(["a", "b", "a"]), np.ones(5, dtype=int), np.array(["a", "b"])],  # across them
])
def test_per_step_labels_mixing_strings_with_numbers_are_refused_as_per_sequence_ones(y):
    """numpy made the number 1 the string '1', a class of its own, without a word."""
    with pytest.raises(BpttError, match="y mixes strings with other labels"):
        small(bptt.SequenceClassifier, per_step=True).fit(GOOD_X, y)


def test_a_continuous_target_is_refused_by_the_classifier():
    # every distinct float was a class of its own: 40 samples, 40 classes, and no word
    y = np.random.default_rng(0).normal(size=len(GOOD_X))
    with pytest.raises(BpttError, match=r"y holds numbers that are not whole \(-?0\.\d+\), a "
                                        "continuous target: a classifier takes class labels"):
        small(bptt.SequenceClassifier).fit(GOOD_X, y)
    # whole numbers in floats are classes (as scikit-learn's "multiclass" reads them)
    clf = small(bptt.SequenceClassifier).fit(GOOD_X, np.array(GOOD_Y, dtype=float))
    np.testing.assert_array_equal(clf.classes_, np.unique(GOOD_Y).astype(float))


@pytest.mark.parametrize("per_step", [False, True])
def test_labels_in_an_object_array_are_read_as_the_strings_or_numbers_they_are(per_step):
    # pandas gives a column of text as an object array: it was refused, "labels of dtype
    # object: labels must be numbers, booleans or strings", though every label was a string
    words = np.array(["neg", "pos"])
    ids = np.arange(len(GOOD_X)) % 2
    if per_step:
        seq_ids = [np.arange(len(x)) % 2 for x in GOOD_X]
        as_text = [words[i] for i in seq_ids]
        y = [np.array(list(t), dtype=object) for t in as_text]
    else:
        as_text, y = words[ids], np.array(list(words[ids]), dtype=object)
    text = small(bptt.SequenceClassifier, per_step=per_step).fit(GOOD_X, as_text)
    objects = small(bptt.SequenceClassifier, per_step=per_step).fit(GOOD_X, y)
    assert objects.classes_.dtype.kind == "U"
    np.testing.assert_array_equal(objects.classes_, text.classes_)
    for a, b in zip(objects.predict_proba(GOOD_X), text.predict_proba(GOOD_X), strict=True):
        np.testing.assert_array_equal(a, b)
    assert objects.score(GOOD_X, y) == text.score(GOOD_X, as_text)
    numbers = np.array([1, 2] * len(GOOD_X), dtype=object)[: len(GOOD_X)]
    assert small(bptt.SequenceClassifier).fit(GOOD_X, numbers).classes_.tolist() == [1, 2]
    for odd, message in (([1, "a"], "y mixes strings with other labels"),
                         ([None, "a"], "y mixes strings with other labels"),
                         ([None, 1], "y holds labels of type NoneType, int: labels must")):
        y_odd = np.array(odd * len(GOOD_X), dtype=object)[: len(GOOD_X)]
        with pytest.raises(BpttError, match=re.escape(message)):
            small(bptt.SequenceClassifier).fit(GOOD_X, y_odd)


@pytest.mark.parametrize("classes, message", [
    ([0, 1, None], "classes holds labels of type NoneType, int: labels must be"),  # was
    # np.unique's TypeError
    ([0.0, 0.5, 1.0], "classes holds numbers that are not whole (0.5), a continuous target"),
    ([0.0, 1.0, np.nan], "classes contains NaN or inf"),  # was a class no label can be
    ([0, "1"], "classes mixes strings with other labels"),  # was the classes '0', '1'
    ([[0, 1], [1, 0]], "classes has shape (2, 2): one label per class"),
    (0, "classes has shape (): one label per class"),
])
def test_partial_fit_checks_classes_as_fit_checks_labels(classes, message):
    clf = small(bptt.SequenceClassifier)
    with pytest.raises(BpttError, match=re.escape(message)):
        clf.partial_fit(GOOD_X, GOOD_Y, classes=classes)
    assert not hasattr(clf, "classes_") and not hasattr(clf, "params_")


def test_a_save_that_fails_leaves_no_directory_it_made(tmp_path, tweets, monkeypatch):
    clf = small(bptt.SequenceClassifier, epochs=1).fit(as_list(tweets)[:40], tweets.y[:40])

    def full(*args, **kwargs):
        raise CheckpointError("cannot write it: No space left on device.")

    monkeypatch.setattr(checkpoint, "write_safetensors_atomic", full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        clf.save(tmp_path / "models" / "clf")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------
# memory: sequences are stored without their padding
# ----------------------------------------------------------------------------


def test_steps_hold_the_real_steps_and_pad_each_batch_as_the_padded_array():
    """as_steps keeps each sequence's steps once, (Σ T_i, D), cast as as_padded casts them; a
    batch of any rows is the padded array's x[rows, :T], time-major; a padded X with lengths
    keeps its real steps only."""
    rng = np.random.default_rng(3)
    X = [rng.integers(-9, 9, size=(int(n), 2)) for n in rng.integers(1, 9, 30)]
    for dtype in (np.float32, np.float64):
        steps = estimators.as_steps(X, dtype=dtype)
        padded, n = as_padded(X, dtype=dtype)
        assert steps.rows.shape == (sum(len(x) for x in X), 2) and steps.rows.dtype == dtype
        np.testing.assert_array_equal(steps.rows, np.concatenate(X).astype(dtype))
        rows = rng.permutation(30)[:7]
        T = int(n[rows].max())
        batch = steps.batch(rows, T)
        np.testing.assert_array_equal(batch, padded[rows, :T].transpose(1, 0, 2))
        assert batch.dtype == dtype and batch.flags.c_contiguous
        again = estimators.as_steps(padded, n, dtype)
        np.testing.assert_array_equal(again.rows, steps.rows)
        np.testing.assert_array_equal(again.padded(), padded)


def test_one_long_sequence_does_not_pad_every_other_to_its_length():
    """fit holds each sequence's steps, not N × T_max × D: 1,000 sequences of 3 steps and one
    of 4,000 padded to it were 1,001 × 4,000 × 6 float64s (192 MB); now each minibatch is
    padded to its own longest.  (predict still runs a chunk of up to 1,024 sequences to the length
    of its longest.)"""
    import tracemalloc

    rng = np.random.default_rng(0)
    X = [rng.normal(size=(3, 6)) for _ in range(1000)] + [rng.normal(size=(4000, 6))]
    y = [float(x[:, 0].sum()) for x in X]
    reg = small(bptt.SequenceRegressor, hidden_size=2, epochs=1, batch_size=4)
    tracemalloc.start()
    try:
        reg.fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6, f"fit's peak: {peak / 1e6:.0f} MB"
    assert reg.n_steps_ == 251 and np.isfinite(reg.loss_curve_[0])


def test_each_minibatch_is_padded_to_its_own_longest_sequence(monkeypatch):
    """The module's promise: a batch of short sequences is not run to the length of the
    longest sequence of the data (the steps of the backward pass grow with it)."""
    from bptt import heads

    backprop, seen = heads.backprop, []

    def recording(params, inputs, y, head, lengths, **kw):
        seen.append((inputs.shape[0], int(np.max(lengths))))
        return backprop(params, inputs, y, head, lengths, **kw)

    monkeypatch.setattr(heads, "backprop", recording)
    X = [np.ones((2, 1))] * 6 + [np.ones((9, 1))]
    small(bptt.SequenceRegressor, epochs=2, batch_size=2).fit(X, np.arange(7.0))
    assert len(seen) == 8 and all(T == longest for T, longest in seen)
    assert sorted(T for T, _ in seen) == [2, 2, 2, 2, 2, 2, 9, 9]
