"""The quote bank page (``/quotes``): the same quote bank as ``qcode quotes``, in the browser.

A GET form (nothing is written), so it needs no CSRF token; the app's token and host checks
still apply. In blind mode a reviewer's quotes come from their own decisions only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.report.errors import ReportError
from pipeline.report.project import load_project
from pipeline.report.quotes import FILTERABLE, QuoteRequest, UnitVectors, find_quotes

LIMITS = {"limit": (5, 1, 50), "per_participant": (1, 1, 10), "max_chars": (400, 40, 5000)}


def _number(params: Mapping[str, Any], name: str) -> int:
    default, low, high = LIMITS[name]
    text = str(params.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ReportError(f"{name.replace('_', ' ')} must be a whole number") from None
    if not low <= value <= high:
        raise ReportError(f"{name.replace('_', ' ')} must be between {low} and {high}")
    return value


def _values(params: Any, name: str) -> tuple[str, ...]:
    items = params.getlist(name) if hasattr(params, "getlist") else [params.get(name)]
    return tuple(str(v).strip() for v in items if v and str(v).strip())


def quotes_context(
    store_path: Path, params: Any, scope: str | None, cache_dir: Path | None = None
) -> dict[str, Any]:
    """What the page shows: the form's choices, and the quotes (or the problem) if asked."""
    project = load_project(store_path, reviewer=scope)
    form = {
        "code": _values(params, "code"),
        "expr": str(params.get("expr") or "").strip(),
        "include_suggestions": params.get("include_suggestions") == "1",
        **{name: _values(params, name) for name in FILTERABLE},
        **{name: default for name, (default, _, _) in LIMITS.items()},
    }
    context: dict[str, Any] = {
        "form": form,
        "codes": project.codebook.codes,
        "values": {name: sorted({v for v in project.people[name] if v}) for name in FILTERABLE},
        "result": None,
        "problem": "",
    }
    try:
        numbers = {name: _number(params, name) for name in LIMITS}
        form.update(numbers)
        if not form["code"] and not form["expr"]:
            return context
        request = QuoteRequest(
            codes=form["code"],
            expr=form["expr"],
            filters={name: form[name] for name in FILTERABLE},
            include_suggestions=form["include_suggestions"],
            **numbers,
        )
        vectors = UnitVectors(project, cache_dir or Path.cwd() / ".cache")
        context["result"] = find_quotes(project, request, vectors)
    except ReportError as error:
        context["problem"] = error.problem
    return context
