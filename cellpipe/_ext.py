"""Loads the compiled Cython kernels, with an error that says how to build them."""

import importlib
from types import ModuleType


def load_extension(name: str) -> ModuleType:
    """Return the compiled module ``cellpipe.<name>``.

    Raises
    ------
    ImportError
        When the module was never built or was built for another Python; the message
        says which command builds it.
    """
    try:
        return importlib.import_module(f"cellpipe.{name}")
    except ImportError as error:
        raise ImportError(
            f"cellpipe's compiled extension 'cellpipe.{name}' is missing or unusable "
            f"({error}). Build it from the repository root with `make build` "
            "(or `pip install -e .`, or `python setup.py build_ext --inplace`)."
        ) from error
