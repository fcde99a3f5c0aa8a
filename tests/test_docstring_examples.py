"""The examples in the library's docstrings run and print what they show."""

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import cellpipe


def modules_with_examples() -> list[str]:
    """Return the names of cellpipe's Python modules whose source holds a ``>>>`` example."""
    names = []
    for info in pkgutil.walk_packages(cellpipe.__path__, "cellpipe."):
        spec = importlib.util.find_spec(info.name)
        origin = spec.origin if spec else None
        if origin and origin.endswith(".py") and ">>>" in Path(origin).read_text(encoding="utf-8"):
            names.append(info.name)
    return sorted(names)


MODULES = modules_with_examples()


def test_the_library_has_docstring_examples_to_run():
    assert "cellpipe.segment" in MODULES and "cellpipe.views" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_give_what_they_show(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (printed above)"
