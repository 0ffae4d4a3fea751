"""bptt.cli.args: the argument types the subcommands share."""

from __future__ import annotations

import argparse

import pytest

from bptt.cli import args


def test_utf8_text_reads_a_command_line_decoded_under_a_locale_that_is_not_utf8():
    """Under LC_ALL=C Python keeps each undecodable byte of argv as a lone surrogate: 'é'
    typed in a UTF-8 terminal arrives as two; they are read back as the UTF-8 they are (a
    prime used to reach the output as surrogates: a UnicodeEncodeError traceback)."""
    assert args.utf8_text("caf\udcc3\udca9") == "café"
    assert args.utf8_text("café ☃") == "café ☃"
    with pytest.raises(argparse.ArgumentTypeError,
                       match=r"not valid UTF-8 text: the bytes b'a\\xff'"):
        args.utf8_text("a\udcff")


def test_every_text_flag_reads_utf8_under_a_locale_that_is_not():
    """--unk and flow --text are read as --prime and --stop are: 'é' typed under LC_ALL=C
    (two surrogates) was 'expected exactly one character' for --unk, and for flow --text a
    refusal of its characters as not Unicode."""
    from bptt.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "--unk", "\udcc3\udca9"]).unk == "é"
    assert parser.parse_args(["flow", "--text", "caf\udcc3\udca9"]).text == "café"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--unk", "\udcff"])


def test_a_seed_is_an_integer_from_0_to_2_63_minus_1():
    assert args.seed("0") == 0 and args.seed(str(2**63 - 1)) == 2**63 - 1
    for bad in (str(2**63), "-1"):
        with pytest.raises(argparse.ArgumentTypeError,
                           match=rf"^expected a seed from 0 to 2\^63-1, got {bad}$"):
            args.seed(bad)


def test_sizes_and_counts_have_their_bounds_in_the_message():
    """Mutation audit (4): 1 … 10^9 for a size, 0 … 10^12 for a count (sample --length 0)."""
    assert args.positive_int("1") == 1 and args.positive_int(str(10**9)) == 10**9
    assert args.nonnegative_int("0") == 0 and args.nonnegative_int(str(10**12)) == 10**12
    for parse, bad, message in (
        (args.positive_int, 10**9 + 1, r"an integer from 1 to 10\^9"),
        (args.positive_int, 0, r"an integer from 1 to 10\^9"),
        (args.nonnegative_int, 10**12 + 1, r"an integer from 0 to 10\^12"),
        (args.nonnegative_int, -1, r"an integer from 0 to 10\^12"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"^expected {message}, got {bad}$"):
            parse(str(bad))


# ---- mutation audit (5): what each type says of a value that is not one ----


@pytest.mark.parametrize("parse, text, message", [
    (args.positive_int, "ten", "expected a positive integer, got 'ten'"),
    (args.nonnegative_int, "1.5", "expected an integer >= 0, got '1.5'"),
    (args.positive_float, "fast", "expected a positive number, got 'fast'"),
    (args.positive_float, "nan", "expected a finite number > 0, got nan"),
    (args.positive_float, "0", "expected a finite number > 0, got 0"),
    (args.seed, "x", "expected an integer seed, got 'x'"),
    (args.nonempty_path, "", "expected a path, got an empty string"),
])
def test_a_value_of_the_wrong_kind_is_named_in_the_message(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse(text)
    assert str(refused.value) == message
