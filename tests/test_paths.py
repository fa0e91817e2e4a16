"""Ids never choose paths: any interview_id maps to a safe, bounded file name; two ids that
would share a file are refused; the original id stays in the outputs as data."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from pipeline.ingest import read_transcripts
from pipeline.outputs import write_run
from pipeline.paths import safe_file_stem, same_file_name
from pipeline.privacy import write_redacted_copies
from pipeline.segment import segment, units_frame
from pipeline.settings import Settings
from tests.conftest import write

SAFE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
HOSTILE = [
    "../../x",
    "/etc/passwd",
    "..",
    ".",
    "",
    "a/b/c",
    "a\\b",
    "x" * 300,
    "CON",
    "Zoë-1",
    "nul\x00byte",
    "-" * 5,
    "  spaced id  ",
]


@pytest.mark.parametrize("identifier", HOSTILE)
def test_any_id_becomes_a_safe_bounded_name(identifier):
    stem = safe_file_stem(identifier)
    assert SAFE.match(stem), stem
    assert stem not in {".", ".."} and stem.lower() != "con"


def test_a_safe_id_is_kept_and_changed_ids_stay_apart():
    assert safe_file_stem("WP-01") == "WP-01"
    assert safe_file_stem("a/b") != safe_file_stem("a_b")
    assert safe_file_stem("a/b") != safe_file_stem("a:b")
    assert safe_file_stem("x" * 300) != safe_file_stem("x" * 301)
    assert same_file_name("WP-01", "wp-01")


def transcript_file(folder, name, identifier):
    return write(
        folder / name,
        f"---\ninterview_id: '{identifier}'\nrole: Class teacher\n---\n\n"
        "Interviewer: How did the network help your teaching?\n\n"
        "Participant: We shared lesson plans every week and trusted each other.\n",
    )


@pytest.fixture
def hostile_folder(tmp_path):
    folder = tmp_path / "project" / "transcripts"
    folder.mkdir(parents=True)
    escaped = tmp_path / "escaped"  # an absolute id: where unsafe code would write
    ids = ["../../x", str(escaped), "a/b/c", "y" * 300, "WP-01"]
    for number, identifier in enumerate(ids):
        transcript_file(folder, f"t{number}.md", identifier)
    return folder, ids


def files_under(root):
    return {p for p in root.rglob("*") if p.is_file()}


def test_collision_by_letter_case_is_refused(tmp_path):
    transcript_file(tmp_path, "a.md", "WP-01")
    transcript_file(tmp_path, "b.md", "wp-01")
    transcripts, problems = read_transcripts(tmp_path)
    assert [t.transcript_id for t in transcripts] == ["WP-01"]
    (skipped,) = [p for p in problems if p.severity == "skipped"]
    assert skipped.path.endswith("b.md") and "also used by a.md" in skipped.problem


def test_run_folder_and_redacted_copies_stay_inside_the_output_folder(
    tmp_path, hostile_folder, nlp
):
    folder, ids = hostile_folder
    transcripts, _ = read_transcripts(folder)
    assert sorted(t.transcript_id for t in transcripts) == sorted(ids)
    before = files_under(tmp_path)
    out = tmp_path / "project" / "outputs"
    units = units_frame(segment(transcripts, nlp, Settings()), transcripts)
    run = write_run(out, "run-1", transcripts, units, pd.DataFrame({"unit_id": []}), {})
    redacted = write_redacted_copies(transcripts, out)
    new = files_under(tmp_path) - before
    assert new and all(out in p.parents for p in new), sorted(map(str, new))
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "x.txt").exists()
    saved = sorted(p.name for p in (run / "transcripts").iterdir())
    assert saved == sorted(f"{safe_file_stem(i)}.txt" for i in ids)
    assert len(list(redacted.iterdir())) == len(ids)
    # The original ids stay as data.
    assert set(pd.read_csv(run / "units.csv")["transcript_id"]) == set(ids)
