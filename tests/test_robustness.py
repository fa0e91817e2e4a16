"""No traceback, ever, from input: nothing readable or nothing to code is a clear error (exit 2),
one bad file never stops the others, an oversized paragraph is segmented, and a killed run's
hidden folder is cleaned by the next run."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.errors import NothingToCodeError, QcodeError
from pipeline.ingest import read_transcript, read_transcripts
from pipeline.outputs import OWNER, clean_partial_runs
from pipeline.segment import segment, spacy_pieces
from pipeline.settings import Settings
from tests.conftest import CODEBOOK, run_qcode, write

GOOD = (
    "---\ninterview_id: GOOD-1\nrole: Class teacher\n---\n\n"
    "Interviewer: How did the network help your teaching this year?\n\n"
    "Participant: We shared lesson plans every week and trusted each other with our problems. "
    "That trust made the coaching work much better than before.\n"
)


def oversized_paragraph(characters: int = 1_050_000) -> str:
    """One paragraph of plain sentences, over spaCy's 1,000,000-character limit (E088)."""
    rng = random.Random(12)
    words = "we met every week and shared what worked in class with the other schools"
    out, size = [], 0
    while size < characters:
        sentence = " ".join(rng.choice(words.split()) for _ in range(12)).capitalize() + ". "
        out.append(sentence)
        size += len(sentence)
    return "".join(out)


BAD_FILES: dict[str, bytes] = {
    "empty.txt": b"",
    "binary.txt": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "no_labels.txt": b"We talked for an hour about the network.\n",
    "only_interviewer.txt": b"Interviewer: Hello?\nInterviewer: Anyone there?\n",
    "ambiguous.txt": (
        b"Interviewer: How long?\n[00:00:04] Participant: Two years.\n"
        b"Interviewer: Then?\n[00:00:09] Participant: Reviewed.\n"
    ),
    "broken.vtt": b"WEBVTT\n\n00:00:xx --> nonsense\n<v Interviewer>Hello?</v>\n",
    "bomb.md": (
        b"---\na: &a [x, x, x]\nb: [*a, *a]\n---\nInterviewer: hi\n\nParticipant: ok fine\n"
    ),
    "cp1252.txt": "Interviewer: caf\u00e9?\n\nParticipant: na\u00efve\n".encode("cp1252"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_is_skipped_and_the_good_one_beside_it_is_read(tmp_path, name):
    write(tmp_path / "good.md", GOOD)
    (tmp_path / name).write_bytes(BAD_FILES[name])
    transcripts, problems = read_transcripts(tmp_path)
    assert [t.transcript_id for t in transcripts] == ["GOOD-1"]
    skipped = [p for p in problems if p.severity == "skipped"]
    assert [Path(p.path).name for p in skipped] == [name]


def test_a_reader_bug_skips_that_file_not_the_folder(tmp_path, monkeypatch):
    """A fake crash (why: no real input is known to crash the reader; the guard must hold
    when one is found). The real readers are exercised by the test above."""
    from pipeline import ingest

    write(tmp_path / "good.md", GOOD)
    write(tmp_path / "crash.txt", "Interviewer: hi\n\nParticipant: ok\n")
    real = ingest.read_transcript

    def crashing(path):
        if Path(path).name == "crash.txt":
            raise IndexError("list index out of range")
        return real(path)

    monkeypatch.setattr(ingest, "read_transcript", crashing)
    transcripts, problems = read_transcripts(tmp_path)
    assert [t.transcript_id for t in transcripts] == ["GOOD-1"]
    assert any("could not read this file (IndexError)" in p.problem for p in problems)
    with pytest.raises(QcodeError, match="IndexError"):
        read_transcripts(tmp_path, on_error="stop")


def test_pieces_join_back_and_stay_under_the_limit():
    text = oversized_paragraph(25_000) + "x" * 9_000 + " tail"
    pieces = spacy_pieces(100, text, limit=5_000)
    assert "".join(p for _, p in pieces) == text
    assert all(len(p) <= 5_000 for _, p in pieces)
    assert [s for s, _ in pieces] == [
        100 + sum(len(p) for _, p in pieces[:i]) for i in range(len(pieces))
    ]
    assert pieces[0][1].endswith(". ")  # cut after a sentence, not inside one


def test_a_megabyte_paragraph_is_segmented_not_fatal(tmp_path, nlp):
    path = write(
        tmp_path / "big.txt",
        "Interviewer: Tell me everything?\n\nParticipant: " + oversized_paragraph() + "\n",
    )
    transcript = read_transcript(path)
    assert transcript.turns[1].end - transcript.turns[1].start > 1_000_000
    units = segment([transcript], nlp, Settings())
    assert len(units) > 10_000
    assert all(transcript.text[u.start : u.end] == u.text for u in units)
    assert units[-1].end == transcript.turns[1].end


def test_cleaning_removes_a_killed_runs_folder_and_keeps_a_live_one(tmp_path):
    dead = tmp_path / ".20260101T000000000000Z-abcdef.partial"
    orphan = tmp_path / ".20260101T000001000000Z-abcdef.partial"
    live = tmp_path / ".20260101T000002000000Z-abcdef.partial"
    other = tmp_path / ".redacted_transcripts.partial"  # not a run folder: left alone
    for folder in (dead, orphan, live, other):
        folder.mkdir()
        write(folder / "units.csv", "half")
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    write(dead / OWNER, f"{socket.gethostname()} {finished.stdout.strip()}")
    write(live / OWNER, f"{socket.gethostname()} {os.getpid()}")
    an_hour_ago = time.time() - 3600
    for folder in (dead, orphan):
        os.utime(folder, (an_hour_ago, an_hour_ago))
    removed = clean_partial_runs(tmp_path)
    assert sorted(removed) == sorted([dead.name, orphan.name])
    assert live.is_dir() and other.is_dir() and not dead.exists() and not orphan.exists()


@pytest.mark.slow
def test_flow_codes_the_good_file_beside_bad_ones(prefect_harness, tmp_path, cache_dir):
    from flows.coding import code_transcripts

    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "good.md", GOOD)
    for name, content in BAD_FILES.items():
        (folder / name).write_bytes(content)
    write(
        folder / "big.txt",
        "Interviewer: Tell me everything?\n\nParticipant: " + oversized_paragraph() + "\n",
    )
    # Whole turns as units: the megabyte turn still goes through spaCy (sentence spans), but
    # is embedded once rather than as 16,000 sentences. The privacy check (default "warn")
    # scans the megabyte paragraph too, in bounded blocks.
    settings = Settings(cache_dir=cache_dir, unit="turn")
    run = code_transcripts(folder, CODEBOOK, tmp_path / "out", settings)
    manifest = json.loads((Path(run) / "manifest.json").read_text())
    coded = {i["transcript_id"]: i["units"] for i in manifest["inputs"]}
    assert coded["GOOD-1"] > 0 and coded["big"] > 0
    assert len(manifest["skipped"]) == len(BAD_FILES)


@pytest.mark.slow
def test_flow_with_nothing_to_code_is_an_error(prefect_harness, tmp_path, cache_dir):
    from flows.coding import code_transcripts

    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "short.txt", "Interviewer: Did it help?\n\nParticipant: Yes.\n")
    settings = Settings(cache_dir=cache_dir, privacy="off")
    with pytest.raises(NothingToCodeError, match="no unit to code"):
        code_transcripts(folder, CODEBOOK, tmp_path / "out", settings)
    assert not (tmp_path / "out" / "LATEST").exists()


def qcode_run(folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = ["run", str(folder), "-c", str(CODEBOOK), "-o", str(out), "--privacy", "off"]
    return run_qcode(
        *command, *extra, env={**os.environ, "PREFECT_HOME": str(out.parent / "prefect-home")}
    )


@pytest.mark.slow
def test_cli_every_file_skipped_lists_why_and_exits_2(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("empty.txt", "no_labels.txt", "ambiguous.txt"):
        (folder / name).write_bytes(BAD_FILES[name])
    result = qcode_run(folder, tmp_path / "out")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert "[E150]" in result.stderr and "no transcript could be read" in result.stderr
    for name, why in [
        ("empty.txt", "empty"),
        ("no_labels.txt", "no speaker labels"),
        ("ambiguous.txt", "ambiguous"),
    ]:
        assert any(name in line and why in line for line in result.stderr.splitlines()), name


@pytest.mark.slow
def test_cli_on_error_stop_is_a_message_not_a_traceback(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "good.md", GOOD)
    (folder / "no_labels.txt").write_bytes(BAD_FILES["no_labels.txt"])
    result = qcode_run(folder, tmp_path / "out", "--set", "on_error=stop")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "Error: [E100]" in result.stderr and "no_labels.txt" in result.stderr
