"""`qcode run --watch`: code again when a transcript changes, in one process (pipeline/watch.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from pipeline.watch import (
    Notifications,
    changed_names,
    snapshot,
    wait_for_change,
    watched_files,
)
from tests.conftest import CODEBOOK, ROOT, SAMPLE


def test_snapshot_sees_edits_new_and_removed_files(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one", encoding="utf-8")
    b.write_text("two", encoding="utf-8")
    before = snapshot([a, b])
    a.write_text("one, longer", encoding="utf-8")
    b.unlink()
    c = tmp_path / "c.txt"
    c.write_text("three", encoding="utf-8")
    assert changed_names(before, snapshot([a, b, c])) == ["a.txt", "b.txt", "c.txt"]
    assert changed_names(before, before) == []


def test_watched_files_are_transcripts_codebook_and_names(tmp_path):
    folder = tmp_path / "t"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns("gold", "double_coded"))
    (folder / "privacy_names.yaml").write_text("schools: [Hillview]\n", encoding="utf-8")
    files = {p.name for p in watched_files(folder, CODEBOOK)}
    assert "west_partnership.yaml" in files and "privacy_names.yaml" in files
    assert {p.name for p in folder.glob("*.txt")} <= files
    shutil.rmtree(folder)  # a folder being replaced: the codebook is still watched
    assert [p.name for p in watched_files(folder, CODEBOOK)] == ["west_partnership.yaml"]


def test_wait_for_change_waits_until_writing_stops(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("v0", encoding="utf-8")
    before = snapshot([path])
    writes = iter(["v1", "v1 and more", None, None])  # two writes, then quiet
    sleeps = []

    def sleep(seconds: float) -> None:  # the file changes between polls, as an editor saves
        sleeps.append(seconds)
        text = next(writes, None)
        if text is not None:
            path.write_text(text, encoding="utf-8")

    after = wait_for_change(lambda: snapshot([path]), before, sleep=sleep)
    assert after == snapshot([path]) and path.read_text(encoding="utf-8") == "v1 and more"
    assert len(sleeps) == 3  # the change, the second write, then one quiet settle


def _save_later(*writes: tuple[float, Path, str]) -> threading.Thread:
    """Write each file after its delay (seconds from now), in a thread, as a person saves."""

    def run() -> None:
        clock = time.monotonic()
        for delay, path, text in writes:
            time.sleep(max(0.0, clock + delay - time.monotonic()))
            path.write_text(text, encoding="utf-8")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def notifications() -> Iterator[Notifications]:
    kept = Notifications()
    yield kept
    kept.close()


def test_notified_wait_wakes_for_a_watched_file_and_not_for_others(tmp_path, notifications):
    """The system's notifications wake the wait; a file nobody watches, in the same folder,
    does not end it (the snapshot decides), and the save it returns is complete."""
    path, other = tmp_path / "a.txt", tmp_path / "notes.log"
    path.write_text("v0", encoding="utf-8")
    before = snapshot([path])
    writer = _save_later((0.3, other, "not watched"), (0.8, path, "v1"), (0.8, path, "v1 more"))
    after = notifications.wait(lambda: snapshot([path]), before)
    writer.join()
    assert after == snapshot([path]) and path.read_text(encoding="utf-8") == "v1 more"


def test_notified_wait_returns_a_change_made_while_the_last_run_coded(tmp_path, notifications):
    path = tmp_path / "a.txt"
    path.write_text("v0", encoding="utf-8")
    before = snapshot([path])
    path.write_text("saved during the run", encoding="utf-8")  # before the wait starts
    assert notifications.wait(lambda: snapshot([path]), before) == snapshot([path])


def test_notifications_kept_between_waits_see_each_save_in_turn(tmp_path, notifications):
    """The watch loop keeps one set of notifications: each wait returns the next save, also
    one made while nobody waited (as while a run codes)."""
    path = tmp_path / "a.txt"
    path.write_text("v0", encoding="utf-8")
    take = lambda: snapshot([path])  # noqa: E731
    before = take()
    writer = _save_later((0.3, path, "v1"))
    first = notifications.wait(take, before)
    writer.join()
    assert first == take() and first != before
    path.write_text("v2, saved while a run codes", encoding="utf-8")
    second = notifications.wait(take, first)
    assert second == take() and second != first
    writer = _save_later((0.3, path, "v3, the next save"))
    third = notifications.wait(take, second)
    writer.join()
    assert third == take() and path.read_text(encoding="utf-8") == "v3, the next save"
    notifications.close()  # closing twice (the fixture closes it again) is harmless


def test_notified_wait_sees_a_new_transcript_and_a_removed_folder(tmp_path, notifications):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "a.txt").write_text("v0", encoding="utf-8")

    def take() -> dict:
        return snapshot(sorted(folder.glob("*.txt")) if folder.is_dir() else [])

    before = take()
    writer = _save_later((0.3, folder / "b.txt", "new"))
    after = notifications.wait(take, before)
    writer.join()
    assert changed_names(before, after) == ["b.txt"]
    threading.Timer(0.3, shutil.rmtree, [folder]).start()
    assert notifications.wait(take, after) == {}  # the folder went: so did its files


def _read_until(process: subprocess.Popen, marker: str, lines: list[str], limit: float) -> None:
    """Read the process's output lines until one contains ``marker`` (or fail after limit)."""
    found = threading.Event()

    def reader() -> None:
        for line in process.stdout:
            lines.append(line)
            if marker in line:
                found.set()
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert found.wait(limit), f"no {marker!r} within {limit} s:\n" + "".join(lines)
    thread.join()


def test_run_watch_codes_an_edit_again_and_stops_on_ctrl_c(tmp_path):
    """The real command: a first run, then an edited transcript is coded again by the same
    process (a new run folder holding the edit), a bad file is reported without stopping the
    watch, and Ctrl-C ends it cleanly."""
    folder = tmp_path / "transcripts"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns("gold", "double_coded"))
    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONUNBUFFERED": "1"}
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(folder), "--codebook", str(CODEBOOK),
         "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--watch"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        _read_until(process, "Watching for changes", lines, 600)
        first = (out / "LATEST").read_text(encoding="utf-8").strip()

        target = folder / "wp02_class_teacher.txt"
        added = "Participant: The cluster moderation days finally gave us a shared language."
        target.write_text(target.read_text(encoding="utf-8") + "\n" + added + "\n", "utf-8")
        _read_until(process, "Coded again in", lines, 300)
        second = (out / "LATEST").read_text(encoding="utf-8").strip()
        assert second != first
        units = pd.read_csv(out / second / "units.csv", keep_default_na=False)
        assert units["text"].str.contains("shared language").any()
        assert any("Changed: wp02_class_teacher.txt" in line for line in lines)

        (folder / "broken.txt").write_text("", encoding="utf-8")  # skipped: the file is empty
        _read_until(process, "Changed: broken.txt", lines, 300)
        _read_until(process, "Watching for changes", lines, 300)
        assert process.poll() is None  # still watching
        assert any("broken.txt" in line for line in lines), "".join(lines)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            rest, _ = process.communicate()
    output = "".join(lines) + rest
    assert "Stopped watching." in output, output
    assert "Traceback" not in output, output
    assert process.returncode == 0
