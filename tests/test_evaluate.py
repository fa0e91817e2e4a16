from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import SegmentsFileError
from pipeline.evaluate import agreement, load_gold
from tests.conftest import SAMPLE, write

GOLD = SAMPLE / "gold"


def test_gold_files_have_the_agreed_columns_and_exact_text(sample_transcripts, codebook):
    texts = {t.transcript_id: t.text for t in sample_transcripts[0]}
    files = sorted(GOLD.glob("*.csv"))
    assert len(files) >= 3
    for path in files:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert list(frame.columns) == [
            "segment_id",
            "transcript_id",
            "start",
            "end",
            "text",
            "codes",
        ]
        for row in frame.itertuples():
            assert texts[row.transcript_id][int(row.start) : int(row.end)] == row.text
    gold = load_gold(GOLD, codebook)
    coded = sum(bool(g) for g in gold["gold"])
    assert 0.3 < coded / len(gold) < 0.8  # people left plenty uncoded


def test_agreement_metrics_by_hand():
    gold = [["a"], ["a", "b"], [], ["b"]]
    pred = [["a"], ["a"], ["b"], []]
    result = agreement(gold, pred, ["a", "b", "c"])
    a = result.per_code.set_index("code").loc["a"]
    assert (a["precision"], a["recall"], a["f1"]) == (1.0, 1.0, 1.0)
    b = result.per_code.set_index("code").loc["b"]
    assert b["precision"] == 0.0 and b["recall"] == 0.0
    # micro: tp=2, fp=1, fn=2 -> 4 / 7
    assert result.micro_f1 == pytest.approx(4 / 7)
    assert result.macro_f1 == pytest.approx(0.5)
    assert result.exact_set_accuracy == pytest.approx(0.25)
    assert math.isnan(result.per_code.set_index("code").loc["c", "kappa"])
    assert ("b", "a", 1) not in result.confused_pairs  # row 2: b missed, nothing wrong added
    assert result.confused_pairs == []


def test_gold_with_unknown_code_names_the_line(tmp_path, codebook):
    path = write(tmp_path / "g.csv", "segment_id,text,codes\n1,x,ts.trust\n2,y,ts.nope\n")
    with pytest.raises(SegmentsFileError, match=r"unknown code 'ts\.nope'") as error:
        load_gold(path, codebook)
    assert error.value.line == 3


def test_human_agreement_from_double_coded_store(project_store):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.evaluate import human_agreement
    from pipeline.store import NewDecision, Store

    with Store(project_store) as store:
        units = store.units()
        ids = units.loc[units["codable"], "unit_id"].head(4).tolist()
        store.decide("ann", [NewDecision(u, "ts.trust", "add") for u in ids])
        store.decide(
            "bob",
            [NewDecision(u, "ts.trust", "add") for u in ids[:3]]
            + [NewDecision(ids[3], "ts.time", "add")],
        )
        pairs = human_agreement(store.resolved_decisions(), store.codebook().ids)
    ((a, b, result),) = pairs
    assert (a, b, result.segments) == ("ann", "bob", 4)
    assert result.exact_set_accuracy == 0.75
    output = CliRunner().invoke(app, ["agreement", "--store", str(project_store)]).output
    assert "ann vs bob: 4 units" in output


def test_alpha_matches_a_hand_computed_case():
    from pipeline.evaluate import presence_alpha

    first = np.array([[1, 0], [0, 0], [1, 1]], dtype=bool)
    assert presence_alpha(first, first) == pytest.approx(1.0)
    flipped = np.array([[0, 1], [1, 1], [0, 0]], dtype=bool)
    assert presence_alpha(first, flipped) < 0


def test_eval_html_report_lists_errors_and_charts(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.conftest import CODEBOOK

    html, out = tmp_path / "eval.html", tmp_path / "eval.json"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--gold",
            str(GOLD / "WP-01.csv"),
            "--codebook",
            str(CODEBOOK),
            "--html",
            str(html),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 2  # F1 bars and the threshold curve
    assert "false positives" in page and "FN" in page
    import json

    metrics = json.loads(out.read_text())
    assert metrics["krippendorff_alpha"] is not None
    assert len(metrics["threshold_curve"]) > 10
    assert any(e["false_negatives"] for e in metrics["errors"].values())
