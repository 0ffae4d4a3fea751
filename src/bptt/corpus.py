"""Text files of any size as a cached, memory-mapped file of token ids.

Dimension letters: N tokens (characters) in the corpus, V vocabulary size.

:func:`encode_files` turns one or more UTF-8 files into token ids ONCE and
caches them; training then reads the ids through ``np.memmap``, so the memory
a run needs does not grow with the corpus.

Encoding works on blocks of :data:`BLOCK_BYTES` bytes read from the file and
decoded with an incremental UTF-8 decoder (a character split across two
blocks is decoded whole); the text is never held as one Python ``str``.

* Pass 1 (``"scan"``) hashes the bytes (BLAKE2b), collects the set of
  characters (code points) and, when the vocabulary is fixed (fine-tuning),
  finds characters outside it.
* Pass 2 (``"encode"``) decodes again and writes the ids, one block at a time,
  through a lookup table code point -> id, to a temporary file that is renamed
  into place when complete; the bytes are hashed again and must equal pass 1
  (a file that changes while being encoded is refused).

Several files are joined with :data:`SEPARATOR` (a newline) between them, as
if they were one text.  A UTF-8 byte-order mark at the start of a file is
dropped.  ``errors="replace"`` reads undecodable bytes as U+FFFD (which then
is a character of the vocabulary); ``"strict"`` stops with the byte offset.

The cache (in ``cache_dir``) holds, per list of files, one JSON manifest and
one id file::

    corpus-<key>.json          format, the files (absolute path, size, mtime, ctime,
                               BLAKE2b of the bytes), separator, errors, unk,
                               the vocabulary (list of characters), dtype, N
    corpus-<key>-<digest>.ids  N ids, little-endian uint8 (V <= 256), uint16
                               (V <= 65536) or uint32, no header

``<key>`` hashes the absolute paths and the decoding options; ``<digest>``
the contents and the vocabulary.  The cache is reused while every file has
the recorded size, mtime and ctime; when they differ the file is re-hashed, and
re-encoded only if its content changed.  The manifest is written last (and
atomically), so it always names a complete id file.

Both are written to a temporary file ``.tmp-<name>.<8 hex digits>`` beside them (the
id file's held locked, ``flock``, by its writer while it is written): a writer killed
outright (SIGKILL, the OOM killer, a power cut) leaves it behind, as big as the ids, and
the next :func:`encode_files` on that cache removes it (:func:`remove_dead_temps`), never
one a live writer holds (another run encoding into a shared cache).

The library never prints: ``progress(phase, bytes_done, bytes_total)`` is
called after each block.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bptt import ops
from bptt.data import (
    Vocab,
    check_errors,
    check_not_utf16,
    check_text_path,
    check_unk,
    read_error,
    undecodable_message,
    unknown_characters_message,
)
from bptt.errors import SURROGATES, BpttError, DataError, parse_json

SEPARATOR = "\n"  # between the texts of several files
BLOCK_BYTES = 4 << 20  # bytes read and decoded at a time
CACHE_FORMAT = "bptt-corpus"
CACHE_VERSION = 1
NUM_CODE_POINTS = 0x110000
TEMP_PREFIX = ".tmp-"
TEMP_NAME = re.compile(r"\.tmp-corpus-[0-9a-f]{16}(-[0-9a-f]{16}\.ids|\.json)\.[0-9a-f]{8}")
"""The temporary files of :func:`encode_files` (an id file's, a manifest's)."""
DEAD_AFTER = 60.0
"""Seconds a temporary file must be unchanged before it is taken for a dead writer's (and
only if no writer holds it locked): one just created is not locked yet."""

Progress = Callable[[str, int, int], None]
"""``progress(phase, bytes_done, bytes_total)``; phase is "scan" or "encode"."""


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest little-endian unsigned dtype that holds ids 0..vocab_size−1."""
    if vocab_size <= 1 << 8:
        return np.dtype("u1")
    if vocab_size <= 1 << 16:
        return np.dtype("<u2")
    return np.dtype("<u4")


@dataclass(frozen=True)
class Source:
    """One input file as recorded in the cache: absolute path, size, mtime, content hash,
    and ctime (the inode's change time: every write sets it, and no tool sets it back, as
    ``cp -p``, ``rsync -t``, ``touch -d`` can set back the mtime; −1: not recorded)."""

    path: str
    size: int
    mtime_ns: int
    blake2b: str = ""
    ctime_ns: int = -1

    def same_stat(self, other: Source) -> bool:
        """Same file, size, modification and change times (the content is then trusted
        unchanged; a content written since has a new ctime)."""
        return (self.path, self.size, self.mtime_ns, self.ctime_ns) == (
            other.path, other.size, other.mtime_ns, other.ctime_ns)


@dataclass
class EncodedCorpus:
    """Token ids of a text on disk.

    ``ids``: (N,) read-only ``np.memmap`` of dtype :func:`id_dtype` (V);
    ``vocab``: the vocabulary the ids index; ``ids_file`` / ``manifest``: the
    cache files; ``reused``: True when no ids were written by this call.
    """

    ids: np.ndarray
    vocab: Vocab
    ids_file: Path
    manifest: Path
    reused: bool
    sources: tuple[Source, ...]

    @property
    def num_tokens(self) -> int:
        """N, the number of characters (ids)."""
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Size of the id file in bytes."""
        return int(self.ids.nbytes)


# --------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------


def encode_files(
    files: Sequence[str | os.PathLike[str]],
    cache_dir: str | os.PathLike[str],
    *,
    vocab: Vocab | None = None,
    unk: str | None = None,
    errors: str = "strict",
    separator: str = SEPARATOR,
    progress: Progress | None = None,
) -> EncodedCorpus:
    """Encode ``files`` (joined by ``separator``) into cached token ids, or reuse the cache.

    vocab: a fixed vocabulary (fine-tuning, resuming), a Vocab or its characters in id
    order; None builds it from the characters of the text (sorted by code point).
    unk: the unknown-character token: added to a built vocabulary; with a fixed one it
    must be in it, and characters outside the vocabulary are read as it (without
    ``unk`` they are a DataError listing the first few).  errors: "strict" or "replace" (see
    the module docstring).

    Raises:
        DataError: a file is missing, a directory, unreadable, empty, binary,
            not valid UTF-8 (strict), has characters outside a fixed vocabulary,
            or changed while being encoded.
        BpttError: the cache directory cannot be written.
    """
    if isinstance(files, (str, bytes, os.PathLike)) or not isinstance(files, Iterable):
        raise BpttError(
            f"files must be a list of paths, got {type(files).__name__} {files!r}; "
            "for one file: [path]"
        )
    paths = [Path(f) for f in files]
    if not paths:
        raise BpttError("encode_files needs at least one file.")
    errors = check_errors(errors)
    if vocab is not None and not isinstance(vocab, Vocab):
        vocab = Vocab(vocab)  # (checked there: distinct characters, at least 2)
    if unk is not None:
        check_unk(unk)
        if vocab is not None and unk not in vocab.chars:
            raise DataError(
                f"the unknown-character token {unk!r} is not in the vocabulary; "
                "use the --unk character the model was trained with."
            )
    if not isinstance(separator, str):
        raise BpttError(f"separator must be a string, got {separator!r}.")
    stats = [_stat(p) for p in paths]
    cache = Path(cache_dir)
    remove_dead_temps(cache)
    key = _entry_key(stats, separator, errors, unk)
    manifest_file = cache / f"corpus-{key}.json"
    old = _read_manifest(manifest_file, len(paths))

    def fits(entry: dict[str, Any]) -> bool:
        # a run without a fixed vocabulary takes the text's own only (not a fine-tuning
        # run's, encoded from the same files); a fixed one must be the entry's
        return not entry["fixed_vocab"] if vocab is None else entry["vocab"] == vocab

    if old is not None and fits(old) and all(
        s.same_stat(o) for s, o in zip(stats, old["sources"], strict=True)
    ):
        cached = _open_intact(old, manifest_file)
        if cached is not None:
            return cached

    scan = _scan(paths, stats, errors, separator, vocab, unk, progress)
    sources = tuple(
        dataclasses.replace(s, blake2b=h) for s, h in zip(stats, scan.hashes, strict=True)
    )
    final_vocab = vocab if vocab is not None else scan.vocab(unk)
    dtype = id_dtype(final_vocab.size)
    digest = _digest(sources, final_vocab, dtype)
    entry: dict[str, Any] = {  # (as _open_intact and _write_manifest take it)
        "sources": list(sources),
        "vocab": final_vocab,
        "dtype": dtype,
        "num_tokens": scan.num_chars + len(separator) * (len(paths) - 1),
        "ids_file": f"corpus-{key}-{digest}.ids",
        # (a fixed vocabulary that is the text's own, as a resume's, takes nothing from it)
        "fixed_vocab": vocab is not None and vocab != scan.vocab(unk),
    }
    if old is not None and old["ids_file"] == entry["ids_file"] \
            and old["num_tokens"] == entry["num_tokens"]:
        # touched, not changed: same bytes, same vocabulary; record the new mtimes
        cached = _open_intact(entry, manifest_file)
        if cached is not None:
            # (only to spare the next run this hashing: a cache it cannot write, read-only
            # or on a full disk, serves the run all the same)
            with contextlib.suppress(BpttError):
                _write_manifest(manifest_file, entry, separator, errors, unk)
            return cached

    _make_cache_dir(cache)
    ids_file = cache / entry["ids_file"]
    _write_ids(paths, sources, ids_file, final_vocab, dtype, unk, errors, separator, progress,
               entry["num_tokens"])
    try:
        _write_manifest(manifest_file, entry, separator, errors, unk)
    except BaseException:
        ids_file.unlink(missing_ok=True)  # no manifest names it: nothing would read or remove it
        raise
    for stale in cache.glob(f"corpus-{key}-*.ids"):
        if stale.name != ids_file.name:
            stale.unlink(missing_ok=True)
    return _open(entry, manifest_file, reused=False)


# --------------------------------------------------------------------------
# reading files block by block
# --------------------------------------------------------------------------


def _stat(file: Path) -> Source:
    """The file's absolute path, size and mtime; each way it can be unusable is a DataError."""
    check_text_path(file)
    try:
        st = file.stat()
    except OSError as exc:
        raise DataError(f"{file} cannot be read ({exc.strerror or exc}).") from exc
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{file} is not a regular file (a pipe or a device?); the text is read "
                        "twice (its characters, then its ids): save it to a file first.")
    if st.st_size == 0:
        raise DataError(f"{file} is empty; pass a text file with some characters in it.")
    return Source(str(file.resolve()), st.st_size, st.st_mtime_ns, ctime_ns=st.st_ctime_ns)


def _decode_blocks(file: Path, errors: str, hasher: Any,
                   on_bytes: Callable[[int], None]) -> Iterator[str]:
    """Yield the text of ``file`` in pieces of at most BLOCK_BYTES bytes each.

    Every byte read is fed to ``hasher`` (before decoding) and counted with
    ``on_bytes``.  The BOM is dropped; a UTF-16 or UTF-32 one, NUL bytes or (strict)
    bad UTF-8 raise DataError, the last naming the byte offset in the file.  The bytes of a
    character split between two blocks are carried over to the next block
    (``codecs.utf_8_decode`` with ``final=False`` is the incremental decoder's
    own step, without its extra copy).
    """
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise read_error(file, exc) from exc
    with handle:
        check_not_utf16(file, handle.peek(4))  # (the buffer's first bytes, nothing consumed)
        start = 0  # file offset of buffer[0]
        buffer = b""
        while True:
            block = handle.read(BLOCK_BYTES)
            final = not block
            hasher.update(block)
            if b"\0" in block:
                raise DataError(
                    f"{file} looks like a binary file (it contains NUL bytes); "
                    "pass a UTF-8 text file."
                )
            buffer = buffer + block if buffer else block
            if start == 0 and buffer.startswith(codecs.BOM_UTF8):
                buffer, start = buffer[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
            try:
                text, used = codecs.utf_8_decode(buffer, errors, final)
            except UnicodeDecodeError as exc:
                bad = start + exc.start
                raise DataError(
                    undecodable_message(file, bad, buffer[exc.start], "--errors replace")
                ) from exc
            buffer, start = buffer[used:], start + used
            if block:
                on_bytes(len(block))
            if text:
                yield text
            if final:
                return


def _code_points(text: str) -> np.ndarray:
    """(len(text),) uint32 code points (a UTF-8 decoder never yields lone surrogates)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


class _Counter:
    """Bytes done across all files, reported through ``progress``."""

    def __init__(self, phase: str, total: int, progress: Progress | None) -> None:
        self.phase, self.total, self.done, self.progress = phase, total, 0, progress

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.phase, self.done, self.total)


# --------------------------------------------------------------------------
# pass 1: hashes, character set, unknown characters
# --------------------------------------------------------------------------


@dataclass
class _Scan:
    hashes: list[str]
    seen: np.ndarray  # (0x110000,) bool: which code points occur
    num_chars: int

    def vocab(self, unk: str | None) -> Vocab:
        """The sorted characters of the text (separators included), plus ``unk``."""
        seen = self.seen.copy()
        if unk is not None:
            seen[ord(unk)] = True
        return Vocab([chr(cp) for cp in np.flatnonzero(seen)])


def _new_hasher() -> Any:
    return hashlib.blake2b(digest_size=16)


def _scan(paths: list[Path], stats: list[Source], errors: str, separator: str,
          vocab: Vocab | None, unk: str | None, progress: Progress | None) -> _Scan:
    """Pass 1 over every file (see the module docstring)."""
    seen = np.zeros(NUM_CODE_POINTS, dtype=bool)
    known = None
    if vocab is not None and unk is None:
        known = np.zeros(NUM_CODE_POINTS, dtype=bool)
        known[[ord(c) for c in vocab.chars]] = True
    first_unknown: list[str] = []
    counter = _Counter("scan", sum(s.size for s in stats), progress)
    hashes, num_chars = [], 0
    for i, path in enumerate(paths):
        if i > 0 and separator:
            cps = _code_points(separator)
            seen[cps] = True
            if known is not None and len(first_unknown) < 5:
                _collect_unknown(cps, known, first_unknown)
        hasher = _new_hasher()
        chars_in_file = 0
        for text in _decode_blocks(path, errors, hasher, counter):
            cps = _code_points(text)
            new = ~np.take(seen, cps)  # a gather is much faster than a scatter of every cp
            if new.any():
                seen[cps[new]] = True
            chars_in_file += len(text)
            if known is not None and len(first_unknown) < 5:
                _collect_unknown(cps, known, first_unknown)
        if chars_in_file == 0:
            raise DataError(f"{path} is empty; pass a text file with some characters in it.")
        num_chars += chars_in_file
        hashes.append(hasher.hexdigest())
    if known is not None and first_unknown:
        total = int(np.count_nonzero(seen & ~known))
        raise DataError(unknown_characters_message(first_unknown, total))
    return _Scan(hashes, seen, num_chars)


def _collect_unknown(cps: np.ndarray, known: np.ndarray, first: list[str]) -> None:
    """Append to ``first`` (up to 5) the unknown characters of ``cps`` in order of appearance."""
    unknown = cps[~known[cps]]
    if unknown.size == 0:
        return
    values, where = np.unique(unknown, return_index=True)
    for cp in values[np.argsort(where)]:
        char = chr(int(cp))
        if char not in first:
            first.append(char)
            if len(first) == 5:
                return


# --------------------------------------------------------------------------
# pass 2: writing the ids
# --------------------------------------------------------------------------


def _lookup_table(vocab: Vocab, dtype: np.dtype, unk: str | None) -> np.ndarray:
    """(0x110000,) code point -> id; code points outside the vocabulary map to unk (or 0)."""
    table = np.full(NUM_CODE_POINTS, vocab.index(unk) if unk is not None else 0, dtype=dtype)
    table[[ord(c) for c in vocab.chars]] = np.arange(vocab.size)
    return table


def _write_ids(paths: list[Path], sources: Sequence[Source], target: Path, vocab: Vocab,
               dtype: np.dtype, unk: str | None, errors: str, separator: str,
               progress: Progress | None, num_tokens: int) -> None:
    """Pass 2: decode again and write the ids to a temporary file renamed to ``target``."""
    table = _lookup_table(vocab, dtype, unk)
    separator_ids = table[_code_points(separator)] if separator else table[:0]
    counter = _Counter("encode", sum(s.size for s in sources), progress)
    temp = target.with_name(f"{TEMP_PREFIX}{target.name}.{uuid.uuid4().hex[:8]}")
    written = 0
    try:
        with _open_locked(temp) as out:
            for i, (path, source) in enumerate(zip(paths, sources, strict=True)):
                if i > 0:
                    out.write(separator_ids.tobytes())
                    written += len(separator_ids)
                hasher = _new_hasher()
                for text in _decode_blocks(path, errors, hasher, counter):
                    ids = np.take(table, _code_points(text))
                    out.write(ids.tobytes())
                    written += len(ids)
                if hasher.hexdigest() != source.blake2b:
                    raise DataError(
                        f"{path} changed while it was being encoded; run the command again "
                        "once nothing writes to it."
                    )
            out.flush()
            os.fsync(out.fileno())
        if written != num_tokens:  # pragma: no cover - guarded by the hash check above
            raise DataError(f"{paths[0]} changed while it was being encoded; run again.")
        os.replace(temp, target)
    except OSError as exc:
        raise BpttError(
            f"cannot write the encoded corpus to {target.parent}: {exc.strerror or exc}; "
            "choose another --cache-dir."
        ) from exc
    finally:
        temp.unlink(missing_ok=True)


# --------------------------------------------------------------------------
# the cache manifest
# --------------------------------------------------------------------------


def _entry_key(stats: Sequence[Source], separator: str, errors: str, unk: str | None) -> str:
    """Hex key of a cache entry: the absolute paths and the decoding options."""
    spec = json.dumps({"paths": [s.path for s in stats], "separator": separator,
                       "errors": errors, "unk": unk}, ensure_ascii=True)
    return hashlib.blake2b(spec.encode(), digest_size=8).hexdigest()


def _digest(sources: Sequence[Source], vocab: Vocab, dtype: np.dtype) -> str:
    """Hex digest of what the ids depend on: the contents, the vocabulary, the dtype."""
    spec = json.dumps({"contents": [s.blake2b for s in sources], "vocab": vocab.to_list(),
                       "dtype": dtype.str}, ensure_ascii=True)
    return hashlib.blake2b(spec.encode(), digest_size=8).hexdigest()


def _make_cache_dir(cache: Path) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BpttError(
            f"cannot create the cache directory {cache}: {exc.strerror or exc}; "
            "choose another --cache-dir."
        ) from exc


def _write_manifest(file: Path, entry: dict[str, Any], separator: str, errors: str,
                    unk: str | None) -> None:
    """Write the manifest JSON atomically (temporary file, then rename)."""
    doc = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "sources": [vars(s) for s in entry["sources"]],
        "separator": separator,
        "errors": errors,
        "unk": unk,
        "dtype": entry["dtype"].str,
        "num_tokens": entry["num_tokens"],
        "ids_file": entry["ids_file"],
        "vocab": entry["vocab"].to_list(),
        "fixed_vocab": entry["fixed_vocab"],
    }
    temp = file.with_name(f"{TEMP_PREFIX}{file.name}.{uuid.uuid4().hex[:8]}")
    try:
        temp.write_text(_json_text(doc), encoding="utf-8")
        os.replace(temp, file)
    except OSError as exc:
        raise BpttError(
            f"cannot write the corpus cache {file}: {exc.strerror or exc}; "
            "choose another --cache-dir."
        ) from exc
    finally:
        temp.unlink(missing_ok=True)


def _open_locked(temp: Path) -> Any:
    """Create the temporary file ``temp`` (it must not exist) for writing, binary, locked
    (``flock``) while it is open: the lock tells :func:`remove_dead_temps` that its writer
    is alive.  (Where the system cannot lock, unlocked.)"""
    out = open(temp, "xb")
    try:
        import fcntl

        fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (ImportError, OSError):
        pass
    return out


def remove_dead_temps(cache: Path) -> int:
    """Remove the temporary files (:data:`TEMP_NAME`) that writers killed outright left in
    ``cache``: each unlocked and unchanged for :data:`DEAD_AFTER` seconds.  One that its
    writer holds locked (another process encoding into the same cache) stays (a manifest's,
    unlocked, is written in a moment, never that long); so does every one where the system
    cannot lock files (no telling a live writer's from a dead one's).
    Returns how many were removed; a missing or read-only cache has none removed."""
    try:
        import fcntl
    except ImportError:
        return 0
    removed = 0
    candidates = cache.glob(f"{TEMP_PREFIX}corpus-*") if cache.is_dir() else ()
    for temp in candidates:
        if not TEMP_NAME.fullmatch(temp.name):
            continue
        try:
            fd = os.open(temp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # gone (its writer renamed it), a link, or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # (OSError: a writer holds it)
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and time.time() - info.st_mtime >= DEAD_AFTER \
                    and os.path.samestat(info, os.stat(temp, follow_symlinks=False)):
                temp.unlink()
                removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _json_text(doc: dict[str, Any]) -> str:
    """``doc`` as JSON text that UTF-8 can hold: characters as themselves (the vocabulary stays
    readable), but lone surrogates as \\uXXXX escapes.  A path with a byte that is not UTF-8
    (Python keeps it as U+DC80 … U+DCFF) has no UTF-8 form; the escape does, and json.loads
    reads it back as the same string, so the path in the manifest still equals the file's."""
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    # json.dumps leaves characters unescaped only inside strings: each escape stays in one
    return SURROGATES.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _read_manifest(file: Path, num_files: int) -> dict[str, Any] | None:
    """The manifest as an entry dict, or None when absent, damaged or inconsistent."""
    try:
        doc = parse_json(file.read_text(encoding="utf-8"))
        if doc.get("format") != CACHE_FORMAT or doc.get("version") != CACHE_VERSION:
            return None
        sources = tuple(
            Source(str(s["path"]), int(s["size"]), int(s["mtime_ns"]), str(s["blake2b"]),
                   int(s.get("ctime_ns", -1)))
            for s in doc["sources"]
        )
        dtype = np.dtype(doc["dtype"])
        vocab = Vocab.from_list(doc["vocab"])
        num_tokens, ids_file = doc["num_tokens"], doc["ids_file"]
        ok = (
            len(sources) == num_files
            and dtype == id_dtype(vocab.size)
            and isinstance(num_tokens, int) and num_tokens >= 1
            and isinstance(ids_file, str) and Path(ids_file).name == ids_file
            and ids_file.startswith("corpus-") and ids_file.endswith(".ids")
            and (file.parent / ids_file).is_file()
            and (file.parent / ids_file).stat().st_size == num_tokens * dtype.itemsize
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not ok:
        return None
    # (a manifest that does not say whether its vocabulary was fixed is trusted as if it was)
    return {"sources": sources, "vocab": vocab, "dtype": dtype, "num_tokens": num_tokens,
            "ids_file": ids_file, "fixed_vocab": doc.get("fixed_vocab", True) is not False}


def _open_intact(entry: dict[str, Any], manifest: Path) -> EncodedCorpus | None:
    """The cached ids of ``entry`` (its size checked by :func:`_read_manifest`), or None
    when they hold an id outside the vocabulary: a damaged cache is encoded again, not
    trained on."""
    corpus = _open(entry, manifest, reused=True)
    if ops.any_outside(corpus.ids, corpus.vocab.size):  # one pass, a max over the ids
        return None
    return corpus


def _open(entry: dict[str, Any], manifest: Path, reused: bool) -> EncodedCorpus:
    """Memory-map the id file of a cache entry (read-only)."""
    ids_file = manifest.parent / entry["ids_file"]
    try:
        ids = np.memmap(ids_file, dtype=entry["dtype"], mode="r", shape=(entry["num_tokens"],))
    except (OSError, ValueError) as exc:
        raise BpttError(f"cannot read the encoded corpus {ids_file}: {exc}") from exc
    return EncodedCorpus(ids, entry["vocab"], ids_file, manifest, reused, tuple(entry["sources"]))
