from __future__ import annotations

import docx
import pytest

from pipeline.errors import TranscriptError
from pipeline.ingest import read_segments_csv, read_transcript, read_transcripts
from tests.conftest import SAMPLE, write

GOOD = """---
interview_id: T-1
role: Head teacher
local_authority: LA-A
workstream: LEI
network: Peer network
date: 2022-01-01
---

Interviewer: How has the network helped?

Participant: It gave us time to talk. We trusted each other.

And a second paragraph of the same answer.

Interviewer: Thanks.
"""


def test_sample_has_eight_interviews_in_every_format(sample_transcripts):
    transcripts, problems = sample_transcripts
    assert len(transcripts) >= 8
    assert {t.format for t in transcripts} >= {"md", "txt", "docx", "vtt"}
    assert not [p for p in problems if p.severity == "skipped"]
    for t in transcripts:
        words = len(t.text.split())
        assert 2500 <= words <= 6200, (t.transcript_id, words)


def test_sample_covers_the_roles_and_a_group_interview(sample_transcripts):
    transcripts, _ = sample_transcripts
    roles = {
        t.attributes_for(turn.speaker).get("role")
        for t in transcripts
        for turn in t.turns
        if turn.speaker_kind == "participant"
    }
    assert {
        "Head teacher",
        "Depute head teacher",
        "Class teacher",
        "Quality improvement officer",
        "Workstream lead officer",
        "Education Scotland officer",
    } <= roles
    group = [
        t
        for t in transcripts
        if len({x.speaker for x in t.turns if x.speaker_kind == "participant"}) > 1
    ]
    assert group and {"P1", "P2", "P3"} <= {x.speaker for x in group[0].turns}


def test_missing_attribute_is_reported_not_fatal(sample_transcripts):
    transcripts, problems = sample_transcripts
    assert any("local_authority" in p.problem and "wp06" in p.path for p in problems)
    assert any(t.transcript_id == "WP-06" for t in transcripts)


def test_markdown_turns_and_offsets(tmp_path):
    t = read_transcript(write(tmp_path / "a.md", GOOD))
    assert t.transcript_id == "T-1" and t.attributes["role"] == "Head teacher"
    assert [x.speaker for x in t.turns] == ["Interviewer", "Participant", "Interviewer"]
    answer = t.turns[1]
    assert t.text[answer.start : answer.end].startswith("It gave us time")
    assert t.text[answer.start : answer.end].endswith("same answer.")


def test_attribute_values_are_strings(tmp_path):
    t = read_transcript(write(tmp_path / "a.md", GOOD))
    assert t.attributes["date"] == "2022-01-01"


def test_group_interview_participants_get_own_attributes(tmp_path):
    text = """---
interview_id: G-1
interview_type: group
participants:
  P1: {role: Class teacher, local_authority: LA-A}
  P2: {role: Principal teacher, local_authority: LA-B}
---

Interviewer: Tell me about it.

P1: We shared resources every week.

P2: I agree with that.
"""
    t = read_transcript(write(tmp_path / "g.md", text))
    assert t.attributes_for("P2")["role"] == "Principal teacher"
    assert t.attributes_for("P1")["local_authority"] == "LA-A"


def test_name_labels_are_replaced_by_anonymous_speakers(tmp_path):
    text = (
        "Interviewer: Hello.\n\nJane Smith: Hi there.\n\nInterviewer: Go on.\n\nJane Smith: Yes.\n"
    )
    t = read_transcript(write(tmp_path / "n.txt", text))
    assert {x.speaker for x in t.turns} == {"Interviewer", "Participant"}


def test_colon_inside_an_answer_is_not_a_speaker(tmp_path):
    text = "Interviewer: Hello.\n\nParticipant: Fine.\n\nHonestly: it was good.\n"
    t = read_transcript(write(tmp_path / "c.txt", text))
    assert len(t.turns) == 2 and t.text[t.turns[1].start : t.turns[1].end].endswith("good.")


def test_crlf_and_bom_are_normalised(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    t = read_transcript(path)
    assert "\r" not in t.text and t.turns[1].speaker == "Participant"


def test_docx_is_read(tmp_path):
    document = docx.Document()
    for para in [
        "---",
        "interview_id: D-1",
        "role: Depute head teacher",
        "---",
        "Interviewer: What helped?",
        "Participant: Coaching helped.",
        "More of it.",
    ]:
        document.add_paragraph(para)
    document.save(str(tmp_path / "d.docx"))
    t = read_transcript(tmp_path / "d.docx")
    assert t.transcript_id == "D-1" and t.attributes["role"] == "Depute head teacher"
    assert t.text[t.turns[1].start : t.turns[1].end] == "Coaching helped.\n\nMore of it."


def test_teams_vtt_merges_cues_and_hides_names(tmp_path):
    vtt = """WEBVTT

abc/1-0
00:00:01.000 --> 00:00:03.000
<v Interviewer Name>Thanks for coming.</v>

abc/2-0
00:00:03.500 --> 00:00:05.000
<v Jane Smith>Happy to help.</v>

abc/3-0
00:00:05.500 --> 00:00:07.000
<v Jane Smith>The network was great.</v>
"""
    write(tmp_path / "v.vtt", vtt)
    write(tmp_path / "v.yaml", "interview_id: V-1\nrole: Class teacher\n")
    t = read_transcript(tmp_path / "v.vtt")
    assert t.attributes["role"] == "Class teacher"
    assert len(t.turns) == 2
    assert "Jane" not in t.text and "Name" not in t.text
    assert t.text[t.turns[1].start : t.turns[1].end] == "Happy to help. The network was great."


def test_a_file_read_again_is_parsed_again_only_when_it_or_its_attributes_change(tmp_path):
    """The process keeps what it parsed by exact content (``qcode run --watch``): an unchanged
    file gives the kept transcript; a changed file or attribute file is parsed again."""
    vtt = "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n<v Ann>It helped us a lot.</v>\n"
    write(tmp_path / "v.vtt", vtt)
    write(tmp_path / "v.yaml", "interview_id: V-1\nrole: Class teacher\n")
    first = read_transcript(tmp_path / "v.vtt")
    assert read_transcript(tmp_path / "v.vtt") is first
    write(tmp_path / "v.yaml", "interview_id: V-1\nrole: Head teacher\n")
    assert read_transcript(tmp_path / "v.vtt").attributes["role"] == "Head teacher"
    write(tmp_path / "v.vtt", vtt.replace("a lot", "a great deal"))
    assert "a great deal" in read_transcript(tmp_path / "v.vtt").text
    (tmp_path / "v.yaml").unlink()
    assert read_transcript(tmp_path / "v.vtt").attributes["interview_id"] == "v"


@pytest.mark.parametrize(
    ("name", "content", "message", "line"),
    [
        ("empty.txt", b"", "empty", None),
        ("bin.txt", b"\x00\x01\x02binary", "binary", None),
        ("cp.txt", "Interviewer: caf\u00e9\n".encode("cp1252"), "not UTF-8", 1),
        ("open.md", b"---\nrole: x\n\nInterviewer: hi\n", "never closed", 1),
        ("bad.md", b"---\nrole: [x\n---\nInterviewer: hi\n", "not valid YAML", 2),
        ("list.md", b"---\n- a\n---\nInterviewer: hi\n", "key: value", 2),
        ("nolabel.txt", b"Just some text.\n\nMore text.\n", "no speaker labels", 1),
        ("onlyint.txt", b"Interviewer: hi\n\nInterviewer: hello?\n", "only interviewer", 1),
        ("fake.docx", b"PK\x03\x04 not really a zip", "docx", None),
        ("bad.vtt", b"WEBVTT\n\n00:00:xx --> nonsense\n<v A>hi</v>\n", "WebVTT", None),
        ("novtt.vtt", b"hello\n", "WEBVTT", 1),
    ],
)
def test_bad_transcripts_give_clear_errors(tmp_path, name, content, message, line):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TranscriptError) as error:
        read_transcript(path)
    assert message in error.value.message
    assert error.value.path == str(path)
    if line is not None:
        assert error.value.line == line


def test_fast_yaml_loader_reads_attributes_as_the_pure_python_one():
    # The libyaml loader is used for speed; it must give the same values (dates, numbers,
    # booleans, quoted text, lists, accents) and leave aliases to be refused as before.
    import yaml

    from pipeline.ingest import _FAST_LOADER, _read_yaml

    assert _FAST_LOADER is not yaml.SafeLoader, "PyYAML without libyaml: ingest is 10x slower"
    blocks = [
        (SAMPLE / "wp05_lead_officer.yaml").read_text(encoding="utf-8"),
        "role: Head teacher\ndate: 2023-05-17\nyears: 12\nlead: yes\nnote: 'a: b'\n",
        "sites: [North, 'South-West']\nname: Zo\u00eb\nempty:\nratio: 1e3\ntime: 10:30\n",
        "a: &x [1, 2]\nb: *x\n",
        "",
    ]
    for block in blocks:
        assert _read_yaml(block, _FAST_LOADER) == _read_yaml(block, yaml.SafeLoader)
    assert _read_yaml(blocks[3], _FAST_LOADER)[0] is True


def test_folder_skips_bad_files_and_reports_them(tmp_path):
    write(tmp_path / "good.md", GOOD)
    write(tmp_path / "bad.txt", "no labels here at all")
    write(tmp_path / "dup.md", GOOD)
    transcripts, problems = read_transcripts(tmp_path)
    assert [t.transcript_id for t in transcripts] == ["T-1"]
    skipped = {p.path.rsplit("/", 1)[-1]: p.problem for p in problems if p.severity == "skipped"}
    assert "no speaker labels" in skipped["bad.txt"]
    assert "also used by" in skipped["good.md"] or "also used by" in skipped["dup.md"]


def test_folder_can_stop_on_first_error(tmp_path):
    write(tmp_path / "bad.txt", "no labels here at all")
    with pytest.raises(TranscriptError):
        read_transcripts(tmp_path, on_error="stop")


def test_segments_csv_checks_duplicates_with_line(tmp_path):
    from pipeline.errors import SegmentsFileError

    path = write(tmp_path / "s.csv", "segment_id,text\na,hello\nb,there\na,again\n")
    with pytest.raises(SegmentsFileError, match="repeats the one on line 2") as error:
        read_segments_csv(path)
    assert error.value.line == 4
    with pytest.raises(SegmentsFileError, match="missing column"):
        read_segments_csv(write(tmp_path / "t.csv", "id,answer\n1,x\n"))


def test_sample_folder_exists():
    assert (SAMPLE / "gold").is_dir()
