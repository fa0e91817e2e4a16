"""The review page: queue, unit page, decisions, safety; in-process and in a real browser.

In-process tests use FastAPI's TestClient against a fresh copy of the sample project store.
Browser tests drive Debian's Chromium through Playwright against the app served by uvicorn.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from typer.testing import CliRunner

from pipeline.errors import QcodeError
from pipeline.review import ReviewError, create_app, serve
from pipeline.review.app import server_config
from pipeline.review.project import decisions_from_form
from pipeline.review.queue import (
    DEFAULT_ORDER,
    PAGE_SIZE,
    filter_queue,
    neighbours,
    order_queue,
    progress,
    review_table,
)
from pipeline.server import free_port
from pipeline.store import NewDecision, Store
from tests.conftest import ROOT, write

BASE = "http://127.0.0.1"
TOKEN = "a-long-enough-test-token-1234"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# -- helpers --------------------------------------------------------------------------------------


class _Forms(HTMLParser):
    """What a browser would send for a form: its fields with their current values."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.fields = form_id, False, []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        elif self.inside and tag == "input" and a.get("name"):
            if a.get("type") in ("radio", "checkbox") and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def form_fields(html: str, form_id: str) -> list[tuple[str, str]]:
    parser = _Forms(form_id)
    parser.feed(html)
    return parser.fields


def client_for(store: Path, *, reviewer: str | None = "Ann", **options) -> TestClient:
    """A client of a fresh app; signed in under ``reviewer`` unless None."""
    client = TestClient(create_app(store, **options), base_url=BASE)
    if reviewer is not None:
        sign_in(client, reviewer)
    return client


def csrf_of(client: TestClient) -> str:
    """The CSRF token the name form carries (the first page also sets the session cookie)."""
    return dict(form_fields(client.get("/reviewer").text, "reviewer-form"))["csrf"]


def sign_in(client: TestClient, name: str) -> None:
    response = client.post("/reviewer", data={"csrf": csrf_of(client), "name": name, "next": "/"})
    assert response.status_code == 200


def submit_unit(
    client: TestClient,
    unit_id: str,
    choices: dict[str, str] | None = None,
    add: tuple[str, ...] = (),
    memo: str = "",
    query: str = "",
    page_html: str | None = None,
    data_done: bool = False,
):
    """Fill in the unit form as a person would (from the page as rendered) and send it;
    ``data_done``: pressed the Done button rather than Save."""
    html = page_html or client.get(f"/unit/{unit_id}{query}").text
    fields = [(k, v) for k, v in form_fields(html, "unit-form") if k not in (choices or {})]
    fields += [(f"choice:{code}", choice) for code, choice in (choices or {}).items()]
    fields += [("add", code) for code in add] + [("memo", memo)]
    if data_done:
        fields.append(("done", "1"))
    return client.post(f"/unit/{unit_id}", data=_encode(fields))


def _encode(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    data: dict[str, list[str]] = {}
    for key, value in fields:
        data.setdefault(key, []).append(value)
    return data


def project_tables(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """(units, suggestions, resolved decisions, code order) of a store, as the page reads them."""
    with Store(path) as store:
        units, suggestions = store.units(), store.suggestions()
        resolved = store.resolved_decisions()
        return units, suggestions, resolved, store.codebook().ids


def queue_ids(path: Path, order: str = DEFAULT_ORDER, reviewer: str | None = None, **filters):
    """The queue's unit ids as the plain functions give them (by default in the page's default
    order, whichever it is: tests walk the queue as the page orders it)."""
    units, suggestions, resolved, codes = project_tables(path)
    table = order_queue(review_table(units, suggestions, resolved, reviewer), order, codes)
    return filter_queue(table, **filters)["unit_id"].tolist()


def units_with_suggestions(path: Path, at_least: int) -> list[str]:
    """Codable units with this many suggestions or more, in the default queue order."""
    with Store(path) as store:
        counts = store.suggestions()["unit_id"].value_counts()
    return [u for u in queue_ids(path) if counts.get(u, 0) >= at_least]


def units_with_one_suggestion(path: Path) -> list[str]:
    """Codable units with exactly one suggestion: one decision reviews them."""
    with Store(path) as store:
        counts = store.suggestions()["unit_id"].value_counts()
    return [u for u in queue_ids(path) if counts.get(u, 0) == 1]


def suggested_codes(path: Path, unit_id: str) -> list[str]:
    with Store(path) as store:
        s = store.suggestions()
    return s[s["unit_id"] == unit_id].sort_values("rank")["code_id"].tolist()


def decisions_of(path: Path, reviewer: str | None = None) -> pd.DataFrame:
    with Store(path) as store:
        return store.decisions(reviewer)


def section(html: str, element_id: str) -> str:
    """The HTML of the element with this id (a table or section)."""
    found = re.search(rf'<(\w+)[^>]*id="{element_id}".*?</\1>', html, re.S)
    assert found, element_id
    return found.group(0)


def row_units(html: str) -> list[str]:
    return re.findall(r'<tr class="status-[\w-]+" data-unit="(\w+)"', html)


# -- queue: order, filters, progress (plain functions and the page) ------------------------------


def test_queue_orders_at_random_by_uncertainty_reading_and_code(project_store):
    units, suggestions, resolved, codes = project_tables(project_store)
    table = review_table(units, suggestions, resolved)
    assert len(table) == int(units["codable"].sum())

    uncertain = order_queue(table, "uncertain", codes)
    with_suggestion = uncertain["suggested_code"].notna()
    # Every unit with a suggestion comes before every unit without one...
    assert not with_suggestion.iloc[with_suggestion.sum() :].any()
    # ...smallest margin between the top two codes first, then the highest top score.
    assert uncertain.loc[with_suggestion, "margin"].is_monotonic_increasing
    top_margins = suggestions[suggestions["rank"] == 1].set_index("unit_id")["margin"]
    assert uncertain["margin"].iloc[0] == top_margins.min()
    assert uncertain.loc[~with_suggestion, "top_score"].is_monotonic_decreasing

    reading = order_queue(table, "reading", codes)
    expected = units[units["codable"]].sort_values(["transcript_id", "start"])["unit_id"]
    assert reading["unit_id"].tolist() == expected.tolist()

    by_code = order_queue(table, "code", codes)
    groups = by_code["suggested_code"].fillna("~none").tolist()
    runs = [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g]
    assert len(runs) == len(set(runs)), "each code's units are together"
    assert [g for g in runs if g != "~none"] == [c for c in codes if c in set(runs)]
    assert runs[-1] == "~none"

    shuffled = order_queue(table, "random", codes)
    assert sorted(shuffled["unit_id"]) == sorted(reading["unit_id"]), "a permutation of all units"
    assert shuffled["unit_id"].tolist() != reading["unit_id"].tolist()
    assert shuffled["unit_id"].tolist() == order_queue(table, "random", codes)["unit_id"].tolist()
    first_ten = shuffled["transcript_id"].head(10)
    assert first_ten.nunique() > 1, "a shuffle spreads over interviews"

    with pytest.raises(ValueError, match="unknown queue order"):
        order_queue(table, "sideways", codes)


def test_queue_page_lists_units_in_the_chosen_order_50_per_page(project_store):
    client = client_for(project_store)
    for order in ("random", "uncertain", "reading", "code"):
        expected = queue_ids(project_store, order)
        html = client.get(f"/?order={order}").text
        assert row_units(html) == expected[:PAGE_SIZE], order
        assert f'<strong id="queue-count">{len(expected)}</strong>' in html
    expected = queue_ids(project_store, "reading")
    pages = -(-len(expected) // PAGE_SIZE)
    second = client.get("/?order=reading&page=2").text
    assert row_units(second) == expected[PAGE_SIZE : 2 * PAGE_SIZE]
    last = client.get(f"/?order=reading&page={pages + 5}").text  # past the end: the last page
    assert row_units(last) == expected[(pages - 1) * PAGE_SIZE :]
    assert f"page {pages} of {pages}" in last


def _three_reviewed_units(path: Path) -> dict[str, str]:
    """Ann accepts u1, Bob rejects u2, Ann changes u3 (reject + add), each deciding every
    suggested code (so each unit is reviewed): unit ids by status."""
    u1, u2, u3 = units_with_suggestions(path, 1)[:3]
    other = next(c for c in ("ts.time", "context.resources") if c not in suggested_codes(path, u3))
    with Store(path) as store:
        store.decide("Ann", [NewDecision(u1, c, "accept") for c in suggested_codes(path, u1)])
        store.decide("Bob", [NewDecision(u2, c, "reject") for c in suggested_codes(path, u2)])
        store.decide(
            "Ann",
            [NewDecision(u3, c, "reject") for c in suggested_codes(path, u3)]
            + [NewDecision(u3, other, "add")],
        )
    return {"accepted": u1, "rejected": u2, "changed": u3}


def test_queue_filters_and_progress(project_store):
    reviewed = _three_reviewed_units(project_store)
    units, suggestions, resolved, codes = project_tables(project_store)
    table = review_table(units, suggestions, resolved)

    for status, unit_id in reviewed.items():
        assert filter_queue(table, status=status)["unit_id"].tolist() == [unit_id]
    assert len(filter_queue(table, status="unreviewed")) == len(table) - 3
    assert filter_queue(table, reviewer="Bob")["unit_id"].tolist() == [reviewed["rejected"]]
    assert set(filter_queue(table, reviewer="Ann")["unit_id"]) == {
        reviewed["accepted"],
        reviewed["changed"],
    }
    wp02 = filter_queue(table, transcript="WP-02")
    assert set(wp02["transcript_id"]) == {"WP-02"}
    assert len(wp02) == int((units["codable"] & (units["transcript_id"] == "WP-02")).sum())
    trust = filter_queue(table, code="ts.trust")
    assert len(trust) and all("ts.trust" in c for c in trust["codes"])
    both = filter_queue(table, transcript="WP-02", code="ts.trust", status="unreviewed")
    assert len(both) and set(both["transcript_id"]) == {"WP-02"}
    # The unit on screen keeps its place even when the filters no longer match it.
    kept = filter_queue(table, status="unreviewed", keep=reviewed["accepted"])
    assert reviewed["accepted"] in set(kept["unit_id"])

    done = progress(table, codes)
    assert (done.reviewed, done.total) == (3, len(table))
    by_transcript = done.by_transcript.set_index("transcript_id")
    assert by_transcript["total"].sum() == len(table)
    assert by_transcript["reviewed"].sum() == 3
    reviewed_units = units.set_index("unit_id").loc[list(reviewed.values())]
    for tid, count in reviewed_units["transcript_id"].value_counts().items():
        assert by_transcript.loc[tid, "reviewed"] == count
    by_code = done.by_code.set_index("code_id")
    accepted_code = suggested_codes(project_store, reviewed["accepted"])[0]
    units_with_code = table[table["codes"].map(lambda c: accepted_code in c)]
    assert by_code.loc[accepted_code, "total"] == len(units_with_code)
    assert by_code.loc[accepted_code, "reviewed"] == int(
        units_with_code["decided_codes"].map(lambda c: accepted_code in c).sum()
    )
    assert list(by_code.index) == [c for c in codes if c in by_code.index]

    # The page shows the same numbers and applies the same filters.
    client = client_for(project_store)
    html = client.get("/").text
    assert f"<strong>3</strong> of <strong>{len(table)}</strong> units reviewed" in html
    tid = reviewed_units["transcript_id"].iloc[0]
    row = by_transcript.loc[tid]
    assert (
        f'<tr data-key="{tid}"><td>{tid}</td><td>{row["reviewed"]}</td><td>{row["total"]}</td>'
    ) in html
    assert row_units(client.get("/?status=changed").text) == [reviewed["changed"]]
    assert row_units(client.get("/?reviewer=Bob").text) == [reviewed["rejected"]]
    assert (
        row_units(client.get("/?transcript=WP-02&order=reading").text)
        == (wp02.sort_values("start")["unit_id"].tolist()[:PAGE_SIZE])
    )
    bad = client.get("/?status=maybe")
    assert bad.status_code == 400 and "is not a status" in bad.text


def test_review_state_is_per_code_and_done_marks_the_whole_unit(project_store, codebook):
    """Accepting one of two suggested codes leaves the unit partly reviewed and in the
    "unreviewed" queue; Done rejects the rest; a new suggestion brings it back."""
    unit_id = units_with_suggestions(project_store, 2)[0]
    first, second = suggested_codes(project_store, unit_id)[:2]
    client = client_for(project_store)
    submit_unit(client, unit_id, {first: "accept"})
    assert unit_id in row_units(client.get("/?status=unreviewed").text)
    assert unit_id in row_units(client.get("/?status=partly+reviewed").text)
    page = client.get(f"/unit/{unit_id}").text
    assert 'data-status="partly reviewed"' in page and "still undecided" in page
    html = client.get("/").text
    assert "<strong>0</strong> of" in html and "1 partly reviewed" in html
    done = progress(review_table(*project_tables(project_store)[:3]), codebook.ids)
    by_code = done.by_code.set_index("code_id")
    assert by_code.loc[first, "reviewed"] == 1 and by_code.loc[second, "reviewed"] == 0

    submit_unit(client, unit_id, data_done=True)  # Done: the codes left as is are rejected
    stored = decisions_of(project_store)
    mine = dict(zip(stored["code_id"], stored["action"], strict=True))
    assert mine[first] == "accept" and mine[""] == "done"
    assert all(mine[c] == "reject" for c in suggested_codes(project_store, unit_id)[1:])
    assert unit_id not in row_units(client.get("/?status=unreviewed").text)
    assert "<strong>1</strong> of" in client.get("/").text
    before = len(decisions_of(project_store))
    submit_unit(client, unit_id, data_done=True)  # done again, nothing changed: nothing stored
    assert len(decisions_of(project_store)) == before

    # A unit with no suggestion: Done records "reviewed, no code".
    bare = next(u for u in queue_ids(project_store) if not suggested_codes(project_store, u))
    submit_unit(client, bare, data_done=True)
    assert unit_id in row_units(client.get("/?status=changed").text)
    assert bare in row_units(client.get("/?status=no+code").text)

    # The next run also suggests a new code on the reviewed unit: it is back in the queue.
    with Store(project_store) as store:
        units, suggestions = store.units(), store.suggestions()
        new_code = next(c for c in codebook.ids if c not in suggested_codes(project_store, unit_id))
        extra = pd.DataFrame(
            [{"unit_id": unit_id, "code_id": new_code, "score": 0.3, "rank": 9, "margin": 0.0}]
        )
        from pipeline.ingest import read_transcripts
        from tests.conftest import SAMPLE

        store.record_run(
            {"run_id": "run-with-a-new-code"},
            read_transcripts(SAMPLE)[0],
            units,
            pd.concat([suggestions, extra], ignore_index=True),
            codebook,
        )
    assert unit_id in row_units(client.get("/?status=partly+reviewed").text)
    assert bare not in row_units(client.get("/?status=unreviewed").text)


def test_cached_queue_equals_a_fresh_one_after_every_kind_of_decision(project_store):
    """The page reads and anchors each decision once and redoes only the touched units' rows:
    after saves, done marks, adds and a decision committed out of id order, the cached table
    and orders are exactly what a fresh computation gives."""
    from pipeline.review.project import ProjectView, SnapshotCache

    cache = SnapshotCache()
    units_ids = units_with_suggestions(project_store, 1)
    bare = next(u for u in queue_ids(project_store) if not suggested_codes(project_store, u))

    def check(store: Store) -> None:
        for scope in (None, "Ann"):
            view = ProjectView.load(store, cache, scope)
            fresh = review_table(
                store.units(), store.suggestions(), store.resolved_decisions(), scope
            )
            pd.testing.assert_frame_equal(view.table(), fresh)
            for order in ("random", "uncertain", "reading", "code"):
                pd.testing.assert_frame_equal(
                    view.ordered(view.table(), order),
                    order_queue(fresh, order, store.codebook().ids),
                )

    with Store(project_store) as store:
        check(store)  # empty, then built once
        first, second, third = units_ids[:3]
        store.decide(
            "Ann", [NewDecision(first, suggested_codes(project_store, first)[0], "accept")]
        )
        check(store)
        store.decide(
            "Bob",
            [NewDecision(second, c, "reject") for c in suggested_codes(project_store, second)]
            + [NewDecision(bare, "", "done"), NewDecision(third, "ts.time", "add", "memo")],
        )
        check(store)
        # A decision committed with an id below one already read (as a server database can).
        row = store.decisions().iloc[-1]
        columns = ", ".join(f'"{c}"' for c in row.index)
        marks = ", ".join("?" * len(row))
        far = {**row.to_dict(), "decision_id": 1000, "reviewer": "Ann"}
        store.db.execute(f"INSERT INTO decisions ({columns}) VALUES ({marks})", list(far.values()))
        check(store)
        early = {**row.to_dict(), "decision_id": 500, "reviewer": "Ann", "code_id": "ts.trust"}
        store.db.execute(
            f"INSERT INTO decisions ({columns}) VALUES ({marks})", list(early.values())
        )
        view = ProjectView.load(store, cache, None)
        assert 500 in set(view.resolved["decision_id"]), "an out-of-order decision is not lost"
        check(store)


def test_per_unit_reads_equal_the_whole_table_functions(project_store):
    """The page reads one unit's codes, review state, history and moves from its own indexed
    records (``unit_codings``, ``unit_state``): on random decisions by three reviewers (accept,
    reject, add, remove, done, notes, comparison imports, an orphan) they equal what
    ``current_codings`` and ``unit_review_state`` give over the whole tables, for everybody's
    decisions and for one reviewer's (blind)."""
    import random

    from pipeline.decisions import COMPARE_SOURCE, current_codings, unit_review_state
    from pipeline.review.project import ProjectView, SnapshotCache

    rng = random.Random(14)
    with Store(project_store) as store:
        units, suggestions = store.units(), store.suggestions()
        codes = store.codebook().ids
    codable = units.loc[units["codable"], "unit_id"].tolist()
    picked = rng.sample(codable, 60)
    by_unit = suggestions.groupby("unit_id")["code_id"].apply(list).to_dict()
    with Store(project_store) as store:
        for _ in range(400):
            unit_id = rng.choice(picked)
            code = rng.choice([*by_unit.get(unit_id, []), rng.choice(codes)])
            action = rng.choice(["accept", "reject", "add", "remove", "done", "note"])
            code = "" if action in ("done", "note") else code
            source = COMPARE_SOURCE if rng.random() < 0.1 else "web"
            store.decide(
                rng.choice(["Ann", "Bob", "Cy"]),
                [NewDecision(unit_id, code, action, rng.choice(["", "why"]))],
                source=source,
            )
        # A decision whose text is gone: orphaned, on no unit.
        store.db.execute(
            'INSERT INTO decisions (reviewer, at, unit_id, transcript_id, start, "end", text,'
            " text_sha256, code_id, action, memo, source) SELECT reviewer, at, 'gone', "
            "transcript_id, 0, 1, 'a text nobody wrote', text_sha256, code_id, action, memo, "
            "source FROM decisions LIMIT 1"
        )
        store.db.commit()
        resolved = store.resolved_decisions()
        cache = SnapshotCache()
        for scope in (None, "Ann"):
            view = ProjectView.load(store, cache, scope)
            whole = current_codings(suggestions, resolved, scope)
            states = unit_review_state(units, suggestions, resolved, scope).set_index("unit_id")
            mine = resolved if scope is None else resolved[resolved["reviewer"] == scope]
            for unit_id in [*picked, *codable[:20]]:
                expected = whole[whole["unit_id"] == unit_id].sort_values(
                    ["rank", "code_id"], na_position="last"
                )
                got = view.codings(unit_id)
                assert got["code_id"].tolist() == expected["code_id"].tolist(), unit_id
                for column in ("status", "reviewer", "decided_at", "memo"):
                    assert got[column].tolist() == expected[column].tolist(), (unit_id, column)
                for column in ("score", "rank", "margin"):
                    pd.testing.assert_series_equal(
                        got[column].astype(float),
                        expected[column].astype(float).reset_index(drop=True),
                        check_names=False,
                    )
                state = view.review_state(unit_id)
                assert state == {"unit_id": unit_id, **states.loc[unit_id].to_dict()}, unit_id
                on_unit = mine[mine["current_unit_id"] == unit_id]
                assert [d["decision_id"] for d in view.history(unit_id)] == sorted(
                    on_unit["decision_id"], reverse=True
                )
            orphaned = mine[mine["anchor"] == "orphaned"]
            assert view.orphan_count() == len(orphaned) >= (1 if scope is None else 0)
            assert view.orphans()["decision_id"].tolist() == sorted(
                orphaned["decision_id"], reverse=True
            )


def test_unit_page_shows_context_speaker_codes_and_shortcuts(project_store):
    unit_id = units_with_suggestions(project_store, 2)[0]
    with Store(project_store) as store:
        units = store.units()
        text = store.transcript_texts()
    unit = units.set_index("unit_id").loc[unit_id]
    html = client_for(project_store).get(f"/unit/{unit_id}").text
    marked = re.search(r'<mark id="unit-text">(.*?)</mark>', html, re.S).group(1)
    assert marked == str(escape(unit["text"]))
    same = units[units["transcript_id"] == unit["transcript_id"]]
    for turn in (unit["turn_index"] - 1, unit["turn_index"] + 1):  # the turns either side
        spoken = same[same["turn_index"] == turn]
        if len(spoken):
            words = text[unit["transcript_id"]][spoken["start"].min() : spoken["end"].max()]
            assert str(escape(words)) in html
    assert f'<dd id="speaker">{unit["speaker"]}</dd>' in html
    assert unit["role"] in html and unit["local_authority"] in html
    for code in suggested_codes(project_store, unit_id):
        assert f'name="choice:{code}" value="accept"' in html
    assert html.count('name="add" value=') == 29  # every codebook code can be added
    assert 'title="' in html and "<kbd>?</kbd>" in html and "accept all codes" in html


def test_saving_the_form_records_accept_reject_add_and_memo(project_store):
    unit_id = units_with_suggestions(project_store, 2)[0]
    suggested = suggested_codes(project_store, unit_id)
    first, second = suggested[:2]
    added = next(
        c for c in ("ts.time", "context.resources", "context.pandemic") if c not in suggested
    )
    client = client_for(project_store, reviewer="Ann Lee")
    response = submit_unit(
        client,
        unit_id,
        {first: "accept", second: "reject"},
        add=(added,),
        memo="close call between the two",
    )
    stored = decisions_of(project_store)
    assert set(zip(stored["code_id"], stored["action"], strict=True)) == {
        (first, "accept"),
        (second, "reject"),
        (added, "add"),
    }
    assert set(stored["reviewer"]) == {"Ann Lee"} and set(stored["source"]) == {"web"}
    assert set(stored["unit_id"]) == {unit_id}
    assert set(stored["memo"]) == {"close call between the two"}
    # Saving moves to the next unit of the queue.
    order = queue_ids(project_store)
    assert response.url.path == f"/unit/{order[order.index(unit_id) + 1]}"
    page = client.get(f"/unit/{unit_id}").text
    assert "close call between the two" in page and "Ann Lee" in page

    # Saving again without changes stores nothing; a memo alone is a note.
    submit_unit(client, unit_id)
    assert len(decisions_of(project_store)) == 3
    submit_unit(client, unit_id, memo="check the audio")
    note = decisions_of(project_store).iloc[-1]
    assert (note["action"], note["code_id"], note["memo"]) == ("note", "", "check the audio")


def test_change_code_is_a_reject_and_an_add_saved_together(project_store):
    unit_id = units_with_one_suggestion(project_store)[5]
    wrong = suggested_codes(project_store, unit_id)[0]
    right = next(c for c in ("ts.tenacity", "context.pandemic") if c != wrong)
    client = client_for(project_store)
    submit_unit(client, unit_id, {wrong: "reject"}, add=(right,))
    stored = decisions_of(project_store)
    assert stored[["code_id", "action"]].values.tolist() == [[wrong, "reject"], [right, "add"]]
    assert stored["at"].nunique() == 1, "one decide call"
    assert unit_id in row_units(client.get("/?status=changed").text)


def test_decisions_from_form_records_only_changes():
    codings = pd.DataFrame(
        {
            "code_id": ["ts.trust", "ts.time", "ts.tenacity"],
            "status": ["suggested", "accepted", "accepted"],
            "rank": [1.0, 2.0, None],
        }
    )
    made = decisions_from_form(
        "u1", codings, {"ts.trust": "", "ts.time": "accept", "ts.tenacity": "reject"}, [], ""
    )
    assert made == [NewDecision("u1", "ts.tenacity", "remove", "")]
    made = decisions_from_form("u1", codings, {}, ["ts.trust", "context.pandemic"], "m")
    assert made == [
        NewDecision("u1", "ts.trust", "accept", "m"),
        NewDecision("u1", "context.pandemic", "add", "m"),
    ]


def test_a_stale_page_gets_409_and_stores_nothing(project_store):
    unit_id = units_with_suggestions(project_store, 1)[0]
    code = suggested_codes(project_store, unit_id)[0]
    ann = client_for(project_store, reviewer="Ann")
    page = ann.get(f"/unit/{unit_id}").text  # Ann opens the unit...
    with Store(project_store) as store:  # ...Bob decides on it meanwhile...
        store.decide("Bob", [NewDecision(unit_id, code, "reject", "not this one")], source="web")
    response = submit_unit(ann, unit_id, {code: "accept"}, page_html=page)  # ...Ann saves.
    assert response.status_code == 409
    assert "This unit changed since you opened it" in response.text
    assert "Bob" in response.text and "not this one" in response.text
    stored = decisions_of(project_store)
    assert stored[["reviewer", "action"]].values.tolist() == [["Bob", "reject"]]
    # Reopened, the page carries the new version and saving works.
    assert submit_unit(ann, unit_id, {code: "accept"}).status_code == 200
    assert decisions_of(project_store)["reviewer"].tolist() == ["Bob", "Ann"]


def test_forms_without_the_right_csrf_token_are_refused(project_store):
    unit_id = units_with_suggestions(project_store, 1)[0]
    code = suggested_codes(project_store, unit_id)[0]
    client = client_for(project_store)
    fields = dict(form_fields(client.get(f"/unit/{unit_id}").text, "unit-form"))
    fields[f"choice:{code}"] = "accept"
    missing = {k: v for k, v in fields.items() if k != "csrf"}
    assert client.post(f"/unit/{unit_id}", data=missing).status_code == 403
    wrong = {**fields, "csrf": "x" * 43}
    response = client.post(f"/unit/{unit_id}", data=wrong)
    assert response.status_code == 403 and "security token" in response.text
    assert client.post("/reviewer", data={"name": "Mallory"}).status_code == 403
    no_cookie = TestClient(client.app, base_url=BASE)  # a form from elsewhere, no cookie
    assert no_cookie.post(f"/unit/{unit_id}", data=fields).status_code == 403
    assert decisions_of(project_store).empty
    assert client.post(f"/unit/{unit_id}", data=fields).status_code == 200
    assert len(decisions_of(project_store)) == 1


def test_token_is_required_on_every_request_when_set(project_store):
    client = TestClient(create_app(project_store, token=TOKEN), base_url=BASE)
    for path in ("/", "/orphans", "/static/review.js", "/reviewer"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 401, path
        assert "access token" in response.text
    assert client.get("/?token=wrong-token-of-some-length").status_code == 403
    login = client.get("/orphans?token=" + TOKEN, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/orphans"
    cookie = next(c for c in login.headers.get_list("set-cookie") if c.startswith("qcode_token="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/static/review.js").status_code == 200
    sign_in(client, "Ann")
    assert client.get("/").status_code == 200
    stolen = TestClient(client.app, base_url=BASE, cookies={"qcode_token": "x" * len(TOKEN)})
    assert stolen.get("/").status_code == 403
    with pytest.raises(ReviewError, match="at least 16 characters"):
        create_app(project_store, token="short")


def test_wrong_tokens_are_rate_limited(project_store):
    """Guessing the token: after 10 wrong tries a minute the client is refused outright."""
    client = TestClient(create_app(project_store, token=TOKEN), base_url=BASE)
    for _ in range(10):
        assert client.get("/?token=wrong-token-of-some-length").status_code == 403
    refused = client.get("/?token=" + TOKEN, follow_redirects=False)
    assert refused.status_code == 429 and "Too many wrong access tokens" in refused.text
    other = TestClient(create_app(project_store, token=TOKEN), base_url=BASE)
    assert other.get("/orphans?token=" + TOKEN, follow_redirects=False).status_code == 303


def _unit_form(client: TestClient, project_store: Path) -> tuple[str, dict[str, str]]:
    """A unit and its form fields as the page renders them, with one suggestion accepted."""
    unit_id = units_with_suggestions(project_store, 1)[0]
    fields = dict(form_fields(client.get(f"/unit/{unit_id}").text, "unit-form"))
    fields[f"choice:{suggested_codes(project_store, unit_id)[0]}"] = "accept"
    return unit_id, fields


def test_a_session_cookie_forged_from_another_port_does_not_pass(project_store):
    """Cookies ignore ports: a page on 127.0.0.1:other can set our session cookie to a value it
    knows. The old double-submit check then accepted a form carrying that value; now the token
    is an HMAC under this server's secret, which the other page cannot compute."""
    client = client_for(project_store)
    unit_id, fields = _unit_form(client, project_store)
    known = "k" * 43
    client.cookies.set("qcode_session", known)  # what the other port's Set-Cookie does
    response = client.post(f"/unit/{unit_id}", data={**fields, "csrf": known})
    assert response.status_code == 403 and "security token" in response.text
    other_server = TestClient(create_app(project_store), base_url=BASE)
    other_server.cookies.set("qcode_session", known)
    foreign_token = csrf_of(other_server)  # right session, another server's secret
    assert (
        client.post(f"/unit/{unit_id}", data={**fields, "csrf": foreign_token}).status_code == 403
    )
    assert decisions_of(project_store).empty
    # The session value itself is harmless: with this server's own token for it, saving works.
    assert (
        client.post(f"/unit/{unit_id}", data={**fields, "csrf": csrf_of(client)}).status_code == 200
    )
    assert len(decisions_of(project_store)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:9999"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": BASE, "Sec-Fetch-Site": "same-site"},
    ],
)
def test_posts_from_another_origin_are_refused(project_store, headers):
    client = client_for(project_store)
    unit_id, fields = _unit_form(client, project_store)
    response = client.post(f"/unit/{unit_id}", data=fields, headers=headers)
    assert response.status_code == 403 and "sent from another page" in response.text
    assert (
        client.post(
            "/reviewer", data={"csrf": csrf_of(client), "name": "Eve"}, headers=headers
        ).status_code
        == 403
    )
    assert decisions_of(project_store).empty
    own = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    assert client.post(f"/unit/{unit_id}", data=fields, headers=own).status_code == 200


def test_a_fresh_x_forwarded_for_does_not_reset_the_token_limit(project_store):
    """Served as ``qcode review`` serves it: X-Forwarded-For from 127.0.0.1 is not believed."""
    import httpx

    with serving(create_app(project_store, token=TOKEN)) as url:
        for n in range(10):
            forwarded = {"X-Forwarded-For": f"203.0.113.{n}"}
            wrong = httpx.get(f"{url}/?token=wrong-token-of-some-length", headers=forwarded)
            assert wrong.status_code == 403
        right = httpx.get(f"{url}/?token={TOKEN}", headers={"X-Forwarded-For": "203.0.113.99"})
        assert right.status_code == 429
    # Behind a proxy that is named, its X-Forwarded-For does tell clients apart.
    with serving(create_app(project_store, token=TOKEN), trusted_proxy="127.0.0.1") as url:
        for n in range(10):
            forwarded = {"X-Forwarded-For": f"203.0.113.{n}"}
            assert (
                httpx.get(f"{url}/?token=wrong-token-of-some", headers=forwarded).status_code == 403
            )
        other = {"X-Forwarded-For": "203.0.113.99"}
        assert httpx.get(f"{url}/?token={TOKEN}", headers=other).status_code == 303


@pytest.mark.parametrize(
    "expr",
    [
        "(" * 5000 + "ts.trust" + ")" * 5000,
        "NOT " * 400 + "ts.trust",
        "ts.trust OR " * 400 + "ts.time",
    ],
)
def test_deeply_nested_or_huge_quote_expressions_are_a_clear_400(project_store, expr):
    client = client_for(project_store)
    response = client.get("/quotes", params={"expr": expr})
    assert response.status_code == 400
    assert "nested more than 25 levels" in response.text or "characters long" in response.text


def test_cookies_are_http_only_and_same_site_strict(project_store):
    client = TestClient(create_app(project_store), base_url=BASE)
    first = client.get("/reviewer")
    session = first.headers["set-cookie"]
    assert session.startswith("qcode_session=") and "HttpOnly" in session
    assert "SameSite=strict" in session
    named = client.post(
        "/reviewer",
        data={"csrf": csrf_of(client), "name": "Zoë Ó", "next": "/"},
        follow_redirects=False,
    )
    reviewer = named.headers["set-cookie"]
    assert "HttpOnly" in reviewer and "SameSite=strict" in reviewer
    page = client.get("/").text
    assert '<strong id="reviewer-name">Zoë Ó</strong>' in page
    assert "script-src 'self'" in client.get("/").headers["content-security-policy"]


def test_reviewer_is_asked_once_and_can_change(project_store):
    client = TestClient(create_app(project_store), base_url=BASE)
    unit_id = queue_ids(project_store)[0]
    asked = client.get(f"/unit/{unit_id}?order=reading", follow_redirects=False)
    assert asked.status_code == 303
    assert asked.headers["location"] == "/reviewer?next=%2Funit%2F" + unit_id + "%3Forder%3Dreading"
    form = client.get(asked.headers["location"]).text
    assert 'name="next" value="/unit/' in form
    done = client.post(
        "/reviewer",
        data={"csrf": csrf_of(client), "name": "  Ann  ", "next": f"/unit/{unit_id}"},
    )
    assert done.url.path == f"/unit/{unit_id}" and ">Ann</strong>" in done.text
    sign_in(client, "Ann B")
    assert ">Ann B</strong>" in client.get("/").text
    empty = client.post("/reviewer", data={"csrf": csrf_of(client), "name": " "})
    assert empty.status_code == 400
    away = client.post(
        "/reviewer",
        data={"csrf": csrf_of(client), "name": "Ann", "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert away.headers["location"] == "/"


def _tiny_project(folder: Path, text: str, nlp, encoder, codebook) -> Path:
    """A project store from one transcript, built with the real stages (as in conftest)."""
    from pipeline.assign import ZeroShotCoder, assign_units, build_prototypes, embedded_mask
    from pipeline.embed import embed_texts
    from pipeline.ingest import read_transcripts
    from pipeline.segment import segment, units_frame
    from pipeline.settings import Settings

    (folder / "transcripts").mkdir()
    write(folder / "transcripts" / "xss.md", text)
    transcripts, _ = read_transcripts(folder / "transcripts")
    settings = Settings()
    units = units_frame(segment(transcripts, nlp, settings), transcripts)
    vectors, _ = embed_texts(units.loc[embedded_mask(units, settings), "text"].tolist(), encoder)
    coder = ZeroShotCoder(build_prototypes(codebook, encoder), settings)
    suggestions, best = assign_units(units, vectors, coder, settings)
    units = units.merge(best, on="unit_id", how="left")
    path = folder / "project.sqlite"
    with Store(path) as store:
        store.record_run({"run_id": "tiny-run"}, transcripts, units, suggestions, codebook)
    return path


def test_transcript_text_and_memos_are_shown_as_text(tmp_path, nlp, encoder, codebook):
    transcript = (
        "---\ninterview_id: XSS-01\nrole: Head teacher\nlocal_authority: LA-Z\n"
        "workstream: LEI\nnetwork: Test network\n---\n\n"
        "Interviewer: How has the network changed how schools share their work?\n\n"
        "Participant: We share our plans openly now <script>alert(1)</script> and it built "
        "real trust between the schools in the network.\n\n"
        "Interviewer: Thank you, that is really helpful for us.\n"
    )
    path = _tiny_project(tmp_path, transcript, nlp, encoder, codebook)
    client = client_for(path)
    unit_id = queue_ids(path)[0]
    for html in (client.get("/").text, client.get(f"/unit/{unit_id}").text):
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    submit_unit(client, unit_id, add=("ts.trust",), memo="<script>alert(2)</script>")
    html = client.get(f"/unit/{unit_id}").text
    assert "<script>alert(2)" not in html and "&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_blind_mode_shows_each_reviewer_only_their_own_decisions(project_store):
    unit_id = units_with_suggestions(project_store, 1)[0]
    codes = suggested_codes(project_store, unit_id)
    code = codes[0]
    bob = client_for(project_store, reviewer="Bob", blind=True)
    page = bob.get(f"/unit/{unit_id}").text  # Bob opens the unit...
    with Store(project_store) as store:  # ...Ann codes it independently meanwhile.
        store.decide("Ann", [NewDecision(unit_id, c, "accept", "Ann's reason") for c in codes])
    hidden = bob.get(f"/unit/{unit_id}").text
    assert "Ann" not in section(hidden, "decisions") and "Ann" not in section(hidden, "codings")
    assert '<span class="status accepted">' not in hidden
    assert unit_id in row_units(bob.get("/?status=unreviewed").text)
    assert unit_id not in row_units(bob.get("/?status=accepted").text)
    assert "<strong>0</strong> of" in bob.get("/").text and 'name="reviewer"' not in page
    # Ann's decision does not make Bob's page stale: each codes blind.
    bob_saves = submit_unit(bob, unit_id, {code: "reject"}, page_html=page, data_done=True)
    assert bob_saves.status_code == 200
    assert decisions_of(project_store, "Bob")["action"].tolist() == ["reject"] * len(codes) + [
        "done"
    ]
    assert unit_id in row_units(bob.get("/?status=rejected").text)
    ann = client_for(project_store, reviewer="Ann", blind=True)
    assert unit_id in row_units(ann.get("/?status=accepted").text)
    assert "Bob" not in section(ann.get(f"/unit/{unit_id}").text, "decisions")
    # Without blind mode everybody's decisions are visible.
    everyone = client_for(project_store, reviewer="Cy").get(f"/unit/{unit_id}").text
    assert str(escape("Ann's reason")) in everyone and "Bob" in everyone


def test_orphans_page_lists_decisions_whose_text_is_gone(project_store, sample_transcripts):
    with Store(project_store) as store:
        units, texts = store.units().set_index("unit_id"), store.transcript_texts()
    unit_id = next(  # a sentence said once, so that removing it leaves no trace
        u
        for u in units_with_suggestions(project_store, 1)
        if texts[units.loc[u, "transcript_id"]].count(units.loc[u, "text"]) == 1
    )
    code = suggested_codes(project_store, unit_id)[0]
    with Store(project_store) as store:
        store.decide("Ann", [NewDecision(unit_id, code, "accept", "a keeper")])
        units, suggestions, codebook = store.units(), store.suggestions(), store.codebook()
        unit = units.set_index("unit_id").loc[unit_id]
        # The next run's transcript no longer has that sentence.
        transcripts = [
            replace(t, text=t.text.replace(unit["text"], "[removed at the interviewee's request]"))
            if t.transcript_id == unit["transcript_id"]
            else t
            for t in sample_transcripts[0]
        ]
        store.record_run(
            {"run_id": "second-run"},
            transcripts,
            units[units["unit_id"] != unit_id],
            suggestions[suggestions["unit_id"] != unit_id],
            codebook,
        )
    client = client_for(project_store)
    html = client.get("/orphans").text
    rows = re.search(r'<table class="orphans".*?</table>', html, re.S).group(0)
    assert str(escape(unit["text"])) in rows
    assert code in rows and "Ann" in rows and "a keeper" in rows
    assert "its text is no longer in the transcript" in rows
    queue = client.get("/").text
    assert re.search(r'href="/orphans" id="orphans-link">[^<]*<span class="count">1</span>', queue)


def test_serve_refuses_other_interfaces_without_accounts(project_store):
    with pytest.raises(QcodeError, match="without accounts") as raised:
        serve(project_store, host="0.0.0.0")
    assert isinstance(raised.value, ReviewError) and "qcode user add" in raised.value.message
    with pytest.raises(ReviewError, match="without accounts"):  # a shared token is not enough
        serve(project_store, host="192.168.1.20", token=TOKEN)
    with pytest.raises(ReviewError, match="no project store"):
        create_app(project_store.parent / "missing.sqlite")

    from pipeline.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["review", "--store", str(project_store), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "[E720]" in result.output and "user add" in result.output
    helped = runner.invoke(app, ["review", "--help"])
    assert helped.exit_code == 0 and "--blind" in helped.output


def test_requests_addressed_to_other_hosts_are_refused(project_store):
    """A web page cannot reach the review page by rebinding its own name to 127.0.0.1."""
    client = TestClient(create_app(project_store), base_url="http://evil.example")
    assert client.get("/").status_code == 403
    assert TestClient(create_app(project_store), base_url="http://localhost").get(
        "/reviewer"
    ).status_code == (200)


def test_errors_are_html_pages_with_their_status(project_store):
    client = client_for(project_store)
    missing = client.get("/unit/0000000000000000")
    assert missing.status_code == 404 and "no unit to review" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    assert client.get("/nothing-here").status_code == 404
    assert client.get("/static/..%2F..%2Fstore.py").status_code == 404
    assert client.get("/static/review.css").headers["content-type"].startswith("text/css")
    assert client.get("/?order=sideways").status_code == 400
    assert client.get("/?page=two").status_code == 400


def test_queue_neighbours():
    assert neighbours(["a", "b", "c"], "b") == ("a", "c")
    assert neighbours(["a", "b", "c"], "a") == (None, "b")
    assert neighbours(["a"], "z") == (None, None)


# -- a real browser --------------------------------------------------------------------------------


@contextmanager
def serving(app, trusted_proxy: str | None = None) -> Iterator[str]:
    """``app`` served by uvicorn as ``qcode review`` serves it, on a free local port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, trusted_proxy))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server(project_store) -> Iterator[str]:
    """The real app served by uvicorn on a free local port, in a background thread."""
    with serving(create_app(project_store)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server, viewport={"width": 1300, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def _give_name(page, name: str) -> None:
    page.goto("/")
    assert "/reviewer" in page.url
    page.fill("#name", name)
    with page.expect_navigation():
        page.click("#save-name")
    assert page.inner_text("#reviewer-name") == name


@pytest.mark.required
def test_browser_review_by_mouse(page, project_store):
    _give_name(page, "Mouse")
    unit_id = units_with_suggestions(project_store, 2)[0]
    first, second = suggested_codes(project_store, unit_id)[:2]
    added = next(c for c in ("ts.time_pressure", "context.pandemic") if c not in (first, second))
    # Open the unit from the queue (the default order's first page) by clicking its row.
    page.goto("/")
    page.click(f'tr[data-unit="{unit_id}"] a.unit-link')
    page.wait_for_url(f"**/unit/{unit_id}")
    page.click("label:has(#accept-1)")
    page.click("label:has(#reject-2)")
    assert page.is_checked("#accept-1") and page.is_checked("#reject-2")
    page.click("#code-filter")
    page.keyboard.type(added.split(".")[1].replace("_", " "))
    visible = page.locator("#code-list li:visible")
    assert visible.count() >= 1
    page.click(f'#code-list input[value="{added}"]')
    assert page.inner_text("#adding") == f"Adding: {added}"
    page.fill("#memo", "clicked through")
    order = queue_ids(project_store)
    with page.expect_navigation():
        page.click("#save")
    assert page.url.endswith(f"/unit/{order[order.index(unit_id) + 1]}")
    stored = decisions_of(project_store, "Mouse")
    assert set(zip(stored["code_id"], stored["action"], strict=True)) == {
        (first, "accept"),
        (second, "reject"),
        (added, "add"),
    }
    assert set(stored["memo"]) == {"clicked through"} and set(stored["unit_id"]) == {unit_id}


KEY_PLAN = ("1", "a", "r", "x")  # accept the first code, accept all, reject all, reject first


@pytest.mark.required
def test_browser_review_by_keyboard(page, project_store):
    _give_name(page, "Keys")
    page.goto("/")
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.keyboard.press("Escape")
    assert not page.is_visible("#help")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # start at the first unit of the queue
    order = queue_ids(project_store)
    assert page.url.endswith(f"/unit/{order[0]}")
    with page.expect_navigation():
        page.keyboard.press("j")
    assert page.url.endswith(f"/unit/{order[1]}")
    with page.expect_navigation():
        page.keyboard.press("k")
    assert page.url.endswith(f"/unit/{order[0]}")

    expected: dict[str, set[tuple[str, str]]] = {}
    units = 24
    started = time.perf_counter()
    for i in range(units):
        unit_id = page.get_attribute("#unit-form", "data-unit")
        codes = page.eval_on_selector_all(
            "#codings tr[data-row]", "rows => rows.map(r => r.dataset.code)"
        )
        assert codes, f"unit {unit_id} has suggestions to review"
        if i == 5:  # add a code and write a memo, keys only
            added = next(c for c in ("context.pandemic", "context.resources") if c not in codes)
            page.keyboard.press("c")
            page.keyboard.type(added)
            page.keyboard.press("Enter")  # picks it and hands the keys back
            assert page.inner_text("#adding") == f"Adding: {added}"
            page.keyboard.press("m")
            page.keyboard.type("typed, not clicked")
            page.keyboard.press("Escape")
            expected[unit_id] = {(added, "add")}
        else:
            key = KEY_PLAN[i % len(KEY_PLAN)]
            page.keyboard.press(key)
            accepted = {"1": codes[:1], "a": codes}.get(key, [])
            rejected = {"r": codes, "x": codes[:1]}.get(key, [])
            expected[unit_id] = {(c, "accept") for c in accepted} | {
                (c, "reject") for c in rejected
            }
        with page.expect_navigation():
            page.keyboard.press("s" if i % 2 else "Enter")
        assert page.url.endswith(f"/unit/{order[i + 1]}")
    elapsed = time.perf_counter() - started

    rate = units / (elapsed / 60)
    print(f"keyboard review rate: {rate:.0f} units/min")
    out = ROOT / ".cache" / "review_rate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "units": units,
                "seconds": round(elapsed, 2),
                "units_per_minute": round(rate, 1),
                "what": "keyboard-only review in headless Chromium (page latency, not reading)",
            },
            indent=2,
        )
    )

    stored = decisions_of(project_store, "Keys")
    assert stored["unit_id"].nunique() == units
    for unit_id, wanted in expected.items():
        mine = stored[stored["unit_id"] == unit_id]
        assert set(zip(mine["code_id"], mine["action"], strict=True)) == wanted, unit_id
    assert set(stored.loc[stored["action"] == "add", "memo"]) == {"typed, not clicked"}
    assert set(stored["source"]) == {"web"}


@pytest.mark.required
def test_browser_cross_port_page_cannot_save_a_decision(page, browser, project_store, live_server):
    """The attack of issue 12 in a real browser: a page on another port of 127.0.0.1 overwrites
    the session cookie (Set-Cookie ignores ports) and posts a form carrying the value it chose."""
    import http.server

    _give_name(page, "Victim")
    unit_id = units_with_suggestions(project_store, 1)[0]
    page.goto(f"/unit/{unit_id}")
    fields = dict(form_fields(page.content(), "unit-form"))
    fields[f"choice:{suggested_codes(project_store, unit_id)[0]}"] = "accept"
    known = "k" * 43
    fields["csrf"] = known
    inputs = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
    )
    attack = (
        f'<form id="f" method="post" action="{live_server}/unit/{unit_id}">{inputs}</form>'
        "<script>document.getElementById('f').submit()</script>"
    ).encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Set-Cookie", f"qcode_session={known}; Path=/; HttpOnly")
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(attack)

        def log_message(self, *args):
            pass

    attacker = http.server.HTTPServer(("127.0.0.1", 0), Attacker)
    thread = threading.Thread(target=attacker.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_navigation(url=f"{live_server}/unit/{unit_id}"):
            page.goto(f"http://127.0.0.1:{attacker.server_port}/")
        assert "sent from another page" in page.content()
        cookies = {c["name"]: c["value"] for c in page.context.cookies(live_server)}
        assert cookies["qcode_session"] == known  # the overwrite itself happened
    finally:
        attacker.shutdown()
    assert decisions_of(project_store).empty
    # The victim's own page still saves (after a reload gives the form this server's token).
    page.goto(f"/unit/{unit_id}")
    page.click("label:has(#accept-1)")
    with page.expect_navigation():
        page.click("#save")
    assert decisions_of(project_store)["reviewer"].tolist() == ["Victim"]


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.required
def test_browser_focused_code_definition_by_keyboard_and_done(page, project_store, codebook):
    """The focused code's definition, include and exclude notes are on the page (not only in a
    hover tooltip) and follow the keyboard focus; the add-code filter shows the first match's;
    ``d`` saves the unit as done."""
    _give_name(page, "Reader")
    unit_id = units_with_suggestions(project_store, 2)[0]
    codes = suggested_codes(project_store, unit_id)
    first, second = (codebook.code(c) for c in codes[:2])
    page.goto(f"/unit/{unit_id}")
    shown = _words(page.inner_text("#definitions .definition.focused"))
    assert first.definition in shown and _words(first.exclude) in shown
    assert page.is_visible("#definition-1") and not page.is_visible("#definition-2")

    page.keyboard.press("2")  # accept code 2 and focus it: its notes replace code 1's
    shown = _words(page.inner_text("#definitions .definition.focused"))
    for part in (second.definition, second.include, second.exclude):
        assert _words(part) in shown
    assert not page.is_visible("#definition-1")
    page.keyboard.press("i")  # the notes themselves take the focus (a screen reader reads them)
    assert page.evaluate("document.activeElement.id") == "definitions"
    page.keyboard.press("1")  # accept code 1, focus it
    assert page.is_visible("#definition-1") and not page.is_visible("#definition-2")
    page.keyboard.press("Tab")  # Tab to the next code's choices: its notes follow
    assert page.is_visible("#definition-2") and not page.is_visible("#definition-1")

    added = next(c for c in codebook.codes if c.id not in codes)
    page.keyboard.press("Escape")
    page.keyboard.press("c")
    page.keyboard.type(added.id)
    picked = _words(page.inner_text("#definition-picked"))
    assert added.id in picked and added.definition in picked and _words(added.exclude) in picked
    page.keyboard.press("Enter")
    assert not page.is_visible("#definition-picked")
    assert page.inner_text("#adding") == f"Adding: {added.id}"

    order = queue_ids(project_store)
    with page.expect_navigation():
        page.keyboard.press("d")  # done: the codes left as is are rejected
    assert page.url.endswith(f"/unit/{order[order.index(unit_id) + 1]}")
    stored = decisions_of(project_store, "Reader")
    made = set(zip(stored["code_id"], stored["action"], strict=True))
    expected = {(first.id, "accept"), (second.id, "accept"), (added.id, "add"), ("", "done")}
    expected |= {(c, "reject") for c in codes[2:]}
    assert made == expected
    page.goto(f"/unit/{unit_id}")
    assert page.get_attribute("#review-state", "data-status") == "changed"


def test_moved_confirm_is_shown_on_the_unit_and_confirmed_there(
    project_store, tmp_path, nlp, encoder, codebook, embedding_cache
):
    """A decision on a sentence later fixed by one word is not applied, not dropped: the
    page's orphans list and the new sentence's unit show it as "moved — confirm", and the
    confirm button applies it there."""
    from tests.conftest import rerun_with_edit

    with Store(project_store) as store:
        units = store.units()
    mine = units[(units["transcript_id"] == "WP-02") & units["codable"]].reset_index(drop=True)
    typo = mine.iloc[20]
    with Store(project_store) as store:
        (decision_id,) = store.decide("ann", [NewDecision(typo.unit_id, "ts.time", "add")])
    words = typo["text"].split(" ")
    fixed = " ".join([*words[:-1], "X" + words[-1]])
    rerun_with_edit(
        project_store,
        tmp_path,
        lambda body: body.replace(typo["text"], fixed),
        nlp,
        encoder,
        codebook,
        embedding_cache,
    )
    with Store(project_store) as store:
        current = store.units()
    candidate = current.loc[current["text"] == fixed, "unit_id"].item()
    client = client_for(project_store)
    orphans = client.get("/orphans").text
    assert "moved — confirm: its text was edited" in orphans
    assert f'href="/unit/{candidate}#moves"' in orphans
    page = client.get(f"/unit/{candidate}").text
    assert 'id="moves"' in page and str(escape(typo["text"])) in page
    form = re.search(r'<form method="post" action="/orphans/confirm">(.*?)</form>', page, re.S)
    data = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(1)))
    assert data["decision"] == str(decision_id) and data["csrf"]
    response = client.post("/orphans/confirm", data=data, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/unit/{candidate}"
    with Store(project_store) as store:
        resolved = store.resolved_decisions().set_index("decision_id")
    assert resolved.loc[decision_id, "anchor"] == "moved"
    assert resolved.loc[decision_id, "current_unit_id"] == candidate
    assert 'id="moves"' not in client.get(f"/unit/{candidate}").text
    # Confirming again, or without the form's token, is refused.
    again = client.post("/orphans/confirm", data=data, follow_redirects=False)
    assert again.status_code == 400
    forged = client.post("/orphans/confirm", data={"decision": str(decision_id)})
    assert forged.status_code in (400, 403)


@pytest.mark.required
def test_browser_moved_confirm_after_a_typo_fix(
    page, project_store, tmp_path, nlp, encoder, codebook, embedding_cache
):
    """In Chromium: a decision on a sentence, a one-word typo fix in the transcript and a
    re-run. The new sentence's unit shows the decision under "Moved — confirm" and does not
    apply it; the reviewer clicks the confirm button and the page comes back with the
    decision attached (the code accepted, the decision in the unit's history)."""
    from tests.conftest import rerun_with_edit

    with Store(project_store) as store:
        units = store.units()
        suggestions = store.suggestions()
    mine = units[(units["transcript_id"] == "WP-02") & units["codable"]].reset_index(drop=True)
    typo = next(
        row
        for row in mine.iloc[20:].itertuples()
        if "ts.time" not in set(suggestions.loc[suggestions["unit_id"] == row.unit_id, "code_id"])
    )
    with Store(project_store) as store:
        (decision_id,) = store.decide("ann", [NewDecision(typo.unit_id, "ts.time", "add")])
    words = typo.text.split(" ")
    fixed = " ".join([*words[:-1], "X" + words[-1]])
    rerun_with_edit(
        project_store,
        tmp_path,
        lambda body: body.replace(typo.text, fixed),
        nlp,
        encoder,
        codebook,
        embedding_cache,
    )
    with Store(project_store) as store:
        current = store.units()
    candidate = current.loc[current["text"] == fixed, "unit_id"].item()

    _give_name(page, "Confirmer")
    page.goto(f"/unit/{candidate}")
    moves = page.inner_text("#moves")
    assert "Moved — confirm" in moves and "moved — confirm: its text was edited" in moves
    assert _words(typo.text) in _words(moves)
    # Not applied yet: ts.time is not among the unit's codes, nor in its history.
    assert page.locator('#codings tr[data-code="ts.time"]').count() == 0
    assert "None yet." in page.inner_text("#decisions")

    with page.expect_navigation():
        page.click(f"#confirm-{decision_id}")
    assert page.url.endswith(f"/unit/{candidate}")
    assert page.locator("#moves").count() == 0
    row = page.locator('#codings tr[data-code="ts.time"]')
    assert row.count() == 1 and "accepted" in row.inner_text()
    history = page.inner_text("#decisions")
    assert "ts.time" in history and "add" in history and "confirm" in history
    with Store(project_store) as store:
        resolved = store.resolved_decisions().set_index("decision_id")
    assert resolved.loc[decision_id, "anchor"] == "moved"
    assert resolved.loc[decision_id, "current_unit_id"] == candidate
