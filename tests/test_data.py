"""Tests for bptt.data: corpora, file errors, vocabularies, splits and stream batches."""

from __future__ import annotations

import json
import os
import re
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bptt.data import (
    BUILTIN_CORPUS_NAME,
    StreamBatcher,
    Vocab,
    builtin_corpus,
    check_unk,
    read_text,
    split_train_val,
)
from bptt.errors import BpttError, DataError

# ---------------------------------------------------------------- builtin corpus


def test_builtin_corpus_is_long_and_deterministic():
    from pydoc_data.topics import topics

    text = builtin_corpus()
    assert BUILTIN_CORPUS_NAME == "pydoc_data.topics"
    assert len(text) > 400_000
    assert builtin_corpus.__wrapped__() == text  # recomputed, not the cached object
    assert text == "\n".join(topics[k] for k in sorted(topics))
    assert text.startswith(topics[min(topics)])


def test_builtin_corpus_missing_module_suggests_a_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)
    with pytest.raises(DataError, match="FILE"):
        builtin_corpus.__wrapped__()


# ---------------------------------------------------------------- read_text


def test_read_text_reads_utf8_and_keeps_newlines(tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_bytes("héllo\r\nwörld ☃\n".encode())
    assert read_text(path) == "héllo\r\nwörld ☃\n"
    assert read_text(str(path)) == "héllo\r\nwörld ☃\n"


def test_read_text_drops_bom(tmp_path: Path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfabc")
    assert read_text(path) == "abc"


def test_read_text_missing_file(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        read_text(tmp_path / "nope.txt")


def test_read_text_directory(tmp_path: Path):
    with pytest.raises(DataError, match="is a directory"):
        read_text(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf"], ids=["empty", "only-bom"])
def test_read_text_empty_file(tmp_path: Path, content: bytes):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match="is empty"):
        read_text(path)


def test_read_text_binary_file(tmp_path: Path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"abc\x00\x01\x02def")
    with pytest.raises(DataError, match="binary"):
        read_text(path)


def test_read_text_names_a_utf16_file(tmp_path: Path):
    # (a prime file saved as "Unicode" by Notepad: not a binary file)
    path = tmp_path / "prime.txt"
    path.write_bytes("\ufeffhello".encode("utf-16-le"))
    for errors in ("strict", "replace"):
        with pytest.raises(DataError, match="is UTF-16 text, not UTF-8"):
            read_text(path, errors)


def test_read_text_calls_a_byte_order_mark_past_the_start_invalid_utf8_not_utf16(
        tmp_path: Path):
    # ÿþ in Latin-1 are UTF-16 LE's mark, bytes UTF-8 never holds: a mark only at the start
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"abc" + "ÿþ".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid UTF-8 at byte 3\b"):
        read_text(path)


def test_read_text_stops_at_the_first_block_holding_a_nul(tmp_path: Path):
    """An endless device given as a text (--prime-file /dev/zero) is refused after one
    block: it was read whole first, until the memory ran out.  Here a pipe offers 64 MiB
    of NULs; the reader must stop long before."""
    import threading

    fifo = tmp_path / "zeros"
    os.mkfifo(fifo)
    written = [0]

    def write_zeros() -> None:
        block = b"\0" * (1 << 16)
        with open(fifo, "wb", buffering=0) as pipe:
            try:
                while written[0] < 64 << 20:
                    written[0] += pipe.write(block)
            except BrokenPipeError:  # the reader stopped
                pass

    writer = threading.Thread(target=write_zeros, daemon=True)
    writer.start()
    with pytest.raises(DataError, match="binary"):
        read_text(fifo)
    writer.join(timeout=30)
    assert written[0] < 8 << 20, written[0]


def test_read_text_refuses_a_text_longer_than_its_limit(tmp_path: Path, monkeypatch):
    """max_bytes (a prime, flow's text: a pipe of text that never ends) is checked block by
    block; a text of exactly max_bytes is read."""
    from bptt import data

    monkeypatch.setattr(data, "READ_BLOCK", 4)
    path = tmp_path / "long.txt"
    path.write_text("abcdefghij")
    assert read_text(path, max_bytes=10) == "abcdefghij"
    with pytest.raises(DataError, match=f"^{re.escape(str(path))} is longer than 9 bytes, "
                                         "the most this reads; pass a shorter text.$"):
        read_text(path, max_bytes=9)


def test_read_text_reads_a_text_of_many_blocks_whole(tmp_path: Path, monkeypatch):
    """Read block by block (to stop at a NUL), a text longer than one block is still read
    to its end, in order; a NUL in a later block is found there too."""
    from bptt import data

    monkeypatch.setattr(data, "READ_BLOCK", 4)
    path = tmp_path / "long.txt"
    path.write_text("héllo, wörld\n" * 3, encoding="utf-8")  # é and ö split across blocks
    assert read_text(path) == "héllo, wörld\n" * 3
    path.write_bytes(b"abcdefghij\0")
    with pytest.raises(DataError, match="binary"):
        read_text(path)


def test_read_text_invalid_utf8_names_byte_offset(tmp_path: Path):
    path = tmp_path / "latin1.txt"
    data = b"a" * 1234 + "é".encode("latin-1") + b"rest"
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"not valid UTF-8 at byte 1234\b"):
        read_text(path)


def test_read_text_invalid_utf8_offers_no_flag_of_a_command(tmp_path: Path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(DataError) as error:
        read_text(path)
    assert str(error.value).endswith("convert it to UTF-8 first (e.g. iconv -t UTF-8).")


@pytest.mark.parametrize("unk", ["\udcff", "\ud800"])
def test_unk_must_have_a_utf8_form(unk: str):
    with pytest.raises(BpttError, match="not a Unicode character"):
        check_unk(unk)
    assert check_unk("\ufffd") == "\ufffd"


def test_read_text_invalid_utf8_offset_counts_the_bom(tmp_path: Path):
    path = tmp_path / "bom-bad.txt"
    path.write_bytes(b"\xef\xbb\xbfab\xffc")
    with pytest.raises(DataError, match=r"at byte 5\b"):
        read_text(path)


def test_read_text_permission_denied(tmp_path: Path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("abc")

    def deny(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(DataError, match="permission denied"):
        read_text(path)


# ---------------------------------------------------------------- vocabulary


def test_vocab_from_text_is_sorted_code_points():
    vocab = Vocab.from_text("hé→llo😀")
    assert vocab.chars == tuple(sorted(set("hé→llo😀")))
    assert vocab.size == len(vocab) == 6  # code points, not UTF-8 bytes
    ids = vocab.encode("hé😀")
    assert ids.dtype == np.int64
    assert ids.tolist() == [vocab.chars.index(c) for c in "hé😀"]


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=2).filter(lambda s: len(set(s)) >= 2))
def test_vocab_encode_decode_round_trip(text: str):
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.shape == (len(text),)
    assert ids.min() >= 0 and ids.max() < vocab.size
    assert vocab.decode(ids) == text


def test_vocab_keeps_given_order():
    vocab = Vocab(["z", "a", "m"])
    assert vocab.encode("amz").tolist() == [1, 2, 0]
    assert vocab.decode(np.array([[0, 1], [2, 2]])) == "zamm"

    # anything but characters is named (None was a TypeError of tuple())
    for chars in (None, 3):
        with pytest.raises(DataError, match="a vocabulary is a list of characters, got"):
            Vocab(chars)


def test_vocab_list_round_trip_through_json():
    vocab = Vocab.from_text("the quick brown fox\n")
    back = Vocab.from_list(json.loads(json.dumps(vocab.to_list())))
    assert back == vocab
    assert back.encode("fox").tolist() == vocab.encode("fox").tolist()


def test_vocab_unknown_characters_listed_with_repr():
    vocab = Vocab.from_text("abc")
    with pytest.raises(DataError) as info:
        vocab.encode("abxyz\n\tqq")
    message = str(info.value)
    assert "'x', 'y', 'z', '\\n', '\\t'" in message
    assert "'q'" not in message  # only the first 5 distinct unknown characters


def test_vocab_of_a_text_refuses_lone_surrogates():
    text = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")
    with pytest.raises(DataError, match="not a Unicode character"):
        Vocab.from_text(text)


@pytest.mark.parametrize("text", ["", "aaaa"])
def test_vocab_needs_two_distinct_characters(text: str):
    with pytest.raises(DataError, match="at least 2 distinct characters"):
        Vocab.from_text(text)


@pytest.mark.parametrize(
    ("chars", "match"),
    [
        ("ab", "JSON list"),
        (["a", "bc"], "single character"),
        (["a", 1], "single character"),
        (["a", "b", "a"], "twice"),
        (["a"], "at least 2"),
        # a lone surrogate (a byte kept by errors='surrogateescape') has no UTF-8 form: a
        # model of it could not print what it samples (bptt sample: a traceback)
        (["a", "\udce9"], r"'\\udce9' is not a Unicode character \(a lone surrogate"),
        (["\ud800", "a"], "not a Unicode character"),
    ],
)
def test_vocab_from_list_validates(chars, match: str):
    with pytest.raises(DataError, match=match):
        Vocab.from_list(chars)


def test_vocab_decode_rejects_out_of_range_ids():
    vocab = Vocab.from_text("abc")
    with pytest.raises(DataError, match=r"\[0, 2\]"):
        vocab.decode([0, 3])


# ---------------------------------------------------------------- split


def test_split_train_val_takes_the_last_fraction():
    ids = np.arange(100)
    train, val = split_train_val(ids, 0.1)
    np.testing.assert_array_equal(train, np.arange(90))
    np.testing.assert_array_equal(val, np.arange(90, 100))


def test_split_train_val_gives_validation_at_least_two_tokens():
    train, val = split_train_val(np.arange(10), 0.01)
    assert len(val) == 2 and len(train) == 8


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_split_train_val_too_short(n: int):
    with pytest.raises(DataError, match="too short"):
        split_train_val(np.arange(n))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, float("nan"), "0.1", True, None])
def test_split_train_val_rejects_bad_fraction(fraction: float):
    # ("0.1" passed float() and was multiplied by the length: TypeError; None: TypeError)
    with pytest.raises(BpttError, match=r"^val_fraction must be a number between 0 and 1"):
        split_train_val(np.arange(100), fraction)


# ---------------------------------------------------------------- stream batches


def test_stream_batcher_small_example_by_hand():
    vocab = Vocab.from_text("abcdefghij")
    batcher = StreamBatcher(vocab.encode("abcdefghij"), batch_size=2, seq_len=2)
    # n = 9 // 2 = 4: stream 0 reads abcd -> bcde, stream 1 efgh -> fghi; 2 chunks
    assert batcher.chunks_per_epoch == 2
    x, y, new = batcher.next_batch()
    assert new and x.shape == (2, 2) and x.dtype == y.dtype == np.int64
    assert [vocab.decode(x[:, b]) for b in range(2)] == ["ab", "ef"]
    assert [vocab.decode(y[:, b]) for b in range(2)] == ["bc", "fg"]
    x, y, new = batcher.next_batch()
    assert not new
    assert [vocab.decode(y[:, b]) for b in range(2)] == ["de", "hi"]
    assert batcher.next_batch()[2] and batcher.epoch == 1



@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_chunks_of_narrow_ids_are_int64(dtype):
    # an encoded corpus keeps its ids in the narrowest type (a memory map of uint8/uint16)
    ids = np.arange(21, dtype=dtype) % 7
    x, y, _ = StreamBatcher(ids, batch_size=2, seq_len=3).next_batch()
    assert x.dtype == y.dtype == np.int64
    assert x[:, 0].tolist() == [0, 1, 2] and y[:, 1].tolist() == [4, 5, 6]


batcher_cases = st.integers(1, 6).flatmap(
    lambda B: st.integers(1, 8).flatmap(
        lambda T: st.tuples(st.just(B), st.just(T), st.integers(B * T + 1, B * T * 5 + 20))
    )
)


@settings(max_examples=50, deadline=None)
@given(batcher_cases, st.integers(0, 2**32 - 1))
def test_one_epoch_covers_each_stream_once_in_order(case, seed: int):
    B, T, N = case
    ids = np.random.default_rng(seed).integers(0, 5, size=N)
    batcher = StreamBatcher(ids, batch_size=B, seq_len=T)
    n = (N - 1) // B
    assert batcher.chunks_per_epoch == n // T >= 1
    chunks = [batcher.next_batch() for _ in range(batcher.chunks_per_epoch)]
    assert [new for _, _, new in chunks] == [True] + [False] * (len(chunks) - 1)
    inputs = np.concatenate([x for x, _, _ in chunks])  # (T·chunks, B)
    targets = np.concatenate([y for _, y, _ in chunks])
    covered = T * batcher.chunks_per_epoch
    assert n - covered < T  # only a tail shorter than T is dropped
    for b in range(B):
        np.testing.assert_array_equal(inputs[:, b], ids[b * n : b * n + covered])
        np.testing.assert_array_equal(targets[:, b], ids[b * n + 1 : b * n + covered + 1])
    # the next epoch starts over with the same first chunk
    assert batcher.epoch == 1 and batcher.position == batcher.chunks_per_epoch
    x, _, new = batcher.next_batch()
    assert new
    np.testing.assert_array_equal(x, chunks[0][0])


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**32 - 1))
def test_positions_are_distinct_across_streams(N_extra: int, seed: int):
    rng = np.random.default_rng(seed)
    B, T = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    ids = np.arange(B * T + N_extra)  # every position has its own id
    batcher = StreamBatcher(ids, B, T)
    seen = np.concatenate(
        [batcher.next_batch()[1].ravel() for _ in range(batcher.chunks_per_epoch)]
    )
    assert len(np.unique(seen)) == len(seen)  # each target position exactly once per epoch


@settings(max_examples=50, deadline=None)
@given(batcher_cases, st.integers(0, 30), st.integers(1, 10))
def test_resume_from_state_dict_continues_identically(case, before: int, after: int):
    B, T, N = case
    ids = np.random.default_rng(N).integers(0, 7, size=N)
    original = StreamBatcher(ids, B, T)
    for _ in range(before):
        original.next_batch()
    saved = json.loads(json.dumps(original.state_dict()))
    resumed = StreamBatcher(ids.copy(), B, T)
    resumed.load_state_dict(saved)
    assert resumed.position == original.position == before
    for _ in range(after):
        for a, b in zip(original.next_batch(), resumed.next_batch(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_load_state_dict_refuses_other_settings_or_text():
    ids = np.arange(100) % 7
    state = StreamBatcher(ids, 2, 5).state_dict()
    # each difference named for what it is, in words for the library and the CLI alike (it
    # named the flags --batch and --seq-len, which a resumed run takes from its checkpoint)
    with pytest.raises(DataError, match=r"^the saved batch state has seq_len=5 but this run has "
                                        r"4; resume with the sequence length it was saved "
                                        r"with\.$"):
        StreamBatcher(ids, 2, 4).load_state_dict(state)
    with pytest.raises(DataError, match=r"^the saved batch state has batch_size=2 but this run "
                                        r"has 3; resume with the batch size it was saved "
                                        r"with\.$"):
        StreamBatcher(ids, 3, 5).load_state_dict(state)
    with pytest.raises(DataError, match=r"^the saved batch state has num_tokens=100 but this "
                                        r"run has 99; resume with the same text\.$"):
        StreamBatcher(ids[:99], 2, 5).load_state_dict(state)
    other = ids.copy()
    other[50] = 3 - other[50]
    # the same length, other ids: another text, or the same text's damaged cache
    with pytest.raises(DataError, match=r"tokens_crc32=.*resume with the same text \(or, if it "
                                        r"is the same text, its encoded ids in the cache are "
                                        r"damaged: remove the cache's corpus-\*\.ids to "
                                        r"encode it again\)\.$"):
        StreamBatcher(other, 2, 5).load_state_dict(state)
    with pytest.raises(DataError, match="position"):
        StreamBatcher(ids, 2, 5).load_state_dict({**state, "position": -1})


def test_text_shorter_than_one_sequence():
    with pytest.raises(DataError, match="--seq-len"):
        StreamBatcher(np.arange(20), batch_size=4, seq_len=5)  # n = 4 < T
    assert StreamBatcher(np.arange(21), batch_size=4, seq_len=5).chunks_per_epoch == 1


@pytest.mark.parametrize(("B", "T"), [(0, 5), (2, 0), (-1, 5), (2, 1.5), (True, 5)])
def test_batch_size_and_seq_len_validated(B, T):
    with pytest.raises(BpttError, match="must be an integer >= 1"):
        StreamBatcher(np.arange(100), B, T)


def test_the_limit_of_a_text_is_written_with_its_thousands_separated(tmp_path: Path):
    """The real limit is 16,777,216 bytes: written as one run of digits it is hard to read."""
    path = tmp_path / "long.txt"
    path.write_text("a" * 1001)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))} is longer than 1,000 bytes, "):
        read_text(path, max_bytes=1000)


# ---------------------------------------------------------------- from a mutation audit (5)


def test_builtin_corpus_takes_the_topics_in_sorted_key_order_whatever_the_dict_order(
        monkeypatch):
    """The text must not depend on the order pydoc_data.topics lists its keys in."""
    import types

    fake = types.ModuleType("pydoc_data.topics")
    fake.topics = {"b": "second", "a": "first"}
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", fake)
    assert builtin_corpus.__wrapped__() == "first\nsecond"


def test_read_text_names_a_missing_file_and_an_os_failure_in_one_sentence(tmp_path: Path,
                                                                          monkeypatch):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match=f"^{re.escape(str(missing))} does not exist; pass the "
                                        "path of a UTF-8 text file.$"):
        read_text(missing)
    path = tmp_path / "t.txt"
    path.write_text("abc")

    def fail(self, *args, **kwargs):
        raise OSError(5, "Input/output error", str(self))

    monkeypatch.setattr(Path, "open", fail)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))} cannot be read "
                                        r"\(Input/output error\)\.$"):
        read_text(path)


def test_only_strict_and_replace_are_error_policies(tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"caf\xe9")
    for errors in ("ignore", "surrogateescape", None):
        with pytest.raises(BpttError, match=rf"^errors must be 'strict' or 'replace', got "
                                            rf"{re.escape(repr(errors))}\.$"):
            read_text(path, errors=errors)


def test_undecodable_message_with_a_hint_names_the_flag_and_what_it_does():
    from bptt.data import undecodable_message

    assert undecodable_message(Path("t.txt"), 7, 0xE9, "--errors replace") == (
        "t.txt is not valid UTF-8 at byte 7 (byte 0xe9); convert it to UTF-8 first "
        "(e.g. iconv -t UTF-8), or pass --errors replace to read such bytes as U+FFFD.")


def test_a_vocabulary_is_its_order_not_only_its_characters():
    """Ids are positions: the same characters in another order are another vocabulary (a
    resume must not take it)."""
    assert Vocab(["a", "b"]) != Vocab(["b", "a"])
    assert Vocab(["a", "b"]) == Vocab(("a", "b")) and hash(Vocab("ab")) == hash(Vocab(["a", "b"]))
    assert Vocab("ab") != ("a", "b")


def test_from_text_checks_unk_as_the_unknown_character_token():
    with pytest.raises(BpttError, match=r"^the unknown-character token must be one character, "
                                        r"got 'xy'\.$"):
        Vocab.from_text("abc", unk="xy")
    for unk in ("", "xy", None, 3):
        with pytest.raises(BpttError, match="must be one character"):
            check_unk(unk)


@pytest.mark.parametrize(("ids", "match"), [
    ([-1, 0], r"^character ids must be in \[0, 2\] for this vocabulary, got values from -1 to 0"),
    (np.array([0.0, 1.0]), r"^character ids must be integers, got dtype float64\.$"),
])
def test_vocab_decode_refuses_negative_or_non_integer_ids(ids, match):
    """A negative id indexed from the end (the wrong character, silently); a float id was
    numpy's IndexError."""
    with pytest.raises(DataError, match=match):
        Vocab.from_text("abc").decode(ids)


def test_vocab_decode_of_no_ids_is_the_empty_text():
    vocab = Vocab.from_text("abc")
    assert vocab.decode([]) == "" and vocab.decode(np.zeros((0, 3), dtype=np.int64)) == ""


def test_an_empty_string_is_not_a_vocabulary_entry():
    with pytest.raises(DataError, match=r"^a vocabulary entry must be a single character, "
                                        r"got ''"):
        Vocab(["a", ""])


def test_five_unknown_characters_are_all_shown_and_six_are_counted():
    from bptt.data import unknown_characters_message

    five = unknown_characters_message(list("vwxyz"), 5)
    assert "5 characters that are not in the vocabulary: 'v', 'w', 'x', 'y', 'z';" in five
    assert "shown" not in five
    six = unknown_characters_message(list("vwxyz"), 6)
    assert "6 characters that are not in the vocabulary: 'v', 'w', 'x', 'y', 'z' " \
           "(first 5 shown);" in six


def test_split_train_val_rounds_to_the_nearest_token_and_returns_views():
    """max(2, round(N·f)): 99 · 0.05 = 4.95 holds out 5, not 4; the parts are views (a
    memory-mapped corpus is not copied)."""
    ids = np.arange(99)
    train, val = split_train_val(ids, 0.05)
    assert len(val) == 5 and len(train) == 94 and val[0] == 94
    assert np.shares_memory(train, ids) and np.shares_memory(val, ids)


def test_fingerprint_is_the_crc32_of_the_ids_as_little_endian_int64(monkeypatch):
    """Documented as such (a checkpoint stores it): chunk by chunk, the last one too."""
    from bptt import data

    ids = np.arange(9, dtype=np.uint8) * 7
    expected = zlib.crc32(ids.astype("<i8").tobytes())
    assert data.fingerprint(ids) == expected
    monkeypatch.setattr(data, "FINGERPRINT_CHUNK", 4)  # 9 = 2 chunks of 4 and one of 1
    assert data.fingerprint(ids) == expected


def test_stream_batcher_names_the_length_it_needs():
    with pytest.raises(DataError, match=r"^the text to train on \(20 characters\) is shorter "
                                        r"than one sequence for 4 streams of 5 characters "
                                        r"\(needs at least 21\); "):
        StreamBatcher(np.arange(20), batch_size=4, seq_len=5)


@pytest.mark.parametrize("ids", [np.arange(100.0), np.arange(100).reshape(50, 2)])
def test_stream_batcher_needs_a_1d_integer_array(ids):
    with pytest.raises(BpttError, match=r"^ids must be a 1-D integer array, got shape"):
        StreamBatcher(ids, 2, 5)


def test_chunk_index_outside_an_epoch_is_refused():
    batcher = StreamBatcher(np.arange(21), batch_size=2, seq_len=5)  # n = 10: 2 chunks
    assert batcher.chunks_per_epoch == 2
    for j in (-1, 2):
        with pytest.raises(BpttError, match=rf"^chunk index must be in \[0, 1\], got {j}\.$"):
            batcher.chunk(j)


@pytest.mark.parametrize("state", [None, [], {"position": 1.5}, {"position": "3"},
                                   {"position": True}])
def test_load_state_dict_refuses_a_position_that_is_not_a_count(state):
    batcher = StreamBatcher(np.arange(100) % 7, 2, 5)
    with pytest.raises(DataError, match=r"^the saved batch position must be an integer >= 0"):
        batcher.load_state_dict(state)
    assert batcher.position == 0


def test_load_state_dict_refuses_another_batch_size_or_length_naming_it():
    ids = np.arange(100) % 7
    state = StreamBatcher(ids, 2, 5).state_dict()
    assert state == {"position": 0, "batch_size": 2, "seq_len": 5, "num_tokens": 100,
                     "tokens_crc32": zlib.crc32(ids.astype("<i8").tobytes())}
    with pytest.raises(DataError, match=r"^the saved batch state has batch_size=2 but this "
                                        r"run has 3;"):
        StreamBatcher(ids, 3, 5).load_state_dict(state)
    with pytest.raises(DataError, match=r"^the saved batch state has num_tokens=100 but this "
                                        r"run has 99;"):
        StreamBatcher(ids[:99], 2, 5).load_state_dict(state)


def test_the_fingerprint_is_computed_once(monkeypatch):
    """A corpus of any size is read for its CRC once, not at every checkpoint."""
    from bptt import data

    calls = []
    real = data.fingerprint
    monkeypatch.setattr(data, "fingerprint", lambda ids: calls.append(1) or real(ids))
    batcher = StreamBatcher(np.arange(100) % 7, 2, 5)
    assert not calls  # lazily
    state = batcher.state_dict()
    batcher.next_batch()
    batcher.load_state_dict(state)
    batcher.state_dict()
    assert len(calls) == 1


def test_a_numpy_integer_position_is_loaded_as_an_int_and_saved_as_json():
    """A numpy integer passes the position check; kept as it was, the next state_dict
    (a checkpoint's JSON metadata) was a TypeError: int64 is not JSON serializable."""
    ids = np.arange(100) % 7
    batcher = StreamBatcher(ids, 2, 5)
    batcher.load_state_dict({**batcher.state_dict(), "position": np.int64(3)})
    batcher.next_batch()
    assert type(batcher.position) is int and batcher.position == 4
    assert json.loads(json.dumps(batcher.state_dict()))["position"] == 4


def test_a_path_the_system_refuses_to_look_up_is_one_data_error(tmp_path: Path):
    """A file name too long for the file system (or a parent directory that cannot be
    searched) made Path.exists raise a raw OSError from read_text and encode_files, whose
    documented error is DataError."""
    from bptt.corpus import encode_files

    path = tmp_path / ("x" * 5000)
    message = rf"^{re.escape(str(path))} cannot be read \(File name too long\)\.$"
    with pytest.raises(DataError, match=message):
        read_text(path)
    with pytest.raises(DataError, match=message):
        encode_files([path], tmp_path / "cache")
