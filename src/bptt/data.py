"""Corpora, character vocabularies and batches for a character language model.

Dimension letters: T time steps per chunk (``seq_len``), B parallel streams
(``batch_size``), V vocabulary size.

* :func:`builtin_corpus` is a text that ships with every CPython: the help
  topics of ``pydoc_data.topics`` (about 465 000 characters of English and
  Python), so ``bptt train`` works without downloading anything.
* :func:`read_text` reads a UTF-8 text file and turns each way a file can be
  unusable into one :class:`~bptt.errors.DataError` sentence.
* :class:`Vocab` maps characters (Unicode code points, not bytes) to ids
  0..V−1 in sorted order, as min-char-rnn and char-rnn do.
* :func:`split_train_val` keeps the last fraction of the ids for validation.
* :class:`StreamBatcher` serves char-rnn style batches: the text is cut into
  B contiguous streams read in parallel, T characters at a time, so the
  hidden state of stream b at the end of one chunk is the right initial
  state for the next chunk of the same stream.  It works on a memory-mapped
  id file (:mod:`bptt.corpus`) without reading it whole.
"""

from __future__ import annotations

import codecs
import functools
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bptt.errors import BpttError, DataError, check_int, is_int, is_number, is_surrogate

BUILTIN_CORPUS_NAME = "pydoc_data.topics"


# --------------------------------------------------------------------------
# corpora
# --------------------------------------------------------------------------


@functools.cache
def builtin_corpus() -> str:
    """Return CPython's help topics: ``pydoc_data.topics.topics`` values joined by newlines.

    The values are taken in sorted key order, so the text is the same on every
    run of a given Python version.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:
        raise DataError(
            f"the built-in corpus needs the module {BUILTIN_CORPUS_NAME}, which this Python "
            "does not have; pass a UTF-8 text FILE to train on instead."
        ) from exc
    return "\n".join(topics[key] for key in sorted(topics))


def read_text(
    path: str | os.PathLike[str], errors: str = "strict", max_bytes: int | None = None
) -> str:
    """Read a UTF-8 text file (a leading BOM is dropped) and return its text.

    Newlines are kept exactly as in the file (no ``\\r\\n`` translation).
    ``errors="replace"`` decodes bytes that are not valid UTF-8 as U+FFFD
    instead of raising.  ``max_bytes``: the most a text for this use may hold (a pipe
    that never ends is refused once it is past it; None: no limit).  Large files: see
    :mod:`bptt.corpus`, which encodes a file in blocks without holding its text.

    Raises:
        DataError: the file is missing, a directory, unreadable, empty, longer than
            ``max_bytes``, UTF-16 or UTF-32 (starts with their byte-order mark), binary
            (contains NUL bytes) or not valid UTF-8 (the message
            names the byte offset of the first bad byte).
    """
    file = Path(path)
    data = _read_bytes(file, max_bytes)
    if not data:
        raise DataError(f"{file} is empty; pass a text file with some characters in it.")
    text = _decode_utf8(file, data, check_errors(errors))
    if not text:
        raise DataError(f"{file} is empty; pass a text file with some characters in it.")
    return text


def check_text_path(file: Path) -> None:
    """Refuse a path that is missing or a directory, in the words every text reader uses."""
    try:
        exists, is_dir = file.exists(), file.is_dir()
    except OSError as exc:  # a name too long, a parent that cannot be searched
        raise read_error(file, exc) from exc
    if not exists:
        raise DataError(f"{file} does not exist; pass the path of a UTF-8 text file.")
    if is_dir:
        raise DataError(f"{file} is a directory; pass the path of a UTF-8 text file inside it.")


READ_BLOCK = 1 << 20
"""Bytes :func:`read_text` reads at a time, each looked at for a NUL as it comes."""
SHORT_TEXT_BYTES = 16 << 20
"""The most a text that is not a corpus (a prime, flow's sequence) may hold: a pipe of text
that never ends is refused there, not read until the memory runs out."""


def _read_bytes(file: Path, max_bytes: int | None = None) -> bytes:
    """Return the bytes of ``file``, turning each OS failure into a DataError.

    A NUL byte ends the reading at once (a binary file): a device that never ends,
    /dev/zero or /dev/urandom given for a text, is refused after one block instead of being
    read until the memory runs out.  Pipes (``<(cmd)``, /dev/stdin) are read to their end,
    or to ``max_bytes`` (then refused).
    """
    check_text_path(file)
    blocks: list[bytes] = []
    size = 0
    try:
        with file.open("rb") as stream:
            while block := stream.read(READ_BLOCK):
                if not blocks:
                    check_not_utf16(file, block)
                if b"\0" in block:
                    raise _binary_file(file)
                blocks.append(block)
                size += len(block)
                if max_bytes is not None and size > max_bytes:
                    raise DataError(f"{file} is longer than {max_bytes:,} bytes, the most "
                                    "this reads; pass a shorter text.")
    except OSError as exc:
        raise read_error(file, exc) from exc
    return b"".join(blocks)


_FOREIGN_BOMS = (  # (UTF-32 LE's starts with UTF-16 LE's: looked for first)
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)


def check_not_utf16(file: Path, head: bytes) -> None:
    """DataError when ``head``, the first bytes of ``file``, start with the byte-order mark of
    UTF-16 or UTF-32 (a text saved as "Unicode" by Notepad, or by Windows PowerShell's >):
    its NUL bytes would call it binary, and --errors replace would read it as garbage."""
    for bom, encoding in _FOREIGN_BOMS:
        if head.startswith(bom):
            raise DataError(
                f"{file} is {encoding} text, not UTF-8 (it starts with the {encoding} byte-order "
                f"mark); convert it to UTF-8 first (e.g. iconv -f {encoding} -t UTF-8)."
            )


def _binary_file(file: Path) -> DataError:
    """The one-line DataError for a file holding NUL bytes."""
    return DataError(
        f"{file} looks like a binary file (it contains NUL bytes); pass a UTF-8 text file."
    )


def read_error(file: Path, exc: OSError) -> DataError:
    """The one-line DataError for an OS failure reading ``file``."""
    if isinstance(exc, PermissionError):
        return DataError(
            f"{file} cannot be read (permission denied); fix its permissions or copy it."
        )
    return DataError(f"{file} cannot be read ({exc.strerror or exc}).")


ERRORS = ("strict", "replace")


def check_errors(errors: str) -> str:
    """Return ``errors`` if it is a supported UTF-8 error policy ("strict" or "replace")."""
    if errors not in ERRORS:
        raise BpttError(f"errors must be 'strict' or 'replace', got {errors!r}.")
    return errors


def undecodable_message(file: Path, offset: int, byte: int, replace_hint: str = "") -> str:
    """The one sentence for a file that is not valid UTF-8 at byte ``offset``.

    replace_hint: how the caller's user reads such bytes as U+FFFD instead (the flag of a
    command that has one, e.g. "--errors replace"); empty: no such way is offered."""
    hint = f", or pass {replace_hint} to read such bytes as U+FFFD" if replace_hint else ""
    return (
        f"{file} is not valid UTF-8 at byte {offset} (byte 0x{byte:02x}); "
        f"convert it to UTF-8 first (e.g. iconv -t UTF-8){hint}."
    )


def _decode_utf8(file: Path, data: bytes, errors: str = "strict") -> str:
    """Decode UTF-8 after an optional BOM; a bad byte raises DataError naming its offset."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        raise DataError(undecodable_message(file, offset, data[offset])) from exc


# --------------------------------------------------------------------------
# vocabulary
# --------------------------------------------------------------------------


def _code_points(text: str) -> np.ndarray:
    """The Unicode code points of ``text`` as a uint32 array (lone surrogates allowed)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class Vocab:
    """A character vocabulary: ``chars[i]`` is the character with id i.

    ``Vocab.from_text(text)`` sorts the distinct characters by code point;
    ``Vocab(chars)`` keeps the order it is given (that order is the mapping,
    so a saved list restores the same ids).
    """

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars: tuple[str, ...] = _validate_chars(chars)
        cps = _code_points("".join(self.chars)).astype(np.int64)
        self._cps = cps  # id -> code point
        self._order = np.argsort(cps, kind="stable")  # sorted position -> id
        self._sorted_cps = cps[self._order]

    @classmethod
    def from_text(cls, text: str, unk: str | None = None) -> Vocab:
        """The sorted distinct characters of ``text`` (and ``unk``, if given).

        Fewer than 2 characters raises DataError.
        """
        chars = set(text)
        if unk is not None:
            chars.add(check_unk(unk))
        return cls(sorted(chars))

    @classmethod
    def from_list(cls, chars: Any) -> Vocab:
        """Rebuild from :meth:`to_list` output (e.g. read back from JSON), validating it."""
        if not isinstance(chars, list):
            raise DataError(
                f"a vocabulary must be a JSON list of characters, got {type(chars).__name__}."
            )
        return cls(chars)

    def to_list(self) -> list[str]:
        """The characters in id order, as a JSON-able list."""
        return list(self.chars)

    @property
    def size(self) -> int:
        """V, the number of characters."""
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"Vocab(size={self.size}, chars={''.join(self.chars)[:40]!r})"

    def index(self, char: str) -> int:
        """The id of ``char``; DataError if it is not in the vocabulary."""
        try:
            return self.chars.index(char)
        except ValueError:
            raise DataError(f"{char!r} is not in the vocabulary.") from None

    def encode(self, text: str, unk: str | None = None) -> np.ndarray:
        """Return the ids of the characters of ``text``, shape (len(text),), int64.

        ``unk``: a character of the vocabulary that stands for every character
        outside it (the unknown-character token); without it those are an error.

        Raises:
            DataError: ``text`` has characters outside the vocabulary (the
                first 5 are listed) and no ``unk`` was given.
        """
        cps = _code_points(text).astype(np.int64)
        pos = np.searchsorted(self._sorted_cps, cps)
        pos_clipped = np.minimum(pos, self.size - 1)
        known = self._sorted_cps[pos_clipped] == cps
        ids = self._order[pos_clipped].astype(np.int64, copy=False)
        if not known.all():
            if unk is None:
                raise DataError(_unknown_message(text, known))
            ids[~known] = self.index(unk)
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Return the text of the ids (any shape is flattened in C order)."""
        flat = np.asarray(ids).reshape(-1)
        if flat.size == 0:
            return ""
        if not np.issubdtype(flat.dtype, np.integer):
            raise DataError(f"character ids must be integers, got dtype {flat.dtype}.")
        if flat.min() < 0 or flat.max() >= self.size:
            raise DataError(
                f"character ids must be in [0, {self.size - 1}] for this vocabulary, "
                f"got values from {flat.min()} to {flat.max()}."
            )
        return self._cps[flat].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


def _validate_chars(chars: Iterable[str]) -> tuple[str, ...]:
    """Return ``chars`` as a tuple if they are at least 2 distinct 1-character strings."""
    if isinstance(chars, str):
        chars = list(chars)
    if not isinstance(chars, Iterable):
        raise DataError(
            f"a vocabulary is a list of characters, got {type(chars).__name__} {chars!r}."
        )
    items = tuple(chars)
    for item in items:
        if not isinstance(item, str) or len(item) != 1:
            raise DataError(
                f"a vocabulary entry must be a single character, got {item!r}."
            )
        if is_surrogate(item):
            raise DataError(
                f"{item!r} is not a Unicode character (a lone surrogate, which has no UTF-8 "
                "form: a byte that was not UTF-8, kept by errors='surrogateescape'?); a "
                "vocabulary holds the characters of UTF-8 text."
            )
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise DataError(
                f"the vocabulary lists {item!r} twice; each character must appear once."
            )
        seen.add(item)
    if len(items) < 2:
        raise DataError(
            f"a character vocabulary needs at least 2 distinct characters, got {len(items)}; "
            "use a longer, more varied text."
        )
    return items


def check_unk(unk: str) -> str:
    """Return ``unk`` if it is one character (the unknown-character token)."""
    if not isinstance(unk, str) or len(unk) != 1:
        raise BpttError(f"the unknown-character token must be one character, got {unk!r}.")
    try:
        unk.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: an undecodable byte of a command line
        raise BpttError(
            f"the unknown-character token {unk!r} is not a Unicode character (it has no "
            "UTF-8 form); pass a character such as '?' or '\ufffd'."
        ) from None
    return unk


def _unknown_message(text: str, known: np.ndarray) -> str:
    """One sentence listing (with repr) the first 5 distinct characters not in the vocabulary."""
    unknown: list[str] = []
    for index in np.flatnonzero(~known):
        char = text[index]
        if char not in unknown:
            unknown.append(char)
            if len(unknown) == 5:
                break
    return unknown_characters_message(unknown)


def unknown_characters_message(first: Sequence[str], total: int | None = None) -> str:
    """The sentence for text with characters outside the vocabulary (``first``: up to 5)."""
    listed = ", ".join(repr(c) for c in first[:5])
    count = f"{total} " if total is not None else ""
    more = f" (first {len(first[:5])} shown)" if total is not None and total > 5 else ""
    return (
        f"the text has {count}characters that are not in the vocabulary: {listed}{more}; "
        "remove them, or train on a text that contains them (a model trained with "
        "--unk CHAR reads unknown characters as CHAR)."
    )


# --------------------------------------------------------------------------
# train / validation split
# --------------------------------------------------------------------------


def split_train_val(ids: np.ndarray, val_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Split ``ids`` into (train, val): the last ``val_fraction`` of the tokens is validation.

    The validation part has ``max(2, round(len(ids) * val_fraction))`` tokens;
    the training part the rest, which must be at least 2.  The two parts are
    views of ``ids``.
    """
    if not is_number(val_fraction) or not 0.0 < val_fraction < 1.0:
        raise BpttError(
            f"val_fraction must be a number between 0 and 1 (exclusive), got {val_fraction!r}."
        )
    n = len(ids)
    n_val = max(2, round(n * val_fraction))
    if n - n_val < 2:
        raise DataError(
            f"text too short to split into training and validation parts ({n} characters, "
            f"{n_val} of them held out for validation by val_fraction={val_fraction}); "
            "use a longer text or a smaller --val-fraction."
        )
    return ids[: n - n_val], ids[n - n_val :]


# --------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------


FINGERPRINT_CHUNK = 1 << 20  # ids converted at a time: 8 MB as int64


def fingerprint(ids: np.ndarray) -> int:
    """A CRC-32 of the token ids as little-endian int64, to notice a resume on another text.

    Computed chunk by chunk, so a memory-mapped array of any length is never
    converted (or copied) whole; the value does not depend on the array's dtype.
    """
    crc = 0
    for start in range(0, len(ids), FINGERPRINT_CHUNK):
        chunk = np.ascontiguousarray(ids[start : start + FINGERPRINT_CHUNK], dtype="<i8")
        crc = zlib.crc32(chunk.data, crc)  # (.data: the array's buffer, not a copy)
    return crc


# what a batcher's saved state needs that this one lacks, by the key that differs (the same
# words for the library and for `bptt train --resume`, whose batch and length are the run's)
_RESUME_WITH = {
    "batch_size": "resume with the batch size it was saved with",
    "seq_len": "resume with the sequence length it was saved with",
    "num_tokens": "resume with the same text",
    "tokens_crc32": ("resume with the same text (or, if it is the same text, its encoded ids "
                     "in the cache are damaged: remove the cache's corpus-*.ids to encode it "
                     "again)"),
}


class StreamBatcher:
    """char-rnn style batches: B parallel streams, read T characters at a time.

    Layout.  With N = len(ids) and n = (N − 1) // B, stream b reads the input
    positions ids[b·n : (b+1)·n] and predicts, at each, the next character:
    ``inputs[t, b] = ids[b·n + j·T + t]`` and
    ``targets[t, b] = ids[b·n + j·T + t + 1]`` in chunk j.  The last target
    of stream b is therefore the first input of stream b+1 (the true next
    character of the text), and the last stream's last target is ids[B·n],
    which exists because B·n ≤ N − 1.  The N − 1 − B·n final ids are dropped.

    Memory.  ``ids`` may be a ``np.memmap`` of any integer dtype (e.g. the
    uint8 token file of :mod:`bptt.corpus`): the batcher keeps views of it and
    converts only the chunk it serves to int64, so a corpus larger than memory
    is never read whole.  The fingerprint checked on resume is computed
    lazily, chunk by chunk, the first time :meth:`state_dict` or
    :meth:`load_state_dict` needs it.

    Epochs.  An epoch is ``chunks_per_epoch = n // T`` chunks; together they
    cover each stream's n (input, target) pairs exactly once, in order,
    except the last n mod T (< T) of each stream, which are dropped.  So the
    targets of one epoch are exactly ids[b·n + 1 : b·n + 1 + T·(n // T)] per
    stream.  :meth:`next_batch` flags the first chunk of each epoch so the
    caller can reset the hidden state there; within an epoch chunk j+1 of a
    stream continues chunk j.

    State.  ``position`` counts the chunks served since the start; the next
    chunk is ``position % chunks_per_epoch`` of epoch ``position //
    chunks_per_epoch``.  :meth:`state_dict` / :meth:`load_state_dict` save and
    restore it exactly.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int) -> None:
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seq_len = check_int("seq_len", seq_len, 1)
        tokens = np.asarray(ids)
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise BpttError(
                f"ids must be a 1-D integer array, got shape {tokens.shape} dtype {tokens.dtype}."
            )
        B, T = self.batch_size, self.seq_len
        n = (len(tokens) - 1) // B
        if n < T:
            raise DataError(
                f"the text to train on ({len(tokens)} characters) is shorter than one sequence for "
                f"{B} streams of {T} characters (needs at least {B * T + 1}); "
                "use a smaller --seq-len or --batch, or a longer text (bptt train holds out "
                "the last --val-fraction of it for validation)."
            )
        self.stream_len = n
        self.num_tokens = len(tokens)
        self._tokens = tokens  # a view (of a memmap, possibly): never converted whole
        self._crc32: int | None = None
        self._inputs = tokens[: B * n].reshape(B, n)  # (B, n), views
        self._targets = tokens[1 : B * n + 1].reshape(B, n)  # (B, n)
        self.position = 0

    @property
    def _tokens_crc32(self) -> int:
        """CRC-32 of the ids (see :func:`fingerprint`), computed once, when first needed."""
        if self._crc32 is None:
            self._crc32 = fingerprint(self._tokens)
        return self._crc32

    @property
    def chunks_per_epoch(self) -> int:
        """Chunks in one epoch: n // T."""
        return self.stream_len // self.seq_len

    @property
    def epoch(self) -> int:
        """Complete epochs served so far (also the 0-based epoch of the next chunk)."""
        return self.position // self.chunks_per_epoch

    def chunk(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (inputs, targets) of chunk j of an epoch, each (T, B) int64, time-major."""
        if not 0 <= j < self.chunks_per_epoch:
            raise BpttError(f"chunk index must be in [0, {self.chunks_per_epoch - 1}], got {j}.")
        cols = slice(j * self.seq_len, (j + 1) * self.seq_len)
        return (
            np.ascontiguousarray(self._inputs[:, cols].T, dtype=np.int64),
            np.ascontiguousarray(self._targets[:, cols].T, dtype=np.int64),
        )

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """Return (inputs (T, B), targets (T, B), new_epoch) and advance by one chunk.

        ``new_epoch`` is True on the first chunk of every epoch (including the
        very first call): reset the hidden state before using it.
        """
        j = self.position % self.chunks_per_epoch
        inputs, targets = self.chunk(j)
        self.position += 1
        return inputs, targets, j == 0

    def state_dict(self) -> dict[str, int]:
        """The JSON-able state needed to continue exactly where this batcher is."""
        return {
            "position": self.position,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "num_tokens": self.num_tokens,
            "tokens_crc32": self._tokens_crc32,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` output; it must come from the same text, B and T."""
        position = state.get("position") if isinstance(state, dict) else None
        if not is_int(position) or position < 0:
            raise DataError(
                f"the saved batch position must be an integer >= 0, got {position!r}; "
                "the checkpoint is damaged."
            )
        expected = self.state_dict()
        for key in ("batch_size", "seq_len", "num_tokens", "tokens_crc32"):
            if state.get(key) != expected[key]:
                raise DataError(
                    f"the saved batch state has {key}={state.get(key)!r} but this run has "
                    f"{expected[key]!r}; {_RESUME_WITH[key]}."
                )
        self.position = int(position)  # (a numpy integer is no JSON)


