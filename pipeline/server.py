"""A long-running local Prefect server, so that each ``qcode run`` skips starting its own.

Without ``PREFECT_API_URL`` every run starts Prefect's temporary server (3-5 s here) and stops
it at exit. ``qcode server`` starts one server for the project, on the loopback address only,
with telemetry off and Prefect's database in the project's own ``.prefect/`` folder; runs in
other terminals use it once ``PREFECT_API_URL`` points at it. It listens on 127.0.0.1, never on
another address: Prefect's API has no login.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipeline.environment import OFFLINE_DEFAULTS
from pipeline.errors import QcodeError

HOST = "127.0.0.1"
DEFAULT_PORT = 4200


class ServerError(QcodeError):
    """The long-running local Prefect server cannot start or be reached."""

    code = "E970"
    fix = (
        "Check that nothing else uses the port (choose another with --port) and that "
        "PREFECT_API_URL points at the server 'qcode server' printed; unset it to use a "
        "temporary server per run."
    )


def free_port() -> int:
    """A TCP port nothing listens on now, on loopback: for servers that scripts, the
    benchmark and the tests start beside a person's own (``qcode server`` uses 4200)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_url(port: int = DEFAULT_PORT) -> str:
    """What ``PREFECT_API_URL`` must say for runs to use the server on ``port``."""
    return f"http://{HOST}:{port}/api"


def server_environment(project_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: no telemetry, offline, Prefect's home in the project."""
    env = dict(os.environ if base is None else base)
    for key, value in OFFLINE_DEFAULTS.items():
        env.setdefault(key, value)
    env["DO_NOT_TRACK"] = "1"
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.setdefault("PREFECT_HOME", str(Path(project_dir).resolve() / ".prefect"))
    env.pop("PREFECT_API_URL", None)  # the server is the API; it must not point elsewhere
    return env


def server_command(port: int = DEFAULT_PORT) -> list[str]:
    """The command that starts it (the same as ``prefect server start`` on loopback)."""
    if not 1024 <= port <= 65535:
        raise ServerError(f"port {port} cannot be used: choose one from 1024 to 65535")
    return [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        HOST,
        "--port",
        str(port),
        "--analytics-off",
    ]


def is_up(url: str, timeout: float = 1.0) -> bool:
    """Does a Prefect API answer its health check at ``url``?"""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_server(
    project_dir: Path,
    port: int = DEFAULT_PORT,
    wait_s: float = 120.0,
    log: Path | None = None,
    base_env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start the server in the background and wait until it answers (for scripts and the
    benchmark; people use ``qcode server``). The caller stops it with ``stop_server``."""
    url = api_url(port)
    if is_up(url):
        raise ServerError(
            f"a Prefect server already answers at {url}; use it (PREFECT_API_URL={url}) or "
            "choose another --port"
        )
    output = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        server_command(port),
        env=server_environment(project_dir, base_env),
        stdout=output,
        stderr=subprocess.STDOUT,
        cwd=project_dir,
        start_new_session=True,  # its own process group: stop_server stops its children too
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(
                f"the Prefect server stopped at start (exit {process.returncode})"
                + (f"; see {log}" if log else "")
            )
        if is_up(url):
            return process
        time.sleep(0.25)
    stop_server(process)
    raise ServerError(f"the Prefect server did not answer at {url} within {wait_s:.0f} s")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within it, Ctrl-C or a plain kill raises KeyboardInterrupt, even when this process was
    started with SIGINT ignored (as a background job, or by some process managers)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_server(*processes: subprocess.Popen, wait_s: float = 30.0) -> None:
    """Stop servers (and runners) started here, and only those: all are asked to stop at once,
    so stopping two takes as long as the slower one, and any still running after ``wait_s``
    is killed."""

    def send(process: subprocess.Popen, sig: int) -> None:
        try:  # the whole group when it has its own (start_server, start_runner)
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        except ProcessLookupError:
            pass

    running = [p for p in processes if p.poll() is None]
    for process in running:
        send(process, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            send(process, signal.SIGKILL)
            process.wait()


def runner_environment(project_dir: Path, port: int, base: dict[str, str] | None = None) -> dict:
    """The runner's environment: the server's, pointed at the server, polling every 2 s (a
    lead waits for the start; a poll of a loopback server costs nothing)."""
    env = server_environment(project_dir, base)
    env["PREFECT_API_URL"] = api_url(port)
    env.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
    return env


def start_runner(
    project_dir: Path,
    port: int = DEFAULT_PORT,
    log: Path | None = None,
    base_env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start the runner of the page's runs (``flows.team``) against the server on ``port``.
    The caller stops it with ``stop_server``."""
    output = open(log, "ab") if log is not None else None  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "flows.team"],
        env=runner_environment(project_dir, port, base_env),
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        cwd=project_dir,
        start_new_session=True,  # its own process group: stop_server stops its children too
    )
