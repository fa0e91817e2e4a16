"""The CLI end to end: real processes for the commands people type."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import CODEBOOK, ROOT, run_qcode, write

runner = CliRunner()


qcode = run_qcode


def test_every_command_has_help():
    for command in ("run", "validate-codebook", "code-segments", "eval"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage" in result.output


def test_validate_codebook_ok():
    result = runner.invoke(app, ["validate-codebook", str(CODEBOOK)])
    assert result.exit_code == 0 and "29 codes" in result.output


def test_validate_codebook_error_is_a_message_not_a_traceback(tmp_path):
    bad = write(
        tmp_path / "bad.yaml",
        CODEBOOK.read_text().replace("id: ts.time_pressure", "id: ts.time", 1),
    )
    result = qcode("validate-codebook", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "ts.time" in result.stderr and "defined twice" in result.stderr
    assert f"{bad}, line " in result.stderr


def test_code_segments_writes_one_row_per_code(tmp_path):
    answers = write(
        tmp_path / "survey.csv",
        (
            "segment_id,text\n"
            's1,"Honestly, the trust in the group let us admit what went wrong."\n'
            's2,"Lockdown moved everything online overnight when schools closed."\n'
            "s3,\n"
        ),
    )
    out = tmp_path / "coded.csv"
    result = qcode("code-segments", str(answers), "--codebook", str(CODEBOOK), "--out", str(out))
    assert result.returncode == 0, result.stderr
    coded = pd.read_csv(out)
    assert list(coded.columns) == ["segment_id", "code", "score"]
    assert set(coded["segment_id"]) <= {"s1", "s2"}
    assert "context.pandemic" in set(coded.loc[coded["segment_id"] == "s2", "code"])
    assert coded["score"].between(-1, 1).all()


def test_code_segments_bad_csv_names_the_line(tmp_path):
    bad = write(tmp_path / "dup.csv", "segment_id,text\na,x\na,y\n")
    result = qcode(
        "code-segments", str(bad), "--codebook", str(CODEBOOK), "--out", str(tmp_path / "o.csv")
    )
    assert result.returncode == 2 and "line 3" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o.csv").exists()


def test_run_refuses_empty_folder_and_bad_settings(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path), "--codebook", str(CODEBOOK)])
    assert result.exit_code == 2 and "no .txt" in result.output
    result = runner.invoke(
        app, ["run", str(tmp_path), "--codebook", str(CODEBOOK), "--unit", "paragraph"]
    )
    assert result.exit_code == 2 and "unit" in result.output


def test_run_takes_every_setting_as_an_option_or_set(tmp_path):
    from pipeline.cli import parse_settings
    from pipeline.settings import Settings

    settings = Settings.from_overrides(**parse_settings(["k_anonymity=5", "context-weight=0.3"]))
    assert settings.k_anonymity == 5 and settings.context_weight == 0.3
    base = ["run", str(tmp_path), "--codebook", str(CODEBOOK)]
    for extra, message in [
        (["--set", "colour=blue"], "no setting 'colour'"),
        (["--set", "top_k"], "NAME=VALUE"),
        (["--set", "k_anonymity=lots"], "k_anonymity"),
        (["--precision", "int4"], "precision"),
        (["--task-runner", "spark"], "task_runner"),
        (["--privacy", "ignore"], "privacy"),
        (["--chunk-size", "0"], "chunk_size"),
    ]:
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output and "Traceback" not in result.output, extra


def test_eval_reports_agreement_on_gold(tmp_path):
    out = tmp_path / "metrics.json"
    result = qcode(
        "eval",
        "--gold",
        str(ROOT / "transcripts_sample" / "gold"),
        "--codebook",
        str(CODEBOOK),
        "--transcripts",
        str(ROOT / "transcripts_sample"),
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "micro-F1" in result.stdout
    import json

    metrics = json.loads(out.read_text())
    assert metrics["segments"] >= 900
    # Measured 0.305 (docs/zero-shot.md); coding each sentence without its neighbours scores
    # about 0.26, so this floor fails if the context blend is lost.
    assert metrics["micro_f1"] > 0.29
