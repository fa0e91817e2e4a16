"""The quote bank on a real sample store with real decisions: verbatim quotes, diversity limits,
filters and code expressions, attributions and the k-anonymity flag; the CLI and the web page."""

from __future__ import annotations

import io
import json
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.report.attribution import AttributionFormat
from pipeline.report.errors import ReportError
from pipeline.report.expr import parse_expression
from pipeline.report.project import load_project
from pipeline.report.quotes import (
    CUT,
    MIN_WORDS,
    QuoteRequest,
    UnitVectors,
    _whole_brackets,
    find_quotes,
    k_notice,
    select_diverse,
    verify_quote,
)
from pipeline.report.render import render_quotes
from pipeline.report.summaries import SENTENCE_END, trim_length
from tests.reporting import DECIDED_CODES, decide_sample, store_codings

runner = CliRunner()


@pytest.fixture
def decided(project_store):
    decide_sample(project_store)
    return project_store


@pytest.fixture
def project(decided):
    return load_project(decided)


def ask(project, cache_dir=None, **options):
    vectors = UnitVectors(project, cache_dir) if cache_dir else None
    return find_quotes(project, QuoteRequest(**options), vectors)


# -- verbatim -------------------------------------------------------------------------------------


def test_every_quote_is_a_slice_of_the_stored_transcript(project, sample_transcripts, cache_dir):
    originals = {t.transcript_id: t.text for t in sample_transcripts[0]}
    assert project.texts == originals  # the store keeps the transcripts' own plain text
    seen = trimmed = 0
    for code in project.codebook.ids:
        result = ask(
            project, cache_dir, codes=(code,), include_suggestions=True, limit=8, max_chars=60
        )
        for q in result.quotes:
            source = originals[q.transcript_id]
            assert q.kept_text == source[q.start : q.kept_end]
            assert q.kept_text == source[q.start : q.end][: q.kept_end - q.start]
            assert q.text == q.kept_text + (CUT if q.trimmed else "")
            assert verify_quote(q, originals)
            assert len(q.kept_text) <= 60 or not q.trimmed
            if q.trimmed:
                trimmed += 1
                assert q.text.endswith(" [...]") and q.kept_end < q.end
                rest = source[q.kept_end : q.end]
                # Cut at a sentence end or between words, never inside a word.
                assert rest[:1].isspace() or rest[:1] in ",;:" or source[q.kept_end - 1] in ".!?"
            seen += 1
    assert seen > 100 and trimmed > 10


def test_quotes_stand_alone(project, cache_dir):
    """No fragment: every quote has MIN_WORDS words, short units are quoted with the
    neighbouring sentences of their turn, and no stage direction is cut in two."""
    units = project.units.set_index("unit_id")
    merged = 0
    for code in project.codebook.ids:
        result = ask(project, cache_dir, codes=(code,), include_suggestions=True, limit=8)
        for q in result.quotes:
            unit = units.loc[q.unit_id]
            assert q.start <= unit["start"] and unit["end"] <= q.end  # the unit is inside
            assert len(re.findall(r"[\w'’-]+", q.kept_text)) >= MIN_WORDS, q.text
            assert q.kept_text.count("[") == q.kept_text.count("]"), q.text
            if (q.start, q.end) != (unit["start"], unit["end"]):
                merged += 1
                turn = units[
                    (units["transcript_id"] == q.transcript_id)
                    & (units["turn_index"] == unit["turn_index"])
                ]
                assert turn["start"].min() <= q.start and q.end <= turn["end"].max()
    assert merged > 0


def test_stage_directions_are_kept_whole():
    text = "Well, we tried. [laughs] It did not work at all, honestly."
    cut = text.index("laughs]")
    assert _whole_brackets(text, cut, len(text)) == (text.index("["), len(text))
    assert _whole_brackets(text, 0, text.index("[") + 2) == (0, text.index("]") + 1)
    assert _whole_brackets(text, 0, len(text)) == (0, len(text))


def test_verify_quote_catches_text_that_is_not_the_source(project):
    q = ask(project, codes=("ts.trust",), limit=1).quotes[0]
    assert verify_quote(q, project.texts)
    q.text = q.text.replace(q.text[:3], q.text[:3].upper() + "x", 1)
    assert not verify_quote(q, project.texts)


def test_trimming_keeps_whole_sentences_when_they_fit():
    text = "First point here. Second point is longer and goes on. Third one never fits at all."
    assert text[: trim_length(text, 60)] == "First point here. Second point is longer and goes on."
    assert trim_length(text, 500) == len(text)
    kept = trim_length(text, 30)
    assert text[:kept] == "First point here." and SENTENCE_END.match(text, kept - 1)


# -- ranking and diversity -----------------------------------------------------------------------


def test_accepted_quotes_come_first_then_score(decided, project, cache_dir):
    result = ask(
        project,
        cache_dir,
        codes=("ts.trust",),
        include_suggestions=True,
        limit=12,
        per_participant=3,
    )
    flags = [q.accepted for q in result.quotes]
    assert flags == sorted(flags, reverse=True), "no suggestion before an accepted quote"
    assert True in flags and False in flags
    joined, _, _ = store_codings(decided)
    accepted_units = set(
        joined.loc[(joined["code_id"] == "ts.trust") & (joined["status"] == "accepted"), "unit_id"]
    )
    assert {q.unit_id for q in result.quotes if q.accepted} <= accepted_units
    # Without --include-suggestions only accepted codings are quoted.
    default = ask(project, cache_dir, codes=("ts.trust",), limit=50, per_participant=50)
    assert default.quotes and all(q.accepted for q in default.quotes)
    assert {q.unit_id for q in default.quotes} <= accepted_units
    assert default.matched_units == len(accepted_units)


def test_at_most_n_per_participant_and_never_the_same_passage(project, cache_dir):
    for per_participant in (1, 2):
        result = ask(
            project,
            cache_dir,
            codes=DECIDED_CODES,
            include_suggestions=True,
            limit=30,
            per_participant=per_participant,
        )
        units = project.units.set_index("unit_id")
        people = Counter(units.loc[q.unit_id, "person"] for q in result.quotes)
        assert max(people.values()) <= per_participant
        for i, a in enumerate(result.quotes):
            for b in result.quotes[i + 1 :]:
                if a.transcript_id != b.transcript_id:
                    continue
                assert a.end <= b.start or b.end <= a.start, "overlapping spans"
                ua, ub = units.loc[a.unit_id], units.loc[b.unit_id]
                if ua["turn_index"] == ub["turn_index"]:
                    assert abs(ua["position"] - ub["position"]) > 1, "neighbouring sentences"
    # Within accepted and within unreviewed quotes, nobody is quoted twice before everybody
    # quoted there has been quoted once.
    spread = ask(
        project,
        cache_dir,
        codes=DECIDED_CODES,
        include_suggestions=True,
        limit=30,
        per_participant=2,
    )
    for tier in (True, False):
        people = [units.loc[q.unit_id, "person"] for q in spread.quotes if q.accepted == tier]
        distinct = len(set(people))
        assert distinct > 1 and len(set(people[:distinct])) == distinct


def test_mmr_skips_same_passage_and_prefers_new_people():
    found = pd.DataFrame(
        {
            "unit_id": ["a", "b", "c", "d", "e"],
            "person": ["T1/P", "T1/P", "T1/P", "T2/P", "T3/P"],
            "transcript_id": ["T1", "T1", "T1", "T2", "T3"],
            "turn_index": [3, 3, 5, 1, 1],
            "position": [10, 11, 20, 4, 4],
            "start": [100, 150, 400, 0, 0],
            "end": [149, 190, 450, 40, 40],
            "score": [0.9, 0.89, 0.8, 0.5, 0.49],
            "accepted": [True, True, True, False, False],
        }
    )
    identity = np.eye(5)
    # b is the next sentence of a's turn: never both. Accepted c (a's person again) comes before
    # the unreviewed d and e, because accepted quotes are all considered first.
    assert select_diverse(found, identity, limit=5, per_participant=2) == [0, 2, 3, 4]
    # One per participant: c is left out too.
    assert select_diverse(found, identity, limit=5, per_participant=1) == [0, 3, 4]
    # d says the same as a, e something else: MMR takes e first.
    similar = np.eye(5)
    similar[0, 3] = similar[3, 0] = 0.95
    assert select_diverse(found, similar, limit=2, per_participant=1) == [0, 4]


def test_similarity_comes_from_cached_vectors_or_says_it_is_lexical(project, cache_dir, tmp_path):
    assert ask(project, cache_dir, codes=("ts.trust",)).diversity.startswith("embeddings")
    lexical = ask(project, tmp_path, codes=("ts.trust",)).diversity
    assert lexical.startswith("lexical") and "no embedding cache" in lexical


# -- filters and expressions ------------------------------------------------------------------


def test_attribute_filters(project, cache_dir):
    people = project.people
    teachers = ask(
        project,
        cache_dir,
        codes=DECIDED_CODES,
        include_suggestions=True,
        limit=20,
        per_participant=5,
        filters={"role": ("class TEACHER",)},
    )
    assert teachers.quotes
    persons = project.units.set_index("unit_id")["person"]
    assert {people.loc[persons[q.unit_id], "role"] for q in teachers.quotes} == {"Class teacher"}
    both_filters = ask(
        project,
        cache_dir,
        codes=DECIDED_CODES,
        include_suggestions=True,
        limit=20,
        per_participant=5,
        filters={"role": ("Class teacher",), "local_authority": ("LA-A",)},
    )
    assert both_filters.quotes
    for q in both_filters.quotes:
        person = people.loc[persons[q.unit_id]]
        assert (person["role"], person["local_authority"]) == ("Class teacher", "LA-A")
    assert both_filters.matched_units < teachers.matched_units
    with pytest.raises(ReportError, match=r"no participant has local_authority 'LA-Z'.*LA-A"):
        ask(project, codes=("ts.trust",), filters={"local_authority": ("LA-Z",)})
    with pytest.raises(ReportError, match="no attribute 'school'"):
        ask(project, codes=("ts.trust",), filters={"school": ("x",)})


def test_expressions_parse_with_precedence_and_name_their_errors():
    known = ["a", "b", "c", "ts.trust"]
    expr = parse_expression("a OR b and NOT c", known)
    assert str(expr) == "a OR (b AND NOT c)"
    assert expr.matches({"a"}) and expr.matches({"b"}) and not expr.matches({"b", "c"})
    grouped = parse_expression("(a OR b) AND NOT (c)", known)
    assert grouped.matches({"b"}) and not grouped.matches({"a", "c"}) and not grouped.matches(set())
    assert parse_expression("NOT NOT a", known).positive_codes == ["a"]
    for text, problem in [
        ("ts.trsut", "unknown code 'ts.trsut' (did you mean ts.trust?)"),
        ("a AND (b", "a '(' is never closed"),
        ("a AND", "ends too early"),
        ("a b", "unexpected 'b'"),
        ("a & b", "unexpected '&'"),
        ("", "is empty"),
    ]:
        with pytest.raises(ReportError, match=re.escape(problem)):
            parse_expression(text, known)


def test_expressions_select_the_units_the_store_says(decided, project, cache_dir):
    joined, _, _ = store_codings(decided)
    counted = joined[joined["status"].isin(["accepted", "suggested"])]
    codes = counted.groupby("unit_id")["code_id"].apply(set)
    cases = {
        "ts.trust AND NOT ts.trust_lacking": lambda s: (
            "ts.trust" in s and "ts.trust_lacking" not in s
        ),
        "ts.trust OR ts.time_pressure": lambda s: bool(s & {"ts.trust", "ts.time_pressure"}),
        "(ts.trust OR ts.trust_lacking) AND process.collaboration_sharing": lambda s: (
            bool(s & {"ts.trust", "ts.trust_lacking"}) and "process.collaboration_sharing" in s
        ),
    }
    for text, rule in cases.items():
        expected = {u for u, s in codes.items() if rule(s)}
        result = ask(
            project, cache_dir, expr=text, include_suggestions=True, limit=50, per_participant=50
        )
        assert result.matched_units == len(expected) > 0, text
        assert {q.unit_id for q in result.quotes} <= expected
    # --code values are any-of, and combine with --expr by AND.
    combined = ask(
        project,
        cache_dir,
        codes=("ts.trust", "ts.time_pressure"),
        expr="NOT ts.trust_lacking",
        include_suggestions=True,
        limit=50,
        per_participant=50,
    )
    rule = lambda s: bool(s & {"ts.trust", "ts.time_pressure"}) and "ts.trust_lacking" not in s  # noqa: E731
    assert combined.matched_units == sum(rule(s) for s in codes)
    with pytest.raises(ReportError, match="would match units with no code"):
        ask(project, expr="NOT ts.trust")
    with pytest.raises(ReportError, match="name a code"):
        ask(project)


# -- attributions and the k flag ------------------------------------------------------------------


def test_attribution_formats_use_attributes_only():
    fmt = AttributionFormat.parse("{role} – {local_authority} – {workstream}")
    assert fmt.render(
        {"role": "Class teacher", "local_authority": "LA-A", "workstream": "CLN"}
    ) == ("Class teacher – LA-A – CLN")
    assert fmt.render({"role": "Education Scotland officer", "workstream": "CLN"}) == (
        "Education Scotland officer – CLN"
    )
    assert fmt.render({}) == "Participant"
    school = AttributionFormat.parse("{role}, {school_type}")
    assert school.render({"role": "Head teacher", "school_type": "primary school"}) == (
        "Head teacher, primary school"
    )
    jinja = AttributionFormat.parse("{{ role }}{% if network %} ({{ network }}){% endif %}")
    assert jinja.fields == ("network", "role")
    assert jinja.render({"role": "QIO", "network": "IOC"}) == "QIO (IOC)"
    for bad, problem in [("{name} – {role}", "never names"), ("no fields", "shows no attribute")]:
        with pytest.raises(ReportError, match=problem):
            AttributionFormat.parse(bad)


def test_k_anonymity_flag_counts_participants_sharing_the_attribution(decided, project, cache_dir):
    _, units, _ = store_codings(decided)
    speakers = units[units["speaker_kind"] == "participant"].drop_duplicates(
        ["transcript_id", "speaker"]
    )
    per_role = speakers["role"].value_counts()
    assert per_role["Class teacher"] == 3 and per_role["Head teacher"] == 2
    request = dict(
        codes=DECIDED_CODES,
        include_suggestions=True,
        limit=40,
        per_participant=4,
        attribution_format="{role}",
    )
    for k in (2, 3, 4):
        result = ask(project, cache_dir, k=k, **request)
        assert {q.attribution for q in result.quotes} >= {"Class teacher", "Head teacher"}
        for q in result.quotes:
            assert q.group_size == per_role[q.attribution]
            assert q.identifiable == (per_role[q.attribution] < k)
            assert bool(q.flag) == q.identifiable
    # Role, authority and workstream together single out every participant of the sample.
    full = ask(project, cache_dir, codes=("ts.trust",), limit=5)
    assert full.quotes and all(q.identifiable and q.group_size == 1 for q in full.quotes)
    assert all("–" in q.attribution for q in full.quotes)


def test_every_format_carries_quotes_and_flags(project, cache_dir, tmp_path):
    import docx

    result = ask(project, cache_dir, codes=DECIDED_CODES, limit=10, attribution_format="{role}")
    flagged = [q for q in result.quotes if q.identifiable]
    assert flagged and len(flagged) < len(result.quotes), "some quotes flagged, some not"
    md = render_quotes(result, "md").decode()
    table = pd.read_csv(io.BytesIO(render_quotes(result, "csv")), encoding="utf-8-sig")
    body = json.loads(render_quotes(result, "json"))
    (tmp_path / "q.docx").write_bytes(render_quotes(result, "docx"))
    word = "\n".join(p.text for p in docx.Document(str(tmp_path / "q.docx")).paragraphs)
    assert "DRAFT - FOR HUMAN REVIEW" in md and "DRAFT - FOR HUMAN REVIEW" in word
    assert body["banner"] == "DRAFT - FOR HUMAN REVIEW"
    for i, q in enumerate(result.quotes):
        assert q.text in md and q.text in word
        row = table.iloc[i]
        assert (row["unit_id"], row["quote"], bool(row["k_flag"])) == (
            q.unit_id,
            q.text,
            q.identifiable,
        )
        assert body["quotes"][i]["quote"] == q.text
        assert body["quotes"][i]["k_flag"] == q.identifiable
    # One notice for the list, naming the flagged quotes by number; a mark on each of them.
    assert md.count("k-anonymity:") == word.count("k-anonymity:") == 1
    notice = k_notice(result.quotes)
    assert notice in md and notice in word
    numbers = [str(i) for i, q in enumerate(result.quotes, 1) if q.identifiable]
    assert all(n in notice.split(" may ")[0] for n in numbers)
    assert all(str(q.group_size) in notice for q in flagged)
    assert set(table["draft"]) == {"DRAFT - FOR HUMAN REVIEW"}  # CSVs say so too


# -- the command and the page ---------------------------------------------------------------------


def test_quotes_command(decided, cache_dir, tmp_path):
    base = ["quotes", "--store", str(decided), "--cache-dir", str(cache_dir)]
    result = runner.invoke(
        app,
        [*base, "--expr", "ts.trust AND NOT ts.trust_lacking", "--format", "json", "--limit", "3"],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["query"] == "ts.trust AND NOT ts.trust_lacking" and len(body["quotes"]) == 3
    out = tmp_path / "trust.docx"
    written = runner.invoke(
        app,
        [
            *base,
            "--code",
            "ts.trust",
            "--role",
            "Head teacher",
            "--format",
            "docx",
            "--out",
            str(out),
        ],
    )
    assert written.exit_code == 0 and out.stat().st_size > 0
    for args, message in [
        (["--code", "ts.trsut"], "did you mean ts.trust?"),
        (["--code", "ts.trust", "--format", "docx"], "needs a file to write"),
        (["--code", "ts.trust", "--format", "pdf"], "is not one of md, docx, csv, json"),
        (["--code", "ts.trust", "--authority", "LA-Q"], "no participant has local_authority"),
    ]:
        failed = runner.invoke(app, [*base, *args])
        assert failed.exit_code == 2 and message in failed.output, failed.output
        assert "Traceback" not in failed.output
    missing = runner.invoke(
        app, ["quotes", "--store", str(tmp_path / "none.sqlite"), "--code", "ts.trust"]
    )
    assert missing.exit_code == 2 and "no project store here" in missing.output


def test_quotes_page(decided):
    from pathlib import Path

    from tests.test_review_web import client_for

    client = client_for(decided)
    page = client.get("/")
    assert 'href="/quotes"' in page.text
    empty = client.get("/quotes")
    assert empty.status_code == 200 and 'id="quote-form"' in empty.text
    shown = client.get("/quotes", params={"code": "ts.trust", "limit": "3"})
    assert shown.status_code == 200
    project = load_project(decided)
    vectors = UnitVectors(project, Path.cwd() / ".cache")  # what the page uses
    expected = find_quotes(project, QuoteRequest(codes=("ts.trust",), limit=3), vectors)
    assert expected.quotes
    for q in expected.quotes:
        assert f'data-unit="{q.unit_id}"' in shown.text
    assert shown.headers["Content-Security-Policy"].startswith("default-src 'none'")
    bad = client.get("/quotes", params={"expr": "ts.trust AND ("})
    assert bad.status_code == 400 and "the expression ends too early" in bad.text
    # Blind coding: a reviewer with no decisions of their own has no accepted quotes.
    blind = client_for(decided, reviewer="Cleo", blind=True)
    none = blind.get("/quotes", params={"code": "ts.trust"})
    assert none.status_code == 200 and "No unit matches this query." in none.text
    theirs = client_for(decided, reviewer="ann", blind=True).get(
        "/quotes", params={"code": "ts.trust", "limit": "3"}
    )
    assert all(f'data-unit="{q.unit_id}"' in theirs.text for q in expected.quotes)


def test_quotes_page_reads_vectors_from_the_runs_cache(decided, cache_dir, tmp_path):
    """``qcode review --cache-dir``: the page ranks by the run's vectors, not word overlap."""
    from tests.test_review_web import client_for

    params = {"code": "ts.trust", "limit": "3"}
    cached = client_for(decided, cache_dir=cache_dir).get("/quotes", params=params)
    assert "Diversity by embeddings (" in cached.text
    elsewhere = client_for(decided, cache_dir=tmp_path).get("/quotes", params=params)
    assert "Diversity by lexical (TF-IDF word overlap): no embedding cache" in elsewhere.text
