"""The docs stay honest: code links point at the lines they describe, file links resolve,
and every ``console`` block of README.md and docs/*.md runs (with short settings).

Convention: a fenced block whose info string is ``console`` is runnable; its lines that
start with ``$ `` are commands (a trailing backslash continues one), the other lines are
expected output.  The commands of one document run in order in one temporary directory
that holds ``corpus.txt`` (a small text).  Training and sampling get short settings: at
most a few steps and characters.  Blocks marked ``text`` or ``sh`` are illustrations.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
FILE_LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)\s]+?)(?:#[^)\s]*)?(?: \"[^\"]*\")?\)")


def load_refresh_links():
    spec = importlib.util.spec_from_file_location("refresh_links", ROOT / "docs/refresh_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_code_link_points_at_its_function_and_lines():
    problems = load_refresh_links().check()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_file_link_resolves(doc):
    missing = [link for link in FILE_LINK.findall(doc.read_text(encoding="utf-8"))
               if not (doc.parent / link).exists()]
    assert not missing, f"{doc.name} links to missing files: {missing}"


def console_commands(doc: Path) -> list[str]:
    """The ``$ `` commands of the document's console blocks, continuation lines joined."""
    commands = []
    for lang, body in FENCE.findall(doc.read_text(encoding="utf-8")):
        if lang != "console":
            continue
        current = None
        for line in body.splitlines():
            if current is not None:
                current += " " + line.strip().rstrip("\\").strip()
                if not line.rstrip().endswith("\\"):
                    commands.append(current)
                    current = None
            elif line.startswith("$ "):
                text = line[2:].strip()
                if text.endswith("\\"):
                    current = text.rstrip("\\").strip()
                else:
                    commands.append(text)
    return commands


SHORT_TRAIN = {"--steps": "3", "--eval-every": "3", "--sample-length": "10"}
SHORT_SHAPE = {"--hidden": "16", "--batch": "4", "--seq-len": "16"}


def shorten(argv: list[str]) -> list[str]:
    """Short settings: a few training steps, a short sample, a small model."""
    if argv[:2] == ["bptt", "train"] and "--task" in argv:
        argv = _set(argv, {"--steps": "3", "--eval-every": "3"}, override=True)
        return _set(argv, {"--hidden": "16"}, override=False)
    if argv[:2] == ["bptt", "train"]:
        fixed = "--resume" in argv or "--init-from" in argv
        argv = _set(argv, SHORT_TRAIN, override=True)
        if not fixed:
            argv = _set(argv, SHORT_SHAPE, override=False)
        if "--resume" in argv:
            argv = [a for a in argv if a not in ("--sample-length", "10")]
    if argv[:2] == ["bptt", "sample"]:
        argv = _set(argv, {"--length": "40"}, override=True)
    if argv[0] == "torchrun":
        argv = _set(["python", "-m", "torch.distributed.run", *argv[1:]], {"--steps": "4"},
                    override=True)
    return argv


def _set(argv: list[str], values: dict[str, str], override: bool) -> list[str]:
    argv = list(argv)
    for flag, value in values.items():
        if flag in argv:
            if override:
                argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


@pytest.mark.parametrize("doc", [d for d in DOCS if console_commands(d)],
                         ids=[d.name for d in DOCS if console_commands(d)])
def test_every_console_command_runs(doc, tmp_path, monkeypatch):
    """`bptt …` commands run in this process (tests_support.bptt_here: numpy and matplotlib
    are imported once, not once per command, as tests/cli runs most commands);
    `python …` and `torchrun …` as subprocesses."""
    from tests_support import bptt_here

    from bptt.data import builtin_corpus

    (tmp_path / "corpus.txt").write_text(builtin_corpus()[:20000], encoding="utf-8")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for command in console_commands(doc):
        argv = shorten(shlex.split(command))
        if argv[0] == "bptt":
            r = bptt_here(*argv[1:], cwd=tmp_path)
            assert r.returncode == 0, \
                f"{doc.name}: `{command}` failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
            continue
        if "torch.distributed.run" in argv:
            # the commands before it ran; it and those after it (which read what it writes)
            # need torch: skipped as every torch test is (CI: failed) when it is missing
            from conftest import require_torch

            require_torch()
        if argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env=env)
        assert r.returncode == 0, f"{doc.name}: `{command}` failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def test_the_readme_has_exactly_the_two_setup_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = [body.strip() for lang, body in FENCE.findall(setup)]
    assert blocks == ["pip install -e . && bptt train", "pip install -e '.[test]' && pytest"]
    ci = (ROOT / ".ci/run").read_text(encoding="utf-8")
    assert "pip install -e '.[test]' && pytest" in ci.splitlines()


def test_the_readme_python_example_runs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [body for lang, body in FENCE.findall(text) if lang == "python"]
    assert blocks, "the README shows the Python API"
    for body in blocks:
        exec(compile(body, "README.md", "exec"), {})


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


# a benchmark run rewrites results.jsonl (without --out): update the README's speed section
# to it, or put the committed table back (git checkout benchmarks/results.*)
STALE = "the README's speed section is not benchmarks/results.jsonl's run"


def _committed_benchmark() -> dict[tuple, dict]:
    """benchmarks/results.jsonl, the committed run: (cell, H, B, T, contender) -> its row."""
    rows = [json.loads(line) for line in
            (ROOT / "benchmarks/results.jsonl").read_text(encoding="utf-8").splitlines()]
    [machine] = [r for r in rows if r["kind"] == "machine"]
    assert not machine["quick"], (STALE, "a --quick run's grid has no H = 512")
    return {(r["cell"], r["H"], r["B"], r["T"], r["contender"]): r
            for r in rows if r["kind"] == "throughput"}


def _readme_speed() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Speed", 1)[1].split("\n## ", 1)[0]


def test_the_readme_speed_table_is_the_committed_benchmark():
    """Each row of the README's speed table is benchmarks/results.jsonl's measurement to the
    digit: bptt's characters/s and its ratio to each contender, bold exactly when above 1."""
    measured = _committed_benchmark()
    speed = _readme_speed()
    grid = re.findall(r"^\| (rnn|lstm|gru) \| (\d+) \| (\d+) \| (.*)$", speed, flags=re.M)
    assert len(grid) >= 8, "the README shows the grid's rows"

    def shown(ratio: float) -> str:
        return f"**{ratio:.2f}×**" if ratio > 1 else f"{ratio:.2f}×"

    for cell, H, B, rest in grid:
        key = (cell, int(H), int(B), 50)
        row = _cells(rest)
        assert row[0] == f"{measured[(*key, 'bptt')]['chars_per_sec']:,.0f}", (STALE, key, row)
        assert row[1] == shown(measured[(*key, "torch")]["ratio_bptt_over"]), (STALE, key, row)
        assert row[2] == shown(measured[(*key, "jax")]["ratio_bptt_over"]), (STALE, key, row)
    min_char = re.search(r"^\| min-char-rnn config .*$", speed, flags=re.M)
    assert min_char, "the README shows min-char's row"
    row = _cells(min_char[0])
    assert row[3] == f"{measured[('rnn', 100, 1, 25, 'bptt')]['chars_per_sec']:,.0f}", STALE
    naive = measured[("rnn", 100, 1, 25, "naive")]["ratio_bptt_over"]
    assert row[4] == f"{naive:.2f}× the textbook numpy loop", STALE


@pytest.mark.parametrize("claim, cells, Hs, B, contender, skip", [
    ("PyTorch's eager kernels for the vanilla RNN and the GRU everywhere:\n  {}× at batch 1",
     ("rnn", "gru"), (100, 256, 512), 1, "torch", ()),
    ("{}× at batch 32. JAX's", ("rnn", "gru"), (100, 256, 512), 32, "torch", ()),
    ("bptt is {}× it at batch 1", ("lstm",), (100, 256, 512), 1, "torch", ()),
    ("memory twice a step) and {}× at batch 32", ("lstm",), (100, 256, 512), 32, "torch", ()),
    ("H = 256 ({}×), except the vanilla RNN at H = 512", ("rnn", "lstm", "gru"), (256, 512),
     32, "jax", (("rnn", 512),)),
    ("JAX at batch 1 ({}×)", ("rnn", "lstm", "gru"), (100, 256, 512), 1, "jax", ()),
    ("batch 32, H = 100 ({}×)", ("rnn", "lstm", "gru"), (100,), 32, "jax", ()),
])
def test_the_readme_speed_ranges_are_the_committed_benchmark(claim, cells, Hs, B, contender,
                                                             skip):
    """The ranges the README's speed section states in words are the smallest and largest
    ratio of the committed run over the points they name."""
    measured = _committed_benchmark()
    ratios = [measured[(cell, H, B, 50, contender)]["ratio_bptt_over"]
              for cell in cells for H in Hs if (cell, H) not in skip]
    span = f"{min(ratios):.2f}–{max(ratios):.2f}"
    assert claim.format(span) in _readme_speed(), (STALE, claim, span)


def test_the_readme_gradcheck_rows_are_what_the_command_prints(torch, capsys):
    """The README shows the first rows of `bptt gradcheck --cell lstm --layers 1`: the same
    parameters and results, and relative errors of the same size.  Their digits are round-off
    (1e-16 against the reference and torch), which the machine's BLAS kernel decides (an
    AVX-512 OpenBLAS sums in another order than an AVX2 one), and with them which entry is
    the worst; so those are compared by their order of magnitude only."""
    from bptt import cli

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = [_cells(row) for row in re.findall(r"^\| lstm \| 1 \| .*$", text, flags=re.MULTILINE)]
    assert len(shown) >= 2, "the README shows gradcheck rows"
    assert cli.main(["gradcheck", "--cell", "lstm", "--layers", "1"]) == 0
    printed = {tuple(cells[:3]): cells for cells in map(_cells, capsys.readouterr().out.splitlines())
               if cells[:2] == ["lstm", "1"]}
    for row in shown:
        got = printed[tuple(row[:3])]
        assert got[7] == row[7] == "PASS", (row, got)
        for column in (3, 4, 5):  # rel vs reference, vs finite differences, vs torch
            assert abs(math.log10(float(got[column]) / float(row[column]))) < 1, (row, got)


def test_the_tasks_python_blocks_run_and_score_what_the_text_says(tmp_path, monkeypatch):
    """docs/tasks.md's two Python blocks (the tweets, then the five lines) run as written, in
    order, and the fitted classifier scores on the test tweets what the sentence after them
    says (seed 0, float32: to the shown digits, within 0.005 for another BLAS's round-off)."""
    text = (ROOT / "docs/tasks.md").read_text(encoding="utf-8")
    blocks = [body for lang, body in FENCE.findall(text) if lang == "python"]
    assert len(blocks) == 2, "tasks.md shows the data, then the five lines"
    claimed = re.search(r"test tweets it scores (0\.\d+)", text)
    assert claimed, "tasks.md says what the five lines score"
    monkeypatch.chdir(tmp_path)  # the five lines save clf.safetensors
    namespace: dict = {}
    for body in blocks:
        exec(compile(body, "docs/tasks.md", "exec"), namespace)
    score = namespace["clf"].score(namespace["X_test"], namespace["y_test"])
    assert abs(score - float(claimed[1])) <= 0.005, (score, claimed[1])


def test_the_tasks_example_run_prints_what_tasks_md_shows(tmp_path):
    """tasks.md shows `bptt train --task parity --cell lstm` line by line (about 1 s): the same
    header and accuracies; the cross-entropies to two significant digits (their last digits are
    float32 round-off, which another BLAS build may decide otherwise)."""
    from tests_support import bptt_here

    text = (ROOT / "docs/tasks.md").read_text(encoding="utf-8")
    shown = text.split("$ bptt train --task parity --cell lstm\n", 1)[1].split("```", 1)[0]
    r = bptt_here("train", "--task", "parity", "--cell", "lstm", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    number = re.compile(r"cross-entropy (\d+\.\d+)")
    got, want = r.stdout.splitlines(), shown.strip().splitlines()
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        assert number.sub("", g) == number.sub("", w), (g, w)
        for a, b in zip(number.findall(g), number.findall(w), strict=True):
            assert f"{float(a):.2g}" == f"{float(b):.2g}", (g, w)
