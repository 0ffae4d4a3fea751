"""Tests for bptt.checkpoint: atomic safetensors writes and refusing hostile or damaged files."""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from bptt import checkpoint
from bptt.checkpoint import clean_temp_files, read_safetensors, write_safetensors_atomic
from bptt.errors import BpttError, CheckpointError

META = {"model": "rnn", "hidden": 8, "vocab": ["a", "b", "\n"], "loss": 1.25, "nested": {"x": [1]}}


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "Wxh": rng.standard_normal((4, 3)).astype(np.float32),
        "Whh": rng.standard_normal((4, 4)),  # float64
        "ids": rng.integers(-5, 5, size=7),  # int64
        "step.t": np.array(12, dtype=np.int64),  # 0-d
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def _craft(header: dict, data: bytes) -> bytes:
    """A file in safetensors layout: u64 header length, JSON header, data."""
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


# ---------------------------------------------------------------- round trip


def test_round_trip_is_bit_exact_and_keeps_dtypes(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    tensors = _tensors()
    write_safetensors_atomic(path, tensors, META)
    loaded, meta = read_safetensors(path)
    assert meta == META
    assert loaded.keys() == tensors.keys()
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype, name
        assert loaded[name].shape == array.shape, name
        assert loaded[name].tobytes() == array.tobytes(), name
        assert loaded[name].flags.writeable, name


# ---------------------------------------------------------------- checksums


def _header(path: Path) -> tuple[int, dict]:
    """(where the data starts, the parsed header) of a safetensors file."""
    blob = path.read_bytes()
    (length,) = struct.unpack("<Q", blob[:8])
    return 8 + length, json.loads(blob[8 : 8 + length])


def _flip(path: Path, at: int) -> None:
    """Change one bit of byte ``at``, as a failing disk does."""
    blob = bytearray(path.read_bytes())
    blob[at] ^= 0x01
    path.write_bytes(blob)


def _written_then_edited(path: Path, old: bytes, new: bytes) -> None:
    """Write the checkpoint, then change its first ``old`` into ``new`` (the same length), as
    one damaged stretch of the disk would."""
    write_safetensors_atomic(path, _tensors(), META)
    blob = path.read_bytes()
    at = blob.index(old)
    assert len(new) == len(old) and new != old
    path.write_bytes(blob[:at] + new + blob[at + len(old):])


def _readers() -> list:
    return [read_safetensors, checkpoint.read_any_safetensors]


@pytest.mark.parametrize("name", ["Wxh", "Whh", "ids", "step.t"])
@pytest.mark.parametrize("read", _readers())
def test_a_byte_changed_in_any_tensor_is_refused_as_damage_naming_it(tmp_path: Path, name, read):
    path = tmp_path / "model.safetensors"
    write_safetensors_atomic(path, _tensors(), META)
    start, header = _header(path)
    begin, end = header[name]["data_offsets"]
    for at in (begin, end - 1):  # its first and its last byte
        write_safetensors_atomic(path, _tensors(), META)
        _flip(path, start + at)
        with pytest.raises(CheckpointError, match=f"is damaged: tensor '{re.escape(name)}' does "
                                                  "not match its checksum"):
            read(path)


@pytest.mark.parametrize("read", [*_readers(), checkpoint.read_metadata])
def test_a_setting_changed_in_the_metadata_is_refused_as_damage(tmp_path: Path, read):
    path = tmp_path / "model.safetensors"
    # "loss": 1.25 becomes 1.35: still valid JSON, the same length, a plausible value
    _written_then_edited(path, b"1.25", b"1.35")
    assert json.loads(_header(path)[1]["__metadata__"]["bptt"])["loss"] == 1.35  # parses
    with pytest.raises(CheckpointError, match=r"is damaged: its settings \(bptt metadata\) do "
                                              "not match their checksum"):
        read(path)


def test_a_dtype_changed_to_one_of_the_same_size_is_refused_as_damage(tmp_path: Path):
    """F64 and I64 span the same bytes, so the layout checks cannot see the change."""
    path = tmp_path / "model.safetensors"
    _written_then_edited(path, b'"F64"', b'"I64"')  # (Whh, the only float64 tensor)
    with pytest.raises(CheckpointError, match="tensor 'Whh' does not match its checksum"):
        read_safetensors(path)


@pytest.mark.parametrize("sums", ["not an object", {"settings": 1}, {"tensors": {}}])
def test_checksums_that_are_not_bptt_s_are_refused_as_damage(tmp_path: Path, sums):
    path = tmp_path / "model.safetensors"
    meta = json.dumps({**META, "crc32": sums})
    path.write_bytes(safetensors.numpy.save(_tensors(), metadata={"bptt": meta}))
    with pytest.raises(CheckpointError, match="is damaged"):
        read_safetensors(path)


def test_checksums_are_stored_inside_the_bptt_metadata_and_not_handed_back(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    write_safetensors_atomic(path, _tensors(), META)
    stored = json.loads(_header(path)[1]["__metadata__"]["bptt"])
    assert set(stored) == {*META, "crc32"}
    assert set(stored["crc32"]["tensors"]) == set(_tensors())
    assert read_safetensors(path)[1] == META
    assert checkpoint.read_metadata(path) == META
    assert json.loads(checkpoint.read_any_safetensors(path)[1]["bptt"]) == META
    with pytest.raises(TypeError, match="crc32"):
        write_safetensors_atomic(tmp_path / "x.safetensors", _tensors(), {**META, "crc32": 1})


def test_checksums_that_miss_a_tensor_are_refused_as_damage(tmp_path: Path):
    """The settings' CRC does not cover the list of sums: a list without a tensor (or with one
    the file lacks) is damage, not a KeyError."""
    path = tmp_path / "model.safetensors"
    write_safetensors_atomic(path, _tensors(), META)
    stored = json.loads(_header(path)[1]["__metadata__"]["bptt"])
    for change in ("drop", "rename"):
        sums = json.loads(json.dumps(stored["crc32"]))
        crc = sums["tensors"].pop("Whh")
        if change == "rename":
            sums["tensors"]["Whx"] = crc
        meta = json.dumps({**stored, "crc32": sums})
        path.write_bytes(safetensors.numpy.save(_tensors(), metadata={"bptt": meta}))
        with pytest.raises(CheckpointError, match="is damaged: its checksums do not list its "
                                                  "tensors"):
            read_safetensors(path)


def test_checksums_under_a_changed_key_are_refused_as_damage(tmp_path: Path):
    """One flipped bit in the key "crc32" must not make the file read unchecked."""
    path = tmp_path / "model.safetensors"
    _written_then_edited(path, b"crc32", b"crc33")  # the last bit of the "2"
    with pytest.raises(CheckpointError, match="its checksums are under a key other than "
                                              "'crc32'"):
        read_safetensors(path)


def test_big_endian_arrays_are_stored_little_endian_and_checked_as_stored(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    tensors = {"W": np.arange(6, dtype=">f4").reshape(2, 3), "ids": np.arange(3, dtype=">i8")}
    write_safetensors_atomic(path, tensors, META)
    loaded, _ = read_safetensors(path)
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype.newbyteorder("<")


def test_a_file_without_checksums_is_read_unchecked(tmp_path: Path):
    """Files bptt wrote before it stored checksums, and exports (which other programs rewrite
    with new weights and the same metadata), load as they are."""
    path = tmp_path / "old.safetensors"
    path.write_bytes(safetensors.numpy.save(_tensors(), metadata={"bptt": json.dumps(META)}))
    loaded, meta = read_safetensors(path)
    assert meta == META and loaded["Whh"].tobytes() == _tensors()["Whh"].tobytes()
    write_safetensors_atomic(path, _tensors(), META, checksums=False)
    assert "crc32" not in json.loads(_header(path)[1]["__metadata__"]["bptt"])
    assert read_safetensors(path)[1] == META


def test_the_same_tensors_and_meta_give_the_same_bytes(tmp_path: Path):
    """Checksums keep a file deterministic (a text run's model is byte-identical across runs)."""
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    write_safetensors_atomic(a, _tensors(), META)
    write_safetensors_atomic(b, dict(reversed(list(_tensors().items()))), dict(META))
    assert a.read_bytes() == b.read_bytes()


def test_save_model_refuses_a_vocabulary_load_model_would_refuse(tmp_path: Path):
    import bptt

    params = bptt.init_params("rnn", 4, 3, 4, rng=np.random.default_rng(0))
    good = checkpoint.save_model(tmp_path / "good.safetensors", params, list("abcd"))
    before = good.read_bytes()
    for vocab, problem in ((list("abc"), "a vocabulary of 3 characters but weights for 4"),
                           (list("abca"), "a 'vocab' that is not a list of distinct characters"),
                           (list("abc\udce9"), r"a 'vocab' holding '\\udce9', which is not a "
                                               r"Unicode character \(a lone surrogate")):
        with pytest.raises(CheckpointError, match=f"not saved: .*good.safetensors would be "
                           f"refused on loading: it has {problem}"):
            checkpoint.save_model(good, params, vocab)
    with pytest.raises(ValueError, match="step must be an integer >= 0, got 'x'"):
        checkpoint.save_model(good, params, list("abcd"), step="x")
    assert good.read_bytes() == before
    assert checkpoint.load_model(good).vocab == list("abcd")


def test_the_metadata_names_recurrent_and_head_biases_apart(tmp_path: Path):
    # "bias" is the recurrent biases, as interop.model_config says; it used to be the head's
    import bptt
    from bptt import interop

    params = bptt.init_params("lstm", 4, 3, 4, rng=np.random.default_rng(0))
    del params["by"]
    meta = checkpoint.load_model(checkpoint.save_model(tmp_path / "m.safetensors", params)).meta
    assert meta["model"]["bias"] is True and meta["model"]["head_bias"] is False
    assert {k: meta["model"][k] for k in interop.model_config(params)} == interop.model_config(params)


def test_numpy_numbers_in_the_metadata_are_written_as_the_numbers_they_are(tmp_path: Path):
    import bptt

    params = bptt.init_params("rnn", 4, 3, 4, rng=np.random.default_rng(0))
    config = {"lr": np.float32(0.5), "seed": np.int64(3), "flags": [np.bool_(True)],
              "eps": np.longdouble(0.25)}  # (np.longdouble's .item() is a longdouble again)
    path = checkpoint.save_model(tmp_path / "m.safetensors", params, None, config)
    loaded = checkpoint.load_model(path).config
    assert loaded == {"lr": 0.5, "seed": 3, "flags": [True], "eps": 0.25}
    assert [type(loaded[k]) for k in ("lr", "seed")] == [float, int]
    before = path.read_bytes()
    # what JSON cannot hold is one clear error, and the good file stays
    for bad, message in (({"rng": np.random.default_rng(0)}, "got a Generator"),
                         ({"w": np.zeros(2)}, "got a ndarray"), ([("lr", 1)], "got list")):
        with pytest.raises(ValueError, match=message):
            checkpoint.save_model(path, params, None, bad)
    assert path.read_bytes() == before


@pytest.mark.parametrize(("key", "stated"), [("dtype", "float32"), ("bias", False),
                                             ("head_bias", False)])
def test_metadata_that_misstates_the_weights_kind_is_refused(tmp_path: Path, key, stated):
    # torch_module(meta["model"]) builds from these: a float32 module for float64 weights
    # would cast them silently
    import bptt

    params = bptt.init_params("gru", 4, 3, 4, rng=np.random.default_rng(0), dtype=np.float64)
    path = checkpoint.save_model(tmp_path / "m.safetensors", params)
    tensors, meta = read_safetensors(path)
    meta["model"][key] = stated
    write_safetensors_atomic(path, tensors, meta)
    with pytest.raises(CheckpointError, match=f"metadata says {key}={stated!r} but the weights"):
        checkpoint.load_model(path)
    # stated nowhere (a file written before these keys): read off the weights
    del meta["model"][key]
    write_safetensors_atomic(path, tensors, meta)
    found = {"dtype": "float64", "bias": True, "head_bias": True}[key]
    assert checkpoint.load_model(path).meta["model"][key] == found


def test_read_metadata_gives_the_meta_alone(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    write_safetensors_atomic(path, _tensors(), META)
    assert checkpoint.read_metadata(path) == META


@pytest.mark.parametrize("keep", [5, 20, -1])
def test_read_metadata_validates_the_file_as_read_safetensors_does(tmp_path: Path, keep: int):
    path = tmp_path / "cut.safetensors"
    write_safetensors_atomic(path, _tensors(), META)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(CheckpointError, match="not a bptt checkpoint"):
        checkpoint.read_metadata(path)


def test_non_contiguous_arrays_are_saved_by_value(tmp_path: Path):
    path = tmp_path / "t.safetensors"
    base = np.arange(12.0).reshape(3, 4)
    write_safetensors_atomic(path, {"T": base.T, "col": base[:, 1]}, {})
    loaded, meta = read_safetensors(path)
    assert meta == {}
    np.testing.assert_array_equal(loaded["T"], base.T)
    np.testing.assert_array_equal(loaded["col"], base[:, 1])


def test_overwrite_replaces_the_file_and_leaves_no_temp(tmp_path: Path):
    path = tmp_path / "ckpt.safetensors"
    write_safetensors_atomic(path, {"a": np.zeros(2)}, {"step": 1})
    write_safetensors_atomic(path, {"a": np.ones(3)}, {"step": 2})
    loaded, meta = read_safetensors(path)
    assert meta == {"step": 2}
    np.testing.assert_array_equal(loaded["a"], np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


def test_temp_file_is_beside_the_target_and_named_after_it(tmp_path: Path, monkeypatch):
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", spy)
    path = tmp_path / "run.safetensors"
    write_safetensors_atomic(path, {"a": np.zeros(1)}, {})
    [(src, dst)] = renames
    assert dst == path and src.parent == tmp_path
    assert src.name.startswith(".tmp-") and "run.safetensors" in src.name


def test_write_into_missing_directory_is_refused(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        write_safetensors_atomic(tmp_path / "no" / "x.safetensors", {"a": np.zeros(1)}, {})


def _make_special(path: Path, make: str) -> None:
    """A FIFO, a directory, or a symbolic link to a FIFO at ``path``."""
    if make == "directory":
        path.mkdir()
    elif make == "fifo":
        os.mkfifo(path)
    else:
        os.mkfifo(path.with_name("fifo"))
        path.symlink_to(path.with_name("fifo"))


@pytest.mark.parametrize(("make", "kind"), [
    ("fifo", "a FIFO (named pipe)"), ("directory", "a directory"),
    ("link-to-fifo", "a FIFO (named pipe)"),
])
def test_only_a_regular_file_is_ever_replaced(tmp_path: Path, make: str, kind: str):
    """What is at the path stays as it was: refused before anything is written."""
    path = tmp_path / "x.safetensors"
    _make_special(path, make)
    before = path.lstat()
    with pytest.raises(CheckpointError, match=re.escape(f"is {kind}, not a regular file")):
        write_safetensors_atomic(path, {"a": np.zeros(1)}, {})
    after = path.lstat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert not list(tmp_path.glob(".tmp-*"))


# ---------------------------------------------------------------- failures while writing


def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path: Path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    write_safetensors_atomic(path, {"a": np.zeros(4)}, {"step": 1})
    old_bytes = path.read_bytes()

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "replace", fail)
    with pytest.raises(CheckpointError, match="No space left"):
        write_safetensors_atomic(path, {"a": np.ones(4)}, {"step": 2})
    assert path.read_bytes() == old_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_interrupted_write_keeps_old_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    write_safetensors_atomic(path, {"a": np.zeros(4)}, {"step": 1})
    old_bytes = path.read_bytes()

    def half_write(file: Path, blob: bytes) -> None:
        file.write_bytes(blob[: len(blob) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_write_synced", half_write)
    with pytest.raises(KeyboardInterrupt):
        write_safetensors_atomic(path, {"a": np.ones(4)}, {"step": 2})
    assert path.read_bytes() == old_bytes
    assert read_safetensors(path)[1] == {"step": 1}
    assert clean_temp_files(tmp_path, ["ckpt.safetensors"]) == 0  # the writer removed it


def test_a_write_is_fsynced_then_renamed_then_its_directory_fsynced(tmp_path: Path,
                                                                     monkeypatch):
    """Durable, not only atomic: the data reaches the disk before the rename makes it the
    checkpoint, and the rename reaches it too (else a power cut can leave an empty file)."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    monkeypatch.setattr(checkpoint.os, "replace", replace)
    write_safetensors_atomic(tmp_path / "m.safetensors", {"a": np.zeros(3)}, {"step": 1})
    assert events == ["fsync file", "rename", "fsync dir"]


@pytest.mark.parametrize("fail_at", ["write", "replace"])
def test_a_derived_file_that_fails_to_be_written_keeps_the_old_one(tmp_path: Path, monkeypatch,
                                                                    fail_at):
    """metrics.csv and loss.png (replace_atomic): a write or rename that fails midway leaves
    the previous file byte for byte, and no temp file; the error names the file, not the
    temporary one the OSError named (or no file, on a full disk)."""
    path = checkpoint.write_csv_atomic(tmp_path / "metrics.csv", ["step"], [[1], [2]])
    before = path.read_bytes()

    def half_write(temp: Path) -> None:
        temp.write_text("step\n1\n", encoding="utf-8")
        if fail_at == "write":
            raise OSError(28, "No space left on device")

    def failed_replace(src, dst):
        raise OSError(28, "No space left on device", str(src), None, str(dst))

    if fail_at == "replace":
        monkeypatch.setattr(checkpoint.os, "replace", failed_replace)
    with pytest.raises(BpttError, match=rf"^cannot write {re.escape(str(path))}: No space left "
                                        r"on device\.$"):
        checkpoint.replace_atomic(path, half_write)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_two_writers_of_one_derived_file_at_once_each_rename_their_own(tmp_path: Path):
    """Two ``bptt flow --out DIR`` at once: both wrote the one temporary file .tmp-flow.png,
    and the first to rename it took the other's (maybe half-written) with it, so the other
    failed: 'cannot write DIR/flow.png: No such file or directory.'"""
    path = tmp_path / "flow.csv"

    def first(temp: Path) -> None:
        temp.write_text("first\n", encoding="utf-8")
        # the second command writes the same file while the first is writing it
        checkpoint.replace_atomic(path, lambda other: other.write_text("second\n", "utf-8"))

    checkpoint.replace_atomic(path, first)
    assert path.read_text(encoding="utf-8") == "first\n"  # the last rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["flow.csv"]


@pytest.mark.parametrize("links", [True, False], ids=["hard links", "no hard links"])
def test_a_write_that_must_not_overwrite_keeps_a_file_made_while_it_wrote(
        tmp_path: Path, monkeypatch, links: bool):
    """overwrite=False (bptt export without --force): a file another process wrote at the
    path while this one wrote its temporary file was replaced all the same."""
    path = tmp_path / "out.safetensors"
    real_write = checkpoint._write_synced

    def write_then_another_appears(file: Path, blob: bytes) -> None:
        real_write(file, blob)
        path.write_bytes(b"another export's")

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    if not links:  # (a filesystem without hard links: FAT, some network filesystems)
        monkeypatch.setattr(checkpoint.os, "link", no_links)
    write_safetensors_atomic(path, {"a": np.zeros(2)}, {"step": 1}, overwrite=False)
    assert read_safetensors(path)[1] == {"step": 1}  # a new name is written
    path.unlink()
    monkeypatch.setattr(checkpoint, "_write_synced", write_then_another_appears)
    with pytest.raises(CheckpointError, match=re.escape(
            f"{path} already exists (made while this was being written, or a link to "
            "nothing); it is left as it is.")):
        write_safetensors_atomic(path, {"a": np.ones(2)}, {"step": 2}, overwrite=False)
    assert path.read_bytes() == b"another export's"
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]


def test_clean_temp_files_removes_only_the_leftovers_of_the_files_named(tmp_path: Path):
    names = ["a.safetensors", "m.csv"]
    # what the writers make (and what replace_atomic made before its names were new)
    for name in (".tmp-a.safetensors.0123456789ab", ".tmp-m.csv.0123456789ab", ".tmp-m.csv"):
        (tmp_path / name).write_bytes(b"partial")
    # a user's, or another program's: never ours to remove (ours end in 12 hex digits)
    theirs = [".tmp-a.safetensors.draft", ".tmp-b.safetensors.0123456789ab", ".tmp-notes.txt",
              ".tmp-m.csv.bak", ".tmp-a.safetensors.beef"]
    for name in theirs:
        (tmp_path / name).write_bytes(b"keep")
    (tmp_path / "keep.safetensors").write_bytes(b"x")
    (tmp_path / ".tmp-m.csv.ba9876543210").mkdir()
    (tmp_path / ".tmp-a.safetensors.ba9876543210").symlink_to(tmp_path / "keep.safetensors")
    assert clean_temp_files(tmp_path, names) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*theirs, ".tmp-m.csv.ba9876543210", ".tmp-a.safetensors.ba9876543210",
         "keep.safetensors"])
    assert clean_temp_files(tmp_path, names) == 0
    assert clean_temp_files(tmp_path / "missing", names) == 0


# ---------------------------------------------------------------- refusing bad files


def test_missing_file_and_directory_refused(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_safetensors(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match=re.escape(
            f"checkpoint {tmp_path} is a directory; pass the .safetensors file.")):
        read_safetensors(tmp_path)


@pytest.mark.parametrize("read", [*_readers(), checkpoint.read_metadata])
def test_a_fifo_or_a_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path, read):
    """Opening a FIFO no one writes to waited forever (bptt sample or import on one hung); a
    pipe (bash's <(cat model.safetensors)) has no size to check the header against and was
    called "not safetensors". Both are refused before they are opened."""
    from tests_support import _alarm

    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    good = tmp_path / "good.safetensors"
    write_safetensors_atomic(good, _tensors(), META)
    r, w = os.pipe()
    try:
        os.write(w, good.read_bytes())  # (a few hundred bytes: within the pipe's buffer)
        os.close(w)
        for path in (fifo, Path(f"/dev/fd/{r}")):
            with _alarm(20), pytest.raises(CheckpointError, match=re.escape(
                    f"{path} is not a regular file (a pipe or a device?); save it to a file "
                    "first.")):
                read(path)
    finally:
        os.close(r)


def test_pickle_renamed_safetensors_is_refused(tmp_path: Path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"Wxh": np.zeros((3, 3))}))
    with pytest.raises(CheckpointError, match=r"evil\.safetensors is not a bptt.*pickle"):
        read_safetensors(path)


def test_zip_archive_is_refused(tmp_path: Path):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x04N.")
    with pytest.raises(CheckpointError, match="zip"):
        read_safetensors(path)


@pytest.mark.parametrize("keep", [0, 5, 7, 8, 20, -1, -8])
def test_truncated_file_is_refused(tmp_path: Path, keep: int):
    path = tmp_path / "cut.safetensors"
    write_safetensors_atomic(path, _tensors(), META)
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match="not a bptt checkpoint"):
        read_safetensors(path)


def test_huge_shape_in_header_is_refused_before_allocating(tmp_path: Path):
    path = tmp_path / "huge.safetensors"
    header = {
        "__metadata__": {"bptt": "{}"},
        "x": {"dtype": "F64", "shape": [1_000_000, 1_000_000], "data_offsets": [0, 8]},
    }
    path.write_bytes(_craft(header, b"\0" * 8))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="claims shape"):
        read_safetensors(path)
    assert time.perf_counter() - start < 1.0


def test_consistent_but_oversized_entry_is_refused(tmp_path: Path):
    path = tmp_path / "big.safetensors"
    n = 10**12
    header = {
        "__metadata__": {"bptt": "{}"},
        "x": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]},
    }
    path.write_bytes(_craft(header, b"\0" * 8))
    with pytest.raises(CheckpointError, match="ends at byte"):
        read_safetensors(path)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_refused(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    path = tmp_path / "noise.safetensors"
    noise = rng.integers(0, 256, size=2000, dtype=np.uint8).tobytes()
    if seed % 2:  # a plausible header length followed by noise
        noise = struct.pack("<Q", 100) + noise
    path.write_bytes(noise)
    with pytest.raises(CheckpointError, match="not a bptt checkpoint"):
        read_safetensors(path)


def test_safetensors_without_bptt_metadata_is_refused(tmp_path: Path):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(safetensors.numpy.save({"a": np.zeros(3)}))
    with pytest.raises(CheckpointError, match="without bptt metadata"):
        read_safetensors(path)


@pytest.mark.parametrize(("value", "match"), [("{not json", "not valid JSON"), ("[1]", "object")])
def test_bad_bptt_metadata_is_refused(tmp_path: Path, value: str, match: str):
    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors.numpy.save({"a": np.zeros(3)}, metadata={"bptt": value}))
    with pytest.raises(CheckpointError, match=match):
        read_safetensors(path)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}, "dtype"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "invalid shape"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, "data_offsets"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}, "gaps"),
        ("not an object", "not an object"),
    ],
)
def test_malformed_header_entries_are_refused(tmp_path: Path, entry, match: str):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_craft({"__metadata__": {"bptt": "{}"}, "x": entry}, b"\0" * 8))
    with pytest.raises(CheckpointError, match=match):
        read_safetensors(path)


@pytest.mark.parametrize(("stated", "match"), [
    ("16", r"hidden_size='16', which is not an integer \(the weights have 4\)"),
    (5, r"metadata says hidden_size=5 but the weights have 4"),
    (True, r"hidden_size=True, which is not an integer \(the weights have 4\)"),
])
def test_model_sizes_in_the_metadata_must_be_the_weights_integers(tmp_path: Path, stated, match):
    import bptt

    params = bptt.init_params("rnn", 3, 4, 3, rng=np.random.default_rng(0))
    path = checkpoint.save_model(tmp_path / "model.safetensors", params)
    tensors, meta = read_safetensors(path)
    meta["model"]["hidden_size"] = stated
    write_safetensors_atomic(path, tensors, meta)
    with pytest.raises(CheckpointError, match=match):
        checkpoint.load_model(path)


@pytest.mark.parametrize("state", ["x", {"bit_generator": "PCG64"},
                                   {"bit_generator": "PCG64", "state": {"state": -1, "inc": 1},
                                    "has_uint32": 0, "uinteger": 0}])
def test_a_saved_generator_state_numpy_refuses_is_one_checkpoint_error(state):
    with pytest.raises(CheckpointError, match="the saved random generator state is invalid"):
        checkpoint.generator(state)
    saved = np.random.default_rng(4).bit_generator.state
    assert checkpoint.generator(saved).random() == np.random.default_rng(4).random()


@pytest.mark.parametrize("step", [None, "3", -1, -4, True, 2.5])
def test_a_model_step_that_is_not_an_integer_from_0_is_refused(tmp_path: Path, step):
    # it was int()-ed unchecked: None a TypeError (a traceback from bptt sample), the rest
    # loaded as another step (and export then refused a negative one as a user's mistake)
    import bptt

    params = bptt.init_params("rnn", 3, 4, 3, rng=np.random.default_rng(0))
    path = checkpoint.save_model(tmp_path / "model.safetensors", params, step=7)
    assert checkpoint.load_model(path).step == 7
    tensors, meta = read_safetensors(path)
    meta["step"] = step
    write_safetensors_atomic(path, tensors, meta)
    with pytest.raises(CheckpointError, match=r"metadata has step=.*not an integer >= 0"):
        checkpoint.load_model(path)
    del meta["step"]  # stated nowhere: step 0, as before
    write_safetensors_atomic(path, tensors, meta)
    assert checkpoint.load_model(path).step == 0


def test_bytes_after_the_last_tensor_are_refused(tmp_path: Path):
    path = tmp_path / "long.safetensors"
    write_safetensors_atomic(path, _tensors(), META)
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    with pytest.raises(CheckpointError, match=re.escape(
            f"{path} is not a bptt checkpoint file (it has 8 bytes after the last tensor; "
            "truncated?).")):
        read_safetensors(path)


def test_a_write_into_a_file_taken_for_a_directory_says_so(tmp_path: Path):
    """'bptt export RUN notes.txt/model.safetensors': the message said that notes.txt does
    not exist ('create it first'), which it does, as a file; it is left as it was."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine", encoding="utf-8")
    with pytest.raises(CheckpointError, match=re.escape(
            f"cannot write {notes / 'x.safetensors'}: the directory {notes} is a file, not a "
            "directory.")):
        write_safetensors_atomic(notes / "x.safetensors", {"a": np.zeros(1)}, {})
    assert notes.read_text(encoding="utf-8") == "mine"


def test_save_model_to_a_path_without_suffix_writes_into_that_directory(tmp_path: Path):
    """A path without a suffix is a run directory: DIR/model.safetensors, never a file DIR
    (a missing directory is refused, nothing written)."""
    import bptt

    params = bptt.init_params("rnn", 4, 3, 4, rng=np.random.default_rng(0))
    missing = tmp_path / "run"
    with pytest.raises(CheckpointError, match=re.escape(
            f"the directory {missing} does not exist; create it first.")):
        checkpoint.save_model(missing, params, list("abcd"))
    assert not missing.exists()
    missing.mkdir()
    assert checkpoint.save_model(missing, params) == missing / checkpoint.MODEL_FILE
    assert sorted(p.name for p in missing.iterdir()) == [checkpoint.MODEL_FILE]


def test_load_model_refuses_a_file_of_another_kind(tmp_path: Path):
    import bptt

    params = bptt.init_params("rnn", 4, 3, 4, rng=np.random.default_rng(0))
    model = checkpoint.save_model(tmp_path / "m.safetensors", params, list("abcd"))
    tensors, meta = read_safetensors(model)
    other = tmp_path / "state.safetensors"
    write_safetensors_atomic(other, tensors, {**meta, "kind": "train_state"})
    with pytest.raises(CheckpointError, match=re.escape(
            f"{other} holds 'train_state', expected a 'model' file.")):
        checkpoint.load_model(other)


# ---------------------------------------------------------------- mutation audit (5)


def test_a_shape_changed_to_one_of_the_same_size_is_refused_as_damage(tmp_path: Path):
    """(4, 3) and (3, 4) span the same bytes: only the shape in the CRC can tell."""
    path = tmp_path / "model.safetensors"
    _written_then_edited(path, b"[4,3]", b"[3,4]")  # (Wxh, the only (4, 3) tensor)
    with pytest.raises(CheckpointError, match="tensor 'Wxh' does not match its checksum"):
        read_safetensors(path)


def test_a_file_without_tensors_round_trips(tmp_path: Path):
    """A header that fills the file (no tensor data at all) is a valid safetensors file."""
    path = tmp_path / "empty.safetensors"
    write_safetensors_atomic(path, {}, META)
    assert read_safetensors(path) == ({}, META)


def test_a_checkpoint_is_created_with_the_permissions_of_any_new_file(tmp_path: Path):
    """0o666 less the umask, as open() makes a file: not private to its owner (a run's
    checkpoint is shared like its metrics.csv)."""
    umask = os.umask(0o022)
    try:
        write_safetensors_atomic(tmp_path / "m.safetensors", {"a": np.zeros(1)}, {})
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == 0o644


def test_writes_leave_no_file_descriptor_open(tmp_path: Path):
    """Each write opens the temp file and the directory (to fsync the rename): both are
    closed again, or a long run saving every few steps would run out of descriptors."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd")
    before = len(list(fds.iterdir()))
    for step in range(20):
        write_safetensors_atomic(tmp_path / "m.safetensors", {"a": np.zeros(1)}, {"step": step})
    assert len(list(fds.iterdir())) == before


def test_a_target_that_cannot_be_looked_at_is_one_checkpoint_error(tmp_path: Path):
    """A link that loops (stat fails with ELOOP) is refused in bptt's words, not an OSError."""
    path = tmp_path / "loop.safetensors"
    path.symlink_to(path)
    with pytest.raises(CheckpointError, match=re.escape(
            f"cannot write {path}: Too many levels of symbolic links.")):
        write_safetensors_atomic(path, {"a": np.zeros(1)}, {})
    assert path.is_symlink() and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize(("kind", "name"), [
    (stat.S_IFDIR, "a directory"), (stat.S_IFIFO, "a FIFO (named pipe)"),
    (stat.S_IFCHR, "a character device"), (stat.S_IFBLK, "a block device"),
    (stat.S_IFSOCK, "a socket"),
])
def test_what_is_not_a_regular_file_is_named(kind, name):
    """(devices and sockets cannot be made here without privileges: their modes are named)"""
    assert checkpoint._kind_of(kind | 0o644) == name


def test_metrics_csv_has_unix_line_ends(tmp_path: Path):
    path = checkpoint.write_csv_atomic(tmp_path / "metrics.csv", ["step", "loss"],
                                       [[1, 2.5], [2, "x,y"]])
    assert path.read_bytes() == b'step,loss\n1,2.5\n2,"x,y"\n'


def test_meta_that_is_not_a_dict_is_refused_before_anything_is_written(tmp_path: Path):
    # (dict() would make a list of pairs a dict)
    with pytest.raises(TypeError, match="checkpoint meta must be a dict, got list"):
        write_safetensors_atomic(tmp_path / "m.safetensors", {}, [("step", 1)])
    assert list(tmp_path.iterdir()) == []


def test_numpy_bools_and_unsigned_integers_in_the_metadata_keep_their_types(tmp_path: Path):
    path = tmp_path / "m.safetensors"
    write_safetensors_atomic(path, {}, {"flag": np.bool_(True), "n": np.uint8(7)})
    meta = read_safetensors(path)[1]
    assert meta == {"flag": True, "n": 7}
    assert (type(meta["flag"]), type(meta["n"])) == (bool, int)  # (1 == True: not enough)
    with pytest.raises(ValueError, match=r"must be JSON .*got a complex128"):
        write_safetensors_atomic(path, {}, {"z": np.complex128(1j)})


@pytest.mark.parametrize(("blob", "what"), [
    (pickle.dumps({"Wxh": [0.0]}, protocol=2), "it looks like a pickle, which bptt never loads"),
    (b"\x93NUMPY\x01\x00" + b" " * 100, "it looks like a NumPy .npy file"),
], ids=["pickle-protocol-2", "npy"])
def test_what_a_foreign_file_looks_like_is_said(tmp_path: Path, blob: bytes, what: str):
    """A pickle of protocol 2 is what torch.save wrote before its zip format."""
    path = tmp_path / "m.safetensors"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError, match=re.escape(f"(not safetensors: {what})")):
        read_safetensors(path)


@pytest.mark.parametrize(("header", "data", "what"), [
    (b"[" * 100_000 + b"]" * 100_000, b"", "not safetensors: its header is not JSON"),
    (b"[1, 2]", b"", "not safetensors: its header is not a JSON object"),
    # two tensors on the same bytes
    (json.dumps({"__metadata__": {"bptt": "{}"},
                 "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode(),
     b"\0" * 8, "its tensors overlap or leave gaps in the data"),
    (json.dumps({"__metadata__": {"bptt": "{}", "n": 1}}).encode(), b"",
     "its __metadata__ values must be strings"),
    (json.dumps({"__metadata__": {"bptt": "[" * 100_000 + "]" * 100_000}}).encode(), b"",
     "its bptt metadata is not valid JSON"),
], ids=["deep-header", "header-list", "overlap", "metadata-number", "deep-metadata"])
def test_a_malformed_header_is_one_checkpoint_error(tmp_path: Path, header, data, what):
    """(a header nested too deep for the JSON parser was a RecursionError, not refused)"""
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    for read in (read_safetensors, checkpoint.read_metadata):
        with pytest.raises(CheckpointError, match=re.escape(
                f"{path} is not a bptt checkpoint file ({what}).")):
            read(path)


def test_a_header_longer_than_the_limit_is_refused_unread(tmp_path: Path, monkeypatch):
    path = tmp_path / "m.safetensors"
    write_safetensors_atomic(path, _tensors(), META)
    monkeypatch.setattr(checkpoint, "MAX_HEADER_BYTES", 64)
    with pytest.raises(CheckpointError, match="header length is impossible"):
        read_safetensors(path)


def test_checksums_of_a_tensor_the_file_lacks_are_refused_as_damage(tmp_path: Path):
    """A tensor removed from the file (its metadata kept, with its checksum) is damage."""
    path = tmp_path / "model.safetensors"
    write_safetensors_atomic(path, _tensors(), META)
    stored = _header(path)[1]["__metadata__"]["bptt"]
    fewer = {k: v for k, v in _tensors().items() if k != "ids"}
    path.write_bytes(safetensors.numpy.save(fewer, metadata={"bptt": stored}))
    with pytest.raises(CheckpointError, match="is damaged: its checksums do not list its tensors"):
        read_safetensors(path)


def _gru(layers: int = 2, D: int = 4, V: int = 4) -> dict[str, np.ndarray]:
    import bptt

    return bptt.init_params("gru", D, 3, V, True, np.random.default_rng(0), np.float64, layers)


def test_a_loaded_model_has_its_parameters_in_init_params_order(tmp_path: Path):
    """The file stores them sorted by name; code that walks the keys (a flat buffer, a norm)
    sees the order it had before the save."""
    params = _gru()
    loaded = checkpoint.load_model(checkpoint.save_model(tmp_path / "m.safetensors", params))
    assert list(loaded.params) == list(params)


def test_load_model_refuses_a_model_of_another_cell_when_one_is_asked_for(tmp_path: Path):
    path = checkpoint.save_model(tmp_path / "m.safetensors", _gru())
    assert checkpoint.load_model(path, cell="gru").cell == "gru"
    with pytest.raises(CheckpointError, match=re.escape(
            f"{path} holds a gru model, not a lstm model.")):
        checkpoint.load_model(path, cell="lstm")


def test_extra_metadata_never_replaces_the_models_own(tmp_path: Path):
    params = _gru()
    extra = {"kind": "other", "model": {"cell": "rnn"}, "step": 9, "estimator": {"x": 1}}
    path = checkpoint.save_model(tmp_path / "m.safetensors", params, step=2, extra=extra)
    loaded = checkpoint.load_model(path)
    assert loaded.meta["kind"] == "model" and loaded.cell == "gru" and loaded.step == 2
    assert loaded.meta["estimator"] == {"x": 1}


def test_the_metadata_says_bias_false_for_biases_in_some_layers_only(tmp_path: Path):
    # "bias" is what torch_module builds: a module has biases in every layer or in none
    params = _gru()
    del params["bxh_l1"], params["bhh_l1"]
    path = checkpoint.save_model(tmp_path / "m.safetensors", params)
    assert checkpoint.read_metadata(path)["model"]["bias"] is False


@pytest.mark.parametrize(("change", "message"), [
    (lambda t, m: m.update(config=["lr", 0.1]), "metadata 'config' must be an object."),
    (lambda t, m: m["model"].update(cell=["gru"]), "metadata has no valid 'model' entry."),
    (lambda t, m: t.pop("Why"), "does not hold a consistent model: "),
], ids=["config-list", "cell-list", "no-Why"])
def test_a_model_file_edited_into_no_model_is_one_checkpoint_error(tmp_path: Path, change,
                                                                   message):
    path = checkpoint.save_model(tmp_path / "m.safetensors", _gru())
    tensors, meta = read_safetensors(path)
    change(tensors, meta)
    write_safetensors_atomic(path, tensors, meta)
    with pytest.raises(CheckpointError, match=re.escape(f"{path} {message}")):
        checkpoint.load_model(path)


def test_a_vocabulary_must_name_the_outputs_too(tmp_path: Path):
    params = _gru(1, D=4, V=3)  # 4 inputs, 3 outputs: 4 characters leave output 3 unnamed
    with pytest.raises(CheckpointError, match=re.escape(
            "it has a vocabulary of 4 characters but weights for 4 inputs and 3 outputs.")):
        checkpoint.save_model(tmp_path / "m.safetensors", params, list("abcd"))
    path = checkpoint.save_model(tmp_path / "m.safetensors", params)
    tensors, meta = read_safetensors(path)
    write_safetensors_atomic(path, tensors, {**meta, "vocab": list("abcd")})
    with pytest.raises(CheckpointError, match=re.escape(
            f"{path} has a vocabulary of 4 characters but weights for 4 inputs and 3 outputs.")):
        checkpoint.load_model(path)


def test_made_dir_removes_the_directories_it_made_when_the_block_fails(tmp_path: Path):
    """What flow --out, bptt import and an estimator's save create for their files: a write
    that fails leaves no empty directories, nested ones included; what was there stays."""
    (tmp_path / "there").mkdir()
    target = tmp_path / "there" / "a" / "b"
    assert checkpoint.missing_dirs(target) == [target, target.parent]
    with pytest.raises(OSError, match="No space left"), checkpoint.made_dir(target):
        assert target.is_dir()
        raise OSError(28, "No space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["there"]
    assert list((tmp_path / "there").iterdir()) == []
    with pytest.raises(KeyboardInterrupt), checkpoint.made_dir(target):
        (target.parent / "kept.txt").write_text("not empty")
        raise KeyboardInterrupt
    assert not target.exists() and (target.parent / "kept.txt").exists()  # (not empty: kept)
    with checkpoint.made_dir(target):
        pass
    assert target.is_dir()


def test_load_model_of_a_run_holding_its_train_state_alone_says_how_to_complete_it(
    tmp_path: Path,
):
    """A stop between a checkpoint's two files leaves train_state.safetensors without
    model.safetensors: 'no checkpoint' alone did not say that --resume writes the model."""
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*run: expected .* model "
                       r"file\.$"):
        checkpoint.load_model(run)
    (run / "train_state.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load_model(run)
    assert str(caught.value).endswith(
        f"; {run} holds train_state.safetensors alone (a stop cut its last checkpoint "
        f"short): 'bptt train --resume {run}' writes model.safetensors from it."
    )
    assert "\n" not in str(caught.value)
    with pytest.raises(CheckpointError, match=r"model file\.$"):  # a file path: no hint
        checkpoint.load_model(run / "model.safetensors")
