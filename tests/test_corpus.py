"""bptt.corpus: UTF-8 files of any size encoded once into a cached, memory-mapped id file.

Also: the stream batcher on a memmap, text preparation from an encoded corpus,
fine-tuning from a checkpoint (library side) and generation with --stop / unk.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import bptt.corpus as corpus_module
from bptt import checkpoint, train
from bptt.corpus import SEPARATOR, encode_files, id_dtype
from bptt.data import StreamBatcher, Vocab
from bptt.errors import BpttError, DataError
from bptt.sample import generate, sample_text

# accents, CJK, Greek, emoji (outside the BMP: 4 bytes in UTF-8, one character each)
MULTIBYTE = ("Ünïcödé café naïve straße — 日本語のテキスト、中文文本。 emoji 😀🎉🚀 "
             "Ελληνικά ñandú.\nThe quick brown fox; 0123456789!\n")


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Read files 5 bytes at a time, so most multibyte characters are split between blocks."""
    monkeypatch.setattr(corpus_module, "BLOCK_BYTES", 5)


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def decoded(encoded) -> str:
    return encoded.vocab.decode(np.asarray(encoded.ids))


# ---------------------------------------------------------------- encoding


def test_multibyte_text_round_trips_through_blocks_bom_and_several_files(tmp_path, tiny_blocks):
    a = write(tmp_path / "a.txt", MULTIBYTE * 3, bom=True)
    b = write(tmp_path / "b.txt", "second file ☃ 🚀")
    phases = []
    enc = encode_files([a, b], tmp_path / "cache",
                       progress=lambda phase, done, total: phases.append((phase, done, total)))
    text = MULTIBYTE * 3 + SEPARATOR + "second file ☃ 🚀"
    assert decoded(enc) == text  # the BOM is dropped, the files joined by a newline
    assert enc.vocab == Vocab.from_text(text)  # code points, sorted: as the in-memory path
    assert isinstance(enc.ids, np.memmap) and enc.ids.dtype == np.uint8 and not enc.reused
    assert enc.ids_file.stat().st_size == len(text)
    total = a.stat().st_size + b.stat().st_size
    assert [p for p in phases if p[1] == total] == [("scan", total, total), ("encode", total, total)]
    assert all(x[1] <= y[1] for x, y in itertools.pairwise(phases) if x[0] == y[0])
    manifest = json.loads(enc.manifest.read_text(encoding="utf-8"))
    assert manifest["vocab"] == list(enc.vocab.chars) and manifest["num_tokens"] == len(text)
    assert [s["size"] for s in manifest["sources"]] == [a.stat().st_size, b.stat().st_size]


@pytest.mark.parametrize(("count", "dtype"), [(256, "u1"), (257, "<u2"), (65537, "<u4")])
def test_id_dtype_grows_with_the_vocabulary(tmp_path, count, dtype):
    assert id_dtype(count) == np.dtype(dtype)
    chars = "".join(chr(0x4E00 + i) if i < 20000 else chr(0x20000 + i) for i in range(count))
    enc = encode_files([write(tmp_path / "v.txt", chars + chars[:10])], tmp_path / "c")
    assert enc.ids.dtype == np.dtype(dtype) and enc.vocab.size == count
    assert decoded(enc) == chars + chars[:10]


def test_the_text_is_never_decoded_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "BLOCK_BYTES", 1000)
    sizes = []
    real = corpus_module._code_points
    monkeypatch.setattr(corpus_module, "_code_points",
                        lambda text: sizes.append(len(text)) or real(text))
    path = write(tmp_path / "t.txt", MULTIBYTE * 200)
    encode_files([path], tmp_path / "c")
    assert max(sizes) <= 1000 < path.stat().st_size


def test_undecodable_bytes_name_the_offset_even_across_blocks(tmp_path, tiny_blocks):
    path = tmp_path / "bad.txt"
    path.write_bytes("abc日".encode() + b"xy\xffz")
    with pytest.raises(DataError, match=r"not valid UTF-8 at byte 8 \(byte 0xff\).*--errors replace"):
        encode_files([path], tmp_path / "c")
    truncated = tmp_path / "truncated.txt"
    truncated.write_bytes(b"\xef\xbb\xbfab" + "日".encode()[:2])  # ends inside a character
    with pytest.raises(DataError, match="at byte 5 "):
        encode_files([truncated], tmp_path / "c")
    assert not (tmp_path / "c").exists()  # nothing written for a failed encoding
    enc = encode_files([path], tmp_path / "c", errors="replace")
    assert decoded(enc) == "abc日xy\ufffdz"


@pytest.mark.parametrize(("content", "match"), [
    (b"", "is empty"), (b"\xef\xbb\xbf", "is empty"), (b"ab\x00cd", "binary")])
def test_unusable_files(tmp_path, content, match):
    path = tmp_path / "f.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        encode_files([path], tmp_path / "c")
    with pytest.raises(DataError, match="does not exist"):
        encode_files([tmp_path / "missing.txt"], tmp_path / "c")
    with pytest.raises(DataError, match="is a directory"):
        encode_files([tmp_path], tmp_path / "c")


@pytest.mark.parametrize(("encoding", "name"), [
    ("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32"), ("utf-32-be", "UTF-32")])
def test_a_utf16_or_utf32_file_is_named_so_even_under_errors_replace(tmp_path, monkeypatch,
                                                                     encoding, name):
    # its NULs called it binary, and without NULs (CJK) --errors replace trained on garbage
    path = tmp_path / "notepad.txt"
    text = "日本語の文" if encoding.endswith("be") else "hello 日本"
    path.write_bytes(("\ufeff" + text).encode(encoding))
    monkeypatch.setattr(corpus_module, "BLOCK_BYTES", 1)  # the mark is seen whole all the same
    for errors in ("strict", "replace"):
        with pytest.raises(DataError, match=f"is {name} text, not UTF-8.*iconv -f {name}"):
            encode_files([path], tmp_path / "c", errors=errors)
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- the cache


def test_cache_is_reused_rehashed_when_touched_and_reencoded_when_changed(tmp_path):
    path = write(tmp_path / "t.txt", MULTIBYTE * 20)
    cache = tmp_path / "cache"
    first = encode_files([path], cache)
    stamp = first.ids_file.stat().st_mtime_ns
    again = encode_files([path], cache)
    assert again.reused and again.ids_file == first.ids_file
    assert again.ids_file.stat().st_mtime_ns == stamp  # not rewritten
    # touched: re-hashed, same content: the ids are kept
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    touched = encode_files([path], cache)
    assert touched.reused and touched.ids_file.stat().st_mtime_ns == stamp
    # changed (same size, so only the content hash can tell): re-encoded, old ids removed
    path.write_bytes(path.read_bytes().replace(b"fox", b"cat"))
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    changed = encode_files([path], cache)
    assert not changed.reused and changed.ids_file != first.ids_file
    assert decoded(changed) == (MULTIBYTE * 20).replace("fox", "cat")
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [changed.ids_file.name, changed.manifest.name])


def test_a_changed_file_with_its_size_and_mtime_set_back_is_encoded_again(tmp_path):
    """cp -p, rsync -t, tar x or touch -r can give new bytes the old size and mtime; the
    ctime, which every write sets, tells (the cache used to give the old text's ids)."""
    path = write(tmp_path / "t.txt", MULTIBYTE * 20)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    cache = tmp_path / "cache"
    first = encode_files([path], cache)
    path.write_bytes(path.read_bytes().replace(b"fox", b"cat"))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # the same size and mtime as before
    changed = encode_files([path], cache)
    assert not changed.reused and changed.ids_file != first.ids_file
    assert decoded(changed) == (MULTIBYTE * 20).replace("fox", "cat")


def test_a_run_that_builds_its_vocabulary_never_takes_an_entry_of_a_fixed_one(tmp_path,
                                                                              monkeypatch):
    """A fine-tuning run encodes the files with its model's vocabulary; a plain run on the
    same files and cache used to get those ids, and that vocabulary, as its own."""
    path = write(tmp_path / "t.txt", "abcab " * 50)
    cache = tmp_path / "cache"
    wide = Vocab.from_list(sorted(set("abc ") | set("xyz")))
    tuned = encode_files([path], cache, vocab=wide)
    assert tuned.vocab == wide
    plain = encode_files([path], cache)
    assert not plain.reused and plain.vocab.to_list() == sorted(set("abc "))
    assert decoded(plain) == "abcab " * 50
    # its own entry is reused; a run with that vocabulary given (a resume) takes it too
    assert encode_files([path], cache).reused
    assert encode_files([path], cache, vocab=plain.vocab).reused
    # a resume (the text's own vocabulary, fixed) after a touch keeps the entry a plain
    # run's: the next plain run does not read the whole text again
    os.utime(path, ns=(3_000_000_000, 3_000_000_000))
    assert encode_files([path], cache, vocab=plain.vocab).reused
    scans = []
    monkeypatch.setattr(corpus_module, "_scan", lambda *a, **k: scans.append(1) or None)
    assert encode_files([path], cache).reused and not scans


def test_a_damaged_manifest_or_id_file_is_reencoded(tmp_path):
    path = write(tmp_path / "t.txt", MULTIBYTE)
    first = encode_files([path], tmp_path / "c")
    first.ids_file.write_bytes(b"short")
    assert not encode_files([path], tmp_path / "c").reused
    first.manifest.write_text("{not json")
    redone = encode_files([path], tmp_path / "c")
    assert not redone.reused and decoded(redone) == MULTIBYTE
    # JSON that json.loads cannot take without a RecursionError or the integer digit limit's
    # ValueError (it was a traceback): damaged too
    for damage in ("[" * 100_000 + "]" * 100_000, '{"num_tokens": 1' + "0" * 5000 + "}"):
        redone.manifest.write_text(damage)
        again = encode_files([path], tmp_path / "c")
        assert not again.reused and decoded(again) == MULTIBYTE
    # the right size but ids outside the vocabulary: re-encoded too, also when only touched
    for touch in (False, True):
        redone.ids_file.write_bytes(b"\xff" * redone.ids_file.stat().st_size)
        if touch:
            os.utime(path, ns=(3_000_000_000, 3_000_000_000))
        healed = encode_files([path], tmp_path / "c")
        assert not healed.reused and decoded(healed) == MULTIBYTE


# ---------------------------------------------------------------- fixed vocabulary, unk


def test_fixed_vocabulary_lists_unknown_characters_in_order_of_appearance(tmp_path):
    path = write(tmp_path / "new.txt", "abc 日本 abc 😀 xyz")
    vocab = Vocab.from_text("abc \n")
    with pytest.raises(DataError) as info:
        encode_files([path], tmp_path / "c", vocab=vocab)
    message = str(info.value)
    assert "6 characters that are not in the vocabulary: '日', '本', '😀', 'x', 'y'" in message
    assert "--unk" in message and not (tmp_path / "c").exists()


def test_unknown_characters_map_to_the_unk_token(tmp_path):
    path = write(tmp_path / "new.txt", "abc 日本 abc")
    vocab = Vocab.from_text("abc \n\N{REPLACEMENT CHARACTER}")
    enc = encode_files([path], tmp_path / "c", vocab=vocab, unk="\ufffd")
    assert decoded(enc) == "abc \ufffd\ufffd abc" and enc.vocab == vocab
    with pytest.raises(DataError, match="not in the vocabulary"):
        encode_files([path], tmp_path / "c", vocab=vocab, unk="#")
    built = encode_files([path], tmp_path / "c2", unk="#")  # a built vocabulary gets the token
    assert "#" in built.vocab.chars and decoded(built) == "abc 日本 abc"
    # the vocabulary given as its characters (was an AttributeError: a list has no .chars)
    listed = encode_files([path], tmp_path / "c3", vocab=vocab.to_list(), unk="\ufffd")
    assert listed.vocab == vocab and decoded(listed) == decoded(enc)
    with pytest.raises(DataError, match="lists 'a' twice"):
        encode_files([path], tmp_path / "c4", vocab=["a", "a", "b"])


def test_read_text_can_replace_undecodable_bytes(tmp_path):
    from bptt.data import read_text

    path = tmp_path / "t.txt"
    path.write_bytes(b"caf\xe9 \xf0\x9f\x98\x80")
    assert read_text(path, errors="replace") == "caf\ufffd 😀"
    with pytest.raises(DataError, match=r"at byte 3 ") as error:
        read_text(path)
    assert "--errors" not in str(error.value)  # a flag of bptt train, which reads via corpus


def test_vocab_encode_unk_for_the_in_memory_path():
    vocab = Vocab.from_text("ab", unk="?")
    assert vocab.chars == ("?", "a", "b")
    assert vocab.decode(vocab.encode("abz☃a", unk="?")) == "ab??a"


# ---------------------------------------------------------------- batches on a memmap


def test_stream_batcher_on_a_memmap_matches_int64_and_does_not_copy(tmp_path):
    path = write(tmp_path / "t.txt", MULTIBYTE * 50)
    enc = encode_files([path], tmp_path / "c")
    ids64 = np.asarray(enc.ids).astype(np.int64)
    mapped, in_memory = StreamBatcher(enc.ids, 4, 7), StreamBatcher(ids64, 4, 7)
    assert np.shares_memory(mapped._inputs, enc.ids)  # views of the map, not a copy
    for _ in range(mapped.chunks_per_epoch + 2):
        for a, b in zip(mapped.next_batch(), in_memory.next_batch(), strict=True):
            assert np.array_equal(a, b) and np.asarray(a).dtype == np.asarray(b).dtype
    assert mapped.state_dict() == in_memory.state_dict()  # same fingerprint whatever the dtype


def test_fingerprint_is_computed_chunkwise(monkeypatch):
    from bptt import data

    ids = np.random.default_rng(0).integers(0, 200, size=10_001).astype(np.uint8)
    whole = StreamBatcher(ids, 3, 5).state_dict()["tokens_crc32"]
    monkeypatch.setattr(data, "FINGERPRINT_CHUNK", 64)
    assert StreamBatcher(ids, 3, 5).state_dict()["tokens_crc32"] == whole


# ---------------------------------------------------------------- runs on encoded text


def config(**changes) -> train.TrainConfig:
    base = dict(cell="gru", hidden=12, seq_len=8, batch=3, steps=2, eval_every=2,
                sample_length=20, dtype="float64")
    return train.TrainConfig(**(base | changes)).validate()


def fit(run: train.Run, steps: int = 2) -> train.Run:
    """A few steps and a checkpoint (train.train without its plot, to stay fast)."""
    for _ in range(steps):
        train.train_step(run)
    train.save(run)
    return run


def test_a_run_on_an_encoded_corpus_equals_the_in_memory_run(tmp_path):
    text = MULTIBYTE * 40
    enc = encode_files([write(tmp_path / "t.txt", text)], tmp_path / "c")
    mapped = train.new_run(config(), enc, "t.txt", tmp_path / "a")
    in_memory = train.new_run(config(), text, "t.txt", tmp_path / "b")
    assert mapped.vocab == in_memory.vocab
    assert isinstance(mapped.val_ids, np.memmap) and len(mapped.val_ids) == len(in_memory.val_ids)
    fit(mapped)
    fit(in_memory)
    for key in mapped.params:
        assert np.array_equal(mapped.params[key], in_memory.params[key])
    resumed = train.resume_run(tmp_path / "a", enc, steps=3)
    assert resumed.step == 2 and resumed.vocab == mapped.vocab
    saved = checkpoint.load_model(tmp_path / "a")
    assert saved.vocab == list(Vocab.from_text(text).chars)  # every character round-trips


def test_fine_tuning_starts_from_the_weights_and_vocabulary(tmp_path):
    base = train.new_run(config(unk="\ufffd"), MULTIBYTE * 40, "base", tmp_path / "base")
    fit(base)
    model = checkpoint.load_model(tmp_path / "base")
    new_text = "日本語 😀 café " * 100 + "unknown: ☃ ♞ "
    tuned = train.new_run(config(unk="\ufffd", lr=0.01), new_text, "new", tmp_path / "tuned",
                          init=model)
    assert tuned.step == 0 and tuned.vocab.to_list() == model.vocab
    for key, value in model.params.items():  # step-0 weights are the checkpoint's
        assert np.array_equal(tuned.params[key], value)
        assert tuned.params[key] is not value
    assert all(not np.any(m) for moments in tuned.opt_state.values() for m in moments.values())
    unk_id = tuned.vocab.index("\ufffd")
    assert unk_id in np.concatenate([tuned.batches._inputs.ravel(), tuned.val_ids])
    train.train_step(tuned)
    assert not np.array_equal(tuned.params["Whh"], model.params["Whh"])
    with pytest.raises(BpttError, match="hidden=12 but the settings say hidden=16"):
        train.new_run(config(unk="\ufffd", hidden=16), new_text, "new", tmp_path / "x",
                      init=model)
    with pytest.raises(BpttError, match="use the model's"):
        train.new_run(config(), new_text, "new", tmp_path / "x", init=model)
    assert not (tmp_path / "x").exists()


def test_fine_tuning_without_unk_refuses_unknown_characters(tmp_path):
    fit(train.new_run(config(), MULTIBYTE * 40, "base", tmp_path / "base"))
    model = checkpoint.load_model(tmp_path / "base")
    with pytest.raises(DataError, match="not in the vocabulary: '☃'"):
        train.new_run(config(), MULTIBYTE * 10 + "☃", "new", tmp_path / "x", init=model)


# ---------------------------------------------------------------- generation


def test_generate_stops_after_the_stop_text_and_reads_unknown_prime_characters_as_unk():
    import bptt

    vocab = list("ab\n#")
    params = bptt.init_params("rnn", 4, 8, 4, rng=np.random.default_rng(0))
    full = sample_text(params, vocab, 300, rng=np.random.default_rng(1))
    stop = full[40:42]
    first = full.index(stop) + len(stop)
    short = sample_text(params, vocab, 300, rng=np.random.default_rng(1), stop=stop)
    assert short == full[:first] and short.endswith(stop)
    one = sample_text(params, vocab, 300, rng=np.random.default_rng(1), stop="a")
    assert one.endswith("a") and "a" not in one[:-1]
    with pytest.raises(DataError, match="cannot generate: 'z'"):
        generate(params, vocab, 5, stop="az")
    with pytest.raises(BpttError, match="non-empty"):
        generate(params, vocab, 5, stop="")
    a = sample_text(params, vocab, 30, prime="a☃b", rng=np.random.default_rng(2), unk="#")
    b = sample_text(params, vocab, 30, prime="a#b", rng=np.random.default_rng(2), unk="#")
    assert a == b
    with pytest.raises(DataError, match="not in the model's vocabulary"):
        generate(params, vocab, 5, prime="a☃b")


# ---------------------------------------------------------------- from a mutation audit


def test_ids_take_the_smallest_dtype_at_each_boundary():
    assert [id_dtype(v).str for v in (1, 256, 257, 65536, 65537)] == [
        "|u1", "|u1", "<u2", "<u2", "<u4"]


def test_an_unk_outside_a_fixed_vocabulary_is_named(tmp_path):
    path = write(tmp_path / "t.txt", "abc")
    with pytest.raises(DataError, match=r"^the unknown-character token '#' is not in the "
                       r"vocabulary; use the --unk character the model was trained with\.$"):
        encode_files([path], tmp_path / "c", vocab=Vocab.from_text("abc"), unk="#")


def test_a_device_is_refused_as_not_a_regular_file(tmp_path):
    with pytest.raises(DataError, match=r"/dev/null is not a regular file \(a pipe or a device"):
        encode_files([Path("/dev/null")], tmp_path / "c")


def test_the_separator_is_a_character_of_the_vocabulary_even_if_no_file_holds_it(tmp_path):
    a, b = write(tmp_path / "a.txt", "ab"), write(tmp_path / "b.txt", "cd")
    enc = encode_files([a, b], tmp_path / "c")
    assert list(enc.vocab.chars) == list("\nabcd")
    assert decoded(enc) == "ab\ncd"


def test_a_cache_entry_is_never_shared_by_another_separator_or_unk(tmp_path):
    a, b = write(tmp_path / "a.txt", "ab\n"), write(tmp_path / "b.txt", "cd\n")
    cache = tmp_path / "c"
    assert decoded(encode_files([a, b], cache)) == "ab\n\ncd\n"
    assert decoded(encode_files([a, b], cache, separator="|")) == "ab\n|cd\n"
    with_unk = encode_files([a, b], cache, unk="~")
    assert "~" in with_unk.vocab.chars and not with_unk.reused
    without = encode_files([a, b], cache)
    assert "~" not in without.vocab.chars and without.reused


def test_a_file_written_to_between_the_two_passes_is_refused(tmp_path, tiny_blocks):
    path = write(tmp_path / "t.txt", "hello world, hello again")

    def progress(phase, done, total):
        if phase == "scan" and done == total:  # the first pass is over: a write, same size
            path.write_bytes(b"hello world, hello AGAIN")

    with pytest.raises(DataError, match=r"t\.txt changed while it was being encoded; run the "
                       r"command again once nothing writes to it"):
        encode_files([path], tmp_path / "c", progress=progress)
    assert not [p for p in (tmp_path / "c").iterdir() if p.suffix == ".ids"]


def test_a_manifest_of_another_cache_version_is_encoded_again(tmp_path):
    path = write(tmp_path / "t.txt", "abc")
    enc = encode_files([path], tmp_path / "c")
    doc = json.loads(enc.manifest.read_text(encoding="utf-8"))
    doc["version"] += 1
    enc.manifest.write_text(json.dumps(doc), encoding="utf-8")
    again = encode_files([path], tmp_path / "c")
    assert not again.reused and json.loads(again.manifest.read_text())["version"] == doc["version"] - 1


def test_the_cached_ids_are_mapped_read_only(tmp_path):
    enc = encode_files([write(tmp_path / "t.txt", "abc")], tmp_path / "c")
    assert not enc.ids.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        enc.ids[0] = 1


def test_one_path_not_in_a_list_is_named_not_read_character_by_character(tmp_path):
    """encode_files('corpus.txt', cache) read each character of the path as a file:
    '/ is a directory' or 'no such file: c'; None was a TypeError (not iterable)."""
    text = tmp_path / "corpus.txt"
    text.write_text("hello world\n", encoding="utf-8")
    from bptt.errors import BpttError

    for files in (str(text), text, None):
        with pytest.raises(BpttError, match=r"^files must be a list of paths"):
            encode_files(files, tmp_path / "cache")


# ---------------------------------------------------------------- from a mutation audit (5)


def scans_of(monkeypatch) -> list:
    """Record each call of pass 1 (the whole text read and hashed again)."""
    calls: list = []
    real = corpus_module._scan
    monkeypatch.setattr(corpus_module, "_scan", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("field", ["size", "mtime_ns", "ctime_ns", "path"])
def test_a_file_whose_recorded_stat_differs_is_hashed_again(tmp_path, monkeypatch, field):
    """The cache is trusted only while the file has the recorded path, size, mtime AND ctime
    (a write in the same clock tick keeps the times: then only the size tells)."""
    path = write(tmp_path / "t.txt", "abcab " * 50)
    enc = encode_files([path], tmp_path / "c")
    doc = json.loads(enc.manifest.read_text(encoding="utf-8"))
    source = doc["sources"][0]
    source[field] = source[field] + "x" if field == "path" else source[field] + 1
    enc.manifest.write_text(json.dumps(doc), encoding="utf-8")
    scans = scans_of(monkeypatch)
    again = encode_files([path], tmp_path / "c")
    assert scans == [1] and again.reused and decoded(again) == "abcab " * 50
    assert encode_files([path], tmp_path / "c").reused and scans == [1]  # recorded anew


def test_a_change_that_keeps_the_size_and_the_vocabulary_is_encoded_again(tmp_path):
    """The content hash covers every byte (the last one too), and the id file's name hashes
    the contents: a text changed only in its last character, into one it already has, is
    not given the old ids."""
    path = write(tmp_path / "t.txt", "abcab " * 50 + "a")
    cache = tmp_path / "c"
    first = encode_files([path], cache)
    path.write_text("abcab " * 50 + "b", encoding="utf-8")
    changed = encode_files([path], cache)
    assert changed.vocab == first.vocab and changed.ids_file != first.ids_file
    assert not changed.reused and decoded(changed) == "abcab " * 50 + "b"
    swapped = "bacab " + "abcab " * 49 + "b"  # two characters swapped: same bytes counted
    path.write_text(swapped, encoding="utf-8")
    assert decoded(encode_files([path], cache)) == swapped


def test_a_fixed_vocabulary_never_takes_an_entry_of_another_vocabulary(tmp_path):
    """Fine-tuning after a plain run on the same files: the ids must index the model's
    vocabulary, not the text's own."""
    path = write(tmp_path / "t.txt", "abcab " * 50)
    cache = tmp_path / "c"
    plain = encode_files([path], cache)
    wide = Vocab.from_list(sorted(set("abc ") | set("xyz")))
    tuned = encode_files([path], cache, vocab=wide)
    assert not tuned.reused and tuned.vocab == wide and plain.vocab != wide
    assert decoded(tuned) == "abcab " * 50
    assert int(np.asarray(tuned.ids).max()) == wide.index("c")


def test_the_bytes_of_a_wide_vocabulary_are_two_an_id(tmp_path):
    chars = "".join(chr(0x4E00 + i) for i in range(300))
    enc = encode_files([write(tmp_path / "t.txt", chars)], tmp_path / "c")
    assert enc.ids.dtype == np.dtype("<u2") and enc.num_tokens == 300 and enc.nbytes == 600


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"files": []}, r"^encode_files needs at least one file\.$"),
    ({"files": b"t.txt"}, r"^files must be a list of paths, got bytes"),
    ({"separator": None}, r"^separator must be a string, got None\.$"),
    ({"errors": "ignore"}, r"^errors must be 'strict' or 'replace', got 'ignore'\.$"),
    ({"unk": "ab"}, r"^the unknown-character token must be one character, got 'ab'\.$"),
])
def test_bad_arguments_are_one_bptt_error(tmp_path, kwargs, match):
    path = write(tmp_path / "t.txt", "abc")
    arguments = {"files": [path], "cache_dir": tmp_path / "c"} | kwargs
    with pytest.raises(BpttError, match=match):
        encode_files(**arguments)
    assert not (tmp_path / "c").exists()


def test_a_relative_path_is_recorded_absolute_and_shares_the_entry(tmp_path, monkeypatch):
    path = write(tmp_path / "t.txt", "abcab ")
    monkeypatch.chdir(tmp_path)
    enc = encode_files(["t.txt"], tmp_path / "c")
    assert enc.sources[0].path == str(path.resolve())
    assert encode_files([path], tmp_path / "c").reused


def test_a_byte_order_mark_inside_the_text_is_a_character(tmp_path, tiny_blocks):
    """Only the file's first BOM is dropped; U+FEFF later (here at a block boundary) is text."""
    path = write(tmp_path / "t.txt", "abcde\ufeffxyz", bom=True)
    assert decoded(encode_files([path], tmp_path / "c")) == "abcde\ufeffxyz"


def test_a_separator_outside_a_fixed_vocabulary_is_named(tmp_path):
    """Two files joined by a newline the model's vocabulary lacks: the separator was read as
    id 0, silently."""
    a, b = write(tmp_path / "a.txt", "abab"), write(tmp_path / "b.txt", "baba")
    with pytest.raises(DataError, match=r"^the text has 1 characters that are not in the "
                                        r"vocabulary: '\\n';"):
        encode_files([a, b], tmp_path / "c", vocab=Vocab("ab"))


def test_a_failed_encoding_leaves_no_temporary_file(tmp_path, tiny_blocks):
    path = write(tmp_path / "t.txt", "hello world, hello again")

    def progress(phase, done, total):
        if phase == "scan" and done == total:
            path.write_bytes(b"hello world, hello AGAIN")

    with pytest.raises(DataError, match="changed while it was being encoded"):
        encode_files([path], tmp_path / "c", progress=progress)
    assert list((tmp_path / "c").iterdir()) == []


def test_the_cache_directory_is_made_with_its_parents_or_named(tmp_path):
    path = write(tmp_path / "t.txt", "abc")
    assert encode_files([path], tmp_path / "a" / "b" / "c").manifest.parent == (
        tmp_path / "a" / "b" / "c")
    blocker = write(tmp_path / "file", "x")
    with pytest.raises(BpttError, match=rf"^cannot create the cache directory "
                                        rf"{re.escape(str(blocker))}: File exists; choose "
                                        r"another --cache-dir\.$"):
        encode_files([path], blocker)


def test_the_temp_files_of_a_killed_encoding_are_removed_by_the_next(tmp_path):
    """A run killed outright while it encoded (SIGKILL, the OOM killer: no clean-up runs)
    left .tmp-corpus-….ids.<hex>, as big as the ids, in the cache for ever; the next
    encoding into that cache removes it, and the manifest's, but not one that a live writer
    holds locked (another run encoding into a shared cache), nor one just made."""
    import fcntl

    cache = tmp_path / "c"
    cache.mkdir()
    dead = [cache / ".tmp-corpus-0123456789abcdef-fedcba9876543210.ids.0a1b2c3d",
            cache / ".tmp-corpus-0123456789abcdef.json.4e5f6a7b"]
    alive = cache / ".tmp-corpus-0123456789abcdef-0011223344556677.ids.8c9d0e1f"
    young = cache / ".tmp-corpus-0123456789abcdef-8899aabbccddeeff.ids.2a3b4c5d"
    theirs = cache / ".tmp-corpus-notes.txt"
    an_hour_ago = os.stat(tmp_path).st_mtime - 3600
    for temp in (*dead, alive, young, theirs):
        temp.write_bytes(b"ids of a write cut short")
        if temp is not young:
            os.utime(temp, (an_hour_ago, an_hour_ago))
    with open(alive, "rb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        encode_files([write(tmp_path / "t.txt", "abcab " * 50)], cache)
    left = sorted(p.name for p in cache.iterdir() if p.name.startswith(".tmp-"))
    assert left == sorted([alive.name, young.name, theirs.name])


def test_a_manifest_that_cannot_be_written_whole_leaves_the_previous_one(tmp_path,
                                                                         monkeypatch):
    """The manifest is written to a temporary file and renamed: a disk that fills up halfway
    does not leave a truncated manifest in place of the good one."""
    path = write(tmp_path / "t.txt", "abcab " * 50)
    enc = encode_files([path], tmp_path / "c")
    before = enc.manifest.read_text(encoding="utf-8")
    path.write_text("abcab " * 40, encoding="utf-8")

    def half(self, text, *args, **kwargs):
        with open(self, "w", encoding="utf-8") as out:
            out.write(text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half)
    with pytest.raises(BpttError, match="No space left on device; choose another --cache-dir"):
        encode_files([path], tmp_path / "c")
    monkeypatch.undo()
    assert enc.manifest.read_text(encoding="utf-8") == before
    assert [p.name for p in (tmp_path / "c").iterdir() if p.name.startswith(".tmp-")] == []


def _damage(doc: dict, cache: Path, how: str) -> None:
    if how == "format":
        doc["format"] = "another-cache"
    elif how == "a source missing":
        doc["sources"] = []
    elif how == "signed dtype":
        doc["dtype"] = "|i1"
    elif how == "float count":
        doc["num_tokens"] = float(doc["num_tokens"])
    elif how == "ids outside the cache":
        (cache / "corpus-sub").mkdir()
        (cache / "corpus-sub" / doc["ids_file"]).write_bytes((cache / doc["ids_file"]).read_bytes())
        doc["ids_file"] = f"corpus-sub/{doc['ids_file']}"
    elif how == "not an id file":
        (cache / "other.bin").write_bytes((cache / doc["ids_file"]).read_bytes())
        doc["ids_file"] = "other.bin"
    elif how == "sources not records":
        doc["sources"] = [3]


@pytest.mark.parametrize("how", ["format", "a source missing", "signed dtype", "float count",
                                 "ids outside the cache", "not an id file",
                                 "sources not records"])
def test_a_manifest_damaged_in_any_field_is_encoded_again(tmp_path, how):
    """Each field is checked: the manifest names the entry's own complete id file, in the
    cache, of the vocabulary's dtype, for as many files as given; otherwise the text is
    encoded again (never a traceback, never other ids)."""
    path = write(tmp_path / "t.txt", "abcab " * 50)
    cache = tmp_path / "c"
    enc = encode_files([path], cache)
    doc = json.loads(enc.manifest.read_text(encoding="utf-8"))
    _damage(doc, cache, how)
    enc.manifest.write_text(json.dumps(doc), encoding="utf-8")
    again = encode_files([path], cache)
    assert not again.reused and again.ids.dtype == np.uint8
    assert again.ids_file.parent == cache and decoded(again) == "abcab " * 50
    assert again.ids_file.name.startswith("corpus-") and again.ids_file.suffix == ".ids"


def test_a_manifest_that_does_not_say_whether_its_vocabulary_was_fixed_is_checked(
        tmp_path, monkeypatch):
    """Such an entry is trusted as a fixed vocabulary's: a run that builds its own reads the
    text again (and, the ids being its own, keeps them and records the flag)."""
    path = write(tmp_path / "t.txt", "abcab " * 50)
    enc = encode_files([path], tmp_path / "c")
    doc = json.loads(enc.manifest.read_text(encoding="utf-8"))
    del doc["fixed_vocab"]
    enc.manifest.write_text(json.dumps(doc), encoding="utf-8")
    scans = scans_of(monkeypatch)
    assert encode_files([path], tmp_path / "c").reused and scans == [1]
    assert json.loads(enc.manifest.read_text(encoding="utf-8"))["fixed_vocab"] is False


def test_a_strict_run_never_takes_the_entry_of_a_replacing_one(tmp_path):
    """The cache entry is keyed by --errors too: after a run that read undecodable bytes as
    U+FFFD, a strict run on the unchanged file still names the bad byte."""
    path = tmp_path / "bad.txt"
    path.write_bytes(b"abc\xffabc")
    assert decoded(encode_files([path], tmp_path / "c", errors="replace")) == "abc\ufffdabc"
    with pytest.raises(DataError, match=r"not valid UTF-8 at byte 3 \(byte 0xff\)"):
        encode_files([path], tmp_path / "c")


# ---------------------------------------------------------------- paths that are not UTF-8


def test_a_file_named_with_a_byte_that_is_not_utf8_is_cached_and_reused(tmp_path, monkeypatch):
    """Python reads such a name with a lone surrogate (b'\\xff' as U+DCFF), which has no UTF-8
    form: writing the manifest was a UnicodeEncodeError.  It is escaped in the JSON, and read
    back as the same path, so the next run reuses the entry."""
    path = write(tmp_path / os.fsdecode(b"caf\xe9 \xff.txt"), "caf\u00e9 abcab " * 50)
    enc = encode_files([path], tmp_path / "c")
    text = enc.manifest.read_bytes().decode("utf-8")  # (strict: UTF-8 throughout)
    assert "\\udce9" in text and "\u00e9" in text  # the byte escaped, the vocabulary's é not
    assert json.loads(text)["sources"][0]["path"] == str(path.resolve())
    scans = scans_of(monkeypatch)
    again = encode_files([path], tmp_path / "c")
    assert again.reused and scans == [] and again.ids_file == enc.ids_file


def test_a_touched_file_reuses_a_cache_whose_manifest_cannot_be_rewritten(tmp_path,
                                                                          monkeypatch):
    """A file touched, not changed (cp, chmod, touch: its times change), with a cache that
    cannot be written (read-only, shared; a full disk): the ids are good, and only recording
    the new times failed, which refused the run: 'cannot write the corpus cache …'."""
    path = write(tmp_path / "t.txt", "abcab " * 50)
    enc = encode_files([path], tmp_path / "c")
    before = enc.manifest.read_bytes()
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))

    def refuse(*args):
        raise BpttError("cannot write the corpus cache: No space left on device")

    monkeypatch.setattr(corpus_module, "_write_manifest", refuse)
    again = encode_files([path], tmp_path / "c")
    assert again.reused and again.ids_file == enc.ids_file
    assert np.array_equal(again.ids, enc.ids)
    assert enc.manifest.read_bytes() == before


def test_an_id_file_whose_manifest_cannot_be_written_is_removed(tmp_path, monkeypatch):
    """No manifest names it: no run would reuse it, and nothing would ever remove it."""
    path = write(tmp_path / "t.txt", "abcab " * 50)

    def refuse(*args):
        raise BpttError("cannot write the corpus cache: No space left on device")

    monkeypatch.setattr(corpus_module, "_write_manifest", refuse)
    with pytest.raises(BpttError, match="No space left on device"):
        encode_files([path], tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []
