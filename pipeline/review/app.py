"""The local review page: people accept, reject or change the machine's suggestions.

A FastAPI app over the project store, built by ``create_app`` and served by ``serve``. Each save
is one ``Store.decide`` call carrying the unit version the page was rendered with, so nobody
overwrites a decision they have not seen. The page is for this machine only unless a token is set:
transcripts are confidential, so every other interface needs one.

Forms carry a CSRF token that is an HMAC of the browser's session id under a secret made when the
server starts: a page on another port of this machine can overwrite our cookies (cookies ignore
ports) but cannot compute the token. Posts whose ``Origin`` or ``Sec-Fetch-Site`` say they come
from another page are refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, unquote, urlencode

import jinja2
import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.accounts import (
    Account,
    LoginRefused,
    account_for,
    has_accounts,
    login,
    logout,
    record_event,
)
from pipeline.codebook import Codebook
from pipeline.decisions import CONFIRM_SOURCE, MoveError, confirmation
from pipeline.review.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    NotLoggedIn,
    ReviewError,
    TooManyAttempts,
    Unavailable,
    UnitChanged,
    WebError,
)
from pipeline.review.project import (
    ATTRIBUTES,
    ProjectView,
    SnapshotCache,
    decisions_from_form,
    open_project,
    turns_around,
)
from pipeline.review.queue import (
    DEFAULT_ORDER,
    PAGE_SIZE,
    STATUSES,
    STRATEGIES,
    filter_queue,
    neighbours,
    page_of,
    progress,
    queue_mask,
)
from pipeline.store import NewDecision, StaleUnitError, Store
from pipeline.store_pg import is_url
from pipeline.store_pg import shown as without_password
from pipeline.team_runs import (
    CODING_DEPLOYMENT,
    CODING_FLOW,
    FINAL_STATES,
    REPORT_DEPLOYMENT,
    REPORT_FLOW,
    START_CODING,
    START_REPORT,
    RunChoices,
    coding_parameters,
    record_start,
    report_parameters,
    run_states,
    start_run,
    started_runs,
)

if TYPE_CHECKING:
    import uvicorn

HERE = Path(__file__).parent
STATIC_FILES = {"review.css": "text/css", "review.js": "text/javascript"}
TOKEN_COOKIE = "qcode_token"
SESSION_COOKIE = "qcode_session"
REVIEWER_COOKIE = "qcode_reviewer"
LOGIN_COOKIE = "qcode_login"
MIN_TOKEN_LENGTH = 16
MAX_MEMO = 5000
SESSION_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Pages that work before the reviewer has given a name.
NAMELESS_PATHS = ("/reviewer", "/static/")
# Pages that work before logging in (team mode).
PUBLIC_PATHS = ("/login", "/static/", "/favicon.ico")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not "no-referrer": browsers then send "Origin: null" with our own form posts, and the
    # Origin check below could not tell them from a sandboxed page's.
    "Referrer-Policy": "same-origin",
}


class LoginThrottle:
    """Wrong access tokens per client: after ``limit`` in ``window`` seconds the client is
    refused (429), right token or not, until the window has passed. Guessing is then hopeless
    even for a short token."""

    def __init__(self, limit: int = 10, window: float = 60.0):
        self.limit, self.window = limit, window
        self.failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        now = time.monotonic()
        times = self.failures.setdefault(client, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def check(self, client: str) -> None:
        if len(self._recent(client)) >= self.limit:
            raise TooManyAttempts(
                "too many wrong access tokens from this computer: wait a minute and use the link "
                "you were given"
            )

    def failed(self, client: str) -> None:
        self._recent(client).append(time.monotonic())


@dataclass(frozen=True)
class ReviewConfig:
    """Everything a request needs besides itself; one per app."""

    store_path: Path | str
    token: str | None
    blind: bool
    templates: jinja2.Environment
    snapshots: SnapshotCache
    static: dict[str, tuple[bytes, str]]
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    cache_dir: Path | None = None  # the runs' embedding cache, for the quote bank's ranking
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    accounts: bool = False  # team mode: people log in; roles decide what they may do
    fragments: dict[str, Markup] = field(default_factory=dict)  # parts rendered once (code_picker)
    runs: RunChoices | None = None  # runs a lead may start from the page (pipeline.team_runs)

    def csrf_token(self, session: str) -> str:
        """The forms' token for a browser session: only this server can make it."""
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()


# -- the app --------------------------------------------------------------------------------------


def create_app(
    store_path: Path | str,
    *,
    token: str | None = None,
    blind: bool = False,
    cache_dir: Path | None = None,
    runs: RunChoices | None = None,
) -> FastAPI:
    """The review app for one project store.

    ``token``: every request must present it (``?token=`` once, then a cookie).
    ``blind``: double coding; each reviewer sees only their own decisions and statuses.
    ``cache_dir``: the embedding cache the runs used (default ``./.cache``).
    With accounts in the store (``qcode user add``) everyone logs in and roles apply; names
    typed into the page are only for the single-user local mode.
    ``runs``: the transcript folders and codebooks a lead may start runs with (``/runs``).
    """
    store_path = store_path if is_url(store_path) else Path(store_path)
    if token is not None and len(token.strip()) < MIN_TOKEN_LENGTH:
        raise ReviewError(
            f"the access token must be at least {MIN_TOKEN_LENGTH} characters; make one with "
            'python -c "import secrets; print(secrets.token_urlsafe())"'
        )
    with open_project(store_path) as store:  # fail now, not on the first request; migrates
        accounts = has_accounts(store)
    app = FastAPI(title="qcode review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = ReviewConfig(
        store_path=store_path,
        token=token,
        blind=blind,
        templates=template_environment(),
        snapshots=SnapshotCache(),
        static={n: ((HERE / "static" / n).read_bytes(), t) for n, t in STATIC_FILES.items()},
        cache_dir=cache_dir,
        accounts=accounts,
        runs=runs,
    )
    app.middleware("http")(guard)
    for kind in (WebError, StarletteHTTPException, RequestValidationError, Exception):
        app.add_exception_handler(kind, handle_error)
    app.include_router(router)
    return app


def template_environment() -> jinja2.Environment:
    """The one Jinja environment: autoescaped, so transcript text can never become markup."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda stamp: str(stamp or "")[:16].replace("T", " ")
    env.filters["percent"] = lambda share: f"{100 * share:.0f}%"
    return env


def is_loopback(host: str) -> bool:
    """True for names that only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    store_path: Path | str,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    blind: bool = False,
    cache_dir: Path | None = None,
    trusted_proxy: str | None = None,
    runs: RunChoices | None = None,
) -> None:
    """Serve the review page with uvicorn until Ctrl+C.

    Any interface other than loopback needs accounts (``qcode user add``): the page shows
    confidential transcripts and writes decisions, and everyone on the network must be someone.
    ``trusted_proxy``: the address of a reverse proxy whose ``X-Forwarded-For`` (and
    ``X-Forwarded-Proto``: cookies are then marked Secure) are believed.
    """
    import uvicorn

    app = create_app(store_path, token=token, blind=blind, cache_dir=cache_dir, runs=runs)
    if not is_loopback(host) and not settings_of(app).accounts:
        raise ReviewError(
            f"refusing to serve the review page on {host} without accounts: anyone who can "
            "reach this machine could read the transcripts. Add a lead with "
            "'qcode user add NAME --role lead' (and the team's accounts), or use --host 127.0.0.1"
        )
    config = server_config(app, host, port, trusted_proxy)
    everywhere = host in ("0.0.0.0", "::")
    shown = "127.0.0.1" if everywhere else host
    shown = f"[{shown}]" if ":" in shown else shown
    login = f"?{urlencode({'token': token})}" if token else ""
    store_path = without_password(str(store_path)) if is_url(store_path) else store_path
    print(f"review: serving {store_path} at http://{shown}:{port}/{login} (Ctrl+C to stop)")
    if everywhere:
        print("review: from other machines, use this machine's address instead of 127.0.0.1")
    uvicorn.Server(config).run()


def server_config(
    app: FastAPI, host: str, port: int, trusted_proxy: str | None = None
) -> uvicorn.Config:
    """How uvicorn serves the page. ``X-Forwarded-For`` is believed only from ``trusted_proxy``
    (uvicorn's default trusts it from 127.0.0.1, so any local caller could claim to be a new
    client on every request and never meet the wrong-token limit)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # the first request of a browser carries the token in its URL
        proxy_headers=trusted_proxy is not None,
        forwarded_allow_ips=trusted_proxy or "",
    )


# -- every request: host, token, reviewer, CSRF session, headers ----------------------------------


async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Checks that come before any page: who may ask, and who is asking."""
    config = settings(request)
    session = request.cookies.get(SESSION_COOKIE, "")
    fresh_session = not SESSION_SHAPE.match(session)
    if fresh_session:
        session = secrets.token_urlsafe(32)
    request.state.session = session
    request.state.csrf = config.csrf_token(session)
    try:
        response = _gatekeeper(request, config) or await call_next(request)
    except WebError as error:
        response = render_error(request, error)
    if fresh_session:
        set_cookie(response, SESSION_COOKIE, session)
    response.headers.update(SECURITY_HEADERS)
    if not request.url.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _gatekeeper(request: Request, config: ReviewConfig) -> Response | None:
    """A response that stops the request here (error, login, name form), or None to go on."""
    request.state.account = None
    if request.method not in SAFE_METHODS:
        _same_origin(request)
    if config.token is None:
        # Without a token only this machine may ask, also via a DNS name rebound to 127.0.0.1.
        if not is_loopback(request.url.hostname or ""):
            raise Forbidden("this review page only answers requests addressed to 127.0.0.1")
    else:
        client = request.client.host if request.client else "unknown"
        config.throttle.check(client)
        sent = request.query_params.get("token")
        if sent is not None:
            if not _same(sent, config.token):
                config.throttle.failed(client)
                raise Forbidden("this access token is wrong: ask for the link again")
            url = request.url.remove_query_params("token")
            response = RedirectResponse(url.path + (f"?{url.query}" if url.query else ""), 303)
            set_cookie(response, TOKEN_COOKIE, config.token, max_age=12 * 3600)
            return response
        cookie = request.cookies.get(TOKEN_COOKIE)
        if cookie is None:
            raise NotLoggedIn(
                "this review page needs its access token: open the link with ?token=... that "
                "was printed when the page was started"
            )
        if not _same(cookie, config.token):
            config.throttle.failed(client)
            raise Forbidden("your access token is no longer valid: open the link with ?token=...")
    if config.accounts:
        return _login_gate(request, config)
    if (
        request.method == "GET"
        and reviewer_of(request) is None
        and not request.url.path.startswith(NAMELESS_PATHS)
    ):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/reviewer?" + urlencode({"next": here}), 303)
    return None


def _login_gate(request: Request, config: ReviewConfig) -> Response | None:
    """Team mode: who is logged in (``request.state.account``), or the way to the login page."""
    if request.url.path.startswith(PUBLIC_PATHS):
        return None
    store = Store(config.store_path, migrate=False, pooled=True)
    try:
        account = account_for(store, request.cookies.get(LOGIN_COOKIE, ""))
    finally:
        store.close()
    if account is None:
        if request.method != "GET":
            raise NotLoggedIn("log in again: your session has ended")
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": here}), 303)
    request.state.account = account
    return None


def account_of(request: Request) -> Account | None:
    return getattr(request.state, "account", None)


def require(request: Request, *roles: str) -> None:
    """403 unless the logged-in account has one of ``roles`` (single-user mode: always fine)."""
    account = account_of(request)
    if settings(request).accounts and (account is None or account.role not in roles):
        role = account.role if account else "nobody"
        raise Forbidden(f"a {role} account may not do this; ask the project's lead")


def settings_of(app: FastAPI) -> ReviewConfig:
    return app.state.review


def _same_origin(request: Request) -> None:
    """Refuse a post a browser says came from another page (another port is another origin).

    Browsers send ``Sec-Fetch-Site`` and ``Origin`` with posts; clients that send neither
    (scripts, tests) still need the CSRF token."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if (site is not None and site not in ("same-origin", "none")) or (
        origin is not None and origin != own
    ):
        raise Forbidden(
            f"this form was sent from another page ({origin or site}), not from this review "
            "page: reload the review page and use its own buttons"
        )


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def set_cookie(
    response: Response, name: str, value: str, max_age: int | None = None, secure: bool = False
) -> None:
    """Cookies no script can read and no other site can send (and, behind TLS, only over it)."""
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="strict", path="/", secure=secure
    )


async def checked_form(request: Request) -> FormData:
    """A POST's form, once its CSRF field is this server's token for the session (403 if not)."""
    form = await request.form()
    sent = form.get("csrf")
    session = request.cookies.get(SESSION_COOKIE, "")
    expected = settings(request).csrf_token(session)
    if not SESSION_SHAPE.match(session) or not isinstance(sent, str) or not _same(sent, expected):
        raise Forbidden(
            "this form is not from your review page (its security token is missing or wrong): "
            "reload the page and try again"
        )
    return form


# -- shared helpers ------------------------------------------------------------------------------


def settings(request: Request) -> ReviewConfig:
    return request.app.state.review


def open_store(config: Annotated[ReviewConfig, Depends(settings)]) -> Iterator[Store]:
    """One connection per request: SQLite connections are not shared across threads."""
    store = Store(config.store_path, migrate=False, pooled=True)
    try:
        yield store
    finally:
        store.close()


StoreDep = Annotated[Store, Depends(open_store)]
FormDep = Annotated[FormData, Depends(checked_form)]


def valid_reviewer(name: str) -> str | None:
    """The name, tidied, if it can sign decisions."""
    name = " ".join(name.split())
    if not name or len(name) > 80 or not name.isprintable():
        return None
    return name


def reviewer_of(request: Request) -> str | None:
    """Who signs decisions: the logged-in account, or (single-user mode) the typed name."""
    if settings(request).accounts:
        account = account_of(request)
        return account.name if account else None
    return valid_reviewer(unquote(request.cookies.get(REVIEWER_COOKIE, "")))


def blind_scope(request: Request) -> str | None:
    """Whose decisions the page shows: one reviewer's in blind coding, else everybody's."""
    config = settings(request)
    if config.accounts:
        account = account_of(request)
        if account is None or account.role == "lead":
            return None  # leads see everyone's work
        return account.name if (config.blind or account.blind) else None
    return reviewer_of(request) if config.blind else None


def view_for(request: Request, store: Store) -> tuple[ProjectView, str]:
    """The project as the reviewer on this request sees it (their own decisions if blind)."""
    reviewer = reviewer_of(request)
    if reviewer is None:
        raise BadRequest("tell the page your name first (the link at the top)")
    config = settings(request)
    return ProjectView.load(store, config.snapshots, blind_scope(request)), reviewer


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    config = settings(request)
    context.setdefault("orphan_count", None)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    account = account_of(request)
    html = config.templates.get_template(template).render(
        reviewer=reviewer_of(request),
        account=account,
        team=config.accounts,
        blind=blind_scope(request) is not None,
        csrf=getattr(request.state, "csrf", ""),
        here=_local(here),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def render_error(request: Request, error: WebError) -> HTMLResponse:
    return render(request, "error.html", status=error.status, error=error, **error.context)


async def handle_error(request: Request, exc: Exception) -> HTMLResponse:
    """The one error handler: every failure becomes an HTML page with its status."""
    if isinstance(exc, WebError):
        error = exc
    elif isinstance(exc, StarletteHTTPException):
        error = WebError(str(exc.detail))
        error.status, error.title = exc.status_code, str(exc.detail)
    elif isinstance(exc, RequestValidationError):
        error = BadRequest("a link or form on this page carries a value the page cannot read")
    else:
        error = WebError("the review page failed; the terminal running it shows why")
    return render_error(request, error)


@dataclass(frozen=True)
class QueueQuery:
    """The queue a reviewer works through: order, filters and page, kept in every link."""

    order: str = DEFAULT_ORDER
    transcript: str = ""
    code: str = ""
    status: str = ""
    reviewer: str = ""
    page: int = 1

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> QueueQuery:
        """From a query string or a form's hidden fields; 400 for values no link would carry."""
        text = {f.name: values.get(f.name) for f in fields(cls)}
        text = {k: v.strip() for k, v in text.items() if isinstance(v, str) and v.strip()}
        order = text.get("order", DEFAULT_ORDER)
        status = text.get("status", "")
        if order not in STRATEGIES:
            raise BadRequest(f"'{order}' is not a queue order (use one of {', '.join(STRATEGIES)})")
        if status and status not in STATUSES:
            raise BadRequest(f"'{status}' is not a status (use one of {', '.join(STATUSES)})")
        try:
            page = max(1, int(text.get("page", "1")))
        except ValueError:
            raise BadRequest("the page number is not a number") from None
        return cls(
            order=order,
            transcript=text.get("transcript", ""),
            code=text.get("code", ""),
            status=status,
            reviewer=text.get("reviewer", ""),
            page=page,
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """Non-default values only, so links stay short."""
        query = replace(self, **changes)
        default = QueueQuery()
        return {
            f.name: str(getattr(query, f.name))
            for f in fields(self)
            if getattr(query, f.name) != getattr(default, f.name)
        }

    def url(self, path: str, **changes: Any) -> str:
        params = self.params(**changes)
        return path + (f"?{urlencode(params)}" if params else "")

    def queue(
        self, view: ProjectView, keep: str = "", table: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """The ordered, filtered units (blind reviewers filter on their own decisions only)."""
        table = view.table() if table is None else table
        ordered = view.ordered(table, self.order)
        return filter_queue(ordered, *self._filters(view), keep)

    def unit_ids(self, view: ProjectView, keep: str = "") -> list[str]:
        """``queue``'s unit ids, without reordering the whole table (every save asks this)."""
        table = view.table()
        positions = view.positions(table, self.order)
        mask = queue_mask(table, *self._filters(view), keep)
        return view.snapshot.codable_ids[positions[mask[positions]]].tolist()

    def _filters(self, view: ProjectView) -> tuple[str, str, str, str]:
        reviewer = "" if view.scope is not None else self.reviewer
        return self.transcript, self.code, self.status, reviewer


def _plain(value: Any) -> Any:
    """NaN and numpy scalars -> None and Python values, for templates."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return plain(frame.to_dict("records"))


def plain(rows: list[dict]) -> list[dict[str, Any]]:
    """Records with NaN and numpy scalars as None and Python values, for templates."""
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


# -- pages -----------------------------------------------------------------------------------------

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def queue_page(request: Request, store: StoreDep) -> HTMLResponse:
    """Units to review in the chosen order, with filters and progress."""
    account = account_of(request)
    if account is not None and account.role == "reader":
        return RedirectResponse("/quotes", 303)  # type: ignore[return-value]
    require(request, "lead", "reviewer")
    query = QueueQuery.parse(request.query_params)
    view, _ = view_for(request, store)
    codebook = view.snapshot.codebook
    table = view.table()
    queue = query.queue(view, table=table)
    rows, page, pages = page_of(queue, query.page)
    first = queue["unit_id"].iloc[0] if len(queue) else None
    return render(
        request,
        "queue.html",
        query=query,
        rows=records(rows),
        offset=(page - 1) * PAGE_SIZE,
        page=page,
        pages=pages,
        count=len(queue),
        start_url=query.url(f"/unit/{first}", page=1) if first else None,
        progress=progress(table, view.snapshot.code_order),
        transcripts=sorted(table["transcript_id"].unique()),
        codes=codebook.codes,
        labels={c.id: c.label for c in codebook.codes},
        strategies=STRATEGIES,
        statuses=STATUSES,
        reviewers=[] if view.scope is not None else store.reviewers(),
        orphan_count=view.orphan_count(),
        done=request.query_params.get("done") == "1",
    )


@router.get("/unit/{unit_id}", response_class=HTMLResponse)
def unit_page(unit_id: str, request: Request, store: StoreDep) -> HTMLResponse:
    """One unit in its context, with its codes to accept, reject or add."""
    require(request, "lead", "reviewer")
    query = QueueQuery.parse(request.query_params)
    view, reviewer = view_for(request, store)
    unit = _unit_or_404(view, unit_id)
    queue_ids = query.unit_ids(view, keep=unit_id)
    before, after = neighbours(queue_ids, unit_id)
    position = queue_ids.index(unit_id)
    codebook = view.snapshot.codebook
    codings = plain(view.coding_rows(unit_id))
    for row in codings:
        code = codebook.code(row["code_id"])
        row.update(
            label=code.label,
            definition=code.definition,
            include=code.include,
            exclude=code.exclude,
            kind=code.kind,
        )
    return render(
        request,
        "unit.html",
        query=query,
        unit=_plain_series(unit),
        attributes={a: unit[a] for a in ATTRIBUTES if unit[a]},
        turns=turns_around(
            view.snapshot.units,
            view.snapshot.texts,
            unit,
            turns=view.snapshot.turns.get(unit["transcript_id"], []),
        ),
        codings=codings,
        state=view.review_state(unit_id),
        history=plain(view.history(unit_id)),
        moves=plain(view.moves_to(unit_id)),
        code_picker=code_picker(request, view.snapshot.codebook),
        version=store.unit_version(unit_id, view.scope),
        position=position + 1,
        queue_length=len(queue_ids),
        prev_url=query.url(f"/unit/{before}") if before else None,
        next_url=query.url(f"/unit/{after}") if after else None,
        queue_url=query.url("/", page=position // PAGE_SIZE + 1),
        orphan_count=view.orphan_count(),
        reviewer_name=reviewer,
    )


@router.post("/unit/{unit_id}")
def save_unit(unit_id: str, request: Request, store: StoreDep, form: FormDep) -> Response:
    """Record the reviewer's decisions on a unit in one transaction, then open the next unit."""
    require(request, "lead", "reviewer")
    query = QueueQuery.parse(form)
    view, reviewer = view_for(request, store)
    _unit_or_404(view, unit_id)
    queue_ids = query.unit_ids(view, keep=unit_id)
    _, after = neighbours(queue_ids, unit_id)
    codings = view.codings(unit_id)
    done = form.get("done") == "1"
    decisions = decisions_from_form(
        unit_id,
        codings,
        *_choices(form, codings, view.snapshot.codebook.ids),
        done=done,
        reviewed=done and view.review_state(unit_id)["reviewed"],
    )
    if decisions:
        try:
            store.decide(
                reviewer,
                decisions,
                source="web",
                expected_versions={unit_id: _version(form)},
                version_reviewer=view.scope,
            )
        except StaleUnitError:
            raise _unit_changed(request, store, unit_id, query) from None
    if after is None:
        return RedirectResponse("/?" + urlencode({**query.params(page=1), "done": "1"}), 303)
    return RedirectResponse(query.url(f"/unit/{after}"), 303)


def code_picker(request: Request, codebook: Codebook) -> Markup:
    """The "add a code" list of the whole codebook, rendered once per codebook: it is the same
    on every unit page, and rendering it each time was a tenth of a save."""
    config = settings(request)
    key = codebook.model_dump_json()
    html = config.fragments.get(key)
    if html is None:
        codes = [
            {
                **c.model_dump(include={"id", "label", "definition", "include", "exclude", "kind"}),
                "group": codebook.group(c.group).label,
            }
            for c in codebook.codes
        ]
        html = Markup(config.templates.get_template("_code_picker.html").render(codes=codes))
        config.fragments.clear()  # one codebook at a time
        config.fragments[key] = html
    return html


def _unit_or_404(view: ProjectView, unit_id: str) -> pd.Series:
    unit = view.unit(unit_id)
    if unit is None:
        raise NotFound(f"there is no unit to review with id '{unit_id}' in the latest run")
    return unit


def _plain_series(row: pd.Series) -> dict[str, Any]:
    return {k: _plain(v) for k, v in row.items()}


def _version(form: FormData) -> int:
    try:
        return int(str(form.get("version", "")))
    except ValueError:
        raise BadRequest("the form lost the unit version it was opened with: reload") from None


def _choices(
    form: FormData, codings: pd.DataFrame, code_ids: list[str]
) -> tuple[dict[str, str], list[str], str]:
    """(choice per shown code, codes to add, memo) from the unit form, checked."""
    shown = set(codings["code_id"])
    choices: dict[str, str] = {}
    for key, value in form.multi_items():
        if key.startswith("choice:"):
            code = key.removeprefix("choice:")
            if code not in shown or value not in ("", "accept", "reject"):
                raise BadRequest(f"'{code}' cannot be decided on this unit")
            choices[code] = str(value)
    added = [str(v) for v in form.getlist("add") if str(v).strip()]
    unknown = sorted(set(added) - set(code_ids))
    if unknown:
        raise BadRequest(f"'{unknown[0]}' is not a code of this codebook")
    memo = str(form.get("memo") or "").strip()
    if len(memo) > MAX_MEMO:
        raise BadRequest(f"the memo is longer than {MAX_MEMO} characters")
    return choices, added, memo


def _unit_changed(request: Request, store: Store, unit_id: str, query: QueueQuery) -> UnitChanged:
    """The 409 page's error: what is on the unit now, and a link to review it again."""
    view, _ = view_for(request, store)
    return UnitChanged(
        "A decision was recorded on this unit after you opened it (by someone else, or by you "
        "in another tab). Nothing of yours was saved and nothing was overwritten: read the "
        "decisions below, then open the unit again.",
        history=plain(view.history(unit_id)),
        reload_url=query.url(f"/unit/{unit_id}"),
    )


@router.get("/reviewer", response_class=HTMLResponse)
def reviewer_form(request: Request, next: str = "/") -> HTMLResponse:
    """Ask for the name every decision is signed with."""
    _no_names_in_team_mode(request)
    return render(request, "reviewer.html", next=_local(next), problem="")


@router.post("/reviewer")
def set_reviewer(request: Request, form: FormDep) -> Response:
    _no_names_in_team_mode(request)
    name = valid_reviewer(str(form.get("name") or ""))
    target = _local(str(form.get("next") or "/"))
    if name is None:
        return render(
            request,
            "reviewer.html",
            status=400,
            next=target,
            problem="Give a name of 1 to 80 printable characters.",
        )
    response = RedirectResponse(target, 303)
    set_cookie(response, REVIEWER_COOKIE, quote(name, safe=""), max_age=365 * 24 * 3600)
    return response


def _local(target: str) -> str:
    """Only paths on this site: a crafted link must not send the reviewer elsewhere."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/orphans", response_class=HTMLResponse)
def orphans_page(request: Request, store: StoreDep) -> HTMLResponse:
    """Decisions whose text is gone from the transcripts: never dropped, shown here."""
    require(request, "lead", "reviewer")
    view, _ = view_for(request, store)
    orphans = view.orphans()
    return render(request, "orphans.html", orphans=records(orphans), orphan_count=len(orphans))


@router.post("/orphans/confirm")
def confirm_move(request: Request, store: StoreDep, form: FormDep) -> Response:
    """A person confirms a "moved — confirm" decision belongs to the passage offered: recorded
    as a note (source 'confirm'); the decision then applies there. Back to that unit."""
    view, reviewer = view_for(request, store)
    try:
        decision_id = int(str(form.get("decision", "")))
    except ValueError:
        raise BadRequest("the form lost the number of the decision to confirm: reload") from None
    try:
        unit_id, memo = confirmation(view.visible_decisions(), decision_id)
    except MoveError as error:
        raise BadRequest(error.problem) from None
    store.decide(reviewer, [NewDecision(unit_id, "", "note", memo)], source=CONFIRM_SOURCE)
    return RedirectResponse(f"/unit/{unit_id}", 303)


@router.get("/quotes", response_class=HTMLResponse)
def quotes_page(request: Request) -> HTMLResponse:
    """The quote bank (as ``qcode quotes``); in blind mode from the reviewer's own decisions."""
    from pipeline.review.quotes import quotes_context

    config = settings(request)
    scope = blind_scope(request)
    context = quotes_context(config.store_path, request.query_params, scope, config.cache_dir)
    return render(request, "quotes.html", status=400 if context["problem"] else 200, **context)


def _no_names_in_team_mode(request: Request) -> None:
    if settings(request).accounts:
        raise NotFound("with accounts, decisions are signed by the logged-in account")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """Team mode: name and password."""
    if not settings(request).accounts:
        raise NotFound("this review page has no accounts (single-user mode)")
    return render(request, "login.html", next=_local(next), problem="")


@router.post("/login")
def log_in(request: Request, form: FormDep) -> Response:
    config = settings(request)
    if not config.accounts:
        raise NotFound("this review page has no accounts (single-user mode)")
    client = request.client.host if request.client else "unknown"
    config.throttle.check(client)
    target = _local(str(form.get("next") or "/"))
    store = Store(config.store_path, migrate=False, pooled=True)
    try:
        token, _ = login(store, str(form.get("name") or ""), str(form.get("password") or ""))
    except LoginRefused as error:
        config.throttle.failed(client)
        return render(request, "login.html", status=401, next=target, problem=error.problem)
    finally:
        store.close()
    response = RedirectResponse(target, 303)
    secure = request.url.scheme == "https"
    set_cookie(response, LOGIN_COOKIE, token, max_age=12 * 3600, secure=secure)
    return response


@router.post("/logout")
def log_out(request: Request, store: StoreDep, form: FormDep) -> Response:
    logout(store, request.cookies.get(LOGIN_COOKIE, ""))
    response = RedirectResponse("/login", 303)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.get("/export.csv")
def export_decisions(request: Request, store: StoreDep) -> Response:
    """Every decision as CSV, for the lead; the export is recorded under their account."""
    require(request, "lead")
    frame = store.decisions()
    who = reviewer_of(request) or "local"
    record_event(store, who, "export", f"decisions.csv ({len(frame)} decisions)")
    return Response(
        frame.to_csv(index=False),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="decisions.csv"'},
    )


@router.get("/codebooks", response_class=HTMLResponse)
def codebooks_page(request: Request, store: StoreDep) -> HTMLResponse:
    """The codebook versions the project's runs used, newest first (for the lead)."""
    require(request, "lead")
    rows = store.db.execute(
        "SELECT c.name, c.sha256, c.stored_at, COUNT(r.run_id) FROM codebooks c"
        " LEFT JOIN runs r ON r.codebook_sha256 = c.sha256"
        " GROUP BY c.name, c.sha256, c.stored_at ORDER BY c.stored_at DESC"
    ).fetchall()
    versions = [dict(name=n, sha256=s, stored_at=t, runs=k) for n, s, t, k in rows]
    return render(request, "codebooks.html", versions=versions)


def _runs_of(request: Request) -> RunChoices:
    """The page's run choices, for a lead; 403 for anyone else, 404 if runs are not set up."""
    require(request, "lead")
    choices = settings(request).runs
    if choices is None:
        raise NotFound(
            "runs from the page are not set up: start the page with --prefect-api, "
            "--run-transcripts and --run-codebook (see the team guide)"
        )
    return choices


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, store: StoreDep) -> HTMLResponse:
    """Start a coding run or a report draft; the runs started so far, with Prefect's state
    (the page reloads itself every few seconds while one is not finished)."""
    choices = _runs_of(request)
    started = started_runs(store)
    states = run_states(choices, [r["flow_run"] for r in started])
    for run in started:
        run["state"] = states.get(run["flow_run"])
    waiting = any(r["state"] is None or r["state"]["type"] not in FINAL_STATES for r in started)
    return render(
        request,
        "runs.html",
        choices=choices,
        runs=started,
        refresh=bool(started) and waiting,
        reachable=bool(states) or not started,
        coding=START_CODING,
    )


@router.post("/runs/coding")
def start_coding_run(request: Request, store: StoreDep, form: FormDep) -> Response:
    """A coding run of a configured folder against a configured codebook, both by name."""
    choices = _runs_of(request)
    folder, book = str(form.get("transcripts") or ""), str(form.get("codebook") or "")
    if folder not in choices.transcripts or book not in choices.codebooks:
        raise BadRequest("choose a transcript folder and a codebook from the lists on the page")
    parameters = coding_parameters(choices, settings(request).store_path, folder, book)
    flow_run = _start(choices, f"{CODING_FLOW}/{CODING_DEPLOYMENT}", parameters)
    who = reviewer_of(request) or "local"
    record_start(store, who, START_CODING, flow_run, transcripts=folder, codebook=book)
    return RedirectResponse("/runs", 303)


@router.post("/runs/report")
def start_report_draft(request: Request, store: StoreDep, form: FormDep) -> Response:
    """A draft of the theme reports from the store's current state."""
    choices = _runs_of(request)
    parameters = report_parameters(choices, settings(request).store_path)
    flow_run = _start(choices, f"{REPORT_FLOW}/{REPORT_DEPLOYMENT}", parameters)
    record_start(store, reviewer_of(request) or "local", START_REPORT, flow_run)
    return RedirectResponse("/runs", 303)


def _start(choices: RunChoices, deployment: str, parameters: dict[str, Any]) -> str:
    from pipeline.team_runs import TeamRunError

    try:
        return start_run(choices, deployment, parameters)
    except TeamRunError as error:
        raise Unavailable(error.problem) from None


@router.get("/favicon.ico")
def favicon() -> Response:
    """No icon: an empty answer keeps browsers from logging a 404 on every page."""
    return Response(status_code=204)


@router.get("/static/{name}")
def static_file(name: str, request: Request) -> Response:
    """The page's own CSS and JS, read at start-up: no request ever names a file to open."""
    found = settings(request).static.get(name)
    if found is None:
        raise NotFound("no such file")
    return Response(found[0], media_type=found[1], headers={"Cache-Control": "no-cache"})
