"""The package's public names (bptt/__init__.py), which load on first use.

``import bptt`` loads nothing else (the ``bptt`` command must be running, with its Ctrl-C
handling, when numpy and bptt's modules load: tests/cli/test_bad_input.py); every name of
``__all__`` is still the object its module defines, by attribute and by ``from bptt import``,
and the submodules are attributes as they always were.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import bptt
from bptt import errors, estimators, gradcheck, heads, models, reference


def fresh(code: str) -> str:
    """Standard output of ``code`` run in a new interpreter."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_import_bptt_loads_neither_numpy_nor_a_submodule():
    loaded = fresh("import sys, bptt; print(sorted(m for m in sys.modules "
                   "if m.split('.')[0] in ('bptt', 'numpy')))")
    assert loaded == "['bptt']\n"


@pytest.mark.parametrize("name, module", [
    ("BpttError", errors), ("CheckpointError", errors), ("DataError", errors),
    ("SequenceClassifier", estimators), ("SequenceRegressor", estimators),
    ("task_loss_and_grads", heads), ("backprop", models), ("forward", models),
    ("forward_loss", models), ("infer_cell", models), ("init_params", models),
    ("loss_and_grads", models),
])
def test_each_api_name_is_its_modules_object(name, module):
    assert getattr(bptt, name) is getattr(module, name)


def test_all_names_import_and_the_star_import_gives_exactly_them():
    names = fresh("import bptt; ns = {}; exec('from bptt import *', ns); "
                  "print(sorted(k for k in ns if k != '__builtins__'))")
    assert names == f"{sorted(bptt.__all__)}\n"
    assert bptt.gradcheck is gradcheck and bptt.reference is reference
    assert set(bptt.__all__) <= set(dir(bptt))


def test_a_submodule_is_an_attribute_of_a_fresh_import_as_before():
    assert fresh("import bptt; print(bptt.cells.rnn.__name__, bptt.models.__name__)") \
        == "bptt.cells.rnn bptt.models\n"


def test_an_unknown_name_is_an_attribute_error_and_loads_nothing():
    with pytest.raises(AttributeError, match="module 'bptt' has no attribute 'init_param'"):
        bptt.init_param  # noqa: B018 (a typo of init_params)
    assert not hasattr(bptt, "__wrapped__")
    assert fresh("import sys, bptt; print(hasattr(bptt, 'nothing'), hasattr(bptt, '_x'), "
                 "'numpy' in sys.modules)") == "False False False\n"
