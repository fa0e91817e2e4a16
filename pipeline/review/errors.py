"""Errors of the review page.

``ReviewError`` is a ``QcodeError``: the page cannot start (no store, unsafe binding), and the
CLI prints it. ``WebError`` and its subclasses are HTTP errors carrying their status; one handler
in ``app.py`` renders every one of them as an HTML page.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import QcodeError


class ReviewError(QcodeError):
    """The review page cannot be served as asked."""

    code = "E720"
    fix = (
        "Run 'qcode run' first (or pass --store PATH to an existing project), and give a token "
        "(--token or QCODE_REVIEW_TOKEN) to serve on any interface other than 127.0.0.1."
    )


class WebError(Exception):
    """An HTTP error with a message for the person at the browser."""

    status = 500
    title = "Something went wrong"

    def __init__(self, message: str, **context: Any):
        super().__init__(message)
        self.message = message
        self.context = context


class BadRequest(WebError):
    status = 400
    title = "This request makes no sense to the review page"


class NotLoggedIn(WebError):
    status = 401
    title = "Access token needed"


class Forbidden(WebError):
    status = 403
    title = "Not allowed"


class TooManyAttempts(WebError):
    status = 429
    title = "Too many wrong access tokens"


class NotFound(WebError):
    status = 404
    title = "Not found"


class UnitChanged(WebError):
    """Someone decided on the unit after this page was opened: nothing was saved."""

    status = 409
    title = "This unit changed since you opened it"


class Unavailable(WebError):
    """The Prefect server (or its runner) that runs from the page need cannot be reached."""

    status = 503
    title = "Runs cannot be started just now"
