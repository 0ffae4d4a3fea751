"""Generation: valid distributions, temperature limits, determinism, prime checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bptt
from bptt import sample
from bptt.sample import draw, generate, next_token_distribution, sample_text

VOCAB = list("abcde\n")


def model(cell="rnn"):
    return bptt.init_params(cell, 6, 8, 6, rng=np.random.default_rng(0))


@settings(max_examples=100, deadline=None)
@given(
    logits=st.lists(st.floats(-50, 50), min_size=1, max_size=20),
    temperature=st.floats(1e-3, 1e3),
)
def test_distribution_is_valid_for_any_logits_and_temperature(logits, temperature):
    p = next_token_distribution(np.array(logits), temperature)
    assert np.all(p >= 0) and abs(p.sum() - 1) < 1e-12


def test_temperature_limits():
    y = np.array([1.0, 3.0, 2.0])
    cold = next_token_distribution(y, 1e-4)
    hot = next_token_distribution(y, 1e6)
    assert cold[1] == pytest.approx(1.0)
    np.testing.assert_allclose(hot, 1 / 3, atol=1e-5)
    # the smallest temperatures: all but the largest logit go to 0 (greedy), no overflow to NaN
    for temperature in (1e-300, 5e-324):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            np.testing.assert_array_equal(next_token_distribution(y, temperature), [0, 1, 0])
        params = dict(model(), Why=model()["Why"] * 50)
        greedy = sample_text(params, VOCAB, 20, prime="a", greedy=True)
        assert sample_text(params, VOCAB, 20, temperature, "a", np.random.default_rng(1)) == greedy


def test_the_distribution_refuses_what_is_not_a_temperature_or_logits():
    # temperature 0 gave NaN and −1 the inverted distribution, silently
    for temperature in (0, -1.0, "1"):
        with pytest.raises(bptt.BpttError, match="temperature must be a finite number > 0"):
            next_token_distribution([1.0, 2.0, 3.0], temperature)
    with pytest.raises(bptt.BpttError, match=r"logits must be one vector \(V,\)"):
        next_token_distribution([], 1.0)
    # NaN or +inf logits gave a distribution of NaN, silently (and draw() an index from it)
    inf = float("inf")
    for logits in ([float("nan"), 1.0], [inf, 1.0], [-inf, -inf]):
        with pytest.raises(bptt.BpttError, match="logits must be finite numbers or −inf"):
            next_token_distribution(logits, 1.0)
    with pytest.raises(bptt.BpttError, match="logits must be real numbers"):
        next_token_distribution(["a", "b"], 1.0)
    # −inf masks a token out
    np.testing.assert_allclose(next_token_distribution([-inf, 0.0, 0.0], 1.0), [0, 0.5, 0.5])


def test_draw_follows_the_distribution():
    rng = np.random.default_rng(0)
    p = np.array([0.1, 0.6, 0.3])
    counts = np.bincount([draw(p, rng) for _ in range(20000)], minlength=3) / 20000
    np.testing.assert_allclose(counts, p, atol=0.015)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_generation_is_deterministic_under_a_seed_and_continues_the_state(cell):
    params = model(cell)
    a = sample_text(params, VOCAB, 50, prime="ab", rng=np.random.default_rng(3))
    b = sample_text(params, VOCAB, 50, prime="ab", rng=np.random.default_rng(3))
    assert a == b and len(a) == 50 and set(a) <= set(VOCAB)
    greedy = sample_text(params, VOCAB, 5, prime="ab", greedy=True)
    # greedy decoding by hand: argmax, fed back, state carried
    ids = [VOCAB.index(c) for c in "ab"]
    fwd = bptt.forward(params, np.array(ids)[:, None])
    out, state, logits = [], fwd.state, fwd.logits[-1, 0]
    for _ in range(5):
        token = int(np.argmax(logits))
        out.append(VOCAB[token])
        fwd = bptt.forward(params, np.array([[token]]), state)
        state, logits = fwd.state, fwd.logits[0, 0]
    assert greedy == "".join(out)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sampling_on_kept_memory_is_sampling_with_fresh_forwards(cell):
    """The loop keeps its memory, and the cells' copies of the weights, from one character
    to the next: what it draws is what a fresh forward per character gives (two layers)."""
    params = bptt.init_params(cell, len(VOCAB), 6, len(VOCAB), rng=np.random.default_rng(5),
                              num_layers=2)
    got = sample_text(params, VOCAB, 30, 0.7, prime="abca", rng=np.random.default_rng(6))
    rng = np.random.default_rng(6)
    fwd = bptt.forward(params, np.array([VOCAB.index(c) for c in "abca"])[:, None])
    out, state, logits = [], fwd.state, fwd.logits[-1, 0]
    for _ in range(30):
        token = draw(sample.next_token_distribution(logits, 0.7), rng)
        out.append(VOCAB[token])
        fwd = bptt.forward(params, np.array([[token]]), state)
        state, logits = fwd.state, fwd.logits[0, 0]
    assert got == "".join(out)


def test_bad_prime_and_temperature_fail_before_any_output():
    params = model()
    with pytest.raises(ValueError, match=r"not in the model's vocabulary: 'z'"):
        generate(params, VOCAB, 5, prime="az")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        generate(params, VOCAB, 5, temperature=0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        generate(params, VOCAB, 5, temperature=float("nan"))
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got True"):
        generate(params, VOCAB, 5, temperature=True)
    assert len(sample_text(params, VOCAB, 5, temperature=np.float32(0.5))) == 5
    with pytest.raises(ValueError, match=r"rng must be a numpy Generator, e\.g\. np\.random\.default_rng"):
        generate(params, VOCAB, 5, rng=0)
    wider = bptt.init_params("rnn", 6, 8, 7, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="vocab has 6 characters, the model 6 inputs and 7 outputs"):
        generate(wider, VOCAB, 5)


def test_a_vocabulary_and_prime_are_checked_before_sampling():
    # 'a' listed twice read the prime's 'a' as id 1; a prime of None or 5 was a raw TypeError
    params = bptt.init_params("rnn", 4, 3, 4, rng=np.random.default_rng(0))
    with pytest.raises(bptt.BpttError, match="lists 'a' twice"):
        sample_text(params, list("aabc"), 3, prime="a")
    with pytest.raises(bptt.BpttError, match="prime must be a string"):
        sample_text(params, list("abcd"), 3, prime=5)
    rng = np.random.default_rng(0)
    assert sample_text(params, list("abcd"), 3, prime=None, rng=rng) == sample_text(
        params, list("abcd"), 3, prime="", rng=np.random.default_rng(0))


def _peak_bytes_reading(params, prime: str) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        sample_text(params, VOCAB, 1, prime=prime, rng=np.random.default_rng(0))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_long_prime_is_read_in_chunks_with_the_state_carried(monkeypatch):
    """Reading the prime chunk by chunk, the state carried, is reading it whole (float64:
    the same draws), and the memory it takes does not grow with the prime's length (a
    prime four times as long: about the same peak; read whole, four times the peak)."""
    params = bptt.init_params("lstm", 6, 8, 6, rng=np.random.default_rng(0), dtype=np.float64)
    prime = "".join(np.random.default_rng(1).choice(VOCAB, 100))
    whole = sample_text(params, VOCAB, 40, prime=prime, rng=np.random.default_rng(2))
    monkeypatch.setattr(sample, "PRIME_CHUNK", 7)
    assert sample_text(params, VOCAB, 40, prime=prime, rng=np.random.default_rng(2)) == whole
    monkeypatch.setattr(sample, "PRIME_CHUNK", 1000)
    short, long = (_peak_bytes_reading(params, prime * n) for n in (12, 48))  # 1.2k and 4.8k
    assert long < 2 * short, (short, long)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_the_distribution_is_the_softmax_of_the_logits_over_the_temperature(temperature):
    y = np.array([1.0, 3.0, 2.0, -0.5])
    expected = np.exp(y / temperature) / np.exp(y / temperature).sum()
    np.testing.assert_allclose(next_token_distribution(y, temperature), expected,
                               rtol=1e-14, atol=0)


class _Uniform:
    """A stand-in generator whose uniform numbers are given."""

    def __init__(self, *values: float) -> None:
        self.values = iter(values)

    def random(self) -> float:
        return next(self.values)


def test_draw_never_takes_a_token_of_probability_0():
    # inverse CDF: u in [0, 1) falls in the first bin whose cumulative sum exceeds it; a
    # masked token (p = 0) has an empty bin, even at u = 0 and at the largest u below 1
    p = np.array([0.0, 0.25, 0.0, 0.75, 0.0])
    largest = 1 - 2.0**-53
    draws = [sample._draw(p, _Uniform(u)) for u in (0.0, 0.2, 0.25, 0.5, largest)]
    assert draws == [1, 1, 3, 3, 3]
    # should u·Σp round up to Σp (u = 1 stands for it), the last token of weight above 0;
    # a cap at the last index took the masked token after it
    assert sample._draw(p, _Uniform(1.0)) == 3


@pytest.mark.parametrize("weight", [1e308, 3e-324])
def test_draw_splits_weights_whose_sum_overflows_or_is_subnormal(weight):
    # 2e308 is inf (every u·inf was past the last bin: the masked token, every time), and
    # a subnormal sum has a bit or two to split by (the masked token a quarter of the time)
    rng = np.random.default_rng(0)
    counts = np.bincount([draw([weight, weight, 0.0], rng) for _ in range(2000)], minlength=3)
    assert counts[2] == 0
    np.testing.assert_allclose(counts[:2] / 2000, [0.5, 0.5], atol=0.05)


def test_draw_refuses_what_is_not_a_distribution_or_a_generator():
    # NaN weights drew the last index and negative ones bent the cumulative sum, silently;
    # a seed in place of the Generator failed as an AttributeError
    for p in ([0.5, float("nan")], [0.5, float("inf")], [1.0, -0.5, 0.5], [0.0, 0.0],
              [1e308, 1e308, -1.0]):  # (its sum overflows: no numpy warning on the way)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(bptt.BpttError, match="p must be finite weights >= 0 with a sum"):
                draw(np.array(p), np.random.default_rng(0))
    for p in ([], [[0.5, 0.5]]):
        with pytest.raises(bptt.BpttError, match=r"p must be one vector \(V,\) with V >= 1"):
            draw(p, np.random.default_rng(0))
    for p in (["a", "b"], [True, False], [1j, 1.0]):
        with pytest.raises(bptt.BpttError, match="p must hold real numbers"):
            draw(p, np.random.default_rng(0))
    with pytest.raises(bptt.BpttError, match="rng must be a numpy Generator"):
        draw([0.5, 0.5], 3)
    # weights need not be normalised; integers are weights too
    assert draw([0, 3, 0], np.random.default_rng(0)) == 1


def sharp_model(cell="rnn"):
    """A model whose next character depends strongly on the last (its weights times 5)."""
    return {k: 5 * v for k, v in model(cell).items()}


def _samples(params, vocab, primes, **kwargs):
    return [sample_text(params, vocab, 30, prime=prime, rng=np.random.default_rng(4), **kwargs)
            for prime in primes]


def test_without_a_prime_generation_starts_from_a_newline_else_the_first_character():
    params = sharp_model()
    none, newline, first = _samples(params, VOCAB, ["", "\n", "a"])
    assert none == newline != first
    none, first, second = _samples(params, list("abcdef"), ["", "a", "b"])
    assert none == first != second
    assert sample_text(params, VOCAB, 0, prime="ab") == ""


def test_a_prime_reads_characters_outside_the_vocabulary_as_the_unknown_token():
    params = sharp_model()
    [got] = _samples(params, VOCAB, ["ab☃"], unk="e")
    unk_read, first_read = _samples(params, VOCAB, ["abe", "aba"])
    assert got == unk_read != first_read
    with pytest.raises(bptt.DataError, match="the unknown-character token '~' is not in the "
                                             "model's vocabulary"):
        sample_text(params, VOCAB, 3, prime="a", unk="~")


def test_stop_cuts_the_sample_right_after_its_first_occurrence():
    params = model()
    whole = sample_text(params, VOCAB, 200, prime="ab", rng=np.random.default_rng(8))
    for stop in ("a", "\n", "cd"):
        end = whole.index(stop) + len(stop)
        assert end < len(whole), stop
        assert sample_text(params, VOCAB, 200, prime="ab", rng=np.random.default_rng(8),
                           stop=stop) == whole[:end]
    with pytest.raises(bptt.DataError, match=r"the stop text has character\(s\) the model "
                                             r"cannot generate: 'z'"):
        sample_text(params, VOCAB, 3, stop="az")


def test_a_model_of_another_input_size_than_the_vocabulary_is_refused():
    wider_inputs = bptt.init_params("rnn", 7, 8, 6, rng=np.random.default_rng(0))
    with pytest.raises(bptt.BpttError,
                       match="vocab has 6 characters, the model 7 inputs and 6 outputs"):
        generate(wider_inputs, VOCAB, 5)


@pytest.mark.parametrize("greedy", ["no", 1, None])
def test_greedy_that_is_not_true_or_false_is_refused(greedy):
    """greedy='no' (a true string) sampled greedily, silently (init_params's bias= is checked
    the same way)."""
    with pytest.raises(bptt.BpttError, match=r"^greedy must be True or False, got"):
        sample_text(model(), VOCAB, 5, greedy=greedy, rng=np.random.default_rng(0))


@pytest.mark.parametrize("unk", [["a"], {"a": 1}])
def test_an_unknown_token_that_is_no_string_is_named(unk):
    """unk=['a'] was TypeError: unhashable type: 'list'."""
    with pytest.raises(bptt.BpttError, match=r"unknown-character token .* is not in the model"):
        sample_text(model(), VOCAB, 5, prime="xa", unk=unk, rng=np.random.default_rng(0))


def test_complex_logits_are_refused_not_cut_to_their_real_part():
    """Complex logits lost their imaginary part with only numpy's ComplexWarning."""
    with pytest.raises(bptt.BpttError, match="logits must be real numbers"):
        next_token_distribution(np.array([1j, 2.0]), 1.0)


@pytest.mark.parametrize("cell, layers", [("rnn", 1), ("lstm", 2), ("gru", 2)])
def test_a_state_that_overflows_stops_generation_before_it_is_fed_back(cell, layers):
    """The loop carries the state itself (not through bptt.forward, which checks the state it
    is given): one that overflowed to NaN or inf still ends generation, with the error
    bptt.forward gives, right before it would be fed back: the characters yielded are those
    up to the first state that is not finite, and the one drawn from it."""
    params = bptt.init_params(cell, len(VOCAB), 4, len(VOCAB), rng=np.random.default_rng(0),
                              dtype=np.float32, num_layers=layers)
    for key in params:  # weights of ±3e38: their products overflow, inf − inf is NaN
        if key.startswith(("Wxh", "Whh")):
            params[key] = (np.sign(params[key]) * 3e38).astype(np.float32)
    got = []
    with np.errstate(all="ignore"), pytest.raises(bptt.BpttError, match=r"^h0 contains NaN or inf$"):
        for char in generate(params, VOCAB, 50, rng=np.random.default_rng(1)):
            got.append(char)
    assert 1 <= len(got) < 50

    def finite_state_after(text):
        with np.errstate(all="ignore"):
            state = bptt.forward(params, np.array([VOCAB.index(c) for c in text])[:, None]).state
        return all(np.isfinite(part).all() for part in (state if cell == "lstm" else [state]))

    assert finite_state_after("\n" + "".join(got[:-2]))
    assert not finite_state_after("\n" + "".join(got[:-1]))


# --- mutation audit: sample.py's checks, its stop and its command ---------------------------


@pytest.mark.parametrize("stop", ["", 5])
def test_a_stop_text_that_is_empty_or_no_string_is_refused(stop):
    """An empty stop text is never found: unrefused, generation would run to its full length."""
    with pytest.raises(bptt.BpttError, match=rf"^the stop text must be a non-empty string, got "
                                             rf"{stop!r}$"):
        generate(model(), VOCAB, 5, stop=stop, rng=np.random.default_rng(0))


def test_a_prime_outside_the_vocabulary_is_counted_and_its_first_five_characters_named():
    with pytest.raises(bptt.DataError, match=r"^the prime text has 6 character\(s\) not in the "
                                             r"model's vocabulary: 'u', 'v', 'w', 'x', 'y'; use "
                                             r"only characters the model was trained on$"):
        generate(model(), VOCAB, 5, prime="abzyxwvu")


def _saved_model(tmp_path, config=None):
    """A model saved as a run directory, as bptt sample reads it (its params as loaded)."""
    from bptt import checkpoint

    (tmp_path / "run").mkdir()
    checkpoint.save_model(tmp_path / "run", sharp_model(), VOCAB, config)
    return checkpoint.load_model(tmp_path / "run").params


def test_the_sample_command_prints_the_prime_then_500_characters_at_temperature_1(
        tmp_path, capsys):
    from bptt import cli

    params = _saved_model(tmp_path)
    assert cli.main(["sample", str(tmp_path / "run"), "--prime", "ab", "--seed", "3"]) == 0
    expected = sample_text(params, VOCAB, 500, 1.0, "ab", np.random.default_rng(3))
    assert capsys.readouterr().out == "ab" + expected + "\n"


def test_the_sample_command_reads_a_prime_with_the_models_unknown_token(tmp_path, capsys):
    from bptt import cli

    params = _saved_model(tmp_path, {"unk": "e"})
    argv = ["sample", str(tmp_path / "run"), "--prime", "ab☃", "--length", "30", "--seed", "4"]
    assert cli.main(argv) == 0
    expected = sample_text(params, VOCAB, 30, 1.0, "abe", np.random.default_rng(4))
    assert capsys.readouterr().out == "ab☃" + expected + "\n"


def test_the_sample_command_refuses_an_empty_stop_text(tmp_path, capsys):
    from bptt import cli

    _saved_model(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sample", str(tmp_path / "run"), "--stop", ""])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "bptt: error: --stop needs at least one character\n"


def test_a_prime_read_in_chunks_reads_every_character(monkeypatch):
    """Chunks of 2 of a prime of 6 characters: 0–1, 2–3, 4–5, the last character among them
    (the sharp model's next character follows the last one read)."""
    params = sharp_model()
    whole = sample_text(params, VOCAB, 30, prime="abcdea", rng=np.random.default_rng(5))
    monkeypatch.setattr(sample, "PRIME_CHUNK", 2)
    assert sample_text(params, VOCAB, 30, prime="abcdea", rng=np.random.default_rng(5)) == whole


# ---- mutation audit (6): the vocabulary argument ----


def test_a_vocabulary_is_any_sequence_of_its_characters():
    """A str or a tuple of the characters is read as their list (the same ids, the same
    sample), as the annotation Sequence[str] promises."""
    params = model()
    drawn = [sample_text(params, vocab, 12, rng=np.random.default_rng(1))
             for vocab in (VOCAB, "".join(VOCAB), tuple(VOCAB))]
    assert drawn[1] == drawn[0] == drawn[2] and len(drawn[0]) == 12


@pytest.mark.parametrize("vocab, reason", [
    (5, "a vocabulary is a list of characters, got int 5."),
    (None, "a vocabulary is a list of characters, got NoneType None."),
    (list("aabcde"), "the vocabulary lists 'a' twice; each character must appear once."),
    (["ab", "c", "d", "e", "f", "g"], "a vocabulary entry must be a single character, got "
                                      "'ab'."),
])
def test_what_is_no_vocabulary_is_one_error_that_says_why(vocab, reason):
    # (a number or None was Python's own words, "'int' object is not iterable"; a wrong entry
    # was said to be a "damaged" list, the words for a checkpoint's, not an argument's)
    with pytest.raises(bptt.BpttError) as refused:
        generate(model(), vocab, 3)
    assert str(refused.value) == f"vocab cannot be used: {reason}"
