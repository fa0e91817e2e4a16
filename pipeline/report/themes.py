"""Theme report data: per code and per framework group, from the current state of the store.

Counts come from accepted codings (plus unreviewed suggestions only when asked, and then counted
and marked separately). Denominators are the participants whose units were reviewed (nobody
can be said not to have raised a code in a passage no one reviewed); a report that includes
suggestions counts every participant and states the reviewed-only figure beside it. Ties are
named as ties. Every sentence of drafted prose is a ``Claim`` that carries the ids of the
units it rests on, so each can be traced to its evidence in every output format.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from pipeline.codebook import Code, Group
from pipeline.report.attribution import DEFAULT_FORMAT, AttributionFormat, parse_format
from pipeline.report.project import ProjectData
from pipeline.report.quotes import QuoteRequest, QuoteResult, UnitVectors, find_quotes
from pipeline.report.summaries import QUANTIFIERS, quantifier

MATRIX_ATTRIBUTES = (
    ("role", "Role"),
    ("local_authority", "Local authority"),
    ("workstream", "Workstream"),
)
NOT_STATED = "not stated"


@dataclass(frozen=True)
class ReportOptions:
    include_suggestions: bool = False
    quotes_per_code: int = 5
    quote_max_chars: int = 400
    per_participant: int = 1
    attribution_format: str = DEFAULT_FORMAT
    k: int = 3


@dataclass
class Claim:
    """One sentence of drafted prose and the units it rests on."""

    text: str
    evidence: list[str]
    ref: str = ""  # a stable anchor, set when the report is assembled


@dataclass
class MatrixRow:
    value: str
    participants: int  # participants with this value who raised the code
    total: int  # participants with this value
    units: int


@dataclass
class CodeTheme:
    code: Code
    group_label: str
    unit_ids: list[str]
    accepted_units: int
    suggested_units: int
    interviews: int
    total_interviews: int
    participants: int
    total_participants: int
    matrix: dict[str, list[MatrixRow]]
    cooccurring: list[tuple[Code, int]]
    quotes: QuoteResult | None
    claims: list[Claim] = field(default_factory=list)
    by_authority: dict[str, int] = field(default_factory=dict)  # units per authority
    co_units: dict[str, list[str]] = field(default_factory=dict)  # other code -> shared units
    reviewed_participants: int = 0  # raised it in accepted codings, of ...
    total_reviewed: int = 0  # ... the participants whose units were reviewed

    @property
    def units(self) -> int:
        return len(self.unit_ids)

    @property
    def participants_word(self) -> str:
        return quantifier(self.participants, self.total_participants)

    @property
    def interviews_word(self) -> str:
        return quantifier(self.interviews, self.total_interviews)

    @property
    def anchor(self) -> str:
        return "code-" + "".join(ch if ch.isalnum() else "-" for ch in self.code.id)


@dataclass
class GroupTheme:
    """A framework group's enablers set against its inhibitors."""

    group: Group
    enablers: list[CodeTheme]
    inhibitors: list[CodeTheme]
    enabler_participants: int
    inhibitor_participants: int
    total_participants: int
    claims: list[Claim] = field(default_factory=list)

    @property
    def rows(self) -> list[CodeTheme]:
        return [*self.enablers, *self.inhibitors]

    @property
    def enabler_units(self) -> int:
        return len({u for t in self.enablers for u in t.unit_ids})

    @property
    def inhibitor_units(self) -> int:
        return len({u for t in self.inhibitors for u in t.unit_ids})


@dataclass
class EvidenceUnit:
    unit_id: str
    transcript_id: str
    start: int
    end: int
    text: str
    attribution: str
    codes: list[tuple[str, str]]  # (code id, accepted | suggested)


@dataclass
class ThemeReport:
    title: str
    codebook_name: str
    include_suggestions: bool
    run_manifest: dict
    facts: list[tuple[str, str]]  # the report's manifest, as label/value rows
    review: dict
    groups: list[GroupTheme]
    codes: list[CodeTheme]
    authorities: list[str]
    evidence: dict[str, EvidenceUnit]
    quantifiers: list[tuple[str, str]]
    options: ReportOptions
    warnings: list[str] = field(default_factory=list)
    charts: dict[str, bytes] = field(default_factory=dict)  # name -> PNG

    @property
    def claims(self) -> list[Claim]:
        return [c for g in self.groups for c in g.claims] + [
            c for t in self.codes for c in t.claims
        ]

    @property
    def basis(self) -> str:
        if self.include_suggestions:
            return "reviewer-accepted codings and unreviewed machine suggestions (marked as such)"
        return "reviewer-accepted codings only"


def build_theme_report(
    project: ProjectData, options: ReportOptions, vectors: UnitVectors | None = None
) -> ThemeReport:
    """Everything the theme report shows, computed once for every output format."""
    fmt = parse_format(options.attribution_format)
    counted = project.counted(options.include_suggestions)
    reviewed_people = project.reviewed_people()
    people = project.people if options.include_suggestions else reviewed_people
    total_people = len(people)
    total_interviews = (
        int(project.units["transcript_id"].nunique())
        if options.include_suggestions
        else int(people["transcript_id"].nunique())
    )
    accepted_only = counted[counted["accepted"]]
    codebook = project.codebook
    vectors = vectors or UnitVectors(project, None)
    by_unit = counted.groupby("unit_id")["code_id"].apply(set).to_dict()
    authorities = sorted({v for v in people["local_authority"] if v})
    if (people["local_authority"] == "").any():
        authorities.append(NOT_STATED)

    order = {c: i for i, c in enumerate(codebook.ids)}
    themes: dict[str, CodeTheme] = {}
    warnings: list[str] = []
    methods: set[str] = set()
    for code in codebook.codes:
        hits = counted[counted["code_id"] == code.id]
        quotes = None
        if len(hits) and options.quotes_per_code:
            quotes = find_quotes(
                project,
                QuoteRequest(
                    codes=(code.id,),
                    limit=options.quotes_per_code,
                    include_suggestions=options.include_suggestions,
                    max_chars=options.quote_max_chars,
                    per_participant=options.per_participant,
                    attribution_format=options.attribution_format,
                    k=options.k,
                ),
                vectors,
            )
            methods.add(quotes.diversity)
            warnings.extend(quotes.warnings)
        together = Counter(
            other
            for unit in hits["unit_id"].unique()
            for other in by_unit.get(unit, ())
            if other != code.id
        )
        authority = hits["local_authority"].replace("", NOT_STATED)
        theme = CodeTheme(
            code=code,
            group_label=codebook.group(code.group).label,
            unit_ids=sorted(hits["unit_id"].unique()),
            accepted_units=int(hits.loc[hits["accepted"], "unit_id"].nunique()),
            suggested_units=int(hits.loc[~hits["accepted"], "unit_id"].nunique()),
            interviews=int(hits["transcript_id"].nunique()),
            total_interviews=total_interviews,
            participants=int(hits["person"].nunique()),
            total_participants=total_people,
            reviewed_participants=int(
                accepted_only.loc[accepted_only["code_id"] == code.id, "person"].nunique()
            ),
            total_reviewed=len(reviewed_people),
            matrix={label: _matrix(hits, people, column) for column, label in MATRIX_ATTRIBUTES},
            cooccurring=[(codebook.code(c), n) for c, n in _top(together, order)],
            quotes=quotes,
            by_authority=authority.groupby(authority).size().to_dict() if len(hits) else {},
            co_units={
                other: sorted(u for u in hits["unit_id"].unique() if other in by_unit[u])
                for other, _ in _top(together, order)
            },
        )
        theme.claims = _code_claims(theme, hits, people, options.include_suggestions)
        themes[code.id] = theme

    groups = []
    for group in codebook.groups:
        enablers = [
            themes[c.id] for c in codebook.codes if c.group == group.id and c.kind == "enabler"
        ]
        inhibitors = [
            themes[c.id] for c in codebook.codes if c.group == group.id and c.kind == "inhibitor"
        ]
        if not enablers or not inhibitors:
            continue  # only groups that set enablers against inhibitors
        theme = GroupTheme(
            group=group,
            enablers=enablers,
            inhibitors=inhibitors,
            enabler_participants=_people_raising(counted, enablers),
            inhibitor_participants=_people_raising(counted, inhibitors),
            total_participants=total_people,
        )
        theme.claims = _group_claims(theme, counted)
        groups.append(theme)

    if not options.include_suggestions and not project.review.get("accepted_codings"):
        warnings.append(
            "no reviewer has accepted a coding yet, so nothing is counted: review some units "
            "(qcode review or a review sheet), or draft from unreviewed suggestions with "
            "--include-suggestions"
        )
    report = ThemeReport(
        title=f"{codebook.name}: draft theme report",
        codebook_name=codebook.name,
        include_suggestions=options.include_suggestions,
        run_manifest=project.manifest,
        facts=_facts(project, options, methods),
        review=project.review,
        groups=groups,
        codes=list(themes.values()),
        authorities=authorities,
        evidence=_evidence(counted, project, fmt),
        quantifiers=QUANTIFIERS,
        options=options,
        warnings=sorted(set(warnings)),
    )
    for number, claim in enumerate(report.claims, 1):
        claim.ref = f"claim-{number}"
    return report


def _top(counts: Counter[str], order: dict[str, int], n: int = 5) -> list[tuple[str, int]]:
    """The n most frequent, ties in codebook order (the same report every time)."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], order.get(kv[0], 0)))[:n]


def _matrix(hits: pd.DataFrame, people: pd.DataFrame, column: str) -> list[MatrixRow]:
    """Participants raising the code among all participants with each value of ``column``."""
    totals = Counter(v or NOT_STATED for v in people[column])
    persons: dict[str, set[str]] = {}
    units: dict[str, set[str]] = {}
    for value, person, unit in zip(hits[column], hits["person"], hits["unit_id"], strict=True):
        persons.setdefault(value or NOT_STATED, set()).add(person)
        units.setdefault(value or NOT_STATED, set()).add(unit)
    return [
        MatrixRow(
            value=value,
            participants=len(persons.get(value, ())),
            total=total,
            units=len(units.get(value, ())),
        )
        for value, total in sorted(totals.items(), key=lambda kv: (kv[0] == NOT_STATED, kv[0]))
    ]


def _people_raising(counted: pd.DataFrame, themes: list[CodeTheme]) -> int:
    ids = {t.code.id for t in themes}
    return int(counted.loc[counted["code_id"].isin(ids), "person"].nunique())


def _units_of(hits: pd.DataFrame, mask: pd.Series | None = None) -> list[str]:
    frame = hits if mask is None else hits[mask]
    return sorted(frame["unit_id"].unique())


def plural(n: int, noun: str, many: str | None = None) -> str:
    """'1 coded unit', '2 coded units' (``many`` for irregular plurals)."""
    return f"{n} {noun if n == 1 else many or noun + 's'}"


def _share(word: str, n: int, total: int, noun: str = "participants") -> str:
    if word == "one":
        return f"One participant (1 of {total})" if noun == "participants" else "one"
    if word == "all":
        return f"All {noun} ({n} of {total})"
    return f"{word.capitalize()} {noun} ({n} of {total})"


def _names(labels: list[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _code_claims(
    theme: CodeTheme, hits: pd.DataFrame, people: pd.DataFrame, include_suggestions: bool
) -> list[Claim]:
    """The drafted sentences on one code, each with its evidence."""
    label = theme.code.label
    if theme.units == 0:
        basis = (
            "accepted codings or unreviewed suggestions"
            if include_suggestions
            else ("accepted codings")
        )
        return [Claim(f"No participant's {basis} include {label}.", [])]
    units = theme.unit_ids
    split = (
        f": {theme.accepted_units} accepted by reviewers and {theme.suggested_units} unreviewed "
        "machine suggestions"
        if include_suggestions
        else ", all accepted by reviewers"
    )
    who = (
        f"{_share(theme.participants_word, theme.participants, theme.total_participants)}"
        if include_suggestions
        else _share(theme.participants_word, theme.participants, theme.total_participants)[:-1]
        + " whose units were reviewed)"
    )
    both = (
        f" By accepted codings alone: {theme.reviewed_participants} of the "
        f"{theme.total_reviewed} participants whose units were reviewed."
        if include_suggestions
        else ""
    )
    claims = [
        Claim(
            f"{who} raised {label}, in {theme.interviews} of {theme.total_interviews} interviews "
            f"({plural(theme.units, 'coded unit')}{split}).{both}",
            units,
        )
    ]
    for column, title in MATRIX_ATTRIBUTES:
        raised = [r for r in theme.matrix[title] if r.participants]
        if not raised:
            continue
        raised.sort(key=lambda r: (-r.participants / r.total, -r.participants, r.value))
        items = [f"{r.value} ({r.participants} of {r.total})" for r in raised[:4]]
        items[0] = items[0][:-1] + " participants)"
        if len(raised) > 4:
            items.append(plural(len(raised) - 4, "other " + title.lower(), "others"))
        parts = ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]
        values = {r.value for r in raised[:4]}
        mask = hits[column].replace("", NOT_STATED).isin(values)
        claims.append(
            Claim(
                f"By {title.lower()}: {parts}.",
                _units_of(hits, mask),
            )
        )
    if theme.cooccurring:
        other, n = theme.cooccurring[0]
        claims.append(
            Claim(
                f"It was most often coded together with {other.label} ({n} units).",
                theme.co_units[other.id],
            )
        )
    return claims


def _group_claims(theme: GroupTheme, counted: pd.DataFrame) -> list[Claim]:
    total = theme.total_participants
    label = theme.group.label
    claims = []
    for kind, themes, n in (
        ("enabler", theme.enablers, theme.enabler_participants),
        ("inhibitor", theme.inhibitors, theme.inhibitor_participants),
    ):
        ids = {t.code.id for t in themes}
        units = sorted(counted.loc[counted["code_id"].isin(ids), "unit_id"].unique())
        word = quantifier(n, total)
        if n == 0:
            claims.append(Claim(f"No participant raised an {kind} of {label}.", []))
            continue
        claims.append(
            Claim(
                f"{_share(word, n, total)} raised at least one {kind} of {label} "
                f"({plural(len(units), 'coded unit')}).",
                units,
            )
        )
        most = max(t.participants for t in themes)
        top = [t for t in themes if t.participants == most]  # codebook order
        if most and len(top) == 1:
            claims.append(
                Claim(
                    f"The {kind} raised most widely was {top[0].code.label} "
                    f"({most} of {total} participants).",
                    top[0].unit_ids,
                )
            )
        elif most:
            claims.append(
                Claim(
                    f"{len(top)} {kind}s were raised equally widely (a tie, "
                    f"{most} of {total} participants each): "
                    f"{_names([t.code.label for t in top])}.",
                    sorted({u for t in top for u in t.unit_ids}),
                )
            )
    return claims


def _evidence(
    counted: pd.DataFrame, project: ProjectData, fmt: AttributionFormat
) -> dict[str, EvidenceUnit]:
    out = {}
    for unit_id, group in counted.groupby("unit_id", sort=False):
        row = group.iloc[0]
        start, end = int(row["start"]), int(row["end"])
        out[unit_id] = EvidenceUnit(
            unit_id=unit_id,
            transcript_id=row["transcript_id"],
            start=start,
            end=end,
            text=project.texts.get(row["transcript_id"], "")[start:end],
            attribution=fmt.render(project.person_attributes(row["person"])),
            codes=[
                (c, "accepted" if a else "suggested")
                for c, a in zip(group["code_id"], group["accepted"], strict=True)
            ],
        )
    return dict(sorted(out.items(), key=lambda kv: (kv[1].transcript_id, kv[1].start)))


def _facts(
    project: ProjectData, options: ReportOptions, methods: set[str]
) -> list[tuple[str, str]]:
    manifest = project.manifest
    settings = manifest.get("settings", {})
    model = manifest.get("model", {})
    codebook = manifest.get("codebook", {})
    review = project.review
    classifier = manifest.get("classifier")
    share = review.get("share_reviewed", 0.0)
    facts = [
        (
            "Drafted from",
            "reviewer-accepted codings and unreviewed machine suggestions"
            if options.include_suggestions
            else "reviewer-accepted codings only",
        ),
        ("Run", f"{project.run_id} (finished {manifest.get('finished_at', '?')})"),
        ("Model", f"{model.get('name', '?')} (fingerprint {model.get('fingerprint', '?')})"),
        ("Coder", f"trained, {classifier.get('path', '')}" if classifier else "zero-shot"),
        (
            "Codebook",
            f"{codebook.get('name', project.codebook.name)} {codebook.get('version', '')} "
            f"(sha256 {codebook.get('sha256') or project.codebook.sha256})",
        ),
        (
            "Thresholds",
            f"threshold {settings.get('threshold')}, top_k {settings.get('top_k')}, "
            f"relative_cutoff {settings.get('relative_cutoff')}, unit {settings.get('unit')}",
        ),
        (
            "Share reviewed",
            f"{share:.0%} of codable units ({review.get('units_reviewed', 0)} of "
            f"{review.get('codable_units', 0)}), by {len(review.get('reviewers', []))} reviewers",
        ),
        (
            "Codings",
            f"{review.get('accepted_codings', 0)} accepted, "
            f"{review.get('rejected_codings', 0)} rejected, "
            f"{review.get('unreviewed_suggestions', 0)} unreviewed suggestions",
        ),
        (
            "Quotes",
            f"at most {options.quotes_per_code} per code, {options.per_participant} per "
            f"participant, {options.quote_max_chars} characters; diversity by "
            + ("; ".join(sorted(methods)) or "n/a"),
        ),
        (
            "Attributions",
            f"{options.attribution_format!r}; flagged when fewer than "
            f"{options.k} participants share one",
        ),
        ("Drafted at", datetime.now(UTC).isoformat(timespec="seconds")),
    ]
    return facts
