"""Crash safety: kill `qcode run` at random moments; the previous outputs and the store stay
intact, no run folder is half-written, and the next run completes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.store import NewDecision, Store
from tests.conftest import CODEBOOK, ROOT, SAMPLE

KILLS = int(os.environ.get("QCODE_CRASH_KILLS", "20"))
pytestmark = [pytest.mark.slow, pytest.mark.required]


def qcode_run(folder: Path, out: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_HOME": str(out.parent / "prefect-home")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            str(folder),
            "--codebook",
            str(CODEBOOK),
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the temporary Prefect server is killed with it
    )


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_killed_runs_leave_outputs_and_store_intact(tmp_path):
    folder = tmp_path / "transcripts"
    folder.mkdir()
    for name in ("wp01_head_teacher.md", "wp03_qio.txt"):
        shutil.copy(SAMPLE / name, folder)
    out, cache = tmp_path / "outputs", tmp_path / "cache"
    first = qcode_run(folder, out, cache)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    (baseline,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    # Time a run whose embeddings are cached (as the killed runs' are), in a separate folder.
    started = time.time()
    timed = qcode_run(folder, tmp_path / "timed", cache)
    assert timed.wait(timeout=600) == 0, timed.stderr.read()
    duration = time.time() - started
    with Store(out / "project.sqlite") as store:
        units = store.units()
        store.decide(
            "ann",
            [
                NewDecision(u, "ts.trust", "accept")
                for u in units.loc[units["codable"], "unit_id"].head(5)
            ],
        )
    before = fingerprint(baseline)
    # Edit a transcript so every killed run has real work to do (a new run id each time).
    edited = folder / "wp03_qio.txt"
    rng = random.Random(20261123)
    kills = 0
    for attempt in range(KILLS):
        edited.write_text(edited.read_text() + f"\nInterviewer: One more thing, {attempt}?\n")
        process = qcode_run(folder, out, cache)
        time.sleep(rng.uniform(0.2, duration * 0.95))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
        assert fingerprint(baseline) == before, f"previous outputs changed (attempt {attempt})"
        for run in out.iterdir():
            if run.is_dir() and not run.name.startswith("."):
                assert (run / "manifest.json").exists(), f"half-written run folder {run.name}"
        with Store(out / "project.sqlite") as store:
            assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert len(store.decisions()) == 5
    final = qcode_run(folder, out, cache)
    assert final.wait(timeout=600) == 0, final.stderr.read()
    # The hidden folders of killed runs are cleaned up by the next run.
    assert not [p.name for p in out.iterdir() if p.name.endswith(".partial")]
    latest = out / (out / "LATEST").read_text().strip()
    manifest = json.loads((latest / "manifest.json").read_text())
    assert manifest["counts"]["transcripts"] == 2
    assert manifest["review"]["decisions"] == 5
    print(f"crash safety: {kills} of {KILLS} runs killed mid-way; outputs and store intact")
    assert kills >= KILLS * 3 // 4
