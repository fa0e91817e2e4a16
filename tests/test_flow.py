"""End to end: the real Prefect flow, the real model and spaCy, on the bundled sample."""

from __future__ import annotations

import html
import json
import re
import shutil

import pandas as pd
import pytest

from pipeline.assign import DECISION_DECIMALS
from pipeline.settings import Settings
from tests.conftest import CODEBOOK, SAMPLE, write

pytestmark = pytest.mark.slow


def saved_texts(run_dir):
    return {p.stem: p.read_text(encoding="utf-8") for p in (run_dir / "transcripts").glob("*.txt")}


def test_run_writes_every_output(sample_run):
    names = {p.name for p in sample_run.iterdir()}
    assert {
        "units.csv",
        "units.parquet",
        "suggestions.csv",
        "suggestions.parquet",
        "manifest.json",
        "summaries",
        "transcripts",
    } <= names
    manifest = json.loads((sample_run / "manifest.json").read_text())
    assert manifest["counts"]["transcripts"] == 8 and manifest["counts"]["skipped"] == 0
    assert all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    layouts = {i["transcript_id"]: i["layout"] for i in manifest["inputs"]}
    assert layouts["WP-05"] == "vtt" and layouts["WP-01"] == "paragraphs"
    assert len(manifest["codebook"]["sha256"]) == 64
    assert manifest["model"]["fingerprint"]
    assert manifest["settings"]["threshold"] == Settings().threshold
    assert set(manifest["timings_s"]) == {"ingest", "privacy", "segment", "embed", "assign"}
    assert any("local_authority" in w for w in manifest["warnings"])


def test_every_csv_of_a_run_says_draft_on_every_row(sample_run):
    """A run's CSVs end with a ``draft`` column (as reports' CSVs do), on every row; the
    Parquet copies, which a later run reads back, keep their own columns only."""
    from pipeline.report.summaries import DRAFT_BANNER

    csvs = sorted(sample_run.glob("*.csv"))
    assert {"units.csv", "suggestions.csv", "codings.csv"} <= {p.name for p in csvs}
    for path in csvs:
        table = pd.read_csv(path, keep_default_na=False)
        assert table.columns[-1] == "draft", path.name
        assert (table["draft"] == DRAFT_BANNER).all(), path.name
        parquet = path.with_suffix(".parquet")
        if parquet.exists():
            data = pd.read_parquet(parquet)
            assert "draft" not in data.columns
            assert list(table.columns[:-1]) == list(data.columns)
            assert len(table) == len(data)


def test_unit_offsets_point_at_the_exact_text(sample_run):
    units = pd.read_parquet(sample_run / "units.parquet")
    texts = saved_texts(sample_run)
    assert len(units) > 1500
    for row in units.itertuples():
        assert texts[row.transcript_id][row.start : row.end] == row.text
    csv_units = pd.read_csv(sample_run / "units.csv", keep_default_na=False)
    assert csv_units["text"].tolist() == units["text"].tolist()


def test_suggestions_are_well_formed(sample_run, codebook):
    units = pd.read_parquet(sample_run / "units.parquet").set_index("unit_id")
    suggestions = pd.read_parquet(sample_run / "suggestions.parquet")
    assert len(suggestions) > 300
    assert set(suggestions["code_id"]) <= set(codebook.ids)
    assert units.loc[suggestions["unit_id"], "codable"].all()
    assert (units.loc[suggestions["unit_id"], "speaker_kind"] == "participant").all()
    # Codes are decided on scores rounded to DECISION_DECIMALS (stable against float noise), so a
    # stored score may sit below the threshold by less than that rounding.
    decided = suggestions["score"].round(DECISION_DECIMALS)
    assert (decided >= Settings().threshold).all() and (suggestions["rank"] <= 3).all()
    assert (suggestions["margin"] >= 0).all()
    assert not suggestions.duplicated(["unit_id", "code_id"]).any()
    # Uncoded units exist: not every sentence is about the frame.
    assert suggestions["unit_id"].nunique() < units["codable"].sum()


def test_summaries_quote_the_source_exactly(sample_run, codebook):
    summaries = sample_run / "summaries"
    texts = saved_texts(sample_run)
    quotes = 0
    for code in codebook.ids:
        page = (summaries / f"{code}.html").read_text()
        md = (summaries / f"{code}.md").read_text()
        assert "DRAFT - FOR HUMAN REVIEW" in page and "DRAFT - FOR HUMAN REVIEW" in md
        for tid, start, end, body in re.findall(
            r'data-transcript="([^"]+)" data-start="(\d+)" data-end="(\d+)">\s*<p>(.*?)</p>',
            page,
            re.S,
        ):
            quote = html.unescape(body).removesuffix(" [...]")
            assert texts[tid][int(start) : int(end)].startswith(quote)
            quotes += 1
    assert quotes > 50
    index = (summaries / "index.md").read_text()
    assert all(code in index for code in codebook.ids)


def test_outputs_carry_no_raw_speaker_labels(sample_run):
    # The .vtt's voice tags are 'Evaluator (University)' and 'WP-05 participant'.
    for path in sample_run.rglob("*"):
        if path.suffix in {".csv", ".md", ".html", ".txt", ".json"}:
            text = path.read_text(encoding="utf-8")
            assert "Evaluator (University)" not in text, path
            assert "WP-05 participant" not in text, path


def test_rerun_is_deterministic_and_uses_the_cache(sample_run, tmp_path):
    from flows.coding import code_transcripts

    manifest = json.loads((sample_run / "manifest.json").read_text())
    settings = Settings(cache_dir=manifest["settings"]["cache_dir"])
    again = code_transcripts(SAMPLE, CODEBOOK, tmp_path, settings)
    assert json.loads((again / "manifest.json").read_text())["counts"]["newly_embedded"] == 0
    first = pd.read_parquet(sample_run / "suggestions.parquet")
    second = pd.read_parquet(again / "suggestions.parquet")
    pd.testing.assert_frame_equal(first, second)


def test_bad_transcript_is_skipped_and_reported(prefect_harness, tmp_path, cache_dir):
    from flows.coding import code_transcripts
    from pipeline.settings import Settings

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE / "wp01_head_teacher.md", folder)
    write(folder / "broken.md", "---\nrole: [oops\n---\nInterviewer: hi\n")
    run_dir = code_transcripts(
        folder, CODEBOOK, tmp_path / "out", Settings(cache_dir=cache_dir, unit="window")
    )
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["counts"]["transcripts"] == 1
    assert any("broken.md, line 2" in s and "not valid YAML" in s for s in manifest["skipped"])
    assert "broken.md" in (run_dir / "summaries" / "index.md").read_text()


def test_run_records_into_postgresql(prefect_harness, pg_cluster, tmp_path, cache_dir):
    """``qcode run --store postgresql://...``: the run is recorded in the database, an
    unchanged re-run reuses it (the store's state is read from PostgreSQL), and a decision made
    meanwhile makes the next run new and survives it."""
    from flows.coding import code_transcripts
    from pipeline.store import NewDecision, Store
    from tests.conftest import new_database

    url = new_database(pg_cluster)
    settings = Settings(cache_dir=cache_dir, store=url)
    first = code_transcripts(SAMPLE, CODEBOOK, tmp_path / "out", settings)
    manifest = json.loads((first / "manifest.json").read_text())
    assert not (tmp_path / "out" / "project.sqlite").exists()
    with Store(url) as store:
        assert store.latest_run_id() == manifest["run_id"] == first.name
        units = store.units()
        assert int(units["codable"].sum()) == manifest["counts"]["codable_units"]
        unit_id = store.suggestions()["unit_id"].iloc[0]
        code_id = store.suggestions()["code_id"].iloc[0]
    assert code_transcripts(SAMPLE, CODEBOOK, tmp_path / "out", settings) == first  # reused
    with Store(url) as store:
        store.decide("Rae", [NewDecision(unit_id, code_id, "reject")])
    third = code_transcripts(SAMPLE, CODEBOOK, tmp_path / "out", settings)
    assert third != first
    with Store(url) as store:
        assert store.latest_run_id() == third.name
        resolved = store.resolved_decisions()
        assert resolved.loc[resolved["reviewer"] == "Rae", "unit_id"].tolist() == [unit_id]
