"""The report stage's errors: bad queries, formats and stores, in words people can act on."""

from __future__ import annotations

from pipeline.errors import QcodeError


class ReportError(QcodeError):
    """A quote query, attribution format, template or store the reports cannot use."""

    code = "E900"
