from __future__ import annotations

import pandas as pd
import pytest

from pipeline.report import (
    attribution,
    build_summaries,
    choose_quotes,
    quantifier,
    render_summaries,
    trim_quote,
)


def run_manifest(transcripts: int, suggestions: int) -> dict:
    """The least manifest render_summaries reads: one unit to code per transcript."""
    return {
        "run_id": "r1",
        "model": {"name": "m"},
        "settings": {"threshold": 0.4},
        "codebook": {"name": "c", "sha256": "abc" * 10},
        "counts": {
            "transcripts": transcripts,
            "codable_units": transcripts,
            "suggestions": suggestions,
        },
        "skipped": [],
    }


@pytest.mark.parametrize(
    ("count", "total", "word"),
    [
        (0, 8, "none"),
        (1, 8, "one"),
        (8, 8, "all"),
        (6, 8, "most"),
        (4, 8, "many"),
        (2, 8, "some"),
        (2, 10, "a few"),
        (3, 4, "most"),
        (1, 1, "all"),
    ],
)
def test_quantifiers(count, total, word):
    assert quantifier(count, total) == word


def test_attribution_uses_attributes_only():
    assert (
        attribution(
            {"role": "Head teacher", "local_authority": "LA-C", "workstream": "LEI", "name": "Jane"}
        )
        == "Head teacher, LA-C, LEI workstream"
    )
    assert attribution({"role": "Education Scotland officer"}) == "Education Scotland officer"
    assert attribution({}) == "Participant"


def test_trim_quote_cuts_at_sentence_end():
    text = "First point here. Second point is longer and goes on. Third one never fits at all."
    assert trim_quote(text, 60) == "First point here. Second point is longer and goes on. [...]"
    assert trim_quote(text, 500) == text
    trimmed = trim_quote("a" * 10 + " " + "b" * 100, 50)
    assert trimmed.endswith("[...]") and len(trimmed) < 60


def hits_frame(rows):
    return pd.DataFrame(
        rows,
        columns=[
            "unit_id",
            "transcript_id",
            "speaker",
            "start",
            "end",
            "text",
            "attribution",
            "score",
        ],
    )


def test_quotes_are_diverse_across_people():
    hits = hits_frame(
        [
            ("u1", "T1", "Participant", 0, 5, "one", "HT", 0.9),
            ("u2", "T1", "Participant", 6, 9, "two", "HT", 0.8),
            ("u3", "T2", "Participant", 0, 5, "three", "CT", 0.7),
        ]
    )
    quotes = choose_quotes(hits, limit=2, max_chars=400)
    assert [q.unit_id for q in quotes] == ["u1", "u3"]
    assert [q.unit_id for q in choose_quotes(hits, 3, 400)] == ["u1", "u3", "u2"]


def test_summaries_and_rendering(tmp_path, codebook):
    units = pd.DataFrame(
        [
            {
                "unit_id": "u1",
                "transcript_id": "T1",
                "turn_index": 1,
                "speaker": "Participant",
                "speaker_kind": "participant",
                "start": 0,
                "end": 20,
                "text": "We <script>trust</script>",
                "codable": True,
                "role": "Head teacher",
                "local_authority": "LA-C",
                "workstream": "LEI",
                "network": "n",
            },
            {
                "unit_id": "u2",
                "transcript_id": "T2",
                "turn_index": 1,
                "speaker": "Participant",
                "speaker_kind": "participant",
                "start": 0,
                "end": 9,
                "text": "No time.",
                "codable": True,
                "role": "Class teacher",
                "local_authority": "LA-A",
                "workstream": "CLN",
                "network": "n",
            },
        ]
    )
    codings = pd.DataFrame([{"unit_id": "u1", "code_id": "ts.trust", "score": 0.6}])
    summaries = build_summaries(codebook, units, codings)
    trust = next(s for s in summaries if s.code.id == "ts.trust")
    assert trust.prevalence.interviews == 1 and trust.prevalence.total_interviews == 2
    assert trust.prevalence.interviews_word == "one"
    assert trust.quotes[0].attribution == "Head teacher, LA-C, LEI workstream"
    assert {c.id for c, _ in trust.counterparts} >= {"ts.trust_lacking"}
    manifest = run_manifest(transcripts=2, suggestions=1)
    render_summaries(summaries, codebook, manifest, tmp_path)
    html = (tmp_path / "ts.trust.html").read_text()
    assert "DRAFT - FOR HUMAN REVIEW" in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    md = (tmp_path / "ts.trust.md").read_text()
    assert "DRAFT - FOR HUMAN REVIEW" in md and "Head teacher, LA-C, LEI workstream" in md
    assert "**most** = 75% or more" in md  # thresholds are stated
    assert (tmp_path / "index.html").exists() and (tmp_path / "index.md").exists()


def test_user_templates_override_ours(tmp_path, codebook):
    own = tmp_path / "templates"
    own.mkdir()
    (own / "code_summary.md.j2").write_text("MINE {{ s.code.id }} {{ banner }}\n")
    units = pd.DataFrame(
        columns=[
            "unit_id",
            "transcript_id",
            "turn_index",
            "speaker",
            "speaker_kind",
            "start",
            "end",
            "text",
            "codable",
            "role",
            "local_authority",
            "workstream",
            "network",
        ]
    )
    units["codable"] = units["codable"].astype(bool)
    summaries = build_summaries(
        codebook, units, pd.DataFrame(columns=["unit_id", "code_id", "score"])
    )
    manifest = {
        "run_id": "r",
        "model": {"name": "m"},
        "settings": {"threshold": 0.4},
        "codebook": {"name": "c", "sha256": "0" * 64},
        "counts": {"transcripts": 0, "codable_units": 0, "suggestions": 0},
        "skipped": [],
    }
    render_summaries(summaries, codebook, manifest, tmp_path / "out", own)
    assert (tmp_path / "out" / "ts.trust.md").read_text().startswith("MINE ts.trust DRAFT")
    assert "DRAFT" in (tmp_path / "out" / "ts.trust.html").read_text()  # ours, as fallback


def _unit(unit_id: str, transcript: str, role: str, authority: str) -> dict:
    return {
        "unit_id": unit_id,
        "transcript_id": transcript,
        "turn_index": 1,
        "speaker": "Participant",
        "speaker_kind": "participant",
        "start": 0,
        "end": 12,
        "text": "We trust them.",
        "codable": True,
        "role": role,
        "local_authority": authority,
        "workstream": "LEI",
        "network": "n",
    }


def test_run_summaries_state_both_denominators(tmp_path, codebook):
    """A run's summaries include unreviewed suggestions, so they count every participant; beside
    that they state the figure by accepted codings alone, of the participants whose units were
    reviewed (as theme reports do), and say so when nobody's units were reviewed."""
    units = pd.DataFrame(
        [
            _unit("u1", "T1", "Head teacher", "LA-A"),  # accepted: reviewed
            _unit("u2", "T2", "Head teacher", "LA-B"),  # suggested, unreviewed
            _unit("u3", "T3", "Class teacher", "LA-B"),  # reviewed, no code
            _unit("u4", "T4", "Class teacher", "LA-C"),  # nobody looked
        ]
    )
    codings = pd.DataFrame(
        [
            {"unit_id": "u1", "code_id": "ts.trust", "score": 0.6, "status": "accepted"},
            {"unit_id": "u2", "code_id": "ts.trust", "score": 0.5, "status": "suggested"},
        ]
    )
    manifest = run_manifest(transcripts=4, suggestions=2)
    summaries = build_summaries(codebook, units, codings, reviewed_units={"u3"})
    trust = next(s for s in summaries if s.code.id == "ts.trust").prevalence
    assert (trust.participants, trust.total_participants) == (2, 4)
    assert (trust.reviewed_participants, trust.total_reviewed) == (1, 2)
    assert trust.reviewed_roles == {"Head teacher": (1, 1), "Class teacher": (0, 1)}
    assert trust.reviewed_authorities == {"LA-A": (1, 1), "LA-B": (0, 1)}  # LA-C: nobody
    render_summaries(summaries, codebook, manifest, tmp_path / "one")
    md = (tmp_path / "one" / "ts.trust.md").read_text()
    assert "participants (2 of 4)" in md
    assert "By accepted codings alone: 1 of the 2 participants whose units were reviewed." in md
    assert "| LA-C | 0 of 1 | none reviewed |" in md and "| LA-A | 1 of 1 | 1 of 1 |" in md
    html = (tmp_path / "one" / "ts.trust.html").read_text()
    assert "1 of the 2 participants whose units were reviewed" in html

    unreviewed = codings.assign(status="suggested")
    summaries = build_summaries(codebook, units, unreviewed)
    trust = next(s for s in summaries if s.code.id == "ts.trust").prevalence
    assert (trust.reviewed_participants, trust.total_reviewed) == (0, 0)
    render_summaries(summaries, codebook, manifest, tmp_path / "none")
    md = (tmp_path / "none" / "ts.trust.md").read_text()
    assert "No participant's units have been reviewed yet" in md
    assert "By accepted codings alone" not in md


def test_summary_counts_quotes_and_cooccurrence_do_not_depend_on_row_order(codebook):
    """Codes found together are ranked by how many units they share, ties to the code met
    first reading the code's units in unit order; quotes tie by unit id. The same summaries
    come from the codings in any order."""
    units = pd.DataFrame(
        {
            "unit_id": ["u1", "u2", "u3", "u4"],
            "transcript_id": ["T1", "T1", "T2", "T2"],
            "speaker": ["P", "P", "P", "Q"],
            "start": [0, 10, 0, 10],
            "end": [9, 19, 9, 19],
            "text": ["One.", "Two.", "Three.", "Four."],
            "codable": [True, True, True, False],
            "role": ["Head teacher", "Head teacher", "", "Class teacher"],
            "local_authority": ["LA-A", "LA-A", "LA-B", None],
            "workstream": ["LEI", "LEI", "CLN", "CLN"],
        }
    )
    rows = [
        ("u1", "ts.trust", 0.5, "suggested"),
        ("u1", "ts.time", 0.4, "suggested"),
        ("u2", "ts.trust", 0.5, "accepted"),
        ("u2", "ts.tenacity", 0.4, "suggested"),
        ("u3", "ts.trust", 0.5, "suggested"),
        ("u3", "ts.time", 0.4, "rejected"),
        ("u4", "ts.trust", 0.9, "suggested"),
    ]
    codings = pd.DataFrame(rows, columns=["unit_id", "code_id", "score", "status"])
    summaries = build_summaries(codebook, units, codings, quotes_per_code=3)
    trust = next(s for s in summaries if s.code.id == "ts.trust")
    assert trust.cooccurring == [("ts.time", 1), ("ts.tenacity", 1)]  # the rejected one is out
    assert [q.unit_id for q in trust.quotes] == ["u2", "u4", "u3"]  # accepted first, one each
    p = trust.prevalence
    assert (p.units, p.accepted_units, p.interviews, p.participants) == (4, 1, 2, 3)
    assert (p.total_participants, p.total_reviewed, p.reviewed_participants) == (2, 1, 1)
    assert p.roles == [("Head teacher", 1, 1)] and p.reviewed_roles == {"Head teacher": (1, 1)}
    assert p.authorities == [("LA-A", 1, 1), ("LA-B", 1, 1)]
    for seed in range(3):
        shuffled = codings.sample(frac=1, random_state=seed)
        assert build_summaries(codebook, units, shuffled, quotes_per_code=3) == summaries
