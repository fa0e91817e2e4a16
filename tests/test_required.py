"""Test hygiene: in CI a skipped test marked ``required`` (browser, PDF, crash tests) fails."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

SKIPPING = """
import pytest

@pytest.mark.required
def test_needs_a_browser():
    pytest.skip("/usr/bin/chromium is not installed")

@pytest.fixture
def tool():
    pytest.skip("no tool")

@pytest.mark.required
def test_needs_a_tool_from_a_fixture(tool):
    pass

def test_may_skip():
    pytest.skip("optional")
"""


def _run(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_skips.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci:
        env["CI"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_required_skips_fail_in_ci(tmp_path):
    result = _run(tmp_path, ci=True)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 skipped, 1 error" in result.stdout  # a fixture's skip: an error
    assert "required test skipped in CI" in result.stdout and "chromium" in result.stdout


def test_required_skips_only_skip_outside_ci(tmp_path):
    result = _run(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout
    assert "3 skipped" in result.stdout
