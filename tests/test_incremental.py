"""Re-runs after an edit give exactly the outputs of a cold run on the edited transcripts."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.conftest import CODEBOOK, SAMPLE

pytestmark = pytest.mark.slow

FILES = ("wp02_class_teacher.txt", "wp03_qio.txt", "wp06_es_officer.txt")
RUN_ID = re.compile(rb"\d{8}T\d{6}\d*Z-[0-9a-f]{6}")
# What a manifest says about this run rather than about its outputs.
VOLATILE = {"run_id", "started_at", "finished_at", "timings_s", "execution"}


def _files(run_dir) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def _comparable(name: str, data: bytes) -> object:
    """The file's content with run ids blanked; for the manifest, without timings and counts
    of what this run had to encode (a cold run encodes everything)."""
    data = RUN_ID.sub(b"<run>", data)
    if name == "manifest.json":
        manifest = json.loads(data)
        for key in VOLATILE:
            manifest.pop(key, None)
        manifest["counts"].pop("newly_embedded")
        return manifest
    return data


def test_an_edit_gives_the_outputs_of_a_cold_run_byte_for_byte(
    prefect_harness, tmp_path, monkeypatch
):
    """Edit one transcript, re-run with the warm caches and store, and compare every output
    file with a cold run (empty caches, new store) into another folder."""
    from flows.coding import code_transcripts
    from pipeline.settings import Settings

    folder = tmp_path / "in"
    folder.mkdir()
    for name in FILES:
        shutil.copy(SAMPLE / name, folder)
    warm, cold = tmp_path / "warm", tmp_path / "cold"
    warm.mkdir()
    cold.mkdir()

    monkeypatch.chdir(warm)  # caches in ./.cache: the same settings for both runs
    first = code_transcripts(folder, CODEBOOK, warm / "out", Settings())
    path = folder / "wp03_qio.txt"
    text = path.read_text(encoding="utf-8")
    text = text.replace("Thanks. Cheers, bye now.", "Thanks. Cheers, bye for now.")
    text += (
        "\nInterviewer: One last thing: what would you change about the network meetings?\n\n"
        "Participant: I would give teachers protected time to plan together, because the "
        "twilight sessions were always squeezed by everything else going on in school.\n"
    )
    path.write_text(text, encoding="utf-8")
    edited = code_transcripts(folder, CODEBOOK, warm / "out", Settings())
    assert edited != first
    # Only the edited transcript was segmented and coded again: one more result kept.
    kept = sorted((warm / ".cache" / "results").glob("*.units.parquet"))
    assert len(kept) == len(FILES) + 1

    monkeypatch.chdir(cold)
    full = code_transcripts(folder, CODEBOOK, cold / "out", Settings())

    ours, theirs = _files(edited), _files(full)
    assert sorted(ours) == sorted(theirs)
    assert "units.csv" in ours and "suggestions.parquet" in ours and "manifest.json" in ours
    for name in sorted(ours):
        assert _comparable(name, ours[name]) == _comparable(name, theirs[name]), name
    manifest = json.loads(ours["manifest.json"])
    assert 0 < manifest["counts"]["newly_embedded"] < manifest["counts"]["codable_units"]
