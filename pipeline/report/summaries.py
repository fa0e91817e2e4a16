"""Summaries: a draft summary per code, with prevalence, quotes and attributions.

Summaries are computed from a table of codings (today the machine's suggestions; once reviewers
have decided, the current state) and rendered with Jinja. Users can point ``template_dir`` at a
folder of their own templates; any template they do not provide falls back to ours.
"""

from __future__ import annotations

import functools
import re
from collections import Counter, defaultdict
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


Groups = list[tuple[str, set[tuple[str, str]]]]


def _groups(people: pd.DataFrame, column: str) -> Groups:
    """The people of each value of ``column`` (blank values left out), in value order: made
    once per run, not once per code (0.3-0.4 s of an edit at 700 pages went to regrouping)."""
    return [
        (str(value), _people(group)) for value, group in people.groupby(column, sort=True) if value
    ]


def _breakdown(coded: set[tuple[str, str]], groups: Groups) -> list[tuple[str, int, int]]:
    return [(value, len(keys & coded), len(keys)) for value, keys in groups]


def _people(rows: pd.DataFrame) -> set[tuple[str, str]]:
    """The (transcript, speaker) pairs of these rows."""
    return set(zip(rows["transcript_id"].tolist(), rows["speaker"].tolist(), strict=True))


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
    order = _quote_order(hits)
    transcripts = hits["transcript_id"].to_numpy(dtype=object)
    speakers = hits["speaker"].to_numpy(dtype=object)
    chosen: list[int] = []
    used_people: set[tuple[str, str]] = set()
    leftovers: list[int] = []
    for i in order:
        person = (transcripts[i], speakers[i])
        if person in used_people:
            leftovers.append(i)
            continue
        used_people.add(person)
        chosen.append(i)
        if len(chosen) >= limit:
            break
    chosen.extend(leftovers[: max(0, limit - len(chosen))])
    return hits.iloc[chosen]


def quotes_of(
    rows: pd.DataFrame, max_chars: int, texts: dict[str, str] | None = None
) -> list[Quote]:
    """``quote_rows``' rows as quotes; ``texts``: each unit's text, when the rows lack it."""
    return [
        Quote(
            r["unit_id"],
            r["transcript_id"],
            int(r["start"]),
            int(r["end"]),
            trim_quote(r["text"] if texts is None else texts[r["unit_id"]], max_chars),
            r["attribution"],
            float(r["score"]),
            bool(r["accepted"]),
        )
        for r in rows.to_dict("records")
    ]


def _quote_order(hits: pd.DataFrame) -> np.ndarray:
    """Row positions by accepted first, then score (highest first, missing last), then unit
    id. Rows already in unit-id order (as ``build_summaries`` hands them over) are ordered by
    a numeric sort alone, which keeps that order among ties: a text sort of every code's hits
    was a second of every run at 7,000 pages."""
    if hits["unit_id"].is_monotonic_increasing and hits["unit_id"].is_unique:
        accepted = hits["accepted"].to_numpy(dtype=bool)
        score = hits["score"].to_numpy(dtype=float)
        return np.lexsort((-score, ~accepted))
    ordered = hits.reset_index(drop=True).sort_values(
        ["accepted", "score", "unit_id"], ascending=[False, False, True]
    )
    return ordered.index.to_numpy()


PEOPLE_KEYS = ("role", "local_authority", "workstream")  # what a quote's attribution says


def build_summaries(
    codebook: Codebook,
    units: pd.DataFrame,
    codings: pd.DataFrame,
    quotes_per_code: int = 5,
    quote_max_chars: int = 400,
    reviewed_units: set[str] | frozenset[str] = frozenset(),
) -> list[CodeSummary]:
    """One summary per code from the current codings.

    ``codings`` has unit_id, code_id, score and (optionally) status: ``accepted`` by a
    reviewer, ``suggested`` by the machine and unreviewed, or ``rejected`` (left out).
    The figures include unreviewed suggestions, so their denominators are every participant;
    beside them each summary states the figure by accepted codings alone, of the participants
    whose units were reviewed (``reviewed_units``, ``decisions.reviewed_units``; a participant
    with an accepted coding counts too), as theme reports do.
    """
    if "status" not in codings.columns:
        codings = codings.assign(status="suggested")
    codings = codings[codings["status"] != "rejected"]
    codable = units[units["codable"]]
    people = codable.drop_duplicates(["transcript_id", "speaker"])[
        ["transcript_id", "speaker", "role", "local_authority"]
    ]
    accepted_units = set(codings.loc[codings["status"] == "accepted", "unit_id"])
    reviewed_keys = set(
        zip(
            *(
                codable.loc[codable["unit_id"].isin(set(reviewed_units) | accepted_units), c]
                for c in ("transcript_id", "speaker")
            ),
            strict=True,
        )
    )
    keys = zip(people["transcript_id"].tolist(), people["speaker"].tolist(), strict=True)
    reviewed_people = people[np.array([key in reviewed_keys for key in keys], dtype=bool)]
    total_interviews = units["transcript_id"].nunique()
    # Only the columns summaries read: the units' text (most of their bytes) is fetched for
    # the chosen quotes alone, not carried through the join and the split by code (over a
    # second of every run at 7,000 pages).
    about = ["unit_id", "transcript_id", "speaker", "start", "end", *PEOPLE_KEYS]
    joined = codings[["unit_id", "code_id", "score", "status"]].merge(
        units[about], on="unit_id", how="inner"
    )
    # One attribution per distinct combination of attributes (a few dozen), not per unit:
    # at 7,000 pages a string per unit cost ~150 MB.
    people_keys = list(PEOPLE_KEYS)
    combos = joined[people_keys].drop_duplicates()
    combos["attribution"] = [
        attribution({"role": r, "local_authority": la, "workstream": w})
        for r, la, w in combos.itertuples(index=False)
    ]
    joined = joined.merge(combos, on=people_keys, how="left")
    # A person's acceptance outranks any machine score when choosing quotes.
    joined["score"] = joined["score"].fillna(0.0)
    joined["accepted"] = joined["status"] == "accepted"
    per_code_units = joined.groupby("code_id")["unit_id"].nunique().to_dict()
    # Plain lists and dicts, not pandas' per-group apply and row iterators: over a second of
    # an edit run at 700 pages went to visiting Arrow-backed text values one by one.
    codes_by_unit: dict[str, list[str]] = defaultdict(list)
    for unit, code_id in zip(joined["unit_id"].tolist(), joined["code_id"].tolist(), strict=True):
        codes_by_unit[unit].append(code_id)
    by_code = dict(tuple(joined.groupby("code_id", sort=False)))
    groups = {c: _groups(people, c) for c in ("role", "local_authority")}
    reviewed_groups = {c: _groups(reviewed_people, c) for c in ("role", "local_authority")}
    summaries = []
    chosen: list[pd.DataFrame] = []  # each code's quoted rows
    for code in codebook.codes:
        hits = by_code.get(code.id, joined.iloc[:0])
        coded_people = _people(hits)
        accepted_people = _people(hits[hits["accepted"]])
        prevalence = Prevalence(
            units=hits["unit_id"].nunique(),
            codable_units=len(codable),
            interviews=hits["transcript_id"].nunique(),
            total_interviews=total_interviews,
            participants=len(coded_people),
            total_participants=len(people),
            roles=_breakdown(coded_people, groups["role"]),
            authorities=_breakdown(coded_people, groups["local_authority"]),
            accepted_units=int(hits.loc[hits["accepted"], "unit_id"].nunique()),
            reviewed_participants=len(accepted_people),
            total_reviewed=len(reviewed_people),
            reviewed_roles=_by_name(_breakdown(accepted_people, reviewed_groups["role"])),
            reviewed_authorities=_by_name(
                _breakdown(accepted_people, reviewed_groups["local_authority"])
            ),
        )
        together = Counter(
            other
            for unit in hits["unit_id"].drop_duplicates().tolist()
            for other in codes_by_unit.get(unit, [])
            if other != code.id
        )
        chosen.append(quote_rows(hits, quotes_per_code))
        summaries.append(
            CodeSummary(
                code=code,
                group_label=codebook.group(code.group).label,
                prevalence=prevalence,
                quotes=[],  # below, with the chosen units' texts
                counterparts=[
                    (c, int(per_code_units.get(c.id, 0))) for c in codebook.counterparts(code.id)
                ],
                cooccurring=together.most_common(5),
            )
        )
    quoted = {u for rows in chosen for u in rows["unit_id"].tolist()}
    found = units.loc[units["unit_id"].isin(quoted), ["unit_id", "text"]]
    texts = dict(zip(found["unit_id"].tolist(), found["text"].tolist(), strict=True))
    for summary, rows in zip(summaries, chosen, strict=True):
        summary.quotes = quotes_of(rows, quote_max_chars, texts)
    return summaries


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
