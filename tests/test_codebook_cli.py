"""The codebook and survey commands as people type them: import-codebook, a spreadsheet given
as a codebook, code-segments with --set and a question column, eval with a predictions file."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import CODEBOOK, run_qcode, write

PANDEMIC = "Lockdown moved everything online overnight when schools closed."
TRUST = "Honestly, the trust in the group let us admit what went wrong."


def invoke(*args: str):
    """In-process (the model loads in seconds here, not in a new Python each time)."""
    result = CliRunner().invoke(app, list(args))
    result.returncode = result.exit_code
    return result


qcode = run_qcode  # a real process: what a person sees, tracebacks included


def test_import_codebook_command_writes_yaml_and_reports_bad_rows(tmp_path):
    sheet = write(
        tmp_path / "codes.csv",
        "id,label,definition,examples\nstaff,Staff,Comments about staff.,Kind nurses;Rude porter\n",
    )
    out = tmp_path / "codes.yaml"
    result = qcode("import-codebook", str(sheet), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"Wrote {out}: 1 codes in 1 groups" in result.stdout
    assert qcode("validate-codebook", str(out)).returncode == 0
    bad = write(tmp_path / "bad.csv", "id,label,definition\nstaff,Staff,\n")
    result = qcode("import-codebook", str(bad), "--out", str(tmp_path / "bad.yaml"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"[E200] {bad}, line 2: row 2 (code 'staff'): 'definition' is empty" in result.stderr


def test_a_spreadsheet_given_as_codebook_points_at_import_codebook(tmp_path):
    sheet = write(tmp_path / "codes.csv", "id,label,definition\nstaff,Staff,About staff.\n")
    answers = write(tmp_path / "answers.csv", f'segment_id,text\ns1,"{TRUST}"\n')
    result = invoke(
        "code-segments", str(answers), "--codebook", str(sheet), "--out", str(tmp_path / "o.csv")
    )
    assert result.returncode == 2 and "Traceback" not in result.output
    assert "qcode import-codebook codes.csv --out codes.yaml" in result.output


def test_code_segments_scopes_codes_by_a_question_column_and_takes_set(tmp_path):
    scoped = CODEBOOK.read_text().replace(
        "  - id: context.pandemic\n",
        "  - id: context.pandemic\n    applies_to: {question: [Q2]}\n",
    )
    assert scoped != CODEBOOK.read_text()
    book = write(tmp_path / "scoped.yaml", scoped)
    answers = write(
        tmp_path / "answers.csv",
        f'segment_id,question,text\na1,Q1,{PANDEMIC}\na2,Q2,{PANDEMIC}\na3,Q1,"{TRUST}"\n',
    )
    out = tmp_path / "coded.csv"
    args = ["code-segments", str(answers), "--codebook", str(book), "--out", str(out)]
    result = invoke(*args, "--set", "top_k=1", "--set", "threshold=0.2")
    assert result.returncode == 0, result.output
    coded = pd.read_csv(out)
    codes = coded.groupby("segment_id")["code"].apply(list).to_dict()
    assert codes["a2"] == ["context.pandemic"]  # top_k=1 from --set
    assert "context.pandemic" not in codes.get("a1", [])  # out of scope for Q1
    assert len(codes.get("a1", [])) <= 1
    # Without the question column the scoped code is never suggested, and a warning says so.
    plain = write(tmp_path / "plain.csv", f"segment_id,text\na2,{PANDEMIC}\n")
    result = invoke("code-segments", str(plain), "--codebook", str(book), "--out", str(out))
    assert result.returncode == 0 and "no 'question' column" in result.output
    assert "context.pandemic" not in set(pd.read_csv(out)["code"])
    bad = invoke(*args, "--set", "top_k=many")
    assert bad.returncode == 2 and "top_k" in bad.output and "Traceback" not in bad.output


def test_code_texts_never_suggests_an_out_of_scope_code(encoder, embedding_cache):
    from pipeline.assign import code_texts
    from pipeline.codebook import parse_codebook
    from pipeline.settings import Settings

    scoped = parse_codebook(
        CODEBOOK.read_text().replace(
            "  - id: context.pandemic\n", "  - id: context.pandemic\n    applies_to: {q: [b]}\n"
        )
    )
    settings = Settings(  # suggest every code (free-standing texts use answer_threshold)
        threshold=-1.0, answer_threshold=-1.0, top_k=29, relative_cutoff=2.0
    )
    texts, ids = [PANDEMIC, PANDEMIC], ["x", "y"]
    coded = code_texts(
        texts, ids, scoped, encoder, settings, embedding_cache, attributes=[{"q": "a"}, {"q": "b"}]
    )
    per_unit = coded.groupby("segment_id")["code"].apply(set).to_dict()
    assert "context.pandemic" not in per_unit["x"] and "context.pandemic" in per_unit["y"]
    assert len(per_unit["x"]) == 28 and len(per_unit["y"]) == 29
    unscoped = code_texts(texts, ids, scoped, encoder, settings, embedding_cache)
    assert "context.pandemic" in set(unscoped.loc[unscoped["segment_id"] == "x", "code"])


def test_eval_takes_gold_without_text_and_lists_unknown_predicted_codes(tmp_path):
    gold = write(tmp_path / "gold.csv", "segment_id,codes\ns1,ts.trust\ns2,context.pandemic\ns3,\n")
    pred = write(
        tmp_path / "pred.csv",
        "segment_id,code\ns1,ts.trust\ns2,context.pandemics\ns3,context.pandemics\ns3,ts.tyme\n",
    )
    out = tmp_path / "metrics.json"
    result = invoke(
        "eval",
        "--gold",
        str(gold),
        "--pred",
        str(pred),
        "--codebook",
        str(CODEBOOK),
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.output
    assert "context.pandemics (2 rows), ts.tyme (1 rows)" in result.output
    metrics = json.loads(out.read_text())
    assert metrics["unknown_predicted_codes"] == {"context.pandemics": 2, "ts.tyme": 1}
    # 1 right, 3 wrong predictions (the unknown codes), 1 missed: micro-F1 = 2/(2+3+1).
    assert abs(metrics["micro_f1"] - 2 / 6) < 1e-4
    # Without --pred the gold texts are coded now, so the text column is needed.
    result = invoke("eval", "--gold", str(gold), "--codebook", str(CODEBOOK))
    assert result.returncode == 2 and "missing column(s) text" in result.output


def test_a_codebook_without_kinds_or_groups_codes_reports_and_reviews(
    tmp_path, nlp, encoder, embedding_cache, cache_dir, sample_transcripts
):
    """kind and group are optional: a run, the theme report and the review page work without."""
    import re

    from fastapi.testclient import TestClient

    from pipeline.codebook import parse_codebook
    from pipeline.report.batch import build_report
    from pipeline.report.project import load_project
    from pipeline.report.render import write_theme_report
    from pipeline.review import create_app
    from pipeline.settings import Settings
    from tests.conftest import record_real_run

    text = re.sub(r"\n    (kind|group): \w+", "", CODEBOOK.read_text())
    text = re.sub(r"\ngroups:\n(  .*\n|    .*\n)+", "\n", text)
    text = re.sub(r"\nkinds:\n(  .*\n)+", "\n", text)
    book = parse_codebook(text)
    assert [g.id for g in book.groups] == ["codes"] and {c.kind for c in book.codes} == {None}
    transcripts, problems = sample_transcripts
    store = record_real_run(
        tmp_path / "project.sqlite", transcripts, problems, nlp, encoder, book, embedding_cache
    )
    report = build_report(load_project(store), Settings(cache_dir=cache_dir), True)
    written = write_theme_report(report, tmp_path / "reports")
    markdown = next(p for p in written if p.suffix == ".md").read_text()
    assert "Trust" in markdown and "None" not in markdown
    client = TestClient(create_app(store), base_url="http://127.0.0.1")
    page = client.get("/reviewer")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    client.post("/reviewer", data={"csrf": csrf, "name": "Ann", "next": "/"})
    queue = client.get("/")
    unit = re.search(r'href="/unit/([^"?]+)', queue.text).group(1)
    html = client.get(f"/unit/{unit}").text
    assert "· None" not in html and 'class="kind">None' not in html and "codes" in html
