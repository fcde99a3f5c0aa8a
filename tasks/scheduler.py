"""A private ``luigid`` on a loopback port, for ``cellpipe run --workers N`` on one machine.

Luigi's local scheduler lives inside one process, so worker processes of one run need a
central scheduler to share tasks. Without ``--scheduler-url``, ``cellpipe run`` starts
this one, on a free port of 127.0.0.1 with its state in a temporary folder, and stops it
when the run ends. It reads the same ``luigi.cfg`` ([scheduler] retry policy,
[resources]) as the workers.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: How long to wait for luigid to accept connections.
START_TIMEOUT_S = 60.0

_LUIGID = "import sys; from luigi.cmdline import luigid; luigid(sys.argv[1:])"


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; no-op elsewhere).

    Workers and the private luigid must not outlive ``cellpipe run`` when it is killed
    (by cron's ``timeout``, by systemd, with SIGKILL).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sig)


class SchedulerError(RuntimeError):
    """The private scheduler could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def accepts_connections(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Return whether something listens on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class PrivateScheduler:
    """A ``luigid`` child process on 127.0.0.1; use as a context manager.

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:PORT/``, for ``luigi.build(scheduler_url=...)``.
    state_dir : Path
        Its state file and ``luigi-server.log`` (removed on stop).
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.url = ""
        self.state_dir: Path | None = None
        self._process: subprocess.Popen | None = None

    def start(self) -> "PrivateScheduler":
        """Start luigid and wait until it accepts connections; return self."""
        self.state_dir = Path(tempfile.mkdtemp(prefix="cellpipe-luigid-"))
        for _attempt in range(3):  # the free port may be taken before luigid binds it
            self.port = free_port(self.host)
            self._process = subprocess.Popen(
                [sys.executable, "-c", _LUIGID, "--address", self.host, "--port", str(self.port),
                 "--state-path", str(self.state_dir / "state.pickle"), "--logdir", str(self.state_dir)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self._process.poll() is None:
                if accepts_connections(self.host, self.port):
                    self.url = f"http://{self.host}:{self.port}/"
                    return self
                time.sleep(0.1)
            self._terminate()
        log = self.state_dir / "luigi-server.log"
        detail = log.read_text()[-2000:] if log.is_file() else "no log written"
        self.stop()
        raise SchedulerError(f"could not start a private luigid on {self.host}: {detail}")

    def stop(self) -> None:
        """Stop luigid and remove its state folder."""
        self._terminate()
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None

    def _terminate(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> "PrivateScheduler":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
