from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def _double_code(store, reviewer: str, decisions: dict[str, tuple[list[str], str]], **kw):
    """``reviewer`` reviews each unit: accepts the listed codes (added when not suggested) and
    rejects every other suggested code, as the page's Done button does."""
    from pipeline.store import NewDecision

    suggestions = store.suggestions()
    made = []
    for unit_id, (codes, memo) in decisions.items():
        suggested = set(suggestions.loc[suggestions["unit_id"] == unit_id, "code_id"])
        made += [
            NewDecision(u, c, "accept" if c in suggested else "add", memo)
            for u, c in ((unit_id, c) for c in codes)
        ]
        made += [NewDecision(unit_id, c, "reject", memo) for c in sorted(suggested - set(codes))]
        made.append(NewDecision(unit_id, "", "done", memo))
    store.decide(reviewer, made, **kw)


def _pairs(store):
    from pipeline.evaluate import human_agreement

    return human_agreement(
        store.resolved_decisions(), store.codebook().ids, store.units(), store.suggestions()
    )


def test_human_agreement_from_double_coded_store(project_location):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.store import Store

    with Store(project_location) as store:
        units = store.units()
        ids = units.loc[units["codable"], "unit_id"].head(4).tolist()
        _double_code(store, "ann", {u: (["ts.trust"], "") for u in ids})
        _double_code(
            store, "bob", {**{u: (["ts.trust"], "") for u in ids[:3]}, ids[3]: (["ts.time"], "")}
        )
        pairs = _pairs(store)
    ((a, b, result),) = pairs
    assert (a, b, result.segments) == ("ann", "bob", 4)
    assert result.exact_set_accuracy == 0.75
    output = CliRunner().invoke(app, ["agreement", "--store", str(project_location)]).output
    assert "ann vs bob: 4 units both reviewed" in output


def test_total_disagreement_on_one_unit_is_not_kappa_one(project_store):
    """The issue's case: one unit, A accepts, B rejects. micro-F1 0, kappa undefined (it was
    shown as 1.000), alpha and percent agreement beside it."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.store import NewDecision, Store

    with Store(project_store) as store:
        suggestions = store.suggestions()
        unit_id = suggestions["unit_id"].iloc[0]
        codes = suggestions.loc[suggestions["unit_id"] == unit_id, "code_id"].tolist()
        store.decide("A", [NewDecision(unit_id, c, "accept") for c in codes])
        store.decide("B", [NewDecision(unit_id, c, "reject") for c in codes])
        ((_, _, result),) = _pairs(store)
    assert result.segments == 1 and result.micro_f1 == 0.0
    assert math.isnan(result.mean_kappa) and result.kappa_undefined == len(codes)
    assert result.percent_agreement == 0.0
    output = CliRunner().invoke(app, ["agreement", "--store", str(project_store)]).output
    assert "micro-F1 0.000" in output and "mean kappa undefined" in output
    assert "kappa 1.000" not in output and "neither coder varied" in output
    row = next(line for line in output.splitlines() if line.strip().startswith(codes[0]))
    assert "undefined" in row and "0.000" in row  # kappa undefined; agreement 0


def test_agreement_does_not_depend_on_the_order_of_names(project_store):
    from pipeline.store import Store

    with Store(project_store) as store:
        units = store.units()
        ids = units.loc[units["codable"], "unit_id"].head(12).tolist()
        first = {
            u: (["ts.trust"] if i % 2 else ["ts.time", "ts.trust"], "") for i, u in enumerate(ids)
        }
        second = {u: (["ts.trust"] if i % 3 else [], "") for i, u in enumerate(ids)}
        _double_code(store, "ann", first)
        _double_code(store, "bob", second)
        _double_code(store, "zed", first)  # zed codes as ann did, but sorts after bob
        pairs = {(a, b): r for a, b, r in _pairs(store)}
    ann, zed = pairs[("ann", "bob")], pairs[("bob", "zed")]
    for name in ("micro_f1", "macro_f1", "mean_kappa", "alpha", "percent_agreement"):
        assert getattr(ann, name) == pytest.approx(getattr(zed, name)), name


def test_units_an_imported_coder_left_uncoded_count_as_no_code(project_store):
    """After import-qdpx, the tool's coder coded some units of an interview: the units they
    left uncoded there are their "no code", so agreement is not inflated."""
    from pipeline.store import Store

    with Store(project_store) as store:
        units = store.units()
        wp = units[units["codable"] & (units["transcript_id"] == "WP-01")]["unit_id"].tolist()
        ours = {u: (["ts.trust"], "") for u in wp[:6]}
        _double_code(store, "ann", ours)
        theirs = {u: (["ts.trust"], "") for u in wp[:3]}  # coded 3, left 3 uncoded
        _double_code(store, "NVivo user", theirs, source="import")
        ((a, b, result),) = _pairs(store)
    assert (a, b) == ("NVivo user", "ann")
    assert result.segments == 6  # not 3: the uncoded three count as "no code"
    assert result.micro_f1 == pytest.approx(2 * 3 / (2 * 3 + 3))


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


# -- property tests against reference implementations ---------------------------------------------

CODES = ["a", "b", "c", "d", "e"]


@st.composite
def decision_tables(draw):
    """Two coders' presence tables (units x codes), with constant and empty columns forced in
    often: the cases where kappa used to come out as 1.0."""
    n = draw(st.integers(0, 14))
    k = draw(st.integers(1, len(CODES)))
    first = np.zeros((n, k), dtype=bool)
    second = np.zeros((n, k), dtype=bool)
    for j in range(k):
        for table in (first, second):
            kind = draw(st.sampled_from(["random", "random", "empty", "full"]))
            if kind == "random":
                table[:, j] = draw(st.lists(st.booleans(), min_size=n, max_size=n))
            else:
                table[:, j] = kind == "full"
        if draw(st.booleans()) and n:
            second[:, j] = first[:, j]  # identical columns too
    return first, second


def _lists(table: np.ndarray) -> list[list[str]]:
    return [[CODES[j] for j in range(table.shape[1]) if row[j]] for row in table]


def _same(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=1e-9)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(decision_tables())
def test_per_code_figures_match_scikit_learn_and_krippendorff(tables):
    import krippendorff
    from sklearn.metrics import cohen_kappa_score

    first, second = tables
    n, k = first.shape
    result = agreement(_lists(first), _lists(second), CODES[:k], symmetric=True)
    per_code = result.per_code.set_index("code")
    for j, code in enumerate(CODES[:k]):
        a, b = first[:, j], second[:, j]
        row = per_code.loc[code]
        constant = n == 0 or (a.min() == a.max() and b.min() == b.max())
        if constant:
            assert math.isnan(row["kappa"])
            if a.any() or b.any():
                assert "neither coder varied" in row["note"]
            else:
                assert row["note"] == ""  # a code nobody used is not averaged at all
        else:
            assert row["kappa"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-9)
        values = np.vstack([a, b]).astype(float)
        if n and len(np.unique(values)) > 1:
            expected = krippendorff.alpha(reliability_data=values, level_of_measurement="nominal")
            assert row["alpha"] == pytest.approx(expected, abs=1e-9)
        else:
            assert math.isnan(row["alpha"])
        assert _same(row["agreement"], float((a == b).mean()) if n else float("nan"))
    # Overall: micro- and macro-F1 as scikit-learn computes them on the same indicator tables
    # (macro over the codes either coder used), alpha over every cell.
    from sklearn.metrics import f1_score

    # An all-absent extra column keeps scikit-learn reading the tables as multilabel indicators
    # (one column alone it reads as binary labels); it adds no true or false positive.
    pad = np.zeros((n, 1), dtype=bool)
    wide_first, wide_second = np.hstack([first, pad]), np.hstack([second, pad])
    if first.any() or second.any():  # else F1 is 0/0: undefined here, 1.0 in scikit-learn
        assert result.micro_f1 == pytest.approx(
            f1_score(wide_first, wide_second, average="micro", zero_division=0), abs=1e-9
        )
    used = [j for j in range(k) if first[:, j].any() or second[:, j].any()]
    if used:
        assert result.macro_f1 == pytest.approx(
            f1_score(wide_first, wide_second, average="macro", labels=used, zero_division=0),
            abs=1e-9,
        )
    cells = np.vstack([first.reshape(-1), second.reshape(-1)]).astype(float)
    if cells.size and len(np.unique(cells)) > 1:
        assert result.alpha == pytest.approx(
            krippendorff.alpha(reliability_data=cells, level_of_measurement="nominal"), abs=1e-9
        )
    else:
        assert math.isnan(result.alpha)
    kappas = [per_code.loc[CODES[j], "kappa"] for j in used]
    defined = [x for x in kappas if not math.isnan(x)]
    assert _same(result.mean_kappa, float(np.mean(defined)) if defined else float("nan"))
    assert result.kappa_undefined == len(kappas) - len(defined)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(decision_tables())
def test_pair_figures_do_not_depend_on_which_coder_is_first(tables):
    first, second = tables
    k = first.shape[1]
    one = agreement(_lists(first), _lists(second), CODES[:k], symmetric=True)
    other = agreement(_lists(second), _lists(first), CODES[:k], symmetric=True)
    for name in (
        "micro_f1",
        "macro_f1",
        "mean_kappa",
        "alpha",
        "percent_agreement",
        "exact_set_accuracy",
    ):
        assert _same(getattr(one, name), getattr(other, name)), name
    assert one.kappa_undefined == other.kappa_undefined


def test_empty_table_is_undefined_not_an_error():
    result = agreement([], [], ["a", "b"], symmetric=True)
    assert result.segments == 0 and math.isnan(result.micro_f1)
    assert math.isnan(result.mean_kappa) and math.isnan(result.alpha)
    assert result.as_dict()["mean_kappa"] is None
