"""Interop: moving codings between qcode's project store and the tools reviewers already use.

``sheets`` exports review spreadsheets (XLSX, CSV) and imports the filled-in sheets back as
decisions. ``qdc`` and ``refi`` exchange codebooks (QDC) and projects (QDPX) with NVivo,
ATLAS.ti, MAXQDA and QualCoder through the REFI-QDA standard. Everything goes through
``pipeline.store.Store``, so imports are checked against the same unit versions as the review
pages.
"""

from __future__ import annotations

from collections.abc import Sequence


def listed(items: Sequence[object], limit: int) -> list[str]:
    """Up to ``limit`` items, one an indented line, then how many more were left out: import
    reports stay readable when thousands of rows have the same problem."""
    lines = [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return lines
