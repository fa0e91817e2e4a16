"""Summaries: a draft summary per code, with prevalence, quotes and attributions.

Summaries are computed from a table of codings (today the machine's suggestions; once reviewers
have decided, the current state) and rendered with Jinja. Users can point ``template_dir`` at a
folder of their own templates; any template they do not provide falls back to ours.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from pipeline.codebook import Code, Codebook
from pipeline.report.attribution import SUMMARY_FORMAT, attribution_text

DRAFT_BANNER = "DRAFT - FOR HUMAN REVIEW"


def with_draft_marker(table: pd.DataFrame) -> pd.DataFrame:
    """A CSV's table with a last column ``draft`` saying DRAFT - FOR HUMAN REVIEW on every
    row: a sheet opened on its own still says what it is (a column, so it stays a table).
    Reports' CSVs and a run's CSVs carry it; Parquet files, read by programs, do not."""
    return table.assign(draft=DRAFT_BANNER)


# (name, rule) pairs, stated in the templates too. Applied to a share of interviews/participants.
QUANTIFIERS: list[tuple[str, str]] = [
    ("all", "every one"),
    ("most", "75% or more"),
    ("many", "50% to 74%"),
    ("some", "25% to 49%"),
    ("a few", "more than one, under 25%"),
    ("one", "exactly one"),
    ("none", "none"),
]
SENTENCE_END = re.compile(r"[.!?…][\"'”’)]*(?=\s)")


def quantifier(count: int, total: int) -> str:
    """The report word for ``count`` of ``total`` (the evaluation's all / most / many...)."""
    if count <= 0 or total <= 0:
        return "none"
    if count >= total:
        return "all"
    if count == 1:
        return "one"
    share = count / total
    if share >= 0.75:
        return "most"
    if share >= 0.5:
        return "many"
    if share >= 0.25:
        return "some"
    return "a few"


def attribution(attributes: dict[str, str], fmt: str = SUMMARY_FORMAT) -> str:
    """'Head teacher, LA-C, LEI workstream', built from attributes only, never names."""
    return attribution_text(attributes, fmt)


def trim_length(text: str, max_chars: int) -> int:
    """How much of ``text`` to keep: all of it, else up to the last sentence end that fits
    (or a word boundary). The kept part is always a prefix of the source text."""
    if len(text) <= max_chars:
        return len(text)
    ends = [m.end() for m in SENTENCE_END.finditer(text) if m.end() <= max_chars]
    if ends and ends[-1] >= max_chars // 3:
        return ends[-1]
    cut = text.rfind(" ", 0, max_chars)
    return len(text[: cut if cut > 0 else max_chars].rstrip(" ,;:"))


def trim_quote(text: str, max_chars: int) -> str:
    """Cut a long quote at a sentence end (or a word) and mark the cut with [...]."""
    kept = trim_length(text, max_chars)
    return text if kept == len(text) else text[:kept] + " [...]"


@dataclass
class Quote:
    unit_id: str
    transcript_id: str
    start: int
    end: int
    text: str  # exactly the source slice, possibly trimmed with a trailing " [...]"
    attribution: str
    score: float
    accepted: bool = False  # accepted by a reviewer (else an unreviewed machine suggestion)


@dataclass
class Prevalence:
    units: int
    codable_units: int
    interviews: int
    total_interviews: int
    participants: int
    total_participants: int
    roles: list[tuple[str, int, int]]  # (role, participants coded, participants with role)
    authorities: list[tuple[str, int, int]]
    accepted_units: int = 0  # of ``units``, those a reviewer accepted; the rest are unreviewed
    # The same by accepted codings alone, of the participants whose units were reviewed (the
    # figures above include unreviewed suggestions, so they count every participant).
    reviewed_participants: int = 0
    total_reviewed: int = 0
    reviewed_roles: dict[str, tuple[int, int]] = field(default_factory=dict)
    reviewed_authorities: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def suggested_units(self) -> int:
        return self.units - self.accepted_units

    @property
    def interviews_word(self) -> str:
        return quantifier(self.interviews, self.total_interviews)

    @property
    def participants_word(self) -> str:
        return quantifier(self.participants, self.total_participants)


@dataclass
class CodeSummary:
    code: Code
    group_label: str
    prevalence: Prevalence
    quotes: list[Quote]
    counterparts: list[tuple[Code, int]]  # opposite-kind codes in the group, units coded
    cooccurring: list[tuple[str, int]] = field(default_factory=list)


def _by_name(rows: list[tuple[str, int, int]]) -> dict[str, tuple[int, int]]:
    return {name: (n, total) for name, n, total in rows}


def choose_quotes(hits: pd.DataFrame, limit: int, max_chars: int) -> list[Quote]:
    """Reviewer-accepted quotes first, then the strongest by score; at most one per participant
    until every participant has had a turn."""
    return quotes_of(quote_rows(hits, limit), max_chars)


def quote_rows(hits: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The rows of ``hits`` that ``choose_quotes`` quotes, in order (no text needed)."""
    if "accepted" not in hits.columns:
        hits = hits.assign(accepted=False)
    people = list(zip(hits["transcript_id"].tolist(), hits["speaker"].tolist(), strict=True))
    return hits.iloc[_pick(_quote_order(hits), people, limit)]


def _pick(order: Iterable[int], people: Sequence[Hashable], limit: int) -> list[int]:
    """Positions to quote, in ``order``: one per person (``people[i]``) until ``limit`` are
    chosen or everyone has had a turn, then the next best of people already quoted."""
    chosen: list[int] = []
    used: set[Hashable] = set()
    leftovers: list[int] = []
    for i in order:
        if people[i] in used:
            leftovers.append(i)
            continue
        used.add(people[i])
        chosen.append(i)
        if len(chosen) >= limit:
            break
    chosen.extend(leftovers[: max(0, limit - len(chosen))])
    return chosen


def quotes_of(rows: pd.DataFrame, max_chars: int) -> list[Quote]:
    """``quote_rows``' rows as quotes."""
    return [
        Quote(
            r["unit_id"],
            r["transcript_id"],
            int(r["start"]),
            int(r["end"]),
            trim_quote(r["text"], max_chars),
            r["attribution"],
            float(r["score"]),
            bool(r["accepted"]),
        )
        for r in rows.to_dict("records")
    ]


def _quote_order(hits: pd.DataFrame) -> np.ndarray:
    """Row positions by accepted first, then score (highest first, missing last), then unit
    id."""
    ordered = hits.reset_index(drop=True).sort_values(
        ["accepted", "score", "unit_id"], ascending=[False, False, True]
    )
    return ordered.index.to_numpy()


PEOPLE_KEYS = ("role", "local_authority", "workstream")  # what a quote's attribution says


class _People:
    """Every unit's participant as a number, and the participants of codable units with the
    role and authority of their first codable unit: the denominators of every summary.

    Why numbers: a summary's counts are set sizes over a whole project's codings; done with
    pandas joins and Python sets they were 2 s of every run (and of every edit) at 7,000
    pages."""

    def __init__(self, units: pd.DataFrame):
        transcripts = pd.factorize(units["transcript_id"], use_na_sentinel=False)[0]
        speakers = pd.factorize(units["speaker"], use_na_sentinel=False)[0]
        pairs = transcripts.astype(np.int64) * (int(speakers.max(initial=0)) + 1) + speakers
        self.of_unit = pd.factorize(pairs)[0]
        self.transcript_of_unit = transcripts
        self.count = int(self.of_unit.max(initial=-1)) + 1
        codable = np.flatnonzero(units["codable"].to_numpy(dtype=bool))
        people, first = np.unique(self.of_unit[codable], return_index=True)
        self.codable = people  # participants with a codable unit
        # Per attribute: each participant's value (a number, -1 for none) and the values.
        self.values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for column in ("role", "local_authority"):
            codes, names = pd.factorize(units[column], sort=True)
            value = np.full(self.count, -1, dtype=np.int64)
            value[people] = codes[codable[first]]
            self.values[column] = (value, np.asarray(names, dtype=object))

    def breakdown(self, coded: np.ndarray, among: np.ndarray, column: str) -> list:
        """(value, participants of ``coded`` with it, participants of ``among`` with it) per
        value of ``column`` that someone in ``among`` has (blank values left out)."""
        value, names = self.values[column]
        totals = _counts(value[among], len(names))
        hits = _counts(value[coded[np.isin(coded, among)]], len(names))
        return [
            (str(name), int(hits[i]), int(totals[i]))
            for i, name in enumerate(names)
            if totals[i] and str(name)
        ]


def _counts(values: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(values[values >= 0], minlength=size)


def build_summaries(
    codebook: Codebook,
    units: pd.DataFrame,
    codings: pd.DataFrame,
    quotes_per_code: int = 5,
    quote_max_chars: int = 400,
    reviewed_units: set[str] | frozenset[str] = frozenset(),
    unit_index: pd.Index | None = None,
) -> list[CodeSummary]:
    """One summary per code from the current codings (in any order).

    ``codings`` has unit_id, code_id, score and (optionally) status: ``accepted`` by a
    reviewer, ``suggested`` by the machine and unreviewed, or ``rejected`` (left out).
    The figures include unreviewed suggestions, so their denominators are every participant;
    beside them each summary states the figure by accepted codings alone, of the participants
    whose units were reviewed (``reviewed_units``, ``decisions.reviewed_units``; a participant
    with an accepted coding counts too), as theme reports do. Quotes of equal standing, and
    co-occurring codes found on as many units, go in reading order (the order of ``units``).
    ``unit_index``: ``pd.Index(units["unit_id"])``, when the caller has it already.
    """
    if "status" not in codings.columns:
        codings = codings.assign(status="suggested")
    codings = codings[codings["status"] != "rejected"]
    people = _People(units)
    is_accepted = (codings["status"] == "accepted").to_numpy(dtype=bool)
    accepted_units = set(codings["unit_id"][is_accepted].tolist())
    reviewed = units["codable"].to_numpy(dtype=bool) & units["unit_id"].isin(
        set(reviewed_units) | accepted_units
    ).to_numpy(dtype=bool)
    reviewed_people = np.unique(people.of_unit[reviewed])
    # Each coding's unit row (codings of units the run lacks are left out).
    if unit_index is None:
        unit_index = pd.Index(units["unit_id"])
    row = unit_index.get_indexer(codings["unit_id"])
    found = np.flatnonzero(row >= 0)
    row = row[found]
    accepted = is_accepted[found]
    # A person's acceptance outranks any machine score when choosing quotes.
    score = np.nan_to_num(codings["score"].to_numpy(dtype=float, na_value=np.nan)[found], nan=0.0)
    # Codes numbered in id order, without making a Python string of every coding's code.
    code_of, code_names = pd.factorize(codings["code_id"], sort=True)
    code_of, code_names = code_of[found], np.asarray(code_names, dtype=object)
    by_code = _positions_by(code_of, len(code_names))
    index = {str(name): by_code[i] for i, name in enumerate(code_names)}
    units_of = {code: len(np.unique(row[hits])) for code, hits in index.items()}
    together = _cooccurring(row, code_of, code_names)
    person_of = people.of_unit[row]
    codable_units = int(units["codable"].sum())
    total_interviews = units["transcript_id"].nunique()
    summaries = []
    chosen: list[np.ndarray] = []  # each code's quoted codings, positions
    for code in codebook.codes:
        hits = index.get(code.id, np.zeros(0, dtype=np.int64))
        mine = accepted[hits]
        coded = np.unique(person_of[hits])
        accepted_people = np.unique(person_of[hits[mine]])
        prevalence = Prevalence(
            units=units_of.get(code.id, 0),
            codable_units=codable_units,
            interviews=len(np.unique(people.transcript_of_unit[row[hits]])),
            total_interviews=total_interviews,
            participants=len(coded),
            total_participants=len(people.codable),
            roles=people.breakdown(coded, people.codable, "role"),
            authorities=people.breakdown(coded, people.codable, "local_authority"),
            accepted_units=len(np.unique(row[hits[mine]])),
            reviewed_participants=len(accepted_people),
            total_reviewed=len(reviewed_people),
            reviewed_roles=_by_name(people.breakdown(accepted_people, reviewed_people, "role")),
            reviewed_authorities=_by_name(
                people.breakdown(accepted_people, reviewed_people, "local_authority")
            ),
        )
        order = np.lexsort((row[hits], -score[hits], ~mine))
        chosen.append(hits[_pick(order, person_of[hits], quotes_per_code)])
        summaries.append(
            CodeSummary(
                code=code,
                group_label=codebook.group(code.group).label,
                prevalence=prevalence,
                quotes=[],  # below, with the chosen units' texts
                counterparts=[(c, units_of.get(c.id, 0)) for c in codebook.counterparts(code.id)],
                cooccurring=together.get(code.id, []),
            )
        )
    unit_ids = codings["unit_id"]
    for summary, picked in zip(summaries, chosen, strict=True):
        summary.quotes = [
            Quote(
                unit_ids.iat[found[i]],
                units["transcript_id"].iat[row[i]],
                int(units["start"].iat[row[i]]),
                int(units["end"].iat[row[i]]),
                trim_quote(units["text"].iat[row[i]], quote_max_chars),
                attribution({k: units[k].iat[row[i]] for k in PEOPLE_KEYS}),
                float(score[i]),
                bool(accepted[i]),
            )
            for i in picked.tolist()
        ]
    return summaries


def _positions_by(groups: np.ndarray, count: int) -> list[np.ndarray]:
    """The positions of each group's members (group numbers 0..count-1), in order."""
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(count + 1))
    return [order[bounds[g] : bounds[g + 1]] for g in range(count)]


def _cooccurring(row: np.ndarray, code_of: np.ndarray, names: np.ndarray) -> dict[str, list]:
    """Per code, the (up to) five other codes found on most of its units, with how many: ties
    go to the code met first, reading the code's units in order (each unit's codes by id;
    ``code_of`` numbers codes in id order)."""
    shared = np.bincount(row)[row] > 1 if len(row) else np.zeros(0, dtype=bool)
    row, code_of = row[shared], code_of[shared]  # units with one code share it with none
    at = row.astype(np.int64) * (len(names) + 1) + code_of
    pairs = pd.DataFrame({"unit": row, "code": code_of, "at": at})
    both = pairs.merge(pairs, on="unit")
    both = both[both["code_x"] != both["code_y"]]
    counts = both.groupby(["code_x", "code_y"], sort=False).agg(
        n=("unit", "size"), first=("at_y", "min")
    )
    counts = counts.reset_index().sort_values(
        ["code_x", "n", "first"], ascending=[True, False, True], kind="stable"
    )
    top = counts.groupby("code_x", sort=False).head(5)
    found: dict[str, list] = {}
    for code, other, n in zip(top["code_x"], top["code_y"], top["n"], strict=True):
        found.setdefault(str(names[code]), []).append((str(names[other]), int(n)))
    return found


@functools.lru_cache(maxsize=8)
def template_environment(template_dir: Path | None = None) -> jinja2.Environment:
    """One environment per template folder and process, so each template is compiled once
    (0.2 s of every run in a watching process went to compiling them again); Jinja still
    reloads a template whose file changed."""
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(template_dir)))
    loaders.append(jinja2.PackageLoader("pipeline", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = lambda n, d: f"{(100 * n / d):.0f}%" if d else "0%"
    env.filters["md_quote"] = lambda text: "\n".join(f"> {line}" for line in text.splitlines())
    env.globals.update(banner=DRAFT_BANNER, quantifiers=QUANTIFIERS)
    return env


def slug(code_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", code_id)


def render_summaries(
    summaries: list[CodeSummary],
    codebook: Codebook,
    manifest: dict,
    out_dir: Path,
    template_dir: Path | None = None,
) -> list[Path]:
    """Write ``<code>.md`` and ``<code>.html`` per code and an index of both."""
    env = template_environment(template_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    context = {"codebook": codebook, "manifest": manifest, "slug": slug}
    for summary in summaries:
        for ext in ("md", "html"):
            path = out_dir / f"{slug(summary.code.id)}.{ext}"
            text = env.get_template(f"code_summary.{ext}.j2").render(s=summary, **context)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    for ext in ("md", "html"):
        path = out_dir / f"index.{ext}"
        text = env.get_template(f"index.{ext}.j2").render(summaries=summaries, **context)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
