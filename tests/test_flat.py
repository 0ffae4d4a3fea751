"""bptt.flat: one buffer, named views, and the checks that a dict is still packed."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from bptt import flat


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=3), "s": np.array(1.5)}


def test_layout_follows_the_order_of_the_keys_given():
    layout = flat.layout_of(arrays(), ["b", "W", "s"])
    assert layout.keys == ("b", "W", "s")
    assert layout.shapes == ((3,), (3, 2), ())
    assert layout.offsets == (0, 3, 9) and layout.size == 10
    assert layout.dtype == np.float64


@pytest.mark.parametrize("keys", [["W", "b"], ["W", "b", "s", "x"], ["W", "W", "b"], ["W", "W", "b", "s"]])
def test_layout_refuses_keys_that_are_not_exactly_those_of_the_arrays(keys):
    with pytest.raises(ValueError, match="are not the keys of the arrays"):
        flat.layout_of(arrays(), keys)


def test_layout_refuses_arrays_of_different_dtypes():
    mixed = {**arrays(), "b": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="must share a dtype"):
        flat.layout_of(mixed, list(mixed))


def test_pack_copies_the_values_and_rebinds_each_entry_to_its_view():
    original = arrays()
    packed = {k: v.copy() for k, v in original.items()}
    identity = id(packed)
    buffer, named = flat.pack(packed, flat.layout_of(packed, ["W", "b", "s"]))
    assert id(packed) == identity and all(packed[k] is named[k] for k in named)
    for key, value in original.items():
        np.testing.assert_array_equal(packed[key], value)
    np.testing.assert_array_equal(
        buffer, np.concatenate([original[k].reshape(-1) for k in ("W", "b", "s")])
    )
    buffer *= 2  # an update of the buffer is an update of the dict
    np.testing.assert_array_equal(packed["W"], 2 * original["W"])
    assert flat.is_packed(packed, named)


def test_a_dict_stops_being_packed_when_an_entry_is_replaced_or_copied():
    packed = arrays()
    _, named = flat.pack(packed, flat.layout_of(packed, list(packed)))
    replaced = {**packed, "b": packed["b"].copy()}
    assert not flat.is_packed(replaced, named)
    assert not flat.is_packed({k: v for k, v in packed.items() if k != "s"}, named)
    # a copy of the dict and its views together keeps the entries the same objects, each
    # then an array of its own: no longer one buffer
    for clone in (copy.deepcopy((packed, named)), pickle.loads(pickle.dumps((packed, named)))):
        assert not flat.is_packed(*clone)


def test_a_dict_with_an_extra_entry_or_views_of_two_buffers_is_not_packed():
    """Mutation audit (4): every entry the very view, no more entries, and one buffer."""
    packed = arrays()
    _, named = flat.pack(packed, flat.layout_of(packed, list(packed)))
    assert flat.is_packed(packed, named)
    assert not flat.is_packed({**packed, "x": np.zeros(2)}, named)
    other = arrays()
    _, other_named = flat.pack(other, flat.layout_of(other, list(other)))
    mixed = {**named, "b": other_named["b"]}  # each entry a view, of two buffers
    assert not flat.is_packed(dict(mixed), mixed)
