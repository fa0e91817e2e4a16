"""Render theme reports and quote banks: Jinja to Markdown and HTML, python-docx to DOCX, CSV, JSON.

Markdown and HTML come from the Jinja templates in ``pipeline/templates`` (``theme_report.*.j2``,
``quotes.md.j2``); a user's template folder overrides any of them. DOCX is built with python-docx
(report writers work in Word): a ``theme_report.docx`` or ``quotes.docx`` in the user's template
folder is used as the base document, for its styles, page set-up and headers. Every file is
written beside itself and then moved into place, so a scheduled batch never leaves half a report.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import jinja2
import pandas as pd

from pipeline.report.charts import draw_charts
from pipeline.report.errors import ReportError
from pipeline.report.quotes import QuoteResult, k_notice
from pipeline.report.summaries import DRAFT_BANNER, template_environment, with_draft_marker
from pipeline.report.themes import Claim, ThemeReport

FORMATS = ("md", "html", "docx")
QUOTE_FORMATS = ("md", "docx", "csv", "json")
REPORT_NAME = "theme_report"
FLAG = "⚠"
# A4 with 2 cm margins (report writers in the UK and EU print on A4): 17 cm of text width.
PAGE_CM = (21.0, 29.7)
MARGIN_CM = 2.0
TEXT_WIDTH_CM = PAGE_CM[0] - 2 * MARGIN_CM
TABLE_FONT_PT = 9
CHART_DPI = 110  # charts.py saves PNGs at this resolution


def environment(template_dir: Path | None) -> jinja2.Environment:
    if template_dir is not None and not Path(template_dir).is_dir():
        raise ReportError("the template folder does not exist", template_dir)
    env = template_environment(template_dir)
    env.filters["b64"] = lambda data: base64.b64encode(data).decode()
    env.filters["lower_first"] = lambda text: text[:1].lower() + text[1:]
    env.globals["flag"] = FLAG
    env.globals["k_notice"] = k_notice
    return env


def write_atomic(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    if isinstance(data, str):
        partial.write_text(data, encoding="utf-8")
    else:
        partial.write_bytes(data)
    partial.replace(path)
    return path


def parse_formats(text: str, allowed: tuple[str, ...]) -> list[str]:
    formats = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in allowed]
    if unknown or not formats:
        raise ReportError(
            f"format {', '.join(unknown) or 'none'!r} is not one of {', '.join(allowed)} "
            "(give several separated by commas)"
        )
    return list(dict.fromkeys(formats))


# -- theme reports ----------------------------------------------------------------------------


def write_theme_report(
    report: ThemeReport,
    out_dir: Path,
    formats: list[str] | tuple[str, ...] = FORMATS,
    template_dir: Path | None = None,
) -> list[Path]:
    """Write the report in each format (plus its charts as PNG) into ``out_dir``."""
    env = environment(template_dir)
    if not report.charts:
        report.charts = draw_charts(report)
    out_dir = Path(out_dir)
    written = []
    if "md" in formats:
        for name, png in report.charts.items():
            written.append(write_atomic(out_dir / "charts" / f"{name}.png", png))
    context = {"r": report, "manifest": report.run_manifest, "banner": DRAFT_BANNER}
    for fmt in ("md", "html"):
        if fmt in formats:
            text = env.get_template(f"{REPORT_NAME}.{fmt}.j2").render(**context)
            written.append(write_atomic(out_dir / f"{REPORT_NAME}.{fmt}", text))
    if "docx" in formats:
        data = theme_report_docx(report, _base_docx(template_dir, REPORT_NAME))
        written.append(write_atomic(out_dir / f"{REPORT_NAME}.docx", data))
    return written


def _base_docx(template_dir: Path | None, name: str) -> Path | None:
    if template_dir is None:
        return None
    path = Path(template_dir) / f"{name}.docx"
    return path if path.is_file() else None


class _Doc:
    """A python-docx document with the few helpers the reports need."""

    def __init__(self, base: Path | None):
        import docx

        try:
            self.doc = docx.Document(str(base)) if base else docx.Document()
        except Exception as error:
            raise ReportError(f"not a Word document ({type(error).__name__})", base) from None
        self.styles = {s.name for s in self.doc.styles}
        if base is None:  # python-docx's default is US Letter; a user's template keeps its own
            from docx.shared import Cm

            for section in self.doc.sections:
                section.page_width, section.page_height = Cm(PAGE_CM[0]), Cm(PAGE_CM[1])
                for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
                    setattr(section, side, Cm(MARGIN_CM))

    def style(self, name: str, fallback: str | None = None) -> str | None:
        if name in self.styles:
            return name
        return fallback if fallback in self.styles else None

    def heading(self, text: str, level: int) -> None:
        if self.style(f"Heading {level}" if level else "Title"):
            self.doc.add_heading(text, level)
        else:
            self.doc.add_paragraph().add_run(text).bold = True

    def paragraph(self, text: str = "", style: str | None = None, italic: bool = False):
        paragraph = self.doc.add_paragraph(style=self.style(style) if style else None)
        if text:
            paragraph.add_run(text).italic = italic
        return paragraph

    def banner(self, note: str) -> None:
        from docx.shared import Pt, RGBColor

        paragraph = self.doc.add_paragraph()
        run = paragraph.add_run(DRAFT_BANNER)
        run.bold, run.font.size, run.font.color.rgb = True, Pt(14), RGBColor(0x9C, 0x00, 0x06)
        paragraph.add_run(f" - {note}").italic = True
        for section in self.doc.sections:
            header = section.header.paragraphs[0] if section.header.paragraphs else None
            if header is not None and DRAFT_BANNER not in header.text:
                header.add_run(DRAFT_BANNER).bold = True

    def table(
        self, header: list[str], rows: list[list[object]], widths_cm: list[float] | None = None
    ) -> None:
        """A table in 9 pt with fixed column widths (``widths_cm``, in proportion to the text
        width), wide enough that a code id is never broken mid-word."""
        from docx.shared import Cm, Pt

        table = self.doc.add_table(rows=1, cols=len(header))
        style = self.style("Table Grid")
        if style:
            table.style = style
        table.autofit = False
        for cell, text in zip(table.rows[0].cells, header, strict=True):
            cell.text = ""
            cell.paragraphs[0].add_run(str(text)).bold = True
        for row in rows:
            cells = table.add_row().cells
            for cell, value in zip(cells, row, strict=True):
                cell.text = str(value)
        widths = widths_cm or [1.0] * len(header)
        scale = TEXT_WIDTH_CM / sum(widths)
        for row in table.rows:
            for cell, width in zip(row.cells, widths, strict=True):
                cell.width = Cm(width * scale)
                for paragraph in cell.paragraphs:
                    for run in paragraph.runs:
                        run.font.size = Pt(TABLE_FONT_PT)
        self.doc.add_paragraph()

    def picture(self, png: bytes, width_cm: float = TEXT_WIDTH_CM) -> None:
        """A chart at its own size (so its 8-10 pt text stays that size), shrunk only to fit
        ``width_cm``."""
        from docx.shared import Cm

        native_cm = int.from_bytes(png[16:20], "big") / CHART_DPI * 2.54  # PNG IHDR width
        self.doc.add_picture(io.BytesIO(png), width=Cm(min(width_cm, native_cm)))

    def claims(self, claims: list[Claim]) -> None:
        """Drafted prose: each sentence a run with a comment listing its evidence units."""
        paragraph = self.doc.add_paragraph()
        for claim in claims:
            run = paragraph.add_run(claim.text)
            evidence = (
                f"Evidence ({claim.ref}): {len(claim.evidence)} units: " + ", ".join(claim.evidence)
                if claim.evidence
                else f"Evidence ({claim.ref}): none (nothing coded)"
            )
            self.doc.add_comment(run, text=evidence, author="qcode", initials="QC")
            paragraph.add_run(" ")

    def quote(self, number: int, text: str, attribution: str, details: str, flag: str) -> None:
        from docx.shared import Cm, Pt

        said = self.paragraph(f"{number}. {text}", style="Quote", italic=True)
        said.paragraph_format.left_indent = Cm(1)
        said.paragraph_format.space_after = Pt(2)
        line = self.doc.add_paragraph()
        line.paragraph_format.left_indent = Cm(1)
        line.add_run(f"– {attribution}" + (f" {FLAG}" if flag else "")).bold = True
        small = line.add_run(f"  ({details})")
        small.font.size = Pt(8)

    def k_notice(self, quotes: list) -> None:
        """The section's one k-anonymity notice, naming its quotes (none if not needed)."""
        from docx.shared import Cm, RGBColor

        notice = k_notice(quotes)
        if notice:
            note = self.doc.add_paragraph()
            note.paragraph_format.left_indent = Cm(1)
            warning = note.add_run(f"{FLAG} k-anonymity: {notice}")
            warning.bold, warning.font.color.rgb = True, RGBColor(0x9C, 0x00, 0x06)

    def save(self) -> bytes:
        buffer = io.BytesIO()
        self.doc.save(buffer)
        return buffer.getvalue()


def _quote_details(quote) -> str:
    score = "" if quote.accepted else f", score {quote.score:.2f}"
    return (
        f"interview {quote.transcript_id}, unit {quote.unit_id}, characters "
        f"{quote.start}-{quote.kept_end}{' of ' + str(quote.end) if quote.trimmed else ''}, "
        f"{quote.status}{score}"
    )


def theme_report_docx(report: ThemeReport, base: Path | None = None) -> bytes:
    doc = _Doc(base)
    doc.banner(
        f"drafted by machine from {report.basis}. Check every statement and quote against "
        "the transcripts before use. Each sentence carries a comment naming its evidence units."
    )
    doc.heading(report.title, 0)
    doc.heading("About this draft", 1)
    doc.table(["", ""], [list(f) for f in report.facts], [4, 13])
    doc.paragraph(
        "Quantifiers, as shares of participants: "
        + "; ".join(f"{word} = {rule}" for word, rule in report.quantifiers)
        + "."
    )
    if "overview" in report.charts:
        doc.picture(report.charts["overview"])
    doc.heading("Enablers and inhibitors by framework group", 1)
    for group in report.groups:
        doc.heading(group.group.label, 2)
        doc.claims(group.claims)
        doc.table(
            ["Code", "Kind", "Participants", "Interviews", "Units"],
            [
                [
                    f"{t.code.label} ({t.code.id})",
                    t.code.kind or "",
                    f"{t.participants_word} ({t.participants} of {t.total_participants})",
                    f"{t.interviews} of {t.total_interviews}",
                    t.units,
                ]
                for t in group.rows
            ],
            [7, 2, 4, 2.5, 1.5],
        )
        for kind in ("heatmap", "balance"):
            png = report.charts.get(f"{group.group.id}-{kind}")
            if png:
                doc.picture(png)
    doc.heading("Codes", 1)
    for theme in report.codes:
        doc.heading(f"{theme.code.label} ({theme.code.id})", 2)
        doc.paragraph(" · ".join(filter(None, [theme.group_label, theme.code.kind])), italic=True)
        doc.paragraph(f"Definition. {theme.code.definition}")
        doc.claims(theme.claims)
        if theme.units:
            rows = [
                [title, r.value, f"{r.participants} of {r.total}", r.units]
                for title, matrix in theme.matrix.items()
                for r in matrix
            ]
            doc.table(
                ["Attribute", "Value", "Participants raising it", "Units"], rows, [4, 7, 4, 2]
            )
        if theme.cooccurring:
            doc.paragraph(
                "Often coded together with: "
                + "; ".join(f"{c.label} ({c.id}, {n} units)" for c, n in theme.cooccurring)
            )
        if theme.quotes and theme.quotes.quotes:
            doc.heading("Quotes", 3)
            for number, quote in enumerate(theme.quotes.quotes, 1):
                doc.quote(number, quote.text, quote.attribution, _quote_details(quote), quote.flag)
            doc.k_notice(theme.quotes.quotes)
    if report.warnings:
        doc.heading("Warnings", 1)
        for warning in report.warnings:
            doc.paragraph(warning)
    return doc.save()


# -- quote banks ------------------------------------------------------------------------------


def quotes_table(result: QuoteResult) -> pd.DataFrame:
    rows = [{**q.as_row(), "k_flag_reason": q.flag} for q in result.quotes]
    columns = ["unit_id", "codes", "transcript_id", "start", "end", "kept_end", "trimmed"]
    table = pd.DataFrame(rows, columns=None if rows else [*columns, "quote", "attribution"])
    return with_draft_marker(table)


def quotes_json(result: QuoteResult) -> str:
    request = result.request
    body = {
        "banner": DRAFT_BANNER,
        "query": result.expression,
        "filters": {k: list(v) for k, v in request.filters.items() if v},
        "include_suggestions": request.include_suggestions,
        "limit": request.limit,
        "per_participant": request.per_participant,
        "max_chars": request.max_chars,
        "attribution_format": request.attribution_format,
        "k": request.k,
        "matched_units": result.matched_units,
        "matched_participants": result.matched_participants,
        "diversity": result.diversity,
        "warnings": result.warnings,
        "quotes": [{**q.as_row(), "k_flag_reason": q.flag} for q in result.quotes],
    }
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def quotes_docx(result: QuoteResult, base: Path | None = None) -> bytes:
    doc = _Doc(base)
    basis = (
        "reviewer-accepted codings and unreviewed machine suggestions"
        if result.request.include_suggestions
        else "reviewer-accepted codings"
    )
    doc.banner(f"quotes chosen by machine from {basis}; check each before use.")
    doc.heading(f"Quotes: {result.expression}", 1)
    doc.paragraph(_quotes_summary(result), italic=True)
    for number, quote in enumerate(result.quotes, 1):
        doc.quote(number, quote.text, quote.attribution, _quote_details(quote), quote.flag)
    doc.k_notice(result.quotes)
    for warning in result.warnings:
        doc.paragraph(warning)
    return doc.save()


def _quotes_summary(result: QuoteResult) -> str:
    request = result.request
    filters = "; ".join(f"{k} = {' or '.join(v)}" for k, v in request.filters.items() if v)
    return (
        f"{len(result.quotes)} of {result.matched_units} matching units from "
        f"{result.matched_participants} participants"
        + (f" ({filters})" if filters else "")
        + f"; at most {request.per_participant} per participant; diversity by "
        f"{result.diversity}."
    )


def render_quotes(result: QuoteResult, fmt: str, template_dir: Path | None = None) -> bytes:
    """The quote bank's answer in one format, as bytes to print or save."""
    if fmt == "md":
        env = environment(template_dir)
        text = env.get_template("quotes.md.j2").render(
            r=result, summary=_quotes_summary(result), banner=DRAFT_BANNER
        )
        return text.encode()
    if fmt == "csv":
        return quotes_table(result).to_csv(index=False).encode("utf-8-sig")
    if fmt == "json":
        return quotes_json(result).encode()
    if fmt == "docx":
        return quotes_docx(result, _base_docx(template_dir, "quotes"))
    raise ReportError(f"format {fmt!r} is not one of {', '.join(QUOTE_FORMATS)}")
