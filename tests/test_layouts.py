"""Every file of the layout corpus (tests/data/layouts) yields the turns written beside it in
``<file>.expected.json`` (by hand, from the file's content), or the error it must raise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import QcodeError
from pipeline.ingest import read_transcript, read_transcripts
from pipeline.layouts import LayoutError
from tests.conftest import write

CORPUS = Path(__file__).parent / "data" / "layouts"
FILES = sorted(p for p in CORPUS.iterdir() if (CORPUS / f"{p.name}.expected.json").is_file())


def words(text: str) -> str:
    return " ".join(text.split())


def test_the_corpus_is_broad():
    layouts = [json.loads((CORPUS / f"{p.name}.expected.json").read_text()) for p in FILES]
    assert len(FILES) >= 60
    assert {e.get("layout") for e in layouts} >= {
        "paragraphs",
        "lines",
        "timestamped",
        "speaker-time",
        "srt",
        "vtt",
    }
    assert {p.suffix for p in FILES} >= {".txt", ".md", ".docx", ".srt", ".vtt"}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_layout_corpus(path):
    expected = json.loads((CORPUS / f"{path.name}.expected.json").read_text(encoding="utf-8"))
    if "error" in expected:
        with pytest.raises(QcodeError) as error:
            read_transcript(path)
        assert error.value.code == expected["error"], error.value.message
        assert expected["message_contains"] in error.value.message
        assert error.value.path == str(path)
        return
    transcript = read_transcript(path)
    assert transcript.layout == expected["layout"]
    got = [[t.speaker, words(transcript.text[t.start : t.end])] for t in transcript.turns]
    assert got == expected["turns"]
    for turn in transcript.turns:  # offsets point at the speech, never at a label
        speech = transcript.text[turn.start : turn.end]
        assert speech == speech.strip()
    problems = " | ".join(p.problem for p in transcript.problems)
    for part in expected.get("warnings_contain", []):
        assert part in problems


def test_ambiguous_file_shows_its_first_lines_and_the_fix(tmp_path):
    path = CORPUS / "err_ambiguous_mixed_styles.txt"
    with pytest.raises(LayoutError) as error:
        read_transcript(path)
    message = error.value.message
    assert "   1 | Interviewer: How long is the programme?" in message
    assert "Fix: use one label style" in message
    # The run report keeps the problem, not the transcript's words.
    assert "How long" not in error.value.problem


def test_one_turn_per_line_is_not_one_interviewer_turn(tmp_path):
    """The bug of issue 12: alternating lines with no blank lines were one interviewer turn."""
    path = write(tmp_path / "t.txt", "INTERVIEWER: Hello?\nPARTICIPANT: Hi.\nINTERVIEWER: Go on.\n")
    transcript = read_transcript(path)
    assert [t.speaker for t in transcript.turns] == ["Interviewer", "Participant", "Interviewer"]


def test_the_folder_reader_reports_each_layout(tmp_path):
    for name in ("lines_upper.txt", "st_otter.txt", "srt_names.srt", "err_no_labels.txt"):
        (tmp_path / name).write_bytes((CORPUS / name).read_bytes())
    transcripts, problems = read_transcripts(tmp_path)
    assert {t.layout for t in transcripts} == {"lines", "speaker-time", "srt"}
    assert [Path(p.path).name for p in problems if p.severity == "skipped"] == ["err_no_labels.txt"]


LINE_STYLES = st.sampled_from(
    [
        "Interviewer: {}",
        "PARTICIPANT: {}",
        "[00:01:02] Speaker 1: {}",
        "00:01:05 Speaker 2: {}",
        "Speaker 2 (00:01:09): {}",
        "Speaker 1  0:03",
        "Q: {}",
        "a: {}",
        "{}",
        "",
        "1",
        "00:00:01,000 --> 00:00:02,000",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(LINE_STYLES, st.text(max_size=30)), max_size=20))
def test_fuzz_mixed_layouts_never_crash(tmp_path_factory, lines):
    text = "\n".join(style.format(speech) for style, speech in lines)
    path = tmp_path_factory.mktemp("fuzz") / "t.txt"
    path.write_text(text, encoding="utf-8")
    try:
        transcript = read_transcript(path)
    except QcodeError as error:
        assert error.message.startswith("[E")
        return
    for turn in transcript.turns:
        assert 0 <= turn.start < turn.end <= len(transcript.text)
        assert transcript.text[turn.start : turn.end].strip()
