"""Hostile input: broken files and property-based fuzzing. Every input must end in a clear
``QcodeError`` or be handled; any other exception is a crash, and fails the input's own test
(each input is a test of its own). The totals are written to .cache/hostile_inputs.json for the
record."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.codebook import parse_codebook
from pipeline.errors import QcodeError
from pipeline.ingest import read_segments_csv, read_transcript
from tests.conftest import CODEBOOK, ROOT

TALLY = {"tried": 0, "handled": 0, "clear_errors": 0, "crashes": 0, "crashed": []}

GOOD = (
    "---\ninterview_id: H-1\nrole: Head teacher\n---\n\n"
    "Interviewer: Hi?\n\nParticipant: Yes, we shared a lot.\n"
)


def attempt(label: str, call) -> None:
    TALLY["tried"] += 1
    try:
        call()
        TALLY["handled"] += 1
    except QcodeError as error:
        assert error.message.startswith("[E")
        TALLY["clear_errors"] += 1
    except Exception as error:  # a crash: record it and fail this input's test now
        TALLY["crashes"] += 1
        TALLY["crashed"].append(f"{label}: {type(error).__name__}: {error}"[:300])
        raise AssertionError(
            f"{label} crashed with {type(error).__name__} instead of a QcodeError: {error}"[:500]
        ) from error


def docx_renamed_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("hello.txt", "not a word document")
    return buffer.getvalue()


TRANSCRIPTS: list[tuple[str, bytes]] = [
    ("cp1252.txt", "Interviewer: caf\u00e9?\n\nParticipant: na\u00efve\n".encode("cp1252")),
    ("utf16le.txt", GOOD.encode("utf-16")),
    ("utf16be.txt", b"\xfe\xff" + GOOD.encode("utf-16-be")),
    ("bom.md", b"\xef\xbb\xbf" + GOOD.encode()),
    ("png.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20),
    ("empty.txt", b""),
    ("blank.txt", b"\n\n   \n\t\n"),
    ("unterminated.md", b"---\nrole: Head teacher\ninterview_id: X\n\nInterviewer: hi\n"),
    ("frontmatter_only.md", b"---\nrole: Head teacher\n---\n"),
    ("labels_only.txt", b"Interviewer:\n\nParticipant:\n\nInterviewer:\n"),
    ("renamed_zip.docx", docx_renamed_zip()),
    ("text.docx", GOOD.encode()),
    ("truncated.docx", docx_renamed_zip()[:40]),
    ("bad_timestamps.vtt", b"WEBVTT\n\n00:00:99.000 --> 00:00:01\n<v A>hello</v>\n"),
    ("garbage_after_header.vtt", b"WEBVTT\n\n\x00\x01\x02\n-->\n-->\n"),
    ("header_only.vtt", b"WEBVTT\n"),
    ("no_voices.vtt", b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhello there\n"),
    (
        "only_interviewer.vtt",
        b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v Interviewer>hello</v>\n",
    ),
    ("nul_inside.txt", b"Interviewer: hi\n\nParticipant: a\x00b\n"),
    ("long_line.txt", b"Interviewer: " + b"word " * 200_000 + b"\n\nParticipant: ok fine\n"),
    ("cr_only.txt", b"Interviewer: hi?\r\rParticipant: yes indeed.\r"),
    (
        "yaml_bomb.md",
        b"---\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a]\n"
        b"c: [*b, *b, *b, *b, *b, *b, *b]\n---\nInterviewer: hi\n\nParticipant: ok\n",
    ),
    ("yaml_list.md", b"---\n- a\n- b\n---\nInterviewer: hi\n\nParticipant: ok\n"),
    ("deep_yaml.md", b"---\nrole: " + b"[" * 5000 + b"]" * 5000 + b"\n---\nP1: ok\n"),
    ("yaml_tabs.md", b"---\nrole:\t[unclosed\n---\nInterviewer: hi\n\nParticipant: ok\n"),
    ("huge_front_matter.md", b"---\n" + b"note: " + b"x" * 200_000 + b"\n---\nP1: ok\n"),
    ("label_storm.txt", b"".join(b"A%d: x\n\n" % i for i in range(2000))),
    ("html.txt", b"<html><script>alert(1)</script></html>"),
    ("json.txt", b'{"interview_id": "x"}'),
]

CODEBOOKS: list[tuple[str, str]] = [
    ("empty", ""),
    ("not mapping", "- a\n- b\n"),
    ("binary", "\x00\x01\x02"),
    ("duplicate ids", CODEBOOK.read_text().replace("id: ts.time_pressure", "id: ts.time", 1)),
    ("rename cycle", CODEBOOK.read_text() + "renamed:\n  ts.time: ts.trust\n  ts.trust: ts.time\n"),
    ("codes not list", "name: x\ngroups: {g: {label: G}}\ncodes: {a: 1}\n"),
    ("code is string", "name: x\ngroups: {g: {label: G}}\ncodes: [hello]\n"),
    (
        "examples string",
        "name: x\ngroups: {g: {label: G}}\ncodes:\n  - {id: a, label: A, group: g,"
        " kind: enabler, definition: D, examples: 5}\n",
    ),
    ("deep nesting", "name: " + "[" * 500 + "]" * 500 + "\n"),
    ("unknown section", "name: x\ngroups: {g: {label: G}}\nkodes: []\ncodes: []\n"),
    (
        "bad kind",
        "name: x\ngroups: {g: {label: G}}\ncodes:\n  - {id: a, label: A, group: g,"
        " kind: maybe, definition: D}\n",
    ),
]

SEGMENTS: list[tuple[str, bytes]] = [
    ("binary.csv", bytes(range(256)) * 10),
    ("empty.csv", b""),
    ("header_only.csv", b"segment_id,text\n"),
    ("one_column.csv", b"segment_id\n1\n2\n"),
    ("unbalanced.csv", b'segment_id,text\n1,"never closed\n2,x\n'),
    ("duplicates.csv", b"segment_id,text\n1,a\n1,b\n"),
    ("cp1252.csv", "segment_id,text\n1,caf\u00e9\n".encode("cp1252")),
]


@pytest.mark.parametrize(("name", "content"), TRANSCRIPTS, ids=[n for n, _ in TRANSCRIPTS])
def test_broken_transcripts(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    attempt(name, lambda: read_transcript(path))


def test_two_hundred_megabyte_file_is_refused_quickly(tmp_path):
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:  # sparse: no 200 MB written to disk
        handle.truncate(200 * 1024 * 1024)
    with pytest.raises(QcodeError, match="200 MB"):
        read_transcript(path)
    attempt("huge.txt", lambda: read_transcript(path))


@pytest.mark.parametrize(("name", "text"), CODEBOOKS, ids=[n for n, _ in CODEBOOKS])
def test_broken_codebooks(name, text):
    attempt(f"codebook {name}", lambda: parse_codebook(text, "book.yaml"))


def test_ten_thousand_codes_validate():
    groups = "name: big\ngroups: {g: {label: G}}\ncodes:\n"
    codes = "".join(
        f"  - {{id: c{i}, label: C{i}, group: g, kind: enabler, definition: Code {i}.}}\n"
        for i in range(10_000)
    )
    book = parse_codebook(groups + codes)
    assert len(book.codes) == 10_000
    attempt("10,000 codes", lambda: parse_codebook(groups + codes))


@pytest.mark.parametrize(("name", "content"), SEGMENTS, ids=[n for n, _ in SEGMENTS])
def test_broken_segment_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    attempt(name, lambda: read_segments_csv(path))


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from([".txt", ".md", ".vtt", ".docx"]))
def test_fuzz_random_bytes_as_transcripts(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"f{suffix}"
    path.write_bytes(data)
    attempt(f"random bytes{suffix}", lambda: read_transcript(path))


LABELS = st.sampled_from(
    [
        "Interviewer",
        "Participant",
        "P1",
        "P2",
        "Q",
        "A",
        "Jane Smith",
        "Honestly",
        "**Interviewer**",
        "I",
    ]
)
SPEECH = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80)


@FUZZ
@given(st.lists(st.tuples(LABELS, SPEECH), max_size=12), st.booleans())
def test_fuzz_labelled_transcripts_keep_offsets(tmp_path_factory, turns, front):
    text = ("---\nrole: x\n---\n" if front else "") + "\n\n".join(
        f"{label}: {speech}" for label, speech in turns
    )
    path = tmp_path_factory.mktemp("fuzz") / "t.md"
    path.write_text(text, encoding="utf-8")

    def check() -> None:
        transcript = read_transcript(path)
        for turn in transcript.turns:
            assert 0 <= turn.start < turn.end <= len(transcript.text)
            assert transcript.text[turn.start : turn.end].strip()

    attempt("labelled transcript", check)


@FUZZ
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_fuzz_codebook_structures(data):
    import yaml

    attempt("codebook structure", lambda: parse_codebook(yaml.safe_dump(data), "fuzz.yaml"))


def test_a_crash_fails_the_test_of_its_own_input(monkeypatch):
    """The guard itself: a crash raises at once (not only in the tally read at the end)."""
    monkeypatch.setattr(sys.modules[__name__], "TALLY", {**TALLY, "crashed": []})

    def crash() -> None:
        raise KeyError("unit_id")

    with pytest.raises(AssertionError, match=r"x\.txt crashed with KeyError"):
        attempt("x.txt", crash)
    attempt("y.txt", lambda: None)  # handled


def test_zz_no_input_crashed():
    """Runs last in this file: the tally of every input above."""
    out = ROOT / ".cache"
    out.mkdir(exist_ok=True)
    Path(out / "hostile_inputs.json").write_text(json.dumps(TALLY, indent=2))
    assert TALLY["tried"] > 400
    assert TALLY["crashes"] == 0, TALLY["crashed"]
