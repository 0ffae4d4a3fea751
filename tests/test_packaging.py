"""pyproject.toml builds with the setuptools it names, with no deprecation warning (a
deprecated key is a build that stops working on a date setuptools announces)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# build-system.requires: the oldest setuptools that reads the metadata as written
SETUPTOOLS_MIN = "77"


def apply_pyproject():
    """setuptools' reading of pyproject.toml, as a build does it: the distribution."""
    pytest.importorskip("setuptools", minversion=SETUPTOOLS_MIN)
    from setuptools.config import pyprojecttoml
    from setuptools.dist import Distribution

    return pyprojecttoml.apply_configuration(Distribution(), ROOT / "pyproject.toml")


def test_pyproject_metadata_has_no_deprecated_key():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # setuptools' SetuptoolsDeprecationWarning among them
        dist = apply_pyproject()
    assert dist.metadata.name == "bptt"


def test_license_is_an_spdx_expression_and_ships_its_file():
    dist = apply_pyproject()
    assert dist.metadata.license_expression == "MIT"
    assert "LICENSE" in dist.metadata.license_files
