"""Reports: draft summaries per run, the quote bank and theme reports.

* ``summaries``: the per-run draft summary of each code (written by ``qcode run``);
* ``project``: what reports read from the project store (current codings, participants);
* ``attribution``: attributions from attributes only, and the k-anonymity flag;
* ``expr``: code expressions (``ts.trust AND NOT ts.trust_lacking``);
* ``quotes``: the quote bank (ranking, diversity, trimming, verbatim checks);
* ``themes``: theme report data (prevalence, matrices, enablers against inhibitors);
* ``charts``: matplotlib charts as PNG;
* ``render``: Jinja to Markdown/HTML, python-docx to DOCX, CSV and JSON.
"""

from pipeline.report.summaries import (
    DRAFT_BANNER,
    QUANTIFIERS,
    SENTENCE_END,
    CodeSummary,
    Prevalence,
    Quote,
    attribution,
    build_summaries,
    choose_quotes,
    quantifier,
    render_summaries,
    slug,
    template_environment,
    trim_quote,
)

__all__ = [
    "DRAFT_BANNER",
    "QUANTIFIERS",
    "SENTENCE_END",
    "CodeSummary",
    "Prevalence",
    "Quote",
    "attribution",
    "build_summaries",
    "choose_quotes",
    "quantifier",
    "render_summaries",
    "slug",
    "template_environment",
    "trim_quote",
]
