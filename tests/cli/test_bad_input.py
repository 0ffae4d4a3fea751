"""Every user mistake: one line on stderr starting with ``bptt: error:``, exit 2, no traceback,
and every file that existed before is untouched (byte for byte)."""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bptt import checkpoint, cli
from bptt.cli import gradcheck as cli_gradcheck
from bptt.data import builtin_corpus


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A directory of good and bad inputs, and a trained checkpoint."""
    from tests_support import train_tiny

    root = tmp_path_factory.mktemp("world")
    (root / "good.txt").write_text(builtin_corpus()[:3000], encoding="utf-8")
    (root / "empty.txt").write_bytes(b"")
    (root / "binary.bin").write_bytes(b"\x00\x01\x02hello\x00" * 10)
    (root / "latin1.txt").write_bytes("caf\u00e9 ".encode("latin-1") * 50)
    (root / "one_char.txt").write_text("a" * 500)
    (root / "short.txt").write_text("hello world")
    (root / "adir").mkdir()
    (root / "blocker").write_text("a file where a directory should be")
    (root / "unknown_keys.json").write_text('{"hidden": 8, "colour": "red"}')
    (root / "wrong_types.json").write_text('{"hidden": "eight"}')
    (root / "not_json.json").write_text("hidden = 8")
    (root / "list.json").write_text("[1, 2]")
    (root / "bom.json").write_bytes(b'\xef\xbb\xbf{"hidden": 8, "colour": "red"}')
    # JSON that json.loads cannot read (a RecursionError, the integer digit limit's ValueError)
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "many_digits.json").write_text('{"hidden": 1' + "0" * 5000 + "}")
    (root / "lr_beyond_floats.json").write_text('{"lr": 1' + "0" * 400 + "}")
    train_tiny(root / "run", root / "good.txt")
    make_bad_checkpoints(root)
    make_bad_exports(root)
    os.mkfifo(root / "fifo.safetensors")  # not a regular file: never to be replaced
    (root / "user_dir").mkdir()  # a directory of the user's, with a log a run would replace
    (root / "user_dir" / "metrics.csv").write_text("my own log\n")
    (root / "flow_blocked" / "flow_distance.png").mkdir(parents=True)  # (not a file)
    (root / "fifo_out").mkdir()
    os.mkfifo(root / "fifo_out" / "model.safetensors")
    make_damaged_train_states(root)
    make_flipped_files(root)
    return root


def make_bad_checkpoints(root: Path) -> None:
    good = root / "run" / "model.safetensors"
    blob = good.read_bytes()
    params, meta = checkpoint.read_safetensors(good)
    for name, data in {
        "truncated": blob[: len(blob) // 2],
        "pickled": pickle.dumps({"Whh": np.zeros((2, 2))}),
        "random": bytes(range(256)) * 4,
    }.items():
        (root / name).mkdir()
        (root / name / "model.safetensors").write_bytes(data)
    header = {"Whh": {"dtype": "F64", "shape": [10**6, 10**6], "data_offsets": [0, 8 * 10**12]},
              "__metadata__": {"bptt": json.dumps(meta)}}
    raw = json.dumps(header).encode()
    (root / "huge").mkdir()
    (root / "huge" / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 64)
    for name, change in {
        "version99": {"format_version": 99},
        "vocab_not_list": {"vocab": "abc"},
        "vocab_thousands": {"vocab": [chr(0x4E00 + i) for i in range(3000)]},
        # a lone surrogate: no UTF-8 form, a sample holding it was a traceback
        "vocab_surrogate": {"vocab": [*meta["vocab"][:-1], "\udce9"]},
        "model_wrong_type": {"model": ["rnn"]},
        "foreign": {"format": "someone-else"},
    }.items():
        (root / name).mkdir()
        checkpoint.write_safetensors_atomic(root / name / "model.safetensors", params,
                                            meta | change)


def make_bad_exports(root: Path) -> None:
    """An exported model imported into world/imported, and an export whose vocabulary lists
    one character many times."""
    from tests_support import write_export_with_vocab

    from bptt import interop

    model = checkpoint.load_model(root / "run")
    good = interop.write_torch_safetensors(root / "exported.safetensors", model.params,
                                           model.vocab)
    interop.import_file(good, root / "imported")
    write_export_with_vocab(root / "dup_vocab.safetensors", model.params,
                            ["a"] * len(model.vocab))


def make_damaged_train_states(root: Path) -> None:
    """Copies of the trained run whose train_state.safetensors was edited by hand."""
    import shutil

    state = root / "run" / "train_state.safetensors"
    tensors, meta = checkpoint.read_safetensors(state)
    for name, change in {
        "history_x": lambda t, m: m.update(history="x"),
        "history_row": lambda t, m: m.update(history=[{"step": "a"}]),
        "counter_negative": lambda t, m: t.update({"opt.step.t": np.array(-1)}),
        "step_string": lambda t, m: m.update(step="2"),
        "hidden_9": lambda t, m: m["config"].update(hidden=9),
        "position_huge": lambda t, m: m["data"].update(position=10**30),
        "interval_huge": lambda t, m: m.update(interval_losses=[10**400]),
    }.items():
        shutil.copytree(root / "run", root / name)
        t, m = dict(tensors), json.loads(json.dumps(meta))
        change(t, m)
        checkpoint.write_safetensors_atomic(root / name / "train_state.safetensors", t, m)


def make_flipped_files(root: Path) -> None:
    """Copies of the trained run with one byte changed after bptt wrote it, as a failing disk
    would: in the model's last tensor (b_y), in the train state's last tensor, in a setting."""
    import shutil

    def flip(name: str, file: str, at: Callable[[bytearray], int]) -> None:
        shutil.copytree(root / "run", root / name)
        blob = bytearray((root / name / file).read_bytes())
        blob[at(blob)] ^= 0x01
        (root / name / file).write_bytes(blob)

    flip("flipped_weight", "model.safetensors", lambda blob: len(blob) - 3)
    flip("flipped_state", "train_state.safetensors", lambda blob: len(blob) - 3)
    # the last digit of the learning rate in the settings (0.003 becomes 0.002): still valid
    # JSON and a plausible value, so only the checksum can tell
    flip("flipped_setting", "model.safetensors",
         lambda blob: blob.index(b",", blob.index(b'lr\\": ')) - 1)


# (id, argv with {w} for the world dir, what the message must say)
CASES = [
    # train: the corpus
    ("train-missing-file", "train {w}/nope.txt", "nope.txt"),
    ("train-empty-file", "train {w}/empty.txt", "empty"),
    ("train-binary-file", "train {w}/binary.bin", "binary"),
    ("train-not-utf8", "train {w}/latin1.txt", "UTF-8"),
    ("train-directory", "train {w}/adir", "directory"),
    ("train-a-fifo", "train {w}/fifo.safetensors", "is not a regular file (a pipe or a device?)"),
    ("train-one-character", "train {w}/one_char.txt", "at least 2 distinct characters"),
    ("train-shorter-than-a-sequence", "train {w}/short.txt --seq-len 50", "shorter than one sequence"),
    # train: numbers
    ("train-hidden-zero", "train {w}/good.txt --hidden 0", "--hidden"),
    ("train-hidden-negative", "train {w}/good.txt --hidden -5", "--hidden"),
    ("train-hidden-huge", "train {w}/good.txt --hidden 100000", "unreasonably large"),
    ("train-task-layers-huge", "train --task parity --layers 100000", "unreasonably large"),
    # (a task run's batch of 10^8 grew for minutes past 15 GB; a run on text encoded its
    # corpus before it found the text too short for it)
    ("train-task-batch-huge", "train --task parity --batch 100000000",
     "batch is unreasonably large for this machine (at most 65,536)"),
    ("train-batch-huge", "train {w}/good.txt --batch 100000000",
     "batch is unreasonably large for this machine (at most 65,536)"),
    # (numpy refuses tens of GB of weights at once: a failed run before its first
    # checkpoint leaves nothing behind, the encoded corpus of a run on text included)
    ("train-no-memory", "train {w}/good.txt --hidden 65536 --layers 64", "not enough memory"),
    # (it named --seq-len, which a task run refuses)
    ("train-task-no-memory", "train --task parity --hidden 65536 --layers 64",
     "not enough memory for a model and data of these sizes; lower --hidden, --layers, --batch "
     "or --task-length"),
    # (a byte that is not UTF-8, kept by Python as a lone surrogate: refused as --prime's)
    ("train-unk-not-a-character", "train {w}/good.txt --unk \udcff",
     "argument --unk: not valid UTF-8 text: the bytes b'\\xff'"),
    ("train-seq-len-zero", "train {w}/good.txt --seq-len 0", "--seq-len"),
    ("train-steps-zero", "train {w}/good.txt --steps 0", "--steps"),
    ("train-clip-norm-and-no-clip-norm", "train {w}/good.txt --clip-norm 1 --no-clip-norm",
     "not allowed with argument"),
    ("train-steps-float", "train {w}/good.txt --steps 1e3", "--steps"),
    ("train-lr-nan", "train {w}/good.txt --lr nan", "--lr"),
    ("train-lr-zero", "train {w}/good.txt --lr 0", "--lr"),
    ("train-lr-negative", "train {w}/good.txt --lr -0.1", "--lr"),
    ("train-lr-inf", "train {w}/good.txt --lr inf", "--lr"),
    ("train-unknown-cell", "train {w}/good.txt --cell tcn", "--cell"),
    ("train-unknown-optimizer", "train {w}/good.txt --optimizer rmsprop", "--optimizer"),
    ("train-unknown-flag", "train {w}/good.txt --hiddne 8", "unrecognized arguments"),
    # train: config, out dir, resume
    ("train-config-unknown-keys", "train {w}/good.txt --config {w}/unknown_keys.json", "'colour'"),
    ("train-config-wrong-types", "train {w}/good.txt --config {w}/wrong_types.json", "wrong type"),
    ("train-config-not-json", "train {w}/good.txt --config {w}/not_json.json",
     "not_json.json is not valid JSON: Expecting value: line 1 column 1"),
    ("train-config-not-object", "train {w}/good.txt --config {w}/list.json", "JSON object"),
    ("train-config-missing", "train {w}/good.txt --config {w}/none.json", "does not exist"),
    ("train-config-too-deep", "train {w}/good.txt --config {w}/deep.json",
     "deep.json is not valid JSON: its arrays or objects are nested too deeply"),
    ("train-config-too-many-digits", "train {w}/good.txt --config {w}/many_digits.json",
     "many_digits.json is not valid JSON: it holds an integer of more digits than Python reads"),
    ("train-config-lr-beyond-floats", "train {w}/good.txt --config {w}/lr_beyond_floats.json",
     "lr must be a finite number > 0, got 1000"),
    # a byte-order mark (Notepad's) is dropped, as from a FILE: the mistake is the key
    ("train-config-bom", "train {w}/good.txt --config {w}/bom.json", "'colour'"),
    # an empty path is refused as the flag's (it was the current directory: '. is a directory')
    ("train-config-empty", "train {w}/good.txt --config ", "--config: expected a path"),
    ("train-out-is-a-file", "train {w}/good.txt --out {w}/blocker/run", "output directory"),
    ("train-out-has-checkpoint", "train {w}/good.txt --out {w}/run", "already holds a checkpoint"),
    ("train-out-has-a-metrics-csv", "train {w}/good.txt --out {w}/user_dir",
     "user_dir already holds metrics.csv, which a run writes there; move it away"),
    ("train-resume-nothing", "train --resume {w}/adir",
     "adir holds no train_state.safetensors to resume from"),
    ("train-resume-change-hidden", "train --resume {w}/run --hidden 16",
     "--hidden cannot change on --resume (only --steps, --eval-every and --cache-dir can)"),
    # mutation audit (5): what --resume refuses, the flags of train alone, a config file that
    # cannot be read
    ("train-resume-change-seed", "train --resume {w}/run --seed 98765",
     "--seed cannot change on --resume (only --steps, --eval-every and --cache-dir can)"),
    ("train-resume-out", "train --resume {w}/run --out {w}/elsewhere",
     "--config/--out cannot change on --resume (the run's directory and settings are saved in "
     "it)"),
    ("train-resume-config", "train --resume {w}/run --config {w}/unknown_keys.json",
     "--config/--out cannot change on --resume"),
    ("train-val-fraction-zero", "train {w}/good.txt --val-fraction 0",
     "argument --val-fraction: expected a number between 0 and 1, got 0 (see 'bptt train"),
    ("train-val-fraction-one", "train {w}/good.txt --val-fraction 1",
     "argument --val-fraction: expected a number between 0 and 1, got 1 (see 'bptt train"),
    ("train-val-fraction-a-word", "train {w}/good.txt --val-fraction half",
     "argument --val-fraction: expected a number between 0 and 1, got 'half'"),
    ("train-unk-empty", "train {w}/good.txt --unk ",
     "argument --unk: expected exactly one character, got ''"),
    ("train-unk-two-characters", "train {w}/good.txt --unk ab",
     "argument --unk: expected exactly one character, got 'ab'"),
    ("train-config-a-directory", "train {w}/good.txt --config {w}/adir",
     "adir: [Errno 21] Is a directory"),
    ("train-config-not-utf8", "train {w}/good.txt --config {w}/latin1.txt",
     "latin1.txt: 'utf-8' codec can't decode byte 0xe9"),
    ("train-out-empty", "train {w}/good.txt --out ", "--out: expected a path"),
    ("train-cache-dir-empty", "train {w}/good.txt --cache-dir ", "--cache-dir: expected a path"),
    # train: a train state edited by hand is refused before anything is trained or written
    ("train-resume-history-not-a-list", "train --resume {w}/history_x --steps 4",
     "history_x/train_state.safetensors is damaged: its history must be a list"),
    ("train-resume-history-row", "train --resume {w}/history_row --steps 4",
     "history row 0 must have exactly the columns"),
    ("train-resume-counter-negative", "train --resume {w}/counter_negative --steps 4",
     "step counter 'step.t' must be an integer >= 0, got -1"),
    ("train-resume-step-string", "train --resume {w}/step_string --steps 4",
     "its step must be an integer >= 0, got '2'"),
    ("train-resume-hidden-not-the-weights", "train --resume {w}/hidden_9 --steps 4",
     "its settings say hidden size 9 but its weights have 8"),
    ("train-resume-interval-huge", "train --resume {w}/interval_huge --steps 4",
     "its interval_losses must be a list of finite numbers"),
    ("train-resume-position-huge", "train --resume {w}/position_huge --steps 4",
     "the batch position is 1000000000000000000000000000000 but the run is at step 2"),
    # sample
    ("sample-missing-checkpoint", "sample {w}/nowhere", "no checkpoint"),
    ("sample-temperature-zero", "sample {w}/run --temperature 0", "--temperature"),
    ("sample-temperature-nan", "sample {w}/run --temperature nan", "--temperature"),
    ("sample-length-negative", "sample {w}/run --length -1", "--length"),
    # (the bound, not "an integer >= 0", which the value is)
    ("sample-length-huge", "sample {w}/run --length 10000000000000",
     "--length: expected an integer from 0 to 10^12, got 10000000000000"),
    ("sample-greedy-with-seed", "sample {w}/run --greedy --seed 1", "--greedy always takes"),
    ("sample-greedy-with-temperature", "sample {w}/run --greedy --temperature 2",
     "--temperature and --seed do not apply"),
    ("sample-prime-file-not-utf8", "sample {w}/run --prime-file {w}/latin1.txt", "iconv"),
    ("sample-prime-file-empty", "sample {w}/run --prime-file ", "--prime-file: expected a path"),
    ("sample-prime-outside-vocab", "sample {w}/run --prime \u2603", "not in the model's vocabulary"),
    ("sample-prime-not-utf8-bytes", "sample {w}/run --prime a\udcff",
     "argument --prime: not valid UTF-8 text: the bytes b'a\\xff'"),
    ("sample-truncated-checkpoint", "sample {w}/truncated", "not a bptt checkpoint"),
    ("sample-an-export", "sample {w}/exported.safetensors",
     "an export for PyTorch: bring it back as a model with bptt import"),
    ("sample-pickle-renamed", "sample {w}/pickled", "pickle"),
    ("sample-random-bytes", "sample {w}/random", "not a bptt checkpoint"),
    ("sample-huge-header", "sample {w}/huge", "not a bptt checkpoint"),
    ("sample-format-version", "sample {w}/version99", "format version 99"),
    ("sample-foreign-metadata", "sample {w}/foreign", "not written by bptt"),
    ("sample-vocab-wrong-type", "sample {w}/vocab_not_list", "vocab"),
    ("sample-vocab-mismatch", "sample {w}/vocab_thousands", "vocabulary of 3000 characters"),
    ("sample-vocab-surrogate", "sample {w}/vocab_surrogate",
     "holding '\\udce9', which is not a Unicode character"),
    ("sample-model-wrong-type", "sample {w}/model_wrong_type", "'model'"),
    # a byte changed after bptt wrote the file (a failing disk, a bad copy): its checksums
    ("sample-flipped-weight", "sample {w}/flipped_weight",
     "flipped_weight/model.safetensors is damaged: tensor 'by' does not match its checksum"),
    ("sample-flipped-setting", "sample {w}/flipped_setting",
     "model.safetensors is damaged: its settings (bptt metadata) do not match their checksum"),
    ("train-resume-flipped-state", "train --resume {w}/flipped_state --steps 4",
     "flipped_state/train_state.safetensors is damaged: tensor"),
    ("export-flipped-weight", "export {w}/flipped_weight {w}/out.safetensors", "is damaged"),
    # gradcheck
    ("gradcheck-hidden-zero", "gradcheck --hidden 0", "--hidden"),
    ("gradcheck-seq-len-nan", "gradcheck --seq-len nan", "--seq-len"),
    ("gradcheck-unknown-cell", "gradcheck --cell tcn", "--cell"),
    # the sizes train refuses (--layers 100000 ran for hours; this was "not enough memory")
    ("gradcheck-hidden-huge", "gradcheck --hidden 100000", "unreasonably large"),
    ("gradcheck-layers-huge", "gradcheck --layers 1 --layers 100000", "unreasonably large"),
    ("gradcheck-batch-huge", "gradcheck --batch 100000000",
     "batch is unreasonably large for this machine (at most 65,536)"),
    # terms, flow
    ("terms-seq-len-zero", "terms --seq-len 0", "--seq-len"),
    ("terms-unknown-cell", "terms --cell tcn", "--cell"),
    ("flow-missing-text-file", "flow --file {w}/nope.txt --out {w}/flowout", "does not exist"),
    ("flow-pickle-checkpoint", "flow --checkpoint {w}/pickled --out {w}/flowout", "pickle"),
    ("flow-hidden-zero", "flow --hidden 0", "--hidden"),
    ("flow-seq-len-negative", "flow --seq-len -3", "--seq-len"),
    # (it named the library's parameter: "seq_len must be from 1 to 500")
    ("flow-seq-len-huge", "flow --seq-len 501 --out {w}/flowout",
     "--seq-len must be from 1 to 500, got 501"),
    # (it wrote into the current directory)
    ("flow-out-empty", "flow --out ", "--out: expected a path"),
    # refused before anything is computed or written (flow.png was written, then a traceless
    # 'Is a directory'; a FIFO there blocked the command forever)
    ("flow-out-holds-a-directory", "flow --out {w}/flow_blocked",
     "holds flow_distance.png, which is not a regular file"),
    # export, import
    ("export-missing-checkpoint", "export {w}/nowhere {w}/out.safetensors", "no checkpoint"),
    ("export-would-overwrite", "export {w}/run {w}/good.txt", "already exists"),
    ("export-over-a-runs-model", "export {w}/imported {w}/run/model.safetensors --force",
     "belongs to the training run"),
    ("export-over-a-runs-state", "export {w}/imported {w}/run/train_state.safetensors --force",
     "belongs to the training run"),
    ("export-force-over-a-fifo", "export {w}/run {w}/fifo.safetensors --force",
     "is a FIFO (named pipe), not a regular file"),
    ("export-corrupt-checkpoint", "export {w}/truncated {w}/out.safetensors", "not a bptt checkpoint"),
    ("import-text-file", "import {w}/good.txt {w}/imported", "not a usable safetensors file"),
    ("import-pickle", "import {w}/pickled/model.safetensors {w}/imported", "pickle"),
    ("import-into-an-empty-path", "import {w}/exported.safetensors ", "expected a path"),
    ("import-a-bptt-model", "import {w}/run/model.safetensors {w}/imported", "already"),
    ("import-duplicate-vocab-forced", "import {w}/dup_vocab.safetensors {w}/imported --force",
     "dup_vocab.safetensors: its vocabulary cannot be used"),
    ("import-force-over-a-fifo", "import {w}/exported.safetensors {w}/fifo_out --force",
     "is a FIFO (named pipe), not a regular file"),
    # reading a FIFO (no one writing to it) waited forever
    ("sample-a-fifo", "sample {w}/fifo.safetensors",
     "fifo.safetensors is not a regular file (a pipe or a device?); save it to a file first"),
    ("import-a-fifo", "import {w}/fifo.safetensors {w}/from_fifo",
     "fifo.safetensors is not a regular file (a pipe or a device?); save it to a file first"),
    ("unknown-command", "fly", "invalid choice"),
]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file's bytes; a FIFO that became a file shows up as a new entry."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# every case runs through the entry point in this process; every eighth also as a command
AS_COMMAND = {c[0] for c in CASES[::8]}


@pytest.mark.parametrize("argv, expected, as_command",
                         [(*c[1:], False) for c in CASES]
                         + [(*c[1:], True) for c in CASES if c[0] in AS_COMMAND],
                         ids=[c[0] for c in CASES]
                         + [f"{c[0]}-command" for c in CASES if c[0] in AS_COMMAND])
def test_user_mistake_is_one_clear_line_and_exit_2(run_bptt, bptt_in_process, world, tmp_path,
                                                   argv, expected, as_command):
    before = snapshot(world)
    args = [a.replace("{w}", str(world)) for a in argv.split(" ")]
    if args[0] == "train" and "--out" not in args and "--resume" not in args:
        args += ["--out", str(tmp_path / "out")]
    if as_command:
        r = run_bptt(*args, cwd=tmp_path)
        code, err = r.returncode, r.stderr
    else:
        code, err = bptt_in_process(args, tmp_path)
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bptt: error: "), err
    assert "Traceback" not in err
    assert expected.lower() in lines[0].lower(), lines[0]
    assert snapshot(world) == before, "an existing file was changed"
    assert not (tmp_path / "out").exists(), "a failed run left an output directory"


@pytest.mark.parametrize("argv", [
    ["sample", "{name}"],
    ["train", "{name}"],
    ["export", "{run}", "x/{name}/z.safetensors"],
])
def test_a_name_with_a_newline_or_an_escape_is_still_one_line(bptt_in_process, world, tmp_path,
                                                             argv):
    # the name was printed as it is: "no checkpoint at no" and "pe: expected …" on two lines,
    # and an ESC reached the terminal
    name = "no\npe\x1b[2J"
    args = [a.replace("{name}", name).replace("{run}", str(world / "run")) for a in argv]
    code, err = bptt_in_process(args, tmp_path)
    assert code == 2 and len(err.splitlines()) == 1 and "\x1b" not in err, err
    assert "no\\npe\\x1b[2J" in err, err


def test_only_train_offers_errors_replace_for_bytes_that_are_not_utf8(run_bptt_here, world,
                                                                      tmp_path):
    """The way round a file that is not UTF-8, --errors replace, is a flag of train alone."""
    sample = run_bptt_here("sample", world / "run", "--prime-file", world / "latin1.txt",
                           cwd=tmp_path)
    assert sample.returncode == 2 and "--errors" not in sample.stderr, sample.stderr
    train = run_bptt_here("train", world / "latin1.txt", "--out", tmp_path / "out", cwd=tmp_path)
    assert train.returncode == 2 and "--errors replace" in train.stderr, train.stderr


def test_a_full_standard_output_is_one_line_and_exit_2(world, tmp_path):
    with open("/dev/full", "w") as full:  # Linux: every write fails with ENOSPC
        r = subprocess.run([sys.executable, "-m", "bptt", "sample", str(world / "run"),
                            "--length", "50"], stdout=full, stderr=subprocess.PIPE, text=True,
                           cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr == "bptt: error: cannot write the output: No space left on device\n"
    # a new run that cannot write its first line leaves nothing (its encoded corpus included)
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "bptt", "train", str(world / "good.txt"),
                            "--out", str(tmp_path / "new"), "--steps", "2"], stdout=full,
                           stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.endswith("bptt: error: cannot write the output: No space left on device\n")
    assert not (tmp_path / "new").exists()


def test_a_closed_standard_output_is_one_line_and_exit_2(world, tmp_path):
    """``bptt sample >&-``: Python has no sys.stdout at all (it was an AttributeError
    traceback at the first write)."""
    r = subprocess.run([sys.executable, "-m", "bptt", "sample", str(world / "run"),
                        "--length", "5"], preexec_fn=lambda: os.close(1),
                       stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("bptt: error: standard output is closed") and \
        r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize(("argv", "what", "instead"), [
    (["terms"], "the terms", "> terms.txt"),
    (["gradcheck", "--cell", "rnn", "--layers", "1", "--no-torch"], "the report",
     "> gradcheck.txt"),
])
def test_a_command_whose_result_is_its_output_refuses_a_closed_standard_output(tmp_path, argv,
                                                                            what, instead):
    """``bptt terms >&-``, ``bptt gradcheck >&-``: exit 0 having shown nothing (gradcheck's
    exit code saying PASS of a report no one could read)."""
    r = subprocess.run([sys.executable, "-m", "bptt", *argv], preexec_fn=lambda: os.close(1),
                       stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and r.stderr == (
        f"bptt: error: standard output is closed: there is nowhere to write {what} "
        f"(redirect it to a file, e.g. {instead})\n"), r.stderr


@pytest.mark.parametrize(("command", "written"), [
    ("export {w}/run {tmp}/out.safetensors", "out.safetensors"),
    ("import {w}/exported.safetensors {tmp}/imported", "imported"),
    ("flow --out {tmp}/flow", "flow"),
])
def test_a_command_that_writes_files_refuses_a_closed_standard_output_before_writing(
        world, tmp_path, monkeypatch, capsys, command, written):
    """export, import and flow print what they wrote (import its notes on using it too): with
    a closed standard output they wrote their files and said nothing, exit 0.  Refused
    before anything is written, as a run of train that is not --quiet is."""
    argv = command.format(w=world, tmp=tmp_path).split()
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("bptt: error: standard output is closed: there is nowhere to write ")
    assert err.count("\n") == 1, err
    assert not (tmp_path / written).exists()


def test_every_command_says_what_it_prints():
    """The closed-output check of cli.main reads each command's ``prints``: a command added
    without one would fail with an AttributeError instead of being checked."""
    commands = cli.build_parser().get_default("command_parsers")
    assert set(commands) == set(cli.COMMANDS)
    for name, parser in commands.items():
        what, instead = parser.get_default("prints")
        assert what and instead, name


def test_train_with_a_closed_standard_output_needs_quiet(world, tmp_path):
    """``bptt train >&-``: a run that prints its progress is refused in train's words; a
    --quiet run writes nothing to standard output, so it trains."""
    def train(out: str, *flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bptt", "train", str(world / "good.txt"),
                               "--out", str(tmp_path / out), "--steps", "2", "--hidden", "8",
                               *flags], preexec_fn=lambda: os.close(1),
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120)

    loud = train("loud")
    assert loud.returncode == 2 and loud.stderr == (
        "bptt: error: standard output is closed: there is nowhere to write the run's progress "
        "lines (give --quiet, or redirect it to a file, e.g. > train.log)\n")
    assert not (tmp_path / "loud").exists()
    quiet = train("quiet", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert (tmp_path / "quiet" / "model.safetensors").is_file()


def test_a_failed_write_with_a_closed_standard_output_is_one_line(monkeypatch, capsys):
    """``bptt train --quiet >&-`` on a full disk: the error path flushed sys.stdout first, and
    a closed one is None (an AttributeError traceback instead of the line)."""
    from bptt.cli import train

    def full_disk(args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train, "_run", full_disk)
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--quiet"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "bptt: error: cannot write the output: No space left on device\n"


@pytest.mark.parametrize("command", ["sample {w}/run --prime-file {text}",
                                     "flow --file {text} --out {tmp}"])
def test_a_prime_or_flow_text_longer_than_its_limit_is_one_line(world, tmp_path, monkeypatch,
                                                               capsys, command):
    """``yes | bptt sample --prime-file /dev/stdin`` was read until the memory ran out."""
    from bptt import data

    monkeypatch.setattr(data, "SHORT_TEXT_BYTES", 10)
    text = tmp_path / "long.txt"
    text.write_text("the text is eleven bytes long"[:11])
    argv = command.format(w=world, text=text, tmp=tmp_path / "out").split()
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"bptt: error: {text} is longer than 10 bytes, the most "
                                       "this reads; pass a shorter text.\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, flags", [
    ("gradcheck", "--hidden, --layers, --batch or --seq-len"),
    # (it named --layers and --batch, which flow does not have)
    ("flow", "--hidden or --seq-len"),
])
def test_running_out_of_memory_is_one_line_and_exit_2_naming_the_commands_size_flags(
        monkeypatch, capsys, command, flags):
    def needs_too_much(args):
        raise MemoryError

    module = importlib.import_module(f"bptt.cli.{command}")
    monkeypatch.setattr(module, "run", needs_too_much)
    with pytest.raises(SystemExit) as exit_:
        cli.main([command])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"bptt: error: not enough memory for a model and data of these sizes; lower {flags}\n")


def test_ctrl_c_outside_training_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C in any command (here gradcheck; training saves first, see test_crash_safety):
    no traceback, exit 130 as a shell reports a command Ctrl-C ended."""
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_gradcheck, "run", interrupted)
    assert cli.main(["gradcheck"]) == 130
    assert capsys.readouterr().err == "bptt: interrupted\n"


@pytest.mark.parametrize("module", ["numpy", "bptt.cli.train"])
def test_ctrl_c_while_the_command_loads_is_one_line_and_exit_130(module, tmp_path):
    """Ctrl-C in the first moments of ``bptt`` (numpy and bptt's modules load for about
    0.2 s): no traceback.  The console script runs ``from bptt.cli import main`` and then
    main(), so that import must not load them; the KeyboardInterrupt is raised here when
    ``module`` is first imported, as a Ctrl-C at that moment would."""
    code = f"""
import importlib.abc, sys
class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())
from bptt.cli import main  # what the console script and python -m bptt run
sys.exit(main(["train", "--help"]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (130, "", "bptt: interrupted\n")


def test_there_are_at_least_25_distinct_mistakes():
    assert len({c[0] for c in CASES}) == len(CASES) >= 25


# ---- mutation audit (4): the entry point's lines and exit codes, in this process ----


def test_a_bad_flag_points_at_the_subcommands_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["gradcheck", "--hidden", "1000000001"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "bptt: error: argument --hidden: expected an integer from 1 to 10^9, got 1000000001 "
        "(see 'bptt gradcheck --help')\n")


@pytest.mark.parametrize("argv, unknown, help_of", [
    (["train", "--hiddne"], "--hiddne", "bptt train"),
    (["sample", "run", "extra"], "extra", "bptt sample"),
    (["--bogus"], "--bogus", "bptt"),
])
def test_an_unknown_flag_points_at_the_help_that_lists_the_flags(capsys, argv, unknown, help_of):
    """It pointed at 'bptt --help' for every command, which lists no command's flags."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"bptt: error: unrecognized arguments: {unknown} (see '{help_of} --help')\n")


def test_bptt_alone_prints_its_help_and_exits_0(capsys):
    assert cli.main([]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: bptt ") and "COMMAND" in out and err == ""


def _raising(monkeypatch, command: str, exc: BaseException) -> None:
    def run(args):
        raise exc

    monkeypatch.setattr(importlib.import_module(f"bptt.cli.{command}"), "run", run)


@pytest.mark.parametrize("exc, line", [
    (FileNotFoundError(2, "No such file or directory", "run/model.safetensors"),
     "No such file or directory: run/model.safetensors"),
    (OSError(28, "No space left on device", "out/model.safetensors"),
     "No space left on device: out/model.safetensors"),
    (MemoryError(), "not enough memory for a model of this size"),  # export has no size flags
    # no file named: the system's words, not Python's "[Errno 13] Permission denied"
    (PermissionError(13, "Permission denied"), "Permission denied"),
])
def test_a_system_error_is_one_line_naming_its_file(monkeypatch, capsys, exc, line):
    _raising(monkeypatch, "export", exc)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", "run", "out.safetensors"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"bptt: error: {line}\n"


def test_a_reader_that_went_away_is_no_error(monkeypatch, capsys):
    """``bptt sample | head``: exit 0, nothing on stderr; standard output is dropped."""
    from bptt.cli import progress

    dropped = []
    monkeypatch.setattr(progress, "drop_stdout", lambda: dropped.append(True))
    _raising(monkeypatch, "gradcheck", BrokenPipeError(32, "Broken pipe"))
    assert cli.main(["gradcheck"]) == 0
    assert dropped == [True] and capsys.readouterr().err == ""


# ---- mutation audit (5): the entry point ----


def test_version_says_bptt_and_its_version(capsys):
    import bptt

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"bptt {bptt.__version__}\n"


NO_MEMORY = "bptt: error: not enough memory"


@pytest.mark.parametrize("argv, line", [
    # a run given --task-length (a task run) has no --seq-len to lower
    (["--task-length", "8"], f"{NO_MEMORY} for a model and data of these sizes; lower "
                             "--hidden, --layers, --batch or --task-length\n"),
    # a resume said "lower --hidden, --layers, …", flags a --resume refuses to change
    (["--resume", "runs/a"], f"{NO_MEMORY} to resume runs/a: a resumed run keeps its sizes; "
                             "free memory, or start a new run with a lower --hidden, --layers, "
                             "--batch or --seq-len\n"),
    (["--resume", "runs/a", "--task", "adding"],
     f"{NO_MEMORY} to resume runs/a: a resumed run keeps its sizes; free memory, or start a "
     "new run with a lower --hidden, --layers, --batch or --task-length\n"),
])
def test_running_out_of_memory_in_train_names_only_sizes_the_run_can_change(
        monkeypatch, capsys, argv, line):
    _raising(monkeypatch, "train", MemoryError())
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", *argv])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == line


def test_a_refused_write_drops_the_output_standard_output_cannot_take(monkeypatch, capsys):
    """A full disk while standard output is full too: what is buffered for it is dropped,
    or Python's flush at exit fails again (a second error after the line)."""
    from bptt.cli import progress

    class Full(io.StringIO):
        def flush(self):
            raise OSError(28, "No space left on device")

    dropped = []
    monkeypatch.setattr(progress, "drop_stdout", lambda: dropped.append(True))
    _raising(monkeypatch, "export", OSError(28, "No space left on device", "out.safetensors"))
    monkeypatch.setattr(sys, "stdout", Full())
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", "run", "out.safetensors"])
    assert exit_.value.code == 2 and dropped == [True]
    assert capsys.readouterr().err == "bptt: error: No space left on device: out.safetensors\n"
