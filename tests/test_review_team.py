"""Accounts and roles on the served review page (a team's project), in-process and in a real
browser: log in as a lead, reviewers and a reader; what each may and may not do."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from pipeline.accounts import (
    MAX_FAILURES,
    AccountError,
    LoginRefused,
    add_user,
    hash_password,
    login,
    verify_password,
)
from pipeline.review import create_app, serve
from pipeline.review.errors import ReviewError
from pipeline.store import Store
from tests.conftest import run_qcode
from tests.test_review_web import (
    BASE,
    browser,  # noqa: F401  (the shared Chromium fixture)
    decisions_of,
    form_fields,
    section,
    serving,
    submit_unit,
    suggested_codes,
    units_with_suggestions,
)

PASSWORDS = {
    "Lee": "lead-password-1",
    "Rae": "reviewer-password-1",
    "Rob": "reviewer-password-2",
    "Reid": "reader-password-1",
}
ROLES = {"Lee": "lead", "Rae": "reviewer", "Rob": "reviewer", "Reid": "reader"}


def add_team(location, blind: bool = False) -> None:
    with Store(location) as store:
        for name, role in ROLES.items():
            add_user(store, name, role, PASSWORDS[name], blind=blind and role == "reviewer")


def logged_in(location, name: str, base_url: str = BASE) -> TestClient:
    client = TestClient(create_app(location), base_url=base_url)
    page = client.get("/login")
    assert page.status_code == 200
    csrf = dict(form_fields(page.text, "login-form"))["csrf"]
    done = client.post(
        "/login", data={"csrf": csrf, "name": name, "password": PASSWORDS[name], "next": "/"}
    )
    assert done.status_code == 200, done.text
    return client


# -- passwords and accounts ------------------------------------------------------------------------


def test_passwords_are_salted_scrypt_hashes():
    first, second = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert first != second and first.startswith("scrypt$") and "correct" not in first
    assert verify_password("correct horse battery", first)
    assert not verify_password("correct horse batterY", first)


def test_accounts_refuse_bad_roles_short_passwords_and_duplicates(store_location):
    with Store(store_location) as store:
        with pytest.raises(AccountError, match="not a role"):
            add_user(store, "Ann", "admin", "long-enough-password")
        with pytest.raises(AccountError, match="at least 12"):
            add_user(store, "Ann", "lead", "short")
        add_user(store, "Ann", "lead", "long-enough-password")
        with pytest.raises(AccountError, match="already an account"):
            add_user(store, "Ann", "reader", "long-enough-password")
        stored = store.db.execute("SELECT password_hash FROM accounts").fetchone()[0]
        assert "long-enough-password" not in stored


def test_lock_out_after_repeated_wrong_passwords(store_location):
    with Store(store_location) as store:
        add_user(store, "Ann", "reviewer", "the-right-password")
        token, account = login(store, "Ann", "the-right-password")
        assert token and account.role == "reviewer"
        for _ in range(MAX_FAILURES):
            with pytest.raises(LoginRefused, match="wrong name or password"):
                login(store, "Ann", "a-wrong-password")
        with pytest.raises(LoginRefused, match="locked"):
            login(store, "Ann", "the-right-password")
        with pytest.raises(LoginRefused, match="wrong name or password"):
            login(store, "Nobody", "the-right-password")  # unknown names say the same


def test_user_add_reads_the_password_from_stdin_never_argv(project_store):
    done = run_qcode(
        "user",
        "add",
        "Ann Lead",
        "--role",
        "lead",
        "--store",
        str(project_store),
        "--password-stdin",
        input="a-good-long-password\n",
    )
    assert done.returncode == 0, done.stderr
    assert "Added lead 'Ann Lead'" in done.stdout
    with Store(project_store) as store:
        assert login(store, "Ann Lead", "a-good-long-password")[1].role == "lead"
    bad = run_qcode(
        "user",
        "add",
        "Bo",
        "--role",
        "boss",
        "--store",
        str(project_store),
        "--password-stdin",
        input="x" * 20 + "\n",
    )
    assert bad.returncode == 2 and "not a role" in bad.stderr and "Traceback" not in bad.stderr
    argv = run_qcode("user", "add", "Cy", "--role", "reader", "--password", "x" * 20)
    assert argv.returncode != 0  # there is no way to give a password as an argument


# -- the page, in process --------------------------------------------------------------------------


def test_login_is_required_and_sessions_end_at_logout(project_location):
    add_team(project_location)
    client = TestClient(create_app(project_location), base_url=BASE)
    asked = client.get("/unit/x?order=reading", follow_redirects=False)
    assert asked.status_code == 303 and asked.headers["location"].startswith("/login?next=")
    csrf = dict(form_fields(client.get("/login").text, "login-form"))["csrf"]
    wrong = client.post("/login", data={"csrf": csrf, "name": "Lee", "password": "nope"})
    assert wrong.status_code == 401 and "wrong name or password" in wrong.text
    no_csrf = client.post("/login", data={"name": "Lee", "password": PASSWORDS["Lee"]})
    assert no_csrf.status_code == 403
    right = client.post(
        "/login",
        data={"csrf": csrf, "name": "Lee", "password": PASSWORDS["Lee"], "next": "/"},
        follow_redirects=False,
    )
    cookie = right.headers["set-cookie"]
    assert cookie.startswith("qcode_login=") and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie and "Secure" not in cookie  # plain http on loopback
    queue = client.get("/")
    assert queue.status_code == 200 and '<strong id="account-name">Lee</strong>' in queue.text
    assert client.get("/reviewer").status_code == 404  # no self-declared names in team mode
    stolen = client.cookies.get("qcode_login")
    logout_csrf = dict(form_fields(queue.text, "logout-form"))["csrf"]
    out = client.post("/logout", data={"csrf": logout_csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    # The old session cookie no longer opens anything, even replayed.
    replay = TestClient(
        create_app(project_location), base_url=BASE, cookies={"qcode_login": stolen}
    )
    assert replay.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_login_cookie_is_secure_behind_tls(project_store):
    add_team(project_store)
    client = logged_in(project_store, "Rae", base_url="https://127.0.0.1")
    assert client.get("/").status_code == 200
    login_cookie = next(c for c in client.cookies.jar if c.name == "qcode_login")
    assert login_cookie.secure


def test_what_each_role_may_and_may_not_do(project_location):
    add_team(project_location)
    unit_id = units_with_suggestions_any(project_location)
    lead, reviewer, reader = (logged_in(project_location, n) for n in ("Lee", "Rae", "Reid"))
    # Readers: quotes only.
    assert reader.get("/", follow_redirects=False).headers["location"] == "/quotes"
    assert reader.get("/quotes").status_code == 200
    for path in (f"/unit/{unit_id}", "/orphans", "/export.csv", "/codebooks"):
        assert reader.get(path).status_code == 403, path
    post = reader.post(f"/unit/{unit_id}", data={"csrf": "x"})
    assert post.status_code == 403
    # Reviewers: review and decide; no export, no codebook management.
    page = reviewer.get(f"/unit/{unit_id}")
    assert page.status_code == 200
    code = suggested_codes_any(project_location, unit_id)
    assert submit_unit(reviewer, unit_id, {code: "accept"}, page_html=page.text).status_code == 200
    for path in ("/export.csv", "/codebooks"):
        assert reviewer.get(path).status_code == 403, path
    # Leads: everything, and every export is recorded under their account.
    assert lead.get("/codebooks").status_code == 200
    export = lead.get("/export.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "Rae" in export.text
    with Store(project_location) as store:
        decisions = store.decisions()
        assert decisions["reviewer"].tolist() == ["Rae"]  # signed by the account, not a form
        events = store.db.execute("SELECT account, action FROM audit_events").fetchall()
        assert events == [("Lee", "export")]


def units_with_suggestions_any(location) -> str:
    with Store(location) as store:
        counts = store.suggestions()["unit_id"].value_counts()
        units = store.units()
    codable = units.loc[units["codable"], "unit_id"]
    return next(u for u in codable if counts.get(u, 0) >= 2)


def suggested_codes_any(location, unit_id: str) -> str:
    with Store(location) as store:
        s = store.suggestions()
    return s[s["unit_id"] == unit_id].sort_values("rank")["code_id"].iloc[0]


def test_double_coding_by_two_blind_reviewer_accounts(project_store):
    add_team(project_store, blind=True)
    unit_id = units_with_suggestions(project_store, 1)[0]
    code = suggested_codes(project_store, unit_id)[0]
    rae, rob, lee = (logged_in(project_store, n) for n in ("Rae", "Rob", "Lee"))
    rob_page = rob.get(f"/unit/{unit_id}").text
    assert submit_unit(rae, unit_id, {code: "accept"}).status_code == 200
    hidden = rob.get(f"/unit/{unit_id}").text
    assert "Rae" not in section(hidden, "decisions")
    # Rae's decision does not make Rob's page stale: each codes blind.
    assert submit_unit(rob, unit_id, {code: "reject"}, page_html=rob_page).status_code == 200
    assert "Rob" not in section(rae.get(f"/unit/{unit_id}").text, "decisions")
    both = section(lee.get(f"/unit/{unit_id}").text, "decisions")  # the lead sees everyone
    assert "Rae" in both and "Rob" in both
    assert decisions_of(project_store, "Rae")["action"].tolist() == ["accept"]
    assert decisions_of(project_store, "Rob")["action"].tolist() == ["reject"]


def test_serve_on_other_interfaces_needs_accounts(project_store, monkeypatch):
    with pytest.raises(ReviewError, match="without accounts"):
        serve(project_store, host="0.0.0.0")
    add_team(project_store)
    import uvicorn

    started = []
    # Not serving for real: the network bind is what the check guards; the app is real.
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: started.append(self.config.host))
    serve(project_store, host="0.0.0.0")
    assert started == ["0.0.0.0"]


# -- a real browser --------------------------------------------------------------------------------


def browser_login(chromium, url: str, name: str):
    context = chromium.new_context(base_url=url, viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.goto("/")
    assert "/login" in page.url
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORDS[name])
    with page.expect_navigation():
        page.click("#login-submit")
    assert page.inner_text("#account-name") == name
    assert page.inner_text("#account-role") == ROLES[name]
    return context, page


@pytest.mark.required
def test_browser_lead_reviewers_and_reader(browser, project_store):  # noqa: F811
    add_team(project_store, blind=True)
    unit_id = units_with_suggestions(project_store, 2)[0]
    with serving(create_app(project_store)) as url:
        # A wrong password shows the login page again with the reason.
        context = browser.new_context(base_url=url)
        page = context.new_page()
        page.goto("/login")
        page.fill("#login-name", "Rae")
        page.fill("#login-password", "not-her-password")
        with page.expect_navigation():
            page.click("#login-submit")
        assert "wrong name or password" in page.inner_text("#login-problem")
        context.close()

        # Two reviewers double-code the same unit blind.
        for name, key in (("Rae", "#accept-1"), ("Rob", "#reject-1")):
            context, page = browser_login(browser, url, name)
            page.goto(f"/unit/{unit_id}")
            assert name not in ("Rob",) or "Rae" not in page.inner_text("#decisions")
            page.click(f"label:has({key})")
            with page.expect_navigation():
                page.click("#save")
            assert page.locator("#export-link").count() == 0
            response = page.goto("/export.csv")
            assert response.status == 403 and "may not do this" in page.content()
            context.close()
        assert decisions_of(project_store, "Rae")["action"].tolist() == ["accept"]
        assert decisions_of(project_store, "Rob")["action"].tolist() == ["reject"]

        # The reader sees quotes, nothing to decide.
        context, page = browser_login(browser, url, "Reid")
        assert page.url.endswith("/quotes")
        assert page.locator("#quotes-link").count() == 1
        assert page.locator("a:text-is('Queue')").count() == 0
        response = page.goto(f"/unit/{unit_id}")
        assert response.status == 403
        context.close()

        # The lead sees everyone's decisions, the codebooks, and exports.
        context, page = browser_login(browser, url, "Lee")
        page.goto(f"/unit/{unit_id}")
        history = page.inner_text("#decisions")
        assert "Rae" in history and "Rob" in history
        page.click("#codebooks-link")
        assert page.locator("#codebook-versions tbody tr").count() == 1
        with page.expect_download() as download:
            page.evaluate("document.querySelector('#export-link').click()")
        exported = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115
        assert re.search(r"\bRae\b", exported) and re.search(r"\bRob\b", exported)
        page.click("#logout")
        page.wait_for_url("**/login")
        page.goto("/")
        assert "/login" in page.url
        context.close()
    with Store(project_store) as store:
        assert store.db.execute("SELECT account, action FROM audit_events").fetchall() == [
            ("Lee", "export")
        ]
