"""bptt.errors: the errors a user can cause, and the small checks that raise them."""

from __future__ import annotations

import os

import numpy as np
import pytest

from bptt import errors
from bptt.errors import BpttError, CheckpointError, DataError, DivergedError


def test_every_user_error_is_a_bptt_error_and_a_value_error():
    for cls in (DataError, CheckpointError, DivergedError):
        assert issubclass(cls, BpttError)
    assert issubclass(BpttError, ValueError)


def test_diverged_error_names_its_step_and_what_to_change():
    error = DivergedError(41)
    assert error.step == 41
    assert str(error) == (
        "training diverged at step 41: the loss, a gradient or a weight is NaN or inf; "
        "lower the learning rate (lr) or clip the gradients (clip_norm)"
    )


@pytest.mark.parametrize(("value", "expected"), [
    (3, True), (np.int64(3), True), (True, False), (3.0, False), ("3", False),
])
def test_is_int_counts_numpy_integers_and_not_bools(value, expected):
    assert errors.is_int(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    (2.5, True), (np.float32(2.5), True), (7, True), (False, False), (1j, False), ("1", False),
])
def test_is_number_counts_reals_only(value, expected):
    assert errors.is_number(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    (2.5, True), (10**300, True), (float("nan"), False), (-np.inf, False), (10**400, False),
    (True, False), ("1", False),
])
def test_is_finite_number_refuses_what_is_no_finite_float(value, expected):
    assert errors.is_finite_number(value) is expected


def test_check_int_returns_a_python_int_or_names_the_setting():
    value = errors.check_int("--steps", np.int64(5), 1)
    assert value == 5 and type(value) is int
    for bad in (0, 2.0, True, "5"):
        with pytest.raises(BpttError, match=rf"--steps must be an integer >= 1, got {bad!r}"):
            errors.check_int("--steps", bad, 1)


def test_check_positive_returns_a_python_float_or_names_the_setting():
    value = errors.check_positive("lr", np.float32(0.5))
    assert value == 0.5 and type(value) is float
    for bad in (0, -1.0, float("nan"), float("inf"), 10**400, "1", None):
        with pytest.raises(BpttError, match=r"lr must be a finite number > 0"):
            errors.check_positive("lr", bad)


def test_as_array_names_a_ragged_value():
    np.testing.assert_array_equal(errors.as_array("x", [[1, 2], [3, 4]]), [[1, 2], [3, 4]])
    with pytest.raises(BpttError, match="lengths must be a rectangular array, not rows of "
                                        "unequal lengths"):
        errors.as_array("lengths", [[1, 2], [3]])


@pytest.mark.parametrize(
    ("char", "expected"),
    [("\ud7ff", False), ("\ud800", True), ("\udce9", True), ("\udfff", True), ("\ue000", False),
     ("a", False), ("😀", False)],
)
def test_is_surrogate_is_true_for_u_d800_to_u_dfff_only(char, expected):
    assert errors.is_surrogate(char) is expected


@pytest.mark.parametrize(("value", "dtype", "expected"), [
    (1.5, np.float32, True), (1e39, np.float64, True), (1e39, np.float32, False),
    (-1e39, np.float32, False), (float("nan"), np.float64, False), (10**400, np.float64, False),
    ("1", np.float64, False), (True, np.float64, False),
])
def test_is_finite_as_is_a_finite_number_that_stays_finite_in_the_dtype(value, dtype, expected):
    assert errors.is_finite_as(value, dtype) is expected


def test_check_seed_gives_back_a_python_int():
    """A seed goes to JSON (a run's config, a task's): a numpy integer is taken as the number
    it is and given back as Python's, which json can write."""
    for value in (0, np.int64(7), np.uint64(2**63 - 1)):
        seed = errors.check_seed(value)
        assert seed == value and type(seed) is int


def test_as_finite_casts_to_the_dtype_and_copies_only_to_cast():
    ids = np.array([[1, 2]], np.int64)
    cast = errors.as_finite("inputs", ids, np.float32)
    assert cast.dtype == np.float32 and np.array_equal(cast, ids)
    already = np.ones(3, np.float32)
    assert errors.as_finite("inputs", already, np.float32) is already


@pytest.mark.parametrize(("text", "reason"), [
    ("{not json", "Expecting property name"),
    ("[" * 100_000 + "]" * 100_000, "its arrays or objects are nested too deeply"),
    ('{"hidden": 1' + "0" * 5000 + "}", "it holds an integer of more digits than Python reads"),
], ids=["syntax", "nested-too-deeply", "too-many-digits"])
def test_parse_json_says_why_a_text_is_no_json_as_a_value_error(text, reason):
    """A nesting deeper than the stack (RecursionError) or an integer over Python's digit
    limit is a bad file like bad syntax: a ValueError with the reason, no other exception."""
    with pytest.raises(ValueError, match=reason):
        errors.parse_json(text)


def test_parse_json_reads_json():
    assert errors.parse_json('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}


def test_printable_shows_a_byte_that_was_not_utf8_as_the_byte_and_leaves_the_rest():
    assert errors.printable(os.fsdecode(b"runs/caf\xe9 \xff")) == "runs/caf\\xe9 \\xff"
    assert errors.printable("\ud800 \udc7f") == "\\ud800 \\udc7f"  # not of a byte: as code
    assert errors.printable("café 日本語 😀") == "café 日本語 😀"
    errors.printable(os.fsdecode(b"\xff\xfe")).encode("utf-8")  # (strict: no surrogate left)
