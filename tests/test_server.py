"""A long-running local Prefect server: runs use it instead of starting a temporary one."""

from __future__ import annotations

import os

import pytest

from pipeline.errors import QcodeError
from pipeline.server import (
    api_url,
    free_port,
    is_up,
    server_command,
    server_environment,
    start_server,
    stop_server,
)
from tests.conftest import CODEBOOK, ROOT, run_qcode


def test_server_listens_on_loopback_only_with_telemetry_off(tmp_path):
    command = server_command(4321)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert "--analytics-off" in command
    env = server_environment(tmp_path, {"PREFECT_API_URL": "http://elsewhere/api"})
    assert env["DO_NOT_TRACK"] == "1" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_HOME"] == str(tmp_path.resolve() / ".prefect")
    assert "PREFECT_API_URL" not in env
    with pytest.raises(QcodeError, match="1024 to 65535"):
        server_command(80)


def test_a_run_uses_the_long_running_server(tmp_path):
    """The run reports to the server (its flow run is in the server's database) and starts
    no temporary server of its own; its outputs are those of an ordinary run."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_HOME"}
    server = start_server(tmp_path, port, log=tmp_path / "server.log", base_env=base)
    try:
        assert is_up(api_url(port))
        env = {**os.environ, "PREFECT_API_URL": api_url(port)}
        env["PREFECT_HOME"] = str(tmp_path / "client-home")  # the run's own home stays empty
        out = tmp_path / "out"
        sample = ROOT / "transcripts_sample"
        result = run_qcode(
            "run", str(sample), "--codebook", str(CODEBOOK), "--out", str(out), env=env
        )
        assert result.returncode == 0, result.stderr
        assert (out / (out / "LATEST").read_text().strip() / "manifest.json").is_file()
        # A temporary server would have made a database in the run's Prefect home.
        assert not list((tmp_path / "client-home").rglob("*.db"))
        assert list((tmp_path / ".prefect").rglob("*.db"))
        from prefect.client.orchestration import SyncPrefectClient

        with SyncPrefectClient(api_url(port)) as client:
            runs = client.read_flow_runs()
        assert any(r.state and r.state.is_completed() for r in runs)
    finally:
        stop_server(server)
    assert not is_up(api_url(port))


@pytest.mark.slow
def test_qcode_server_runs_starts_the_server_and_the_runner(tmp_path):
    """The one documented command: the server answers, the runner serves the page's two
    deployments, and Ctrl-C stops both."""
    import signal
    import subprocess
    import sys
    import time

    from tests.test_team_runs import _wait_for_deployments

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "server", "--runs", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not is_up(api_url(port)):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the server did not answer"
            time.sleep(0.5)
        _wait_for_deployments(api_url(port))
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=90)  # stops within 30 s, then kills
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Prefect server and runner for this project" in output
    assert "qcode review --prefect-api" in output
    assert (tmp_path / ".prefect" / "server.log").is_file()
    assert not is_up(api_url(port))
