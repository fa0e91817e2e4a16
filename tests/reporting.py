"""Helpers shared by the quote bank and theme report tests: a sample store with decisions."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pandas as pd

from pipeline.decisions import current_codings
from pipeline.store import NewDecision, Store

# Codes reviewers worked on: each gets its best suggestions accepted and a few rejected.
DECIDED_CODES = (
    "ts.trust",
    "ts.trust_lacking",
    "ts.time_pressure",
    "process.collaboration_sharing",
    "process.reaching_teachers",
    "structure.la_context",
)


def decide_sample(path: Path) -> dict[str, list[NewDecision]]:
    """Record real decisions with ``Store.decide``: per code in ``DECIDED_CODES`` ann accepts
    the 12 best suggestions and bob rejects the next 3; ann also adds ``ts.trust`` to one unit
    the machine did not suggest it for (an accepted coding with no machine score)."""
    with Store(path) as store:
        suggestions = store.suggestions().sort_values(
            ["code_id", "score", "unit_id"], ascending=[True, False, True]
        )
        accepted, rejected = [], []
        for code in DECIDED_CODES:
            rows = suggestions[suggestions["code_id"] == code]
            accepted += [NewDecision(u, code, "accept") for u in rows["unit_id"].iloc[:12]]
            rejected += [NewDecision(u, code, "reject") for u in rows["unit_id"].iloc[12:15]]
        units = store.units()
        trust_units = set(suggestions.loc[suggestions["code_id"] == "ts.trust", "unit_id"])
        spare = units[
            units["codable"]
            & ~units["unit_id"].isin(trust_units)
            & units["text"].str.contains("trust", case=False)
        ]
        added = [NewDecision(spare["unit_id"].iloc[0], "ts.trust", "add", "said in passing")]
        store.decide("ann", accepted + added, source="web")
        store.decide("bob", rejected, source="sheet")
    return {"accepted": accepted, "rejected": rejected, "added": added}


def store_codings(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """(current codings joined with units, units, transcript texts), read straight from the
    store with ``current_codings``: the reference the reports must agree with."""
    with Store(path) as store:
        units = store.units()
        codings = current_codings(store.suggestions(), store.resolved_decisions())
        texts = store.transcript_texts()
    joined = codings.merge(units, on="unit_id")
    joined["person"] = joined["transcript_id"] + "/" + joined["speaker"]
    return joined, units, texts


def squash(text: str) -> str:
    """Text as PDF extraction may give it back: no whitespace or hyphens (pdftotext joins
    words hyphenated at line ends), compatibility forms (ligatures) unfolded."""
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"[\s\-‐‑­]+", "", text)
