"""Safe checkpoint files: safetensors only, written atomically, checked before trusted.

A checkpoint is one safetensors file: named arrays plus one metadata entry,
``__metadata__["bptt"]``, holding a JSON object (the run's settings,
vocabulary, step, ...).  Nothing here unpickles, calls
``np.load(allow_pickle=True)`` or evaluates anything read from a file.

Writing (:func:`write_safetensors_atomic`) serializes to bytes, writes them
to a temporary file ``.tmp-<name>.<random>`` in the target's directory,
fsyncs it, renames it over the target with ``os.replace`` and fsyncs the
directory: the target is either the old file or the complete new one, never
half written.  Only a regular file is ever replaced: a directory, FIFO or device
at the target is refused.  :func:`clean_temp_files` removes temporaries left by a crash.

Reading (:func:`read_safetensors`) validates the 8-byte header length, the
JSON header and every tensor's shape × dtype size against its byte span and
the file size BEFORE anything is allocated, so a hostile or damaged file
(a pickle renamed ``.safetensors``, a truncated download, a header claiming
10^12 elements) is refused with one :class:`~bptt.errors.CheckpointError`.

Checksums.  safetensors keeps none, so the JSON object bptt writes holds one more entry,
``"crc32"``: the CRC-32 of every tensor (its name, dtype, shape and bytes) and of the
settings (the rest of the object).  Reading recomputes them and hands back the object
without that entry, so a byte flipped by a failing disk or a bad copy, in a weight or in a
setting, is refused as damage instead of loading as a slightly different model.  (A CRC
catches accidents, not tampering.)  A file without the entry (written by another program,
or by bptt before it wrote checksums) is read as before, unchecked.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import stat
import struct
import uuid
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import safetensors.numpy

from bptt.errors import BpttError, CheckpointError, check_int, is_int, is_surrogate, parse_json

TEMP_PREFIX = ".tmp-"
MAX_HEADER_BYTES = 100_000_000
METADATA_KEY = "bptt"
EXPORT_KIND = "torch_state_dict"  # the kind of bptt export's files (bptt.interop)
CHECKSUM_KEY = "crc32"  # inside the bptt JSON: {"settings": CRC-32, "tensors": {name: CRC-32}}

# safetensors dtype name -> bytes per element, for the dtypes NumPy can hold.
_DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


def make_dir(directory: Path) -> None:
    """Create ``directory`` (and its parents) if it is missing; BpttError if it cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BpttError(f"cannot create the directory {directory}: {exc.strerror}") from exc


@contextlib.contextmanager
def made_dir(directory: Path) -> Iterator[Path]:
    """:func:`make_dir` for what the block writes into ``directory``: should the block fail
    (however), the directories this made, ``directory`` and the parents it lacked, are
    removed again if they are empty, so a failed command leaves no empty directories
    behind; a directory that was there before is never removed."""
    created = missing_dirs(directory)
    try:
        make_dir(directory)
        yield directory
    except BaseException:
        remove_empty_dirs(created)
        raise


def missing_dirs(directory: Path) -> list[Path]:
    """``directory`` and each of its parents that does not exist yet, deepest first: the
    directories that creating it makes (and that undoing that would remove)."""
    missing = []
    for path in (directory, *directory.parents):
        if os.path.lexists(path):  # (a link, even a dangling one, is not this command's)
            break
        missing.append(path)
    return missing


def remove_empty_dirs(directories: Iterable[Path]) -> None:
    """Remove each of ``directories`` that is empty, deepest first (a parent is empty once
    its new children are gone); one that holds anything, or cannot be removed, stays."""
    for directory in sorted(set(directories), key=lambda d: len(d.absolute().parts),
                            reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()


def write_safetensors_atomic(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    checksums: bool = True,
    overwrite: bool = True,
) -> None:
    """Write ``tensors`` and the JSON object ``meta`` to ``path`` atomically.

    Arrays are saved C-contiguous (copied if needed; 0-d arrays stay 0-d).
    checksums: store the CRC-32s of the tensors and of ``meta`` (module docstring); False
    for a file other programs are meant to rewrite with the same metadata (an export).
    Only a regular file is ever replaced: a directory, FIFO, device or socket at
    ``path`` (or a link to one) is refused before anything is written.  On any
    failure the previous file at ``path`` (if any) is untouched, the temporary
    file is removed, and a CheckpointError is raised.
    overwrite: False never replaces a file at ``path``, not even one that another process
    wrote there while this one wrote its temporary file (a check before writing cannot see
    it): the new file is hard-linked in place, which fails on an existing name (where the
    filesystem has no hard links, checked just before the rename).
    """
    target = Path(path)
    directory = target.parent
    if not directory.is_dir():
        what = ("is a file, not a directory" if directory.exists()
                else "does not exist; create it first")
        raise CheckpointError(f"cannot write {target}: the directory {directory} {what}.")
    _check_replaceable(target)
    blob = _serialize(tensors, meta, checksums)
    temp = _temp_beside(target)
    try:
        _write_synced(temp, blob)
        (os.replace if overwrite else _link_new)(temp, target)
    except FileExistsError:
        _remove_quietly(temp)
        raise CheckpointError(f"{target} already exists (made while this was being written, "
                              "or a link to nothing); it is left as it is.") from None
    except OSError as exc:
        _remove_quietly(temp)
        raise CheckpointError(f"cannot write {target}: {exc.strerror or exc}.") from exc
    except BaseException:
        _remove_quietly(temp)
        raise
    _fsync_directory(directory)


def _link_new(temp: Path, target: Path) -> None:
    """Give the complete file ``temp`` the name ``target`` unless that name is taken
    (FileExistsError): a hard link, then ``temp`` removed; where links are not supported,
    a check and a rename."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network filesystems)
        if os.path.lexists(target):
            raise FileExistsError(target) from None
        os.replace(temp, target)
        return
    _remove_quietly(temp)


def _temp_beside(target: Path) -> Path:
    """A new temporary file name in ``target``'s directory: ``.tmp-NAME.<12 hex digits>``
    (what :func:`clean_temp_files` removes)."""
    return target.parent / f"{TEMP_PREFIX}{target.name}.{uuid.uuid4().hex[:12]}"


def _check_replaceable(target: Path) -> None:
    """Refuse a ``target`` that exists and is not a regular file (links are followed)."""
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return  # nothing there (or a dangling link): a new file
    except OSError as exc:
        raise CheckpointError(f"cannot write {target}: {exc.strerror or exc}.") from exc
    if not stat.S_ISREG(mode):
        raise CheckpointError(
            f"cannot write {target}: it exists and is {_kind_of(mode)}, not a regular file; "
            "choose another file name."
        )


def _kind_of(mode: int) -> str:
    """What a non-regular file is, in words (for error messages)."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def write_csv_atomic(
    target: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> Path:
    """A CSV file (metrics.csv) rewritten whole and atomically (:func:`replace_atomic`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return replace_atomic(target, lambda temp: temp.write_text(buffer.getvalue(), "utf-8"))


def replace_atomic(target: str | os.PathLike[str], write: Any) -> Path:
    """Write a small derived file (metrics.csv, loss.png) atomically.

    ``write(temp_path)`` writes the new content to a temporary file beside ``target``,
    which then replaces it, so a reader never sees half a file.  Returns the target.  A
    write or rename the system refuses is a BpttError naming ``target`` (the OSError named
    the temporary file, or no file at all: a full disk), the old file left as it was.
    The temporary file's name is new at each call (``.tmp-NAME.<12 hex digits>``, as
    :func:`write_safetensors_atomic`'s): two commands writing the same file at once (two
    ``bptt flow --out DIR``) each rename their own, never the other's half-written one.
    """
    target = Path(target)
    temp = _temp_beside(target)
    try:
        write(temp)
        os.replace(temp, target)
    except OSError as exc:
        _remove_quietly(temp)
        raise BpttError(f"cannot write {target}: {exc.strerror or exc}.") from exc
    except BaseException:
        _remove_quietly(temp)
        raise
    return target


def _serialize(
    tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], checksums: bool = True
) -> bytes:
    """The safetensors bytes of ``tensors`` with ``{"bptt": json.dumps(meta)}`` as metadata,
    the object holding its checksums too when asked."""
    if not isinstance(meta, Mapping):
        raise TypeError(f"checkpoint meta must be a dict, got {type(meta).__name__}")
    if CHECKSUM_KEY in meta:
        raise TypeError(f"checkpoint meta must not have the key {CHECKSUM_KEY!r} (bptt's own)")
    # little-endian, C order: the bytes as safetensors stores them, which the CRCs cover
    contiguous = {
        name: np.require(a.astype(a.dtype.newbyteorder("<"), copy=False), requirements="C")
        for name, a in tensors.items()
    }
    # the settings as they will be read back (json.loads), which is what their CRC covers
    settings = as_json(meta)
    if checksums:
        settings[CHECKSUM_KEY] = {
            "settings": _settings_crc(settings),
            "tensors": {name: _tensor_crc(name, contiguous[name]) for name in sorted(contiguous)},
        }
    return safetensors.numpy.save(contiguous, metadata={METADATA_KEY: json.dumps(settings)})


def _settings_crc(settings: dict[str, Any]) -> int:
    """CRC-32 of the bptt JSON object without its checksums, as JSON text."""
    return zlib.crc32(json.dumps(settings).encode("utf-8"))


def _tensor_crc(name: str, a: np.ndarray) -> int:
    """CRC-32 of a tensor's name, dtype and shape, then of its bytes in C order: a changed
    byte in any of them changes it."""
    label = json.dumps([name, a.dtype.name, list(a.shape)]).encode("utf-8")
    # (.data: the bytes' buffer, not a copy)
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data,
                      zlib.crc32(label))


def as_json(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` as a file's metadata will read back (json.loads of its json.dumps; numpy
    numbers become Python's); BpttError naming what JSON cannot hold."""
    return json.loads(json.dumps(dict(meta), default=_json_number))


def _json_number(value: Any) -> Any:
    """json's fallback for what it cannot write: a numpy number is the Python number it
    holds (a setting given as np.int64 or np.float32); anything else is refused."""
    kinds = {"b": bool, "i": int, "u": int, "f": float}  # (np.longdouble's .item() is itself)
    if isinstance(value, np.generic) and value.dtype.kind in kinds:
        return kinds[value.dtype.kind](value)
    raise BpttError(
        f"checkpoint metadata must be JSON (numbers, strings, lists, dicts, None), got a "
        f"{type(value).__name__}: {value!r:.80}"
    )


def _write_synced(file: Path, blob: bytes) -> None:
    """Create ``file`` (it must not exist), write ``blob``, flush and fsync it."""
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; platforms that cannot open a directory skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(file: Path) -> None:
    """Delete ``file`` if it exists, ignoring errors (used while another error is raised)."""
    try:
        file.unlink(missing_ok=True)
    except OSError:
        pass


def clean_temp_files(directory: str | os.PathLike[str], names: Iterable[str]) -> int:
    """Remove the temporaries an interrupted write of the files ``names`` left in
    ``directory`` (``.tmp-NAME.<12 hex digits>`` of :func:`replace_atomic` and
    :func:`write_safetensors_atomic`; ``.tmp-NAME``, of replace_atomic before it took a new
    name at each call); return how many.  Other ``.tmp-*`` files are not bptt's and stay.

    A missing directory has none (returns 0).  Call it only while no other
    process is writing checkpoints into the same directory.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return 0
    ours = re.compile(
        "|".join(re.escape(TEMP_PREFIX + name) + r"(\.[0-9a-f]{12})?" for name in names)
    )
    removed = 0
    for entry in folder.glob(f"{TEMP_PREFIX}*"):
        if ours.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink()
            removed += 1
    return removed


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return (tensors, meta) from a checkpoint written by :func:`write_safetensors_atomic`.

    The file is validated before anything is allocated from its header; the
    returned arrays are writable and independent of the file.

    Raises:
        CheckpointError: the file is missing, unreadable, not safetensors,
            damaged or truncated, or has no valid ``bptt`` metadata.
    """
    file = Path(path)
    data, header = _read_checked(file)
    meta, sums = _parse_meta(file, header)
    return _checked_tensors(file, _load_tensors(file, data), sums), meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``bptt`` metadata of a checkpoint, validated as :func:`read_safetensors` validates
    the whole file (its header and tensor table), without reading the tensors."""
    file = Path(path)
    return _parse_meta(file, _read_checked(file, with_data=False)[1])[0]


def read_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """The name -> shape of every tensor of any safetensors file, from its validated header
    alone (as :func:`read_any_safetensors` validates it)."""
    file = Path(path)
    try:
        header = _read_checked(file, with_data=False, noun="file")[1]
    except _UnusableFileError as exc:
        raise CheckpointError(f"{file} is not a usable safetensors file ({exc.why}).") from exc
    return {name: tuple(entry["shape"]) for name, entry in header.items()
            if name != "__metadata__"}


def read_any_safetensors(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """Return (tensors, the header's raw ``__metadata__`` or None) of any safetensors file.

    The same validation as :func:`read_safetensors`, without requiring bptt metadata:
    for files written by other programs (``safetensors.torch.save_file``).  bptt's own
    metadata, if there, is checked against its checksums and given without them.
    """
    file = Path(path)
    try:
        data, header = _read_checked(file, noun="file")
        tensors = _load_tensors(file, data)
    except _UnusableFileError as exc:  # (it need not be bptt's: name it for what it should be)
        raise CheckpointError(f"{file} is not a usable safetensors file ({exc.why}).") from exc
    metadata = header.get("__metadata__")
    if isinstance(metadata, dict) and isinstance(metadata.get(METADATA_KEY), str):
        meta, sums = _parse_meta(file, header)
        _checked_tensors(file, tensors, sums)
        metadata = {**metadata, METADATA_KEY: json.dumps(meta)}
    return tensors, metadata


def _checked_tensors(
    file: Path, tensors: dict[str, np.ndarray], sums: dict[str, Any] | None
) -> dict[str, np.ndarray]:
    """``tensors``, once each matches its CRC-32 in ``sums`` (None: the file has none)."""
    if sums is None:
        return tensors
    listed = sums.get("tensors")
    if not isinstance(listed, dict) or set(listed) != set(tensors):
        raise _damaged(file, "its checksums do not list its tensors")
    for name, a in tensors.items():
        if listed[name] != _tensor_crc(name, a):
            raise _damaged(file, f"tensor {name!r} does not match its checksum")
    return tensors


def _damaged(file: Path, what: str) -> CheckpointError:
    """The CheckpointError for a file whose bytes changed after bptt wrote it."""
    return CheckpointError(
        f"{file} is damaged: {what}; its bytes changed after bptt wrote it (a failing disk "
        "or a bad copy?). Use another copy of it."
    )


def _load_tensors(file: Path, data: bytes) -> dict[str, np.ndarray]:
    """The arrays of validated safetensors bytes, writable and independent of the bytes."""
    try:
        tensors = safetensors.numpy.load(data)
    except Exception as exc:  # the library's own checks, after ours
        raise _bad(file, f"it is damaged ({exc})") from exc
    return {name: a if a.flags.writeable else a.copy() for name, a in tensors.items()}


class _UnusableFileError(CheckpointError):
    """A checkpoint file that exists but cannot be used; ``why`` says what is wrong with it."""

    def __init__(self, file: Path, why: str) -> None:
        super().__init__(f"{file} is not a bptt checkpoint file ({why}).")
        self.why = why


def _bad(file: Path, what: str) -> CheckpointError:
    """The CheckpointError for a file that exists but cannot be used."""
    return _UnusableFileError(file, what)


def _read_checked(
    file: Path, with_data: bool = True, noun: str = "checkpoint"
) -> tuple[bytes, dict[str, Any]]:
    """Return (all bytes, parsed header) of ``file``, validating the header before the data.

    with_data=False: only the header is read (the bytes returned are empty).  noun: what
    the messages call the file when it is missing or cannot be read."""
    if not file.exists():
        raise CheckpointError(f"{noun} {file} does not exist; check the path.")
    if file.is_dir():
        raise CheckpointError(f"{noun} {file} is a directory; pass the .safetensors file.")
    try:
        # (before opening: opening a FIFO no one writes to waits forever, and a pipe's
        # size, which the header is checked against, is 0)
        if not stat.S_ISREG(file.stat().st_mode):
            raise CheckpointError(f"{noun} {file} is not a regular file (a pipe or a device?); "
                                  "save it to a file first.")
        with file.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            header_len = _check_prefix(file, prefix, size)
            header = _parse_header(file, handle.read(header_len))
            _check_tensors(file, header, size - 8 - header_len)
            if not with_data:
                return b"", header
            handle.seek(0)
            data = handle.read()
    except OSError as exc:
        raise CheckpointError(f"cannot read {noun} {file}: {exc.strerror or exc}.") from exc
    if len(data) != size:
        raise _bad(file, "it changed while being read")
    return data, header


def _check_prefix(file: Path, prefix: bytes, size: int) -> int:
    """Return the header length from the first 8 bytes, or raise if it cannot be safetensors."""
    if len(prefix) < 8:
        raise _bad(file, f"only {size} bytes long, too short for safetensors")
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > MAX_HEADER_BYTES or header_len > size - 8 or header_len < 2:
        raise _bad(file, f"not safetensors: {_sniff(prefix)}")
    return header_len


def _sniff(prefix: bytes) -> str:
    """A guess of what a non-safetensors file is, from its first bytes."""
    if prefix[:1] == b"\x80" and prefix[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "it looks like a pickle, which bptt never loads"
    if prefix.startswith(b"PK"):
        return "it looks like a zip archive, e.g. a PyTorch .pt file; export it to safetensors"
    if prefix.startswith(b"\x93NUMPY"):
        return "it looks like a NumPy .npy file"
    return "the header length is impossible; maybe a pickle or a truncated file?"


def _parse_header(file: Path, raw: bytes) -> dict[str, Any]:
    """The JSON header as a dict; anything else raises."""
    try:
        header = parse_json(raw.decode("utf-8"))
    except ValueError as exc:  # (a UnicodeDecodeError is one)
        raise _bad(file, "not safetensors: its header is not JSON") from exc
    if not isinstance(header, dict):
        raise _bad(file, "not safetensors: its header is not a JSON object")
    return header


def _check_tensors(file: Path, header: dict[str, Any], data_len: int) -> None:
    """Every tensor entry's shape × dtype size must equal its byte span inside the data."""
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = _check_entry(file, name, entry)
        if end > data_len:
            raise _bad(file, f"tensor {name!r} ends at byte {end} of {data_len}: truncated")
        spans.append((begin, end))
    spans.sort()
    position = 0
    for begin, end in spans:
        if begin != position:
            raise _bad(file, "its tensors overlap or leave gaps in the data")
        position = end
    if position != data_len:
        raise _bad(file, f"it has {data_len - position} bytes after the last tensor; truncated?")


def _check_entry(file: Path, name: str, entry: Any) -> tuple[int, int]:
    """Return (begin, end) of one header entry after checking dtype, shape and span."""
    if not isinstance(entry, dict):
        raise _bad(file, f"header entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _DTYPE_SIZES:
        raise _bad(file, f"tensor {name!r} has unsupported dtype {dtype!r}")
    if not _is_int_list(shape) or any(d < 0 for d in shape):
        raise _bad(file, f"tensor {name!r} has an invalid shape {shape!r}")
    if not _is_int_list(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
        raise _bad(file, f"tensor {name!r} has invalid data_offsets {offsets!r}")
    nbytes = math.prod(shape) * _DTYPE_SIZES[dtype]  # Python ints: no overflow
    if nbytes != offsets[1] - offsets[0]:
        raise _bad(
            file,
            f"tensor {name!r} claims shape {shape} ({nbytes} bytes) "
            f"but spans {offsets[1] - offsets[0]} bytes",
        )
    return offsets[0], offsets[1]


def _is_int_list(value: object) -> TypeGuard[list[int]]:
    """True for a list of plain ints (not bools)."""
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def _parse_meta(
    file: Path, header: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the JSON object stored under ``__metadata__["bptt"]``, its checksums or None).

    The object is returned without its checksums, once the settings match theirs."""
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or not isinstance(metadata.get(METADATA_KEY), str):
        raise _bad(file, "a safetensors file without bptt metadata, not written by bptt")
    if not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(file, "its __metadata__ values must be strings")
    try:
        meta = parse_json(metadata[METADATA_KEY])
    except ValueError as exc:
        raise _bad(file, "its bptt metadata is not valid JSON") from exc
    if not isinstance(meta, dict):
        raise _bad(file, "its bptt metadata is not a JSON object")
    if CHECKSUM_KEY not in meta:
        if any(isinstance(v, dict) and set(v) == {"settings", "tensors"} for v in meta.values()):
            # checksums under a changed name must not turn the checking off
            raise _damaged(file, f"its checksums are under a key other than {CHECKSUM_KEY!r}")
        return meta, None  # written by another program, or before bptt wrote checksums
    sums = meta.pop(CHECKSUM_KEY)
    if not isinstance(sums, dict) or sums.get("settings") != _settings_crc(meta):
        raise _damaged(file, "its settings (bptt metadata) do not match their checksum")
    return meta, sums


# --------------------------------------------------------------------------
# a model: parameters + what is needed to use them (cell, sizes, vocabulary)
# --------------------------------------------------------------------------

FORMAT = "bptt"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"


def check_model_sizes(file: Path, model: dict[str, Any], found: dict[str, int]) -> None:
    """The sizes a file's metadata states (``model``) must be the integers ``found`` in
    its weights; CheckpointError naming the first that is not."""
    for key, value in found.items():
        stated = model.get(key)
        if isinstance(stated, bool) or not isinstance(stated, int):
            raise CheckpointError(
                f"{file} metadata has {key}={stated!r}, which is not an integer "
                f"(the weights have {value})."
            )
        if stated != value:
            raise CheckpointError(
                f"{file} metadata says {key}={stated!r} but the weights have {value}."
            )


def check_model_kinds(file: Path, model: dict[str, Any], found: dict[str, Any]) -> None:
    """What a file's metadata states of its weights' kind (dtype, bias, head_bias) must be
    what is ``found`` in the weights: ``torch_module(meta["model"])`` builds from these.
    CheckpointError naming the first that is not; what it does not state (a file written
    before these keys, or edited) is filled in from the weights."""
    for key in ("dtype", "bias", "head_bias"):
        model.setdefault(key, found[key])
        if model[key] != found[key]:
            raise CheckpointError(
                f"{file} metadata says {key}={model[key]!r} but the weights have "
                f"{found[key]!r}."
            )


class LoadedModel:
    """A model read from a checkpoint: ``params`` (dict), ``vocab`` (list of characters or
    None), ``config`` (the settings it was trained with, a dict), ``meta`` (all metadata)."""

    def __init__(self, params: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.params = params
        self.meta = meta
        self.vocab: list[str] | None = meta.get("vocab")
        self.config: dict[str, Any] = meta.get("config", {})
        self.cell: str = meta["model"]["cell"]
        self.step: int = int(meta.get("step", 0))


def model_meta(params: Mapping[str, np.ndarray], vocab: list[str] | None,
               config: Mapping[str, Any], step: int) -> dict[str, Any]:
    """The metadata stored beside a model's parameters (format, sizes, vocab, settings)."""
    from bptt import models  # deferred: checkpoint files are usable without the model code

    shapes = models.check_params(dict(params))
    step = check_int("step", step, 0)
    if not isinstance(config, Mapping):
        raise BpttError(f"config must be a dict, got {type(config).__name__}")
    return {
        **header("model"),
        "model": model_entry(params, shapes),
        "vocab": vocab,
        "config": dict(config),
        "step": step,
    }


def model_entry(params: Mapping[str, np.ndarray], shapes: Any) -> dict[str, Any]:
    """The metadata's "model": the cell, its sizes and kind (interop.model_config: what
    torch_module builds from).  shapes: ``models.check_params(params)``."""
    from bptt import models

    return {
        "cell": shapes.cell,
        "num_layers": shapes.L,
        "input_size": shapes.D,
        "hidden_size": shapes.H,
        "output_size": shapes.V,
        # the recurrent biases (of every layer) and the head's
        "bias": all(key in params for key in models.recurrent_bias_keys(shapes)),
        "head_bias": "by" in params,
        "dtype": str(params["Whh"].dtype),
    }


def save_model(path: str | os.PathLike[str], params: Mapping[str, np.ndarray],
               vocab: list[str] | None = None, config: Mapping[str, Any] | None = None,
               step: int = 0, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``params`` (+ metadata) atomically to ``path`` (a directory: DIR/model.safetensors).

    extra: more metadata entries, beside (never instead of) the model's own (e.g. a saved
    estimator's, carried through an export).  Returns the file written.
    """
    target = Path(path)
    if target.is_dir() or not target.suffix:
        target = target / MODEL_FILE
    meta = model_meta(params, vocab, config or {}, step)
    meta = {**(extra or {}), **meta}
    check_vocab_to_save(target, meta)
    write_safetensors_atomic(target, params, meta)
    return target


def check_vocab_to_save(target: Path, meta: Mapping[str, Any]) -> None:
    """Refuse the vocabulary of ``meta`` (a :func:`model_meta`) if loading would refuse it:
    checked before a good file at ``target`` is replaced."""
    vocab, model = meta["vocab"], meta["model"]
    problem = None if vocab is None else _vocab_problem(
        vocab, model["input_size"], model["output_size"]
    )
    if problem:
        raise CheckpointError(f"not saved: {target} would be refused on loading: it {problem}.")


def header(kind: str) -> dict[str, Any]:
    """The first keys of every bptt file's metadata, what :func:`check_format` reads."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind}


def generator(state: Mapping[str, Any]) -> np.random.Generator:
    """A numpy Generator put back in a saved ``bit_generator.state`` (a train state's "rng");
    CheckpointError when the saved state is not one numpy accepts."""
    rng = np.random.default_rng()
    try:
        with warnings.catch_warnings():
            # numpy < 2 takes an integer out of its range with a DeprecationWarning (wrapped
            # around: another generator); numpy 2 raises OverflowError
            warnings.simplefilter("error", DeprecationWarning)
            rng.bit_generator.state = state
    except (KeyError, TypeError, ValueError, OverflowError, DeprecationWarning) as exc:
        raise CheckpointError(f"the saved random generator state is invalid ({exc!r}).") from None
    return rng


def check_format(file: Path, meta: Mapping[str, Any], kind: str) -> None:
    """Refuse metadata of another program, another format version or another kind of file."""
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{file} was not written by bptt (no 'format': 'bptt' metadata).")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has checkpoint format version {version!r}; this bptt reads version "
            f"{FORMAT_VERSION}. Use the bptt version that wrote it."
        )
    if meta.get("kind") != kind:
        hint = (" It is an export for PyTorch: bring it back as a model with bptt import "
                "(bptt.interop.import_file).") if meta.get("kind") == EXPORT_KIND else ""
        raise CheckpointError(
            f"{file} holds {meta.get('kind')!r}, expected a {kind!r} file.{hint}"
        )


def _cut_short(directory: Path) -> str:
    """The end of load_model's message for a run directory without its model: "." or, when
    it holds the train state alone (a stop between the two files of a checkpoint), how to
    complete it."""
    from bptt.train import STATE_FILE

    if not (directory.is_dir() and (directory / STATE_FILE).is_file()):
        return "."
    return (f"; {directory} holds {STATE_FILE} alone (a stop cut its last checkpoint short): "
            f"'bptt train --resume {directory}' writes {MODEL_FILE} from it.")


def load_model(path: str | os.PathLike[str], cell: str | None = None) -> LoadedModel:
    """Read a model from a checkpoint directory (its model.safetensors) or a model file.

    Everything is checked before use: format and version, the parameter keys and shapes
    against the recorded cell and sizes, and the vocabulary against the sizes.  ``cell``:
    when given, a checkpoint of another cell is refused.
    """
    from bptt import models

    file = Path(path)
    if file.is_dir():
        file = file / MODEL_FILE
    if not file.exists():
        raise CheckpointError(
            f"no checkpoint at {path}: expected a run directory holding {MODEL_FILE} "
            "(written by 'bptt train --out DIR') or a .safetensors model file"
            + _cut_short(Path(path))
        )
    params, meta = read_safetensors(file)
    check_format(file, meta, "model")
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("cell"), str):
        raise CheckpointError(f"{file} metadata has no valid 'model' entry.")
    if cell is not None and model["cell"] != cell:
        raise CheckpointError(f"{file} holds a {model['cell']} model, not a {cell} model.")
    try:
        shapes = models.check_params(params, model["cell"])
    except ValueError as exc:
        raise CheckpointError(f"{file} does not hold a consistent model: {exc}.") from exc
    check_model_sizes(file, model, {"num_layers": shapes.L, "input_size": shapes.D,
                                    "hidden_size": shapes.H, "output_size": shapes.V})
    check_model_kinds(file, model, model_entry(params, shapes))
    params = models.canonical_order(params)
    vocab = meta.get("vocab")
    if vocab is not None:
        _check_vocab(file, vocab, shapes.D, shapes.V)
    if not isinstance(meta.get("config", {}), dict):
        raise CheckpointError(f"{file} metadata 'config' must be an object.")
    step = meta.get("step", 0)
    if not is_int(step) or step < 0:
        raise CheckpointError(f"{file} metadata has step={step!r}, which is not an integer >= 0.")
    return LoadedModel(params, meta)


def _check_vocab(file: Path, vocab: Any, D: int, V: int) -> None:
    """A character vocabulary must be distinct 1-character strings, one per input and output."""
    problem = _vocab_problem(vocab, D, V)
    if problem:
        raise CheckpointError(f"{file} {problem}.")


def _vocab_problem(vocab: Any, D: int, V: int) -> str | None:
    """What is wrong with a vocabulary for D inputs and V outputs, said after a file's name."""
    ok = (
        isinstance(vocab, list)
        and all(isinstance(c, str) and len(c) == 1 for c in vocab)
        and len(set(vocab)) == len(vocab)
    )
    if not ok:
        return "has a 'vocab' that is not a list of distinct characters"
    surrogates = [c for c in vocab if is_surrogate(c)]
    if surrogates:
        return (f"has a 'vocab' holding {surrogates[0]!r}, which is not a Unicode character "
                "(a lone surrogate: it has no UTF-8 form, so no text can hold it)")
    if len(vocab) != D or len(vocab) != V:
        return (f"has a vocabulary of {len(vocab)} characters but weights for {D} inputs "
                f"and {V} outputs")
    return None
