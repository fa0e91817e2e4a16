"""The report stage's errors: bad queries, formats and stores, in words people can act on."""

from __future__ import annotations

from pipeline.errors import QcodeError


class ReportError(QcodeError):
    """A quote query, attribution format, template or store the reports cannot use."""

    code = "E910"
    fix = (
        "Fix the option named: a code or attribute value the project has (the message lists "
        "them), a format among those offered, an existing template folder, or a --out file for "
        "DOCX."
    )
