"""Runs started from the review page (``pipeline.team_runs``, ``flows.team``): a lead starts a
coding run and a report draft; they run as deployments on a real long-running Prefect server
and its runner (``qcode server --runs``), the page shows their state, and the results land in
the project's store. Reviewers and readers get 403; a request names choices, never paths.

The role and input checks run in-process (TestClient, no Prefect: they answer before Prefect is
asked). The deployment path runs once, slow-marked, with a real Prefect server, the real
runner, a real PostgreSQL store and Chromium: the server alone takes 30-60 s to start here."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from fastapi.testclient import TestClient

from pipeline.review import create_app
from pipeline.server import api_url, free_port, start_runner, start_server, stop_server
from pipeline.store import Store
from pipeline.team_runs import (
    CODING_DEPLOYMENT,
    CODING_FLOW,
    REPORT_DEPLOYMENT,
    REPORT_FLOW,
    TeamRunError,
    run_choices,
)
from tests.conftest import CODEBOOK, ROOT, SAMPLE, new_database
from tests.test_review_team import PASSWORDS, add_team, browser_login
from tests.test_review_web import (
    BASE,
    browser,  # noqa: F401  (the shared Chromium fixture)
    form_fields,
    serving,
)

FOLDER, BOOK = SAMPLE.name, CODEBOOK.stem


def choices_for(store, port: int, out, cache_dir=None):
    return run_choices(api_url(port), [SAMPLE], [CODEBOOK], out, store, cache_dir)


def client_as(app, name: str) -> tuple[TestClient, str]:
    """A logged-in client and its CSRF token (as its pages' forms carry it)."""
    client = TestClient(app, base_url=BASE)
    csrf = dict(form_fields(client.get("/login").text, "login-form"))["csrf"]
    done = client.post(
        "/login", data={"csrf": csrf, "name": name, "password": PASSWORDS[name], "next": "/"}
    )
    assert done.status_code == 200, done.text
    return client, csrf


# -- choices: names, never paths -------------------------------------------------------------------


def test_choices_are_names_checked_at_start(tmp_path):
    store = tmp_path / "p.sqlite"
    choices = choices_for(store, 4200, tmp_path / "out")
    assert choices.transcripts == {FOLDER: SAMPLE.resolve()}
    assert choices.codebooks == {BOOK: CODEBOOK.resolve()}
    with pytest.raises(TeamRunError, match="no transcripts in this folder"):
        run_choices(api_url(4200), [tmp_path], [CODEBOOK], tmp_path, store)
    with pytest.raises(TeamRunError, match="must be on this machine"):
        run_choices("http://10.0.0.5:4200/api", [SAMPLE], [CODEBOOK], tmp_path, store)
    with pytest.raises(TeamRunError, match="carries a password"):
        run_choices(api_url(4200), [SAMPLE], [CODEBOOK], tmp_path, "postgresql://u:pw@h/db")
    other = tmp_path / "x" / SAMPLE.name
    shutil.copytree(SAMPLE, other)
    with pytest.raises(TeamRunError, match="two choices are called"):
        run_choices(api_url(4200), [SAMPLE, other], [CODEBOOK], tmp_path, store)


def test_runs_are_for_leads_and_take_only_listed_names(project_store, tmp_path):
    """Reviewers and readers: 403 on the page and on both starts (with a valid form). The
    lead: a name not on the lists is refused (400) before Prefect is asked; with no Prefect
    server answering, a start is a 503 that names the fix, and nothing is recorded."""
    add_team(project_store)
    port = free_port()  # nothing listens there
    app = create_app(project_store, runs=choices_for(project_store, port, tmp_path / "out"))
    for name in ("Rae", "Reid"):
        client, csrf = client_as(app, name)
        assert client.get("/runs").status_code == 403
        form = {"csrf": csrf, "transcripts": FOLDER, "codebook": BOOK}
        for path in ("/runs/coding", "/runs/report"):
            refused = client.post(path, data=form)
            assert refused.status_code == 403 and "may not do this" in refused.text
        assert 'id="runs-link"' not in client.get("/quotes").text
    lead, csrf = client_as(app, "Lee")
    page = lead.get("/runs")
    assert page.status_code == 200 and 'id="runs-link"' in page.text
    assert f'<option value="{FOLDER}">' in page.text and f'<option value="{BOOK}">' in page.text
    for picked in ({"transcripts": str(SAMPLE), "codebook": BOOK}, {"transcripts": FOLDER}):
        refused = lead.post("/runs/coding", data={"csrf": csrf, **picked})
        assert refused.status_code == 400 and "from the lists" in refused.text
    down = lead.post("/runs/coding", data={"csrf": csrf, "transcripts": FOLDER, "codebook": BOOK})
    assert down.status_code == 503 and "cannot be reached" in down.text
    with Store(project_store) as store:
        assert store.db.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0] == 0


def test_runs_page_is_not_found_when_not_set_up(project_store):
    add_team(project_store)
    lead, _ = client_as(create_app(project_store), "Lee")
    missing = lead.get("/runs")
    assert missing.status_code == 404 and "--run-transcripts" in missing.text


# -- the real thing: Prefect server, runner, PostgreSQL, Chromium ----------------------------------


def _wait_for_deployments(url: str, wait_s: float = 180) -> None:
    """The runner registers its deployments once it has imported the flows."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + wait_s
    with SyncPrefectClient(url) as client:
        for name in (f"{CODING_FLOW}/{CODING_DEPLOYMENT}", f"{REPORT_FLOW}/{REPORT_DEPLOYMENT}"):
            while True:
                try:
                    client.read_deployment_by_name(name)
                    break
                except ObjectNotFound:
                    assert time.monotonic() < deadline, f"the runner did not serve {name}"
                    time.sleep(1)


def _wait_for_state(page, wait_s: float = 420) -> str:
    """The newest run's state once final; the page reloads itself (meta refresh) meanwhile."""
    cell = page.locator("#runs tbody tr").first.locator(".state")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        text = cell.inner_text() if cell.count() else ""
        if text.split(" ")[0] in ("Completed", "Failed", "Crashed", "Cancelled"):
            return text
        page.wait_for_timeout(1000)
    raise AssertionError(f"the run did not finish in {wait_s:.0f} s (state: {text})")


@pytest.mark.slow
@pytest.mark.required
def test_lead_starts_runs_that_finish_in_the_store(
    browser,  # noqa: F811
    pg_cluster,
    _pg_project_template,
    cache_dir,
    tmp_path,
):
    url = new_database(pg_cluster, template=_pg_project_template)  # the sample, coded once
    add_team(url)
    with Store(url) as store:
        first_run = store.latest_run_id()
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    base["PYTHONPATH"] = str(ROOT)
    server = start_server(tmp_path, port, log=tmp_path / "server.log", base_env=base)
    runner = start_runner(tmp_path, port, log=tmp_path / "runner.log", base_env=base)
    out = tmp_path / "out"
    try:
        _wait_for_deployments(api_url(port))
        app = create_app(url, runs=choices_for(url, port, out, cache_dir))
        with serving(app) as page_url:
            # A reviewer has no Runs link, and the page and a start with a valid form are 403.
            context, page = browser_login(browser, page_url, "Rae")
            assert page.locator("#runs-link").count() == 0
            assert page.goto("/runs").status == 403
            csrf = page.locator("#logout-form input[name=csrf]").input_value()
            form = {"csrf": csrf, "transcripts": FOLDER, "codebook": BOOK}
            refused = page.request.post("/runs/coding", form=form)
            assert refused.status == 403 and "may not do this" in refused.text()
            context.close()

            context, page = browser_login(browser, page_url, "Lee")
            page.click("#runs-link")
            page.select_option("#run-transcripts", FOLDER)
            page.select_option("#run-codebook", BOOK)
            with page.expect_navigation():
                page.click("#start-coding")
            assert page.locator("#runs tbody tr").count() == 1
            state = _wait_for_state(page)
            assert state == "Completed", (state, (tmp_path / "runner.log").read_text()[-3000:])
            with Store(url) as store:
                run_id = store.latest_run_id()
                assert run_id not in (None, first_run) and len(store.units()) > 0
                assert (out / run_id / "manifest.json").is_file()
            page.goto("/")  # the queue shows the new run's units
            assert page.locator("#queue tbody tr").count() > 0

            page.goto("/runs")
            with page.expect_navigation():
                page.click("#start-report")
            assert page.locator("#runs tbody tr").count() == 2
            state = _wait_for_state(page)
            assert state == "Completed", (state, (tmp_path / "runner.log").read_text()[-3000:])
            assert list((out / "reports").glob("*.md")) and list((out / "reports").glob("*.docx"))
            rows = page.locator("#runs tbody tr")
            assert "report draft" in rows.nth(0).inner_text()
            assert f"coding: {FOLDER} with {BOOK}" in rows.nth(1).inner_text()
            assert "Lee" in rows.nth(1).inner_text()
            context.close()
        with Store(url) as store:
            audit = store.db.execute(
                "SELECT account, action FROM audit_events ORDER BY event_id"
            ).fetchall()
        assert audit == [("Lee", "start coding run"), ("Lee", "start report draft")]
    finally:
        stop_server(runner, server)
