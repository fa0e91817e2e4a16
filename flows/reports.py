"""The report flow: fresh draft theme reports for a project, e.g. every morning.

One Prefect task per stage (read the store, build the report, draw the charts, write the files),
never one per unit or per code. ``qcode report`` runs the same stages as plain functions
(``pipeline.report.batch.draft_reports``), without starting Prefect.

Serve it on a schedule (needs a local Prefect server, bound to this machine only):

    PREFECT_HOME=.prefect prefect server start --host 127.0.0.1 &
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.reports \
        --store outputs/project.sqlite --out reports/ --cron "30 6 * * *"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import configure_environment
from pipeline.report.batch import build_report, write_quote_bank
from pipeline.report.charts import draw_charts
from pipeline.report.project import ProjectData, load_project
from pipeline.report.render import FORMATS, write_theme_report
from pipeline.report.themes import ThemeReport
from pipeline.settings import Settings
from pipeline.store import location


@task(name="read store", cache_policy=NO_CACHE)
def read_task(store_path: Path | str) -> ProjectData:
    project = load_project(store_path)
    review = project.review
    get_run_logger().info(
        "read: run %s, %d accepted codings, %d unreviewed suggestions, %.0f%% of units reviewed",
        project.run_id,
        review["accepted_codings"],
        review["unreviewed_suggestions"],
        100 * review["share_reviewed"],
    )
    return project


@task(name="build report", cache_policy=NO_CACHE)
def build_task(project: ProjectData, settings: Settings, include_suggestions: bool) -> ThemeReport:
    report = build_report(project, settings, include_suggestions)
    quotes = sum(len(t.quotes.quotes) for t in report.codes if t.quotes)
    get_run_logger().info(
        "build: %d codes, %d framework groups, %d quotes, %d evidence units",
        len(report.codes),
        len(report.groups),
        quotes,
        len(report.evidence),
    )
    for warning in report.warnings:
        get_run_logger().warning("build: %s", warning)
    return report


@task(name="draw charts", cache_policy=NO_CACHE)
def charts_task(report: ThemeReport) -> dict[str, bytes]:
    return draw_charts(report)


@task(name="write reports", cache_policy=NO_CACHE)
def write_task(
    report: ThemeReport, out_dir: Path, formats: list[str], template_dir: Path | None
) -> list[Path]:
    written = write_theme_report(report, out_dir, formats, template_dir)
    written.append(write_quote_bank(report, out_dir))
    get_run_logger().info("write: %s", ", ".join(str(p) for p in written if p.parent == out_dir))
    return written


@flow(name="draft-reports")
def draft_reports_flow(
    store_path: Path | str,
    out_dir: Path = Path("reports"),
    formats: list[str] | None = None,
    include_suggestions: bool = False,
    settings: Settings | None = None,
) -> list[Path]:
    """Render the project's theme report in every format, from the store's current state."""
    settings = settings or Settings()
    project = read_task(location(store_path))
    report = build_task(project, settings, include_suggestions)
    report.charts = charts_task(report)
    return write_task(report, Path(out_dir), list(formats or FORMATS), settings.template_dir)


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description="Serve the report flow on a schedule.")
    parser.add_argument("--store", type=Path, default=Path("outputs/project.sqlite"))
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--format", default="md,html,docx", help="Comma-separated formats.")
    parser.add_argument("--include-suggestions", action="store_true")
    parser.add_argument("--cron", default="30 6 * * *", help="When to run (cron, local time).")
    parser.add_argument("--name", default="morning-reports")
    args = parser.parse_args()
    draft_reports_flow.serve(
        name=args.name,
        cron=args.cron,
        parameters={
            "store_path": str(args.store.resolve()),
            "out_dir": str(args.out.resolve()),
            "formats": [f.strip() for f in args.format.split(",") if f.strip()],
            "include_suggestions": args.include_suggestions,
        },
    )


if __name__ == "__main__":
    main()
