"""Real corpora from the command line: multibyte UTF-8, the encoded-corpus cache, several
files, --errors, fine-tuning with --init-from (and --unk), sample --prime-file / --stop,
and (slow) a 200 MB corpus trained with its peak memory measured."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.numpy
from tests_support import bptt_here

from bptt import checkpoint

TINY = ["--cell", "rnn", "--hidden", "16", "--seq-len", "10", "--batch", "4", "--steps", "2",
        "--eval-every", "2", "--sample-length", "20", "--dtype", "float64"]
WORDS = ["café", "naïve", "straße", "Ünïcödé", "日本語", "中文", "テキスト", "Ελληνικά", "ñandú",
         "😀", "🎉", "🚀", "the", "a", "of", "fox", "—", "2024"]


def bptt(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """``bptt ARGS`` run by its entry point in this process (:func:`tests_support.bptt_here`);
    given an environment, ``python -m bptt ARGS`` in it, its output decoded as UTF-8 (what
    bptt writes whatever the locale)."""
    if env is None:
        return bptt_here(*args)
    return subprocess.run([sys.executable, "-m", "bptt", *map(str, args)], capture_output=True,
                          encoding="utf-8", timeout=300, env=env)


def multibyte_text(lines: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(lines)) + "\n"


UNK = "¤"
BAD_BYTES = b"d\xe9j\xe0 vu "  # latin-1, not UTF-8


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A multibyte corpus and two tiny models trained on it: "plain", and "with_unk" trained
    with --unk on the corpus plus a line of latin-1 bytes read with --errors replace."""
    root = tmp_path_factory.mktemp("multibyte")
    (root / "corpus.txt").write_text(multibyte_text(300), encoding="utf-8")
    (root / "with_bad_bytes.txt").write_bytes((root / "corpus.txt").read_bytes() + BAD_BYTES)
    runs = (("plain", "corpus.txt", []),
            ("with_unk", "with_bad_bytes.txt", ["--unk", UNK, "--errors", "replace"]))
    for name, text, extra in runs:
        r = bptt("train", root / text, *TINY, "--out", root / name,
                 "--cache-dir", root / "cache", *extra)
        assert r.returncode == 0, r.stderr
        (root / f"{name}.stdout").write_text(r.stdout, encoding="utf-8")
    return root


def test_a_multibyte_corpus_trains_and_every_character_round_trips(world):
    text = (world / "corpus.txt").read_text(encoding="utf-8")
    stdout = (world / "plain.stdout").read_text(encoding="utf-8")
    assert "encoded the corpus into" in stdout and "uint8" in stdout
    model = checkpoint.load_model(world / "plain")
    assert model.vocab == sorted(set(text))  # characters (code points), not bytes
    assert {"😀", "日", "ß", "ï"} <= set(model.vocab)
    unk_model = checkpoint.load_model(world / "with_unk")  # --errors replace, --unk ¤
    assert unk_model.vocab == sorted(set(text) | set("dj vu") | {"\ufffd", UNK})
    assert unk_model.config["unk"] == UNK and unk_model.config["errors"] == "replace"
    manifest = json.loads(next((world / "cache").glob("*.json")).read_text(encoding="utf-8"))
    assert manifest["vocab"] == model.vocab or manifest["vocab"] == unk_model.vocab


def test_sample_prime_prime_file_and_stop_with_multibyte_text(world, tmp_path):
    vocab = set(checkpoint.load_model(world / "plain").vocab)
    prime = "日本語 😀 café\n"
    (tmp_path / "prime.txt").write_text(prime, encoding="utf-8")
    # a locale that cannot show these characters: bptt writes UTF-8 anyway
    latin1 = dict(os.environ, PYTHONIOENCODING="latin-1")
    a = bptt("sample", world / "plain", "--prime", prime, "--length", "80", "--seed", "3",
             env=latin1)
    b = bptt("sample", world / "plain", "--prime-file", tmp_path / "prime.txt", "--length", "80",
             "--seed", "3")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and a.stdout.startswith(prime)
    generated = a.stdout[len(prime):-1]
    assert len(generated) == 80 and set(generated) <= vocab
    stop = generated[30]
    c = bptt("sample", world / "plain", "--prime-file", tmp_path / "prime.txt", "--length", "80",
             "--seed", "3", "--stop", stop)
    assert c.returncode == 0, c.stderr
    cut = generated.index(stop) + 1
    assert c.stdout == prime + generated[:cut] + "\n"
    both = bptt("sample", world / "plain", "--prime", "x", "--prime-file", tmp_path / "prime.txt")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


@pytest.mark.parametrize("argv", [["terms"], ["--help"]])
def test_every_command_writes_utf8_whatever_the_locale(monkeypatch, argv):
    """Not only sample and train: terms (∂, ×), flow and gradcheck --backward (∂, ‖) and the
    help (‖∂J_t/∂h_k‖) were a UnicodeEncodeError traceback on a latin-1 or ASCII stdout."""
    import io

    from bptt import cli

    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buffer, encoding="latin-1"))
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # --help
        code = exc.code
    sys.stdout.flush()
    assert code == 0
    assert "∂" in buffer.getvalue().decode("utf-8")


def test_the_encoded_corpus_is_reused_and_a_changed_file_is_encoded_again(world, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes((world / "corpus.txt").read_bytes())
    cache = tmp_path / "cache"
    first = bptt("train", corpus, *TINY, "--out", tmp_path / "a", "--cache-dir", cache)
    assert first.returncode == 0, first.stderr
    [ids_file] = cache.glob("*.ids")
    stamp = ids_file.stat().st_mtime_ns
    # --resume finds the cache from the saved settings and does not encode again
    again = bptt("train", "--resume", tmp_path / "a", "--steps", "3")
    assert again.returncode == 0, again.stderr
    assert "reusing the encoded corpus" in again.stdout
    assert ids_file.stat().st_mtime_ns == stamp and list(cache.glob("*.ids")) == [ids_file]
    # a changed file is encoded again; then the resume is refused: it is another text
    corpus.write_text(multibyte_text(300, seed=1), encoding="utf-8")
    changed = bptt("train", "--resume", tmp_path / "a", "--steps", "4")
    assert changed.returncode == 2 and "resume with the same text" in changed.stderr
    assert "encoded the corpus into" in changed.stdout
    assert not ids_file.exists() and len(list(cache.glob("*.ids"))) == 1


def test_undecodable_input_names_the_byte_offset(world, tmp_path):
    # (--errors replace: the "with_unk" model of the fixture was trained with it)
    bad = world / "with_bad_bytes.txt"
    r = bptt("train", bad, *TINY, "--out", tmp_path / "strict")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    offset = (world / "corpus.txt").stat().st_size + 1
    assert f"not valid UTF-8 at byte {offset} (byte 0xe9)" in r.stderr
    assert "--errors replace" in r.stderr and not (tmp_path / "strict").exists()


def test_fine_tuning_keeps_the_vocabulary_and_refuses_what_does_not_fit(world, tmp_path):
    base = checkpoint.load_model(world / "plain")
    part1, part2 = tmp_path / "new1.txt", tmp_path / "new2.txt"
    part1.write_text("日本語 café " * 60, encoding="utf-8")
    part2.write_text("😀 naïve " * 60, encoding="utf-8")
    r = bptt("train", part1, part2, "--init-from", world / "plain", "--steps", "2",
             "--eval-every", "2", "--seq-len", "10", "--batch", "4", "--out", tmp_path / "tuned",
             "--quiet")
    assert r.returncode == 0, r.stderr
    tuned = checkpoint.load_model(tmp_path / "tuned")
    assert tuned.vocab == base.vocab and tuned.step == 2  # fresh count, not base.step + 2
    assert tuned.config["hidden"] == 16 and tuned.config["cell"] == "rnn"
    assert tuned.config["init_from"] == str(world / "plain")
    state = safetensors.numpy.load_file(tmp_path / "tuned" / "train_state.safetensors")
    assert int(state["opt.step.t"]) == 2  # a fresh optimizer: the base model also took 2 steps
    # a shape flag that disagrees with the checkpoint
    r = bptt("train", part1, "--init-from", world / "plain", "--hidden", "64",
             "--out", tmp_path / "x")
    assert r.returncode == 2 and "--hidden 64 conflicts with the model of --init-from" in r.stderr
    # characters outside the model's vocabulary: listed, unless it was trained with --unk
    oov = tmp_path / "oov.txt"
    oov.write_text("café ☃ naïve ♞ " * 40 + "日本", encoding="utf-8")
    r = bptt("train", oov, "--init-from", world / "plain", "--out", tmp_path / "x")
    assert r.returncode == 2 and "not in the vocabulary: '☃', '♞'" in r.stderr
    assert "--unk" in r.stderr and not (tmp_path / "x").exists()
    r = bptt("train", oov, "--init-from", world / "with_unk", "--steps", "1", "--eval-every", "1",
             "--seq-len", "10", "--batch", "4", "--out", tmp_path / "unk", "--quiet")
    assert r.returncode == 0, r.stderr
    assert checkpoint.load_model(tmp_path / "unk").vocab == \
        checkpoint.load_model(world / "with_unk").vocab


def test_help_documents_the_new_flags(capsys):
    from bptt.cli import main

    def help_of(command: str) -> str:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        return " ".join(capsys.readouterr().out.split())

    train_help = help_of("train")
    for text in ("--errors {strict,replace}", "U+FFFD", "--unk CHAR", "--init-from CHECKPOINT",
                 "--cache-dir DIR", "--val-fraction", "joined with a newline",
                 "--dtype defaults to the model's"):  # (with --init-from, not float32)
        assert text in train_help, text
    sample_help = help_of("sample")
    assert "--prime-file PATH" in sample_help and "--stop TEXT" in sample_help


# ---------------------------------------------------------------- a corpus larger than a toy

BIG_BYTES = 200 * 2**20
RSS_FACTOR = 1.5  # peak RSS above the small-file run, in units of the encoded id file
BIG_ARGS = ["--cell", "rnn", "--hidden", "32", "--seq-len", "50", "--batch", "32", "--steps", "3",
            "--eval-every", "3", "--sample-length", "20", "--val-fraction", "0.0002"]


# Runs ARGV[2:] and writes its peak RSS to the file ARGV[1].  A small launcher, because a
# child's ru_maxrss starts at the RSS of the process it was forked from (Linux records the
# old memory's high-water mark at exec): forked from pytest, every child would seem to
# need at least pytest's ~70 MiB.
LAUNCHER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1], "w").write(f"{peak} {code}")
"""


def peak_rss(tmp_path: Path, *args) -> tuple[int, float, str]:
    """Run ``python ARGS``; return (its peak resident set size in bytes, seconds, stdout)."""
    report = tmp_path / "peak.txt"
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", LAUNCHER, report, sys.executable, *map(str, args)],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, encoding="utf-8",
                       timeout=600)
    seconds = time.perf_counter() - start
    peak, code = map(int, report.read_text().split())
    assert code == 0, r.stdout
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return peak * scale, seconds, r.stdout


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs the resource module")
def test_a_200_mb_corpus_trains_with_bounded_memory_and_is_encoded_once(tmp_path):
    paragraph = ("Ünïcödé café naïve straße — 日本語のテキスト、中文文本。 emoji 😀🎉🚀 "
                 "Ελληνικά ñandú.\nThe quick brown fox jumps over the lazy dog; 0123456789!\n")
    block = (paragraph * (4 * 2**20 // len(paragraph.encode()))).encode()
    big, small = tmp_path / "big.txt", tmp_path / "small.txt"
    with big.open("wb") as handle:
        for _ in range(-(-BIG_BYTES // len(block))):
            handle.write(block)
    small.write_bytes(block[: 2**20 - 1000].decode("utf-8", "ignore").encode())
    assert big.stat().st_size >= BIG_BYTES

    interpreter, _, _ = peak_rss(tmp_path, "-c", "import numpy")
    baseline, _, _ = peak_rss(tmp_path, "-m", "bptt", "train", small, *BIG_ARGS,
                              "--out", tmp_path / "s")
    cache = tmp_path / "cache"
    peak, first_seconds, out = peak_rss(tmp_path, "-m", "bptt", "train", big, *BIG_ARGS,
                                        "--out", tmp_path / "big1", "--cache-dir", cache)
    [ids_file] = cache.glob("*.ids")
    encoded = ids_file.stat().st_size
    # the bound: the same command on a 1 MB file (interpreter, numpy, matplotlib, the model)
    # plus 1.5x the encoded ids; the id file maps pages in, the text is never held whole
    bound = baseline + RSS_FACTOR * encoded
    report = (f"peak RSS {peak / 2**20:.0f} MiB; small-file run {baseline / 2**20:.0f} MiB; "
              f"python+numpy {interpreter / 2**20:.0f} MiB; encoded {encoded / 2**20:.0f} MiB "
              f"(text {big.stat().st_size / 2**20:.0f} MiB); bound {bound / 2**20:.0f} MiB; "
              f"first run {first_seconds:.1f} s")
    print(report)
    assert "encoded the corpus into" in out and "uint8" in out
    assert peak < bound, report
    assert peak - baseline < 1.5 * encoded

    stamp = ids_file.stat().st_mtime_ns
    peak2, second_seconds, out2 = peak_rss(tmp_path, "-m", "bptt", "train", big, *BIG_ARGS,
                                           "--out", tmp_path / "big2", "--cache-dir", cache)
    assert "reusing the encoded corpus" in out2, out2
    assert ids_file.stat().st_mtime_ns == stamp
    assert peak2 < bound
    print(f"second run (cache reused) {second_seconds:.1f} s, peak RSS {peak2 / 2**20:.0f} MiB")


# ---- mutation audit (5) ----


def test_fine_tuning_takes_the_models_dtype_unless_given_and_names_a_conflict(world, tmp_path):
    part = tmp_path / "new.txt"
    part.write_text("日本語 café " * 60, encoding="utf-8")
    common = ["--init-from", world / "plain", "--steps", "1", "--eval-every", "1", "--seq-len",
              "10", "--batch", "4", "--quiet"]
    assert bptt("train", part, *common, "--out", tmp_path / "a").returncode == 0
    assert checkpoint.load_model(tmp_path / "a").config["dtype"] == "float64"  # the model's
    assert bptt("train", part, *common, "--dtype", "float32",
                "--out", tmp_path / "b").returncode == 0
    assert checkpoint.load_model(tmp_path / "b").config["dtype"] == "float32"
    config = tmp_path / "float32.json"  # a setting of --config counts as given, as a flag's
    config.write_text('{"dtype": "float32"}', encoding="utf-8")
    assert bptt("train", part, *common, "--config", config,
                "--out", tmp_path / "c").returncode == 0
    assert checkpoint.load_model(tmp_path / "c").config["dtype"] == "float32"
    r = bptt("train", part, "--init-from", world / "plain", "--cell", "gru",
             "--out", tmp_path / "x")
    assert (r.returncode, r.stderr) == (2, (
        "bptt: error: --cell gru conflicts with the model of --init-from, which has "
        "cell='rnn'; leave out --cell: the model's shape and vocabulary come from the "
        "checkpoint.\n"))
    assert not (tmp_path / "x").exists()


def test_a_resume_given_a_cache_dir_encodes_its_text_there(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(multibyte_text(50), encoding="utf-8")
    run = tmp_path / "run"
    assert bptt("train", text, *TINY, "--out", run, "--quiet").returncode == 0
    r = bptt("train", "--resume", run, "--steps", "3", "--cache-dir", tmp_path / "elsewhere",
             "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.suffix for p in (tmp_path / "elsewhere").iterdir()) == [".ids", ".json"]
    assert checkpoint.load_model(run).step == 3
