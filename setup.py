"""Build script: compiles the Cython kernels in ext/ into extension modules of ``cellpipe``.

Project metadata lives in pyproject.toml; this file only adds what setuptools cannot
express there: the Cython extensions and the mapping of the repository's ``db/``,
``tasks/`` and ``cli/`` folders to the ``cellpipe.db``, ``cellpipe.tasks`` and
``cellpipe.cli`` subpackages.
"""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent


def cython_extensions():
    """Return one Extension per ``ext/*.pyx``, named ``cellpipe.<stem>``."""
    extensions = [
        Extension(
            f"cellpipe.{pyx.stem}",
            [str(pyx.relative_to(HERE))],
            include_dirs=[numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=["-O3"],
        )
        for pyx in sorted((HERE / "ext").glob("*.pyx"))
    ]
    return cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


MAPPED_FOLDERS = {"cellpipe.db": "db", "cellpipe.tasks": "tasks", "cellpipe.cli": "cli"}
# Folders of data files (shipped models, Alembic migrations): packages too, so that
# setuptools installs them as such instead of warning that it would ignore them.
DATA_PACKAGES = {
    "cellpipe.models": ["*/*"],
    "cellpipe.db.migrations": ["*.py", "*.mako"],
    "cellpipe.db.migrations.versions": ["*.py"],
}


def packages():
    """Return the ``cellpipe`` packages, including subpackages of the mapped folders."""
    names = ["cellpipe"] + [
        "cellpipe." + ".".join(p.parent.relative_to(HERE / "cellpipe").parts)
        for p in (HERE / "cellpipe").rglob("__init__.py")
        if p.parent != HERE / "cellpipe"
    ]
    for package, folder in MAPPED_FOLDERS.items():
        for init in (HERE / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(HERE / folder).parts
            names.append(".".join((package, *rel)))
    names += list(DATA_PACKAGES)
    names += [f"cellpipe.models.{d.name}" for d in (HERE / "cellpipe" / "models").iterdir() if d.is_dir()]
    return sorted(set(names))


setup(
    packages=packages(),
    package_dir={"cellpipe": "cellpipe", **MAPPED_FOLDERS},
    package_data={"cellpipe": ["py.typed"], "cellpipe.db": ["alembic.ini"], **DATA_PACKAGES},
    ext_modules=cython_extensions(),
    zip_safe=False,
)
