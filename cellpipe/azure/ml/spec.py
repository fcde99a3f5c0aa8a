"""The specification folder of a cloud job or deployment, shared by both SDK backends.

A folder written here is what the backend sends to Azure, byte for byte, and what
``--dry-run DIR`` leaves behind for review::

    DIR/environment/requirements.txt   pinned requirements (requirements/azureml*.txt)
    DIR/environment/cellpipe-X.tar.gz  source archive of this checkout (the project itself)
    DIR/environment/conda.yml          the same, as SDK v1's conda specification
    DIR/environment/Dockerfile         the same, as SDK v2's Docker build context
    DIR/score.py, DIR/model/           deployments: entry script and model folder, as the
                                       service sees them (``azmlinfsrv --entry_script
                                       DIR/score.py --model_dir DIR/model`` serves them)
    DIR/v1/..., DIR/v2/...             the SDK objects, serialised by the SDKs

The archive is deterministic (sorted names, zero times), so the environment of an
unchanged checkout hashes the same and Azure ML reuses its built image.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cellpipe

#: Base images of Azure ML (Ubuntu 22.04 with conda, OpenMPI and a C compiler).
CPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest"
#: Python of the cloud environment: the one the tests run on.
PYTHON_VERSION = "3.11"
#: Where the training job writes the model; SDK v1 uploads ``outputs/`` at the end of a run.
OUTPUT_MODEL = "outputs/model/model.keras"

_ARCHIVED_TOP = ("pyproject.toml", "setup.py", "README.md")
_ARCHIVED_DIRS = ("cellpipe", "cli", "db", "tasks", "ext")
_ARCHIVED_SUFFIXES = {".py", ".pyx", ".pxd", ".json", ".keras", ".ini", ".mako", ".typed", ".md", ".txt", ".cfg"}


class SpecError(ValueError):
    """A specification cannot be written; the message names what is missing."""


@dataclass(frozen=True)
class EnvironmentFolder:
    """An environment written by :func:`write_environment`."""

    path: Path
    requirements: tuple[str, ...]
    archive: Path
    base_image: str


def project_root() -> Path:
    """Return the source checkout cellpipe runs from (the folder with ``pyproject.toml``).

    Raises
    ------
    SpecError
        When cellpipe is installed from a wheel: cloud environments are built from a
        checkout, so that they run the same code.
    """
    root = Path(cellpipe.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file() or not (root / "requirements" / "azureml.txt").is_file():
        raise SpecError(
            f"no cellpipe source checkout at {root}: Azure ML environments are built from one "
            "(git clone the project and pip install -e it)"
        )
    return root


def pinned_requirements(*, gpu: bool, serve: bool, root: Path | None = None) -> list[str]:
    """Return the pinned requirement lines of the cloud environment.

    ``gpu`` installs TensorFlow with its CUDA libraries (``tensorflow[and-cuda]``);
    ``serve`` adds the Azure ML inference server of ``requirements/azureml-serve.txt``.
    """
    root = root or project_root()
    files = ["azureml.txt"] + (["azureml-serve.txt"] if serve else [])
    lines = []
    for name in files:
        for line in (root / "requirements" / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    if gpu:
        lines = [f"tensorflow[and-cuda]=={line.split('==')[1]}" if line.startswith("tensorflow==") else line
                 for line in lines]
    return lines


def write_project_archive(target_dir: Path, root: Path | None = None) -> Path:
    """Write ``cellpipe-VERSION.tar.gz``, the project's sources as pip installs them; return it."""
    root = root or project_root()
    stem = f"cellpipe-{cellpipe.__version__}"
    files = [root / name for name in _ARCHIVED_TOP if (root / name).is_file()]
    for folder in _ARCHIVED_DIRS:
        files += [
            path for path in (root / folder).rglob("*")
            if path.is_file() and path.suffix in _ARCHIVED_SUFFIXES
            and not any(part.startswith((".", "__pycache__")) for part in path.relative_to(root).parts)
        ]
    target_dir.mkdir(parents=True, exist_ok=True)
    archive = target_dir / f"{stem}.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(f"{stem}/{path.relative_to(root).as_posix()}")
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    with open(archive, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0, filename="") as packed:
        packed.write(buffer.getvalue())
    return archive


def write_environment(folder: Path, *, gpu: bool, serve: bool) -> EnvironmentFolder:
    """Write the environment files (requirements, archive, conda.yml, Dockerfile) into ``folder``."""
    root = project_root()
    requirements = pinned_requirements(gpu=gpu, serve=serve, root=root)
    folder.mkdir(parents=True, exist_ok=True)
    archive = write_project_archive(folder, root)
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")
    conda = ["name: cellpipe", "channels:", "  - conda-forge", "dependencies:", f"  - python={PYTHON_VERSION}",
             "  - pip", "  - pip:"] + [f"    - {line}" for line in requirements] + [f"    - {archive.name}"]
    (folder / "conda.yml").write_text("\n".join(conda) + "\n")
    base_image = GPU_IMAGE if gpu else CPU_IMAGE
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\n"
        "# cellpipe's pinned requirements, then cellpipe itself (its Cython kernels compile here).\n"
        f"COPY requirements.txt {archive.name} /tmp/cellpipe-environment/\n"
        f"RUN conda create -y -p /opt/cellpipe python={PYTHON_VERSION} pip \\\n"
        " && /opt/cellpipe/bin/pip install --no-cache-dir -r /tmp/cellpipe-environment/requirements.txt \\\n"
        f" && /opt/cellpipe/bin/pip install --no-cache-dir /tmp/cellpipe-environment/{archive.name} \\\n"
        " && rm -rf /tmp/cellpipe-environment\n"
        "ENV PATH=/opt/cellpipe/bin:$PATH\n"
    )
    return EnvironmentFolder(folder, tuple(requirements), archive, base_image)


def training_command(data: str, train_args: Sequence[str], out: str = OUTPUT_MODEL) -> list[str]:
    """Return the command line of a cloud training job: the same program as ``cellpipe model train``."""
    return ["python", "-m", "cellpipe.unet.train", data, "--out", out, *train_args]


def model_files(model_path: Path) -> tuple[Path, Path]:
    """Return the ``.keras`` file and its JSON card for a model file or folder."""
    model_path = Path(model_path)
    keras_file = model_path / "model.keras" if model_path.is_dir() else model_path
    card = keras_file.with_suffix(".json")
    if keras_file.suffix != ".keras" or not keras_file.is_file() or not card.is_file():
        raise SpecError(f"{model_path}: expected a .keras model with its .json card next to it")
    return keras_file, card


def write_service_files(folder: Path, model_path: Path) -> tuple[Path, Path]:
    """Copy ``score.py`` and the model into ``folder``; return (entry script, model folder).

    The model folder holds ``model.keras`` and ``model.json`` whatever the source files
    were called, so the scoring script finds them under ``AZUREML_MODEL_DIR``.
    """
    keras_file, card = model_files(model_path)
    model_dir = folder / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(keras_file, model_dir / "model.keras")
    shutil.copyfile(card, model_dir / "model.json")
    entry_script = folder / "score.py"
    shutil.copyfile(Path(__file__).resolve().parents[1] / "score.py", entry_script)
    return entry_script, model_dir


def write_json(path: Path, content: Any) -> Path:
    """Write ``content`` as indented JSON (paths as strings); return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, default=str) + "\n")
    return path


def prepare_folder(folder: Path) -> Path:
    """Return ``folder`` created, refusing one that already holds files."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise SpecError(f"{folder} is not empty: choose a new folder for the specification")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
