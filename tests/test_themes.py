"""Theme reports on a real sample store with real decisions: counts equal the store's, prose
traceable to its evidence, Markdown/HTML/DOCX with banner, manifest and charts, the DOCX opened
by LibreOffice, user templates, the command and the Prefect flow."""

from __future__ import annotations

import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.decisions import unit_review_state
from pipeline.report.batch import build_report, draft_reports
from pipeline.report.project import load_project
from pipeline.report.quotes import k_notice, verify_quote
from pipeline.report.render import write_theme_report
from pipeline.settings import Settings
from pipeline.store import Store
from tests.reporting import DECIDED_CODES, decide_sample, squash, store_codings

runner = CliRunner()
BANNER = "DRAFT - FOR HUMAN REVIEW"


@pytest.fixture(scope="module")
def decided(_sample_project_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("themes") / "project.sqlite"
    shutil.copy(_sample_project_template, path)
    decide_sample(path)
    return path


@pytest.fixture(scope="module")
def settings(cache_dir):
    return Settings(cache_dir=cache_dir)


@pytest.fixture(scope="module")
def accepted_report(decided, settings):
    return build_report(load_project(decided), settings)


@pytest.fixture(scope="module")
def written(accepted_report, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    write_theme_report(accepted_report, out)
    return out


def test_report_counts_equal_the_store_counts(decided, settings, accepted_report):
    joined, units, _ = store_codings(decided)
    everybody = units[units["speaker_kind"] == "participant"]
    with Store(decided) as store:
        state = unit_review_state(
            store.units(), store.suggestions(), store.resolved_decisions()
        )  # the one definition of "reviewed" (every suggested code decided)
    accepted_units = set(joined.loc[joined["status"] == "accepted", "unit_id"])
    decided_units = set(state.loc[state["reviewed"], "unit_id"]) | accepted_units
    # Denominators: participants whose units were reviewed (all of them with suggestions).
    reviewed = everybody[
        everybody.set_index(["transcript_id", "speaker"]).index.isin(
            everybody[everybody["unit_id"].isin(decided_units)]
            .set_index(["transcript_id", "speaker"])
            .index
        )
    ]
    with_suggestions = build_report(load_project(decided), settings, include_suggestions=True)
    for report, statuses, people in (
        (accepted_report, {"accepted"}, reviewed),
        (with_suggestions, None, everybody),
    ):
        total_people = len(people.drop_duplicates(["transcript_id", "speaker"]))
        counted = joined[joined["status"].isin(statuses or {"accepted", "suggested"})]
        for theme in report.codes:
            mine = counted[counted["code_id"] == theme.code.id]
            accepted = mine[mine["status"] == "accepted"]
            assert theme.units == mine["unit_id"].nunique(), theme.code.id
            assert theme.accepted_units == accepted["unit_id"].nunique(), theme.code.id
            assert theme.suggested_units == (0 if statuses else theme.units - theme.accepted_units)
            assert theme.participants == mine["person"].nunique()
            assert theme.interviews == mine["transcript_id"].nunique()
            assert theme.total_participants == total_people
            assert {r.value for r in theme.matrix["Role"]} == set(
                people["role"].replace("", "not stated")
            )
            for row in theme.matrix["Role"]:
                assert row.participants == mine.loc[mine["role"] == row.value, "person"].nunique()
                assert (
                    row.total
                    == (
                        people[people["role"] == row.value]
                        .drop_duplicates(["transcript_id", "speaker"])
                        .shape[0]
                    )
                )
    decided_codes = {t.code.id: t for t in accepted_report.codes}
    for code in DECIDED_CODES:  # 12 accepted each (plus one added ts.trust), 3 rejected
        assert decided_codes[code].units == (13 if code == "ts.trust" else 12)
    assert all(t.units == 0 for t in accepted_report.codes if t.code.id not in DECIDED_CODES)
    review = accepted_report.review
    assert review["accepted_codings"] == int((joined["status"] == "accepted").sum()) == 73
    assert review["rejected_codings"] == 18


def test_group_tables_set_enablers_against_inhibitors(accepted_report, decided):
    joined, _, _ = store_codings(decided)
    accepted = joined[joined["status"] == "accepted"]
    groups = {g.group.id: g for g in accepted_report.groups}
    assert set(groups) == {"structure", "purpose", "process", "four_ts"}
    four_ts = groups["four_ts"]
    assert all(t.code.kind == "enabler" for t in four_ts.enablers)
    assert all(t.code.kind == "inhibitor" for t in four_ts.inhibitors)
    enablers = {t.code.id for t in four_ts.enablers}
    assert four_ts.enabler_participants == (
        accepted.loc[accepted["code_id"].isin(enablers), "person"].nunique()
    )


def test_every_sentence_of_prose_names_its_evidence(accepted_report, written, tmp_path):
    import docx

    report = accepted_report
    claims = report.claims
    assert len(claims) > 40 and len({c.ref for c in claims}) == len(claims)
    for theme in report.codes:
        for claim in theme.claims:
            assert set(claim.evidence) <= set(theme.unit_ids)
        if theme.units:
            assert theme.claims[0].evidence == theme.unit_ids
    assert all(set(c.evidence) <= set(report.evidence) for c in claims)
    html = (written / "theme_report.html").read_text(encoding="utf-8")
    spans = dict(re.findall(r'<span class="claim" id="(claim-\d+)" data-units="([^"]*)">', html))
    assert spans == {c.ref: " ".join(c.evidence) for c in claims}
    for unit in report.evidence:
        assert f'id="unit-{unit}"' in html
    md = (written / "theme_report.md").read_text(encoding="utf-8")
    for claim in claims:
        assert f"{claim.text}[^{claim.ref}]" in md
        note = re.search(rf"^\[\^{claim.ref}\]: (.*)$", md, re.M).group(1)
        assert all(u in note for u in claim.evidence)
    document = docx.Document(str(written / "theme_report.docx"))
    comments = list(document.comments)
    assert len(comments) == len(claims)
    by_ref = {re.search(r"\((claim-\d+)\)", c.text).group(1): c.text for c in comments}
    for claim in claims:
        assert all(u in by_ref[claim.ref] for u in claim.evidence)


def test_report_files_carry_banner_manifest_quotes_and_charts(accepted_report, written):
    import docx

    report = accepted_report
    html = (written / "theme_report.html").read_text(encoding="utf-8")
    md = (written / "theme_report.md").read_text(encoding="utf-8")
    document = docx.Document(str(written / "theme_report.docx"))
    word = "\n".join(p.text for p in document.paragraphs)
    cells = "\n".join(c.text for t in document.tables for r in t.rows for c in r.cells)
    manifest = report.run_manifest
    facts = dict(report.facts)
    for text in (
        BANNER,
        manifest["model"]["name"],
        manifest["codebook"]["sha256"],
        f"threshold {manifest['settings']['threshold']}",
        f"{report.review['share_reviewed']:.0%} of codable units",
    ):
        assert text in md and text in unescape(html) and text in word + cells, text
    assert "reviewer-accepted codings only" in facts["Drafted from"]
    quotes = [q for t in report.codes if t.quotes for q in t.quotes.quotes]
    assert len(quotes) >= 25 and all(q.accepted for q in quotes)
    for q in quotes:
        assert q.text in md and str(escape_html(q.text)) in html and q.text in word
    flagged = sum(q.identifiable for q in quotes)
    # One k-anonymity notice per code section that needs one, naming its quotes by number;
    # each flagged quote carries only a mark.
    sections = [t.quotes.quotes for t in report.codes if t.quotes and k_notice(t.quotes.quotes)]
    assert flagged and sections and len(sections) < flagged
    assert md.count("k-anonymity:") == len(sections) == word.count("k-anonymity:")
    assert unescape(html).count("k-anonymity:") == len(sections)
    assert html.count('data-k-flag="1"') == flagged
    for quotes_of_section in sections:
        notice = k_notice(quotes_of_section)
        numbers = [str(i) for i, q in enumerate(quotes_of_section, 1) if q.identifiable]
        assert notice in md and notice in word and all(n in notice for n in numbers)
    charts = html.count('src="data:image/png;base64,')
    assert charts == 1 + 2 * len(report.groups) == len(document.inline_shapes)
    assert len(list((written / "charts").glob("*.png"))) == charts
    for group in report.groups:
        assert f"charts/{group.group.id}-heatmap.png" in md


def escape_html(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


@pytest.mark.required
def test_docx_opens_in_libreoffice_with_banner_and_every_quote(accepted_report, written, tmp_path):
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        pytest.skip(
            "LibreOffice is not installed (Debian: apt-get install libreoffice-writer-nogui)"
        )
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("pdftotext is not installed (Debian: apt-get install poppler-utils)")
    profile = tmp_path / "lo-profile"  # its own profile: never clashes with a running office
    subprocess.run(
        [
            soffice,
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(tmp_path),
            str(written / "theme_report.docx"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    pdf = tmp_path / "theme_report.pdf"
    assert pdf.stat().st_size > 10_000
    text = subprocess.run(
        [pdftotext, "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert BANNER in text
    flat = squash(text)
    quotes = [q for t in accepted_report.codes if t.quotes for q in t.quotes.quotes]
    assert quotes
    for q in quotes:
        assert squash(q.text) in flat, q.text
        assert squash(q.attribution) in flat


def test_suggestions_only_when_asked_and_then_marked(decided, settings, tmp_path):
    project = load_project(decided)
    plain = build_report(project, settings)
    mixed = build_report(project, settings, include_suggestions=True)
    write_theme_report(mixed, tmp_path, ("md", "html"))
    md = (tmp_path / "theme_report.md").read_text(encoding="utf-8")
    html = (tmp_path / "theme_report.html").read_text(encoding="utf-8")
    suggested = [q for t in mixed.codes if t.quotes for q in t.quotes.quotes if not q.accepted]
    assert suggested and all(q.accepted for t in plain.codes if t.quotes for q in t.quotes.quotes)
    assert "unreviewed machine suggestions" in md.splitlines()[0]
    for q in suggested:
        assert f"unit `{q.unit_id}`, characters {q.start}-{q.kept_end}, unreviewed machine" in md
        assert f'<blockquote class="suggested" data-unit="{q.unit_id}"' in html
        assert verify_quote(q, project.texts)
    assert sum(t.units for t in mixed.codes) > sum(t.units for t in plain.codes)


def test_user_templates_override_any_report_template(decided, settings, tmp_path):
    own = tmp_path / "templates"
    own.mkdir()
    (own / "theme_report.md.j2").write_text(
        "OURS {{ banner }}\n{% for t in r.codes if t.units %}{{ t.code.id }}={{ t.units }}\n"
        "{% endfor %}"
    )
    custom = Settings(cache_dir=settings.cache_dir, template_dir=own)
    written = draft_reports(decided, tmp_path / "out", ("md", "html"), settings=custom)
    md = (tmp_path / "out" / "theme_report.md").read_text()
    assert md.startswith(f"OURS {BANNER}") and "ts.trust=13" in md
    assert BANNER in (tmp_path / "out" / "theme_report.html").read_text()  # ours, as fallback
    assert (tmp_path / "out" / "quote_bank.csv") in written.paths
    assert not (tmp_path / "out" / "theme_report.docx").exists()


def test_report_command(decided, project_store, cache_dir, tmp_path):
    out = tmp_path / "reports"
    base = ["report", "--store", str(decided), "--cache-dir", str(cache_dir), "--out", str(out)]
    result = runner.invoke(app, [*base, "--format", "md,docx", "--k", "2"])
    assert result.exit_code == 0, result.output
    assert (out / "theme_report.md").exists() and (out / "theme_report.docx").exists()
    assert not (out / "theme_report.html").exists()
    assert "fewer than 2 participants" in (out / "theme_report.md").read_text()
    for args, message in [
        (["--format", "pdf"], "is not one of md, html, docx"),
        (["--template-dir", str(tmp_path / "nowhere")], "template folder does not exist"),
        (["--attribution-format", "{name}"], "never names"),
    ]:
        failed = runner.invoke(app, [*base, *args])
        assert failed.exit_code == 2 and message in failed.output, failed.output
    undecided = runner.invoke(
        app,
        [
            "report",
            "--store",
            str(project_store),
            "--out",
            str(tmp_path / "u"),
            "--format",
            "md",
            "--cache-dir",
            str(cache_dir),
        ],
    )
    assert undecided.exit_code == 0 and "no reviewer has accepted a coding yet" in undecided.output
    missing = runner.invoke(app, ["report", "--store", str(tmp_path / "x.sqlite")])
    assert missing.exit_code == 2 and "no project store here" in missing.output


@pytest.mark.slow
def test_report_flow_renders_every_format(prefect_harness, decided, settings, tmp_path):
    from flows.reports import draft_reports_flow

    written = draft_reports_flow(decided, tmp_path / "drafts", settings=settings)
    names = {Path(p).name for p in written}
    assert {"theme_report.md", "theme_report.html", "theme_report.docx", "quote_bank.csv"} <= names
    html = (tmp_path / "drafts" / "theme_report.html").read_text(encoding="utf-8")
    assert BANNER in html and 'data-code="ts.trust" data-units="13"' in html


def test_docx_is_a4_with_readable_tables_and_charts(accepted_report, written):
    """A4 pages; tables in 9 pt with the code column wide enough for any code id on one line;
    charts placed so that their numbers are 8 pt or more on the page."""
    import docx
    from docx.shared import Pt

    from pipeline.report.charts import HEATMAP_NUMBER_PT
    from pipeline.report.render import CHART_DPI, TABLE_FONT_PT

    document = docx.Document(str(written / "theme_report.docx"))
    for section in document.sections:
        assert round(section.page_width.cm, 1) == 21.0 and round(section.page_height.cm, 1) == 29.7
    sizes = {
        run.font.size
        for table in document.tables
        for row in table.rows
        for cell in row.cells
        for paragraph in cell.paragraphs
        for run in paragraph.runs
    }
    assert sizes == {Pt(TABLE_FONT_PT)}
    longest = max(len(theme.code.id) for theme in accepted_report.codes)
    code_tables = [t for t in document.tables if t.rows[0].cells[0].text == "Code"]
    assert code_tables
    for table in code_tables:
        # A character of a 9 pt proportional font is at most ~0.6 em wide on average.
        assert table.rows[1].cells[0].width >= Pt(longest * TABLE_FONT_PT * 0.6)
    assert document.inline_shapes
    for shape in document.inline_shapes:
        blob = shape._inline.graphic.graphicData.pic.blipFill.blip.embed
        png = document.part.related_parts[blob].blob
        native = int.from_bytes(png[16:20], "big") / CHART_DPI  # inches
        scale = shape.width.inches / native
        assert HEATMAP_NUMBER_PT * scale >= 8, (native, shape.width.inches)
