"""The Azure Storage emulator Azurite for tests: installed with npm, run on a free loopback port.

The first test that needs it installs the ``azurite`` npm package pinned in the
repository's ``package.json``/``package-lock.json`` (``npm ci`` into ``node_modules/``,
once per checkout, under a file lock so parallel pytest workers install it once), then
starts ``azurite-blob`` on ``127.0.0.1`` with a temporary folder and stops it at the end.

Use it from a test module with ``pytest_plugins = ["azurite"]`` (or from
``tests/conftest.py``, once for the whole suite), then ask for the ``azurite``
fixture::

    def test_something(azurite):
        store = open_store("az://images/", {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
AZURITE_BLOB = REPO / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
# The emulator's published development key (the same in every Azurite installation).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 600.0


class AzuriteError(RuntimeError):
    """Azurite could not be installed or started; the message says why and what to do."""


def install_azurite() -> Path:
    """Return the ``azurite-blob`` executable, running ``npm ci`` first when it is missing or stale."""
    lock_path = REPO / "build" / ".azurite-install.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest worker may be installing it now
        if not _installed_version_matches():
            npm = shutil.which("npm")
            if npm is None or shutil.which("node") is None:
                raise AzuriteError(
                    "the Azure Blob tests need Node.js and npm to install the Azurite emulator; "
                    "install them (e.g. `apt-get install nodejs npm`) and run the tests again"
                )
            command = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
            try:
                result = subprocess.run(
                    command, cwd=REPO, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired:
                raise AzuriteError(f"`{' '.join(command)}` did not finish in {INSTALL_TIMEOUT_S:.0f} s") from None
            if result.returncode != 0 or not AZURITE_BLOB.exists():
                raise AzuriteError(
                    f"`npm ci` in {REPO} failed to install azurite (exit {result.returncode}):\n"
                    f"{result.stderr[-2000:]}"
                )
    return AZURITE_BLOB


def _installed_version_matches() -> bool:
    wanted = json.loads((REPO / "package.json").read_text())["devDependencies"]["azurite"]
    installed = REPO / "node_modules" / "azurite" / "package.json"
    if not AZURITE_BLOB.exists() or not installed.exists():
        return False
    return json.loads(installed.read_text()).get("version") == wanted


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Azurite:
    """One ``azurite-blob`` process on ``127.0.0.1:port`` keeping its data in ``location``.

    It can be stopped and started again on the same port and folder; the blobs written
    before a stop are there after the start.
    """

    def __init__(self, location: Path, port: int | None = None, executable: Path | None = None):
        self.location = Path(location)
        self.port = port or free_loopback_port()
        self.executable = executable or install_azurite()
        self.log_path = self.location.with_name(self.location.name + ".log")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """Blob endpoint of the emulator account, ``http://127.0.0.1:PORT/devstoreaccount1``."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """Connection string of the emulator account."""
        return connection_string(self.endpoint, KEY)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the emulator and return once it answers HTTP requests."""
        if self.running:
            return
        self.location.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.executable),
            "--blobHost", "127.0.0.1",
            "--blobPort", str(self.port),
            "--location", str(self.location),
            "--silent", "--skipApiVersionCheck", "--loose",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._process = process
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AzuriteError(f"azurite-blob exited with {process.returncode}:\n{self._log_tail()}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise AzuriteError(f"azurite-blob did not answer on port {self.port} in {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Stop the emulator (it saves its data first) and wait until it has exited."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.endpoint}?comp=list", timeout=1).close()
        except urllib.error.HTTPError:
            return True  # an unauthenticated request is refused: the server is up
        except OSError:
            return False
        return True

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""

    def __enter__(self) -> "Azurite":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def connection_string(endpoint: str, key: str, account: str = ACCOUNT) -> str:
    """Return the connection string of ``account`` at the blob ``endpoint`` with ``key``."""
    return f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={endpoint};"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A running Azurite blob service for the whole session (one per pytest-xdist worker)."""
    try:
        emulator = Azurite(tmp_path_factory.mktemp("azurite") / "data")
        emulator.start()
    except AzuriteError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield emulator
    finally:
        emulator.stop()
