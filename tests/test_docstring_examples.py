"""Every ``Examples`` section in the package's docstrings runs and shows what it prints: a
docstring example is a claim about the code, like a README sentence."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import audit

MODULES = sorted(m.name for m in pkgutil.walk_packages(audit.__path__, "audit.") if m.name != "audit.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_print_what_they_show(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring example(s) in {name} failed (run: python -m doctest -v {module.__file__})"
