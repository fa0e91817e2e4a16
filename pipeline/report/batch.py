"""All of a project's reports in one call: the stages the report flow runs as tasks.

``qcode report`` calls ``draft_reports`` directly (no Prefect server to start for one
interactive call); ``flows/reports.py`` runs the same stages as Prefect tasks on a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.report.charts import draw_charts
from pipeline.report.project import ProjectData, load_project
from pipeline.report.quotes import QuoteRequest, QuoteResult, UnitVectors, find_quotes
from pipeline.report.render import FORMATS, with_draft_marker, write_atomic, write_theme_report
from pipeline.report.themes import ReportOptions, ThemeReport, build_theme_report
from pipeline.settings import Settings

QUOTE_BANK = "quote_bank.csv"


def report_options(settings: Settings, include_suggestions: bool = False) -> ReportOptions:
    return ReportOptions(
        include_suggestions=include_suggestions,
        quotes_per_code=settings.quotes_per_code,
        quote_max_chars=settings.quote_max_chars,
        attribution_format=settings.attribution_format,
        k=settings.k_anonymity,
    )


def cache_folder(settings: Settings) -> Path:
    """The embedding cache the runs wrote (``.cache/`` in the project by default)."""
    return settings.cache_dir or Path.cwd() / ".cache"


def build_report(
    project: ProjectData, settings: Settings, include_suggestions: bool = False
) -> ThemeReport:
    vectors = UnitVectors(project, cache_folder(settings))
    return build_theme_report(project, report_options(settings, include_suggestions), vectors)


def write_quote_bank(report: ThemeReport, out_dir: Path) -> Path:
    """Every code's chosen quotes in one sheet, for report writers who work in Excel."""
    rows = [
        {"code_id": theme.code.id, "code": theme.code.label, **q.as_row(), "k_flag_reason": q.flag}
        for theme in report.codes
        if theme.quotes
        for q in theme.quotes.quotes
    ]
    table = pd.DataFrame(rows, columns=None if rows else ["code_id", "code", "unit_id", "quote"])
    table = with_draft_marker(table)
    return write_atomic(Path(out_dir) / QUOTE_BANK, table.to_csv(index=False).encode("utf-8-sig"))


@dataclass
class Drafts:
    paths: list[Path]
    warnings: list[str]


def draft_reports(
    store_path: Path,
    out_dir: Path,
    formats: list[str] | tuple[str, ...] = FORMATS,
    include_suggestions: bool = False,
    settings: Settings | None = None,
) -> Drafts:
    """Read the store, build the theme report, draw its charts, write every format."""
    settings = settings or Settings()
    project = load_project(Path(store_path))
    report = build_report(project, settings, include_suggestions)
    report.charts = draw_charts(report)
    written = write_theme_report(report, Path(out_dir), formats, settings.template_dir)
    written.append(write_quote_bank(report, Path(out_dir)))
    return Drafts(written, report.warnings)


def quote_bank(store_path: Path, request: QuoteRequest, settings: Settings) -> QuoteResult:
    """Answer one quote bank request from the store (``qcode quotes``)."""
    project = load_project(Path(store_path))
    return find_quotes(project, request, UnitVectors(project, cache_folder(settings)))
