"""The quote bank: well-chosen, verbatim quotes for a code or a combination of codes.

Ranking: quotes a reviewer accepted come first, then the machine's score. The set is spread
across people (nobody is quoted again while another participant with a matching quote has had
fewer) and made diverse by maximal marginal relevance (MMR): among the least-quoted people's
quotes, the next is the one with the best
``LAMBDA x relevance - (1 - LAMBDA) x similarity to the quotes already chosen``. Similarity is
the cosine of the units' vectors from the embedding cache (the run's encoder fingerprint, from
the store's manifest), or TF-IDF word overlap when those vectors are not there; the result says
which. Hard limits: at most ``per_participant`` quotes per person and never two
from the same passage (overlapping spans, or neighbouring sentences of the same turn).

Every quote is a slice of the stored transcript text: its offsets are checked against the text
before it is shown, and a long quote is cut at a sentence end with ``[...]`` marking the cut.

A quote must stand alone: a unit under ``MIN_WORDS`` words ("But it's a gap.") is quoted with
the neighbouring sentence(s) of the same turn (the one before first), and one that still falls
short is not quoted. A bracketed stage direction (``[laughs]``) split by the sentence splitter
is kept whole.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.embed import ENCODER_SCHEME, EmbeddingCache, namespace_of
from pipeline.report.attribution import DEFAULT_FORMAT, AttributionFormat, parse_format
from pipeline.report.errors import ReportError
from pipeline.report.expr import Expr, any_of, both, check_code, parse_expression
from pipeline.report.project import ProjectData
from pipeline.report.summaries import trim_length

LAMBDA = 0.7  # MMR: weight of relevance against similarity to the quotes already chosen
MIN_WORDS = 6  # a shorter quote is a fragment: merged with its turn's neighbours, or left out
CUT = " [...]"
FILTERABLE = ("role", "local_authority", "workstream", "network")


@dataclass
class QuoteRequest:
    """What a report writer asks the quote bank for."""

    codes: tuple[str, ...] = ()  # any of these codes (OR)
    expr: str = ""  # and this expression, e.g. "ts.trust AND NOT ts.trust_lacking"
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)  # attribute -> any of
    limit: int = 5
    include_suggestions: bool = False
    max_chars: int = 400
    per_participant: int = 1
    attribution_format: str = DEFAULT_FORMAT
    k: int = 3

    def check(self) -> None:
        for name, value, low in (
            ("limit", self.limit, 1),
            ("max chars", self.max_chars, 40),
            ("per participant", self.per_participant, 1),
            ("k", self.k, 1),
        ):
            if value < low:
                raise ReportError(f"{name} must be at least {low} (got {value})")


@dataclass
class BankQuote:
    """A quote: the source text of one unit from ``start`` to ``kept_end``, and who said it."""

    unit_id: str
    code_ids: list[str]  # the query's codes the unit holds
    transcript_id: str
    start: int  # the quote's span in the transcript's stored text: the unit's, grown to whole
    end: int  # stage directions and, if short, to the neighbouring sentences of its turn
    kept_end: int  # the quote is text[start:kept_end]; shorter than the unit when trimmed
    text: str  # what is shown: the kept source text, with " [...]" where it was cut
    attribution: str
    shown_attributes: dict[str, str]  # the attributes the attribution shows
    group_size: int  # participants in the project sharing those attributes
    k: int
    accepted: bool  # a reviewer accepted the coding(s) it is quoted for
    score: float

    @property
    def trimmed(self) -> bool:
        return self.kept_end < self.end

    @property
    def kept_text(self) -> str:
        return self.text[: len(self.text) - len(CUT)] if self.trimmed else self.text

    @property
    def identifiable(self) -> bool:
        """Fewer than k participants share the attributes shown: it may single a person out."""
        return self.group_size < self.k

    @property
    def flag(self) -> str:
        if not self.identifiable:
            return ""
        who = "participant has" if self.group_size == 1 else "participants have"
        return (
            f"may identify the speaker: only {self.group_size} {who} this attribution "
            f"(k = {self.k}); generalise it before use"
        )

    @property
    def status(self) -> str:
        return "accepted by a reviewer" if self.accepted else "unreviewed machine suggestion"

    def as_row(self) -> dict:
        return {
            "unit_id": self.unit_id,
            "codes": ";".join(self.code_ids),
            "transcript_id": self.transcript_id,
            "start": self.start,
            "end": self.end,
            "kept_end": self.kept_end,
            "trimmed": self.trimmed,
            "quote": self.text,
            "attribution": self.attribution,
            **{f"attr_{k}": v for k, v in self.shown_attributes.items()},
            "k_flag": self.identifiable,
            "k_group_size": self.group_size,
            "k": self.k,
            "status": "accepted" if self.accepted else "suggested",
            "score": round(self.score, 4),
        }


@dataclass
class QuoteResult:
    request: QuoteRequest
    expression: str  # the query as one expression
    quotes: list[BankQuote]
    matched_units: int  # units that match the query and filters
    matched_participants: int
    diversity: str  # how similarity between quotes was measured
    warnings: list[str] = field(default_factory=list)


def k_notice(quotes: list[BankQuote]) -> str:
    """One k-anonymity notice for a section's quotes, naming the ones that need it by their
    number in the section ("" when none does): printed once, not under every quote."""
    flagged = [(i, q) for i, q in enumerate(quotes, 1) if q.identifiable]
    if not flagged:
        return ""
    numbers = [str(i) for i, _ in flagged]
    named = numbers[0] if len(numbers) == 1 else ", ".join(numbers[:-1]) + " and " + numbers[-1]
    which = f"quote {named} may" if len(numbers) == 1 else f"quotes {named} may"
    sizes = sorted({q.group_size for _, q in flagged})
    shared = " or ".join(str(s) for s in sizes)
    return (
        f"{which} identify the speaker: only {shared} participant"
        f"{'' if sizes == [1] else 's'} share the attribution shown (k = {flagged[0][1].k}); "
        "generalise it before use."
    )


def verify_quote(quote: BankQuote, texts: dict[str, str]) -> bool:
    """True when the quote is exactly the stored transcript's text at its offsets."""
    source = texts.get(quote.transcript_id)
    if source is None or not quote.start <= quote.kept_end <= quote.end <= len(source):
        return False
    marker = CUT if quote.trimmed else ""
    return quote.text == source[quote.start : quote.kept_end] + marker


# -- similarity --------------------------------------------------------------------------------


class UnitVectors:
    """Unit vectors read from the embedding cache, for MMR; read-only, loaded once.

    Falls back to TF-IDF word overlap (and says so) when the cache, the run's encoder
    fingerprint or any needed vector is missing.
    """

    def __init__(self, project: ProjectData, cache_dir: Path | None):
        self.model = project.manifest.get("model", {})
        self.path = Path(cache_dir) / "embeddings.sqlite" if cache_dir else None
        self._vectors: dict[str, np.ndarray] | None = None
        self.problem = ""
        self._project = project

    def namespaces(self) -> list[str]:
        """Cache namespaces the run may have written its vectors under: the encoder
        fingerprint with the run's precision and vector scheme (``embed.cache_namespace``),
        then older layouts."""
        fingerprint = self.model.get("fingerprint")
        if not fingerprint:
            return []
        settings = self._project.manifest.get("settings", {})
        precision = self.model.get("precision") or settings.get("precision")
        precisions = [p for p in dict.fromkeys([precision, "fp32"]) if p]
        current = [namespace_of(fingerprint, p) for p in precisions]
        older = [f"{fingerprint}\x00{p}\x00{ENCODER_SCHEME}" for p in precisions]  # session 11
        older += [f"{fingerprint}\x00{p}" for p in precisions]
        return [*current, *older, fingerprint]

    def _load(self) -> dict[str, np.ndarray]:
        if self._vectors is not None:
            return self._vectors
        self._vectors = {}
        if not self.namespaces():
            self.problem = "the run's manifest names no encoder fingerprint"
            return self._vectors
        if self.path is None or not self.path.is_file():
            self.problem = f"no embedding cache at {self.path or '.cache/embeddings.sqlite'}"
            return self._vectors
        units = self._project.units
        wanted = units[units["speaker_kind"] == "participant"]
        pairs = list(zip(wanted["unit_id"], wanted["text"], strict=True))
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            try:
                for namespace in self.namespaces():
                    keys = {EmbeddingCache.key(namespace, t): u for u, t in pairs}
                    found = _read_vectors(db, list(keys))
                    if len(found) > len(self._vectors):
                        self._vectors = {keys[k]: v for k, v in found.items()}
                    if len(found) == len(keys):
                        break
            finally:
                db.close()
        except sqlite3.Error as error:
            self.problem = f"the embedding cache {self.path} cannot be read ({error})"
        return self._vectors

    def similarity(self, unit_ids: list[str], texts: list[str]) -> tuple[np.ndarray, str]:
        """Pairwise similarity of the units, and how it was measured."""
        vectors = self._load()
        missing = [u for u in unit_ids if u not in vectors]
        name = self.model.get("name", "the run's encoder")
        if unit_ids and not missing:
            matrix = np.vstack([vectors[u] for u in unit_ids]).astype(np.float64)
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix = matrix / np.where(norms == 0, 1, norms)
            return matrix @ matrix.T, f"embeddings ({name}, cached unit vectors)"
        reason = self.problem or (
            f"{len(missing)} of {len(unit_ids)} units have no cached vector for {name} in "
            f"{self.path}"
        )
        return lexical_similarity(texts), f"lexical (TF-IDF word overlap): {reason}"


def _read_vectors(db: sqlite3.Connection, keys: list[bytes]) -> dict[bytes, np.ndarray]:
    found: dict[bytes, np.ndarray] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for key, blob in db.execute(
            f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
        ):
            found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
    return found


def lexical_similarity(texts: list[str]) -> np.ndarray:
    """Cosine of TF-IDF word vectors: the fallback when unit vectors are not cached."""
    if len(texts) < 2:
        return np.ones((len(texts), len(texts)))
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        matrix = TfidfVectorizer(stop_words="english").fit_transform(texts)
    except ValueError:  # nothing but stop words
        return np.eye(len(texts))
    return (matrix @ matrix.T).toarray()


# -- the query ---------------------------------------------------------------------------------


def query_expression(request: QuoteRequest, known: list[str]) -> Expr:
    """``--code`` values (any of them) and ``--expr`` (both must hold), as one expression."""
    for code in request.codes:
        check_code(code, known, "--code")
    codes = any_of(list(request.codes)) if request.codes else None
    parsed = parse_expression(request.expr, known) if request.expr.strip() else None
    expr = both(codes, parsed)
    if expr is None:
        raise ReportError("name a code (--code ts.trust) or an expression (--expr) to quote")
    if expr.matches(frozenset()):
        raise ReportError(
            f"the expression {str(expr)!r} would match units with no code at all; combine NOT "
            "with a code, e.g. 'ts.trust AND NOT ts.trust_lacking'"
        )
    return expr


def check_filters(filters: dict[str, tuple[str, ...]], people: pd.DataFrame) -> None:
    """Every filter value must be held by some participant: a typo must not read as 'none'."""
    for attribute, wanted in filters.items():
        if not wanted:
            continue
        if attribute not in people.columns or attribute in ("person", "transcript_id"):
            raise ReportError(
                f"participants have no attribute {attribute!r} (filter on one of "
                f"{', '.join(FILTERABLE)})"
            )
        held = sorted({v for v in people[attribute] if v})
        lowered = {v.lower() for v in held}
        for value in wanted:
            if value.strip().lower() not in lowered:
                raise ReportError(
                    f"no participant has {attribute} {value!r}; values in this project: "
                    f"{', '.join(held) or 'none'}"
                )


def candidates(project: ProjectData, request: QuoteRequest, expr: Expr) -> pd.DataFrame:
    """Participant units matching the expression and filters, with ``accepted`` and ``score``.

    A unit's codes are its accepted codings (plus unreviewed suggestions when asked). It is
    ``accepted`` when the expression holds on reviewer-accepted codings alone. Its score is the
    best machine score among the query's codes it holds (0 for codes people added).
    """
    counted = project.counted(request.include_suggestions)
    columns = ["unit_id", "accepted", "score", "code_ids"]
    wanted = set(expr.positive_codes)
    # A unit holding none of the codes named is like a unit with no code: it cannot match.
    named = counted["unit_id"].isin(counted.loc[counted["code_id"].isin(expr.codes), "unit_id"])
    sub = counted[named]
    codes: dict[str, set[str]] = {}
    accepted: dict[str, set[str]] = {}
    best: dict[str, float] = {}
    for unit, code, is_accepted, score in zip(
        sub["unit_id"], sub["code_id"], sub["accepted"], sub["score"], strict=True
    ):
        codes.setdefault(unit, set()).add(code)
        accepted.setdefault(unit, set())
        if is_accepted:
            accepted[unit].add(code)
        if code in wanted:
            value = 0.0 if score is None or score != score else float(score)
            best[unit] = max(best.get(unit, 0.0), value)
    rows = [
        {
            "unit_id": unit,
            "accepted": expr.matches(accepted[unit]),
            "score": best.get(unit, 0.0),
            "code_ids": [c for c in expr.positive_codes if c in held],
        }
        for unit, held in codes.items()
        if expr.matches(held)
    ]
    found = pd.DataFrame(rows, columns=columns).merge(project.units, on="unit_id")
    for attribute, values in request.filters.items():
        if values:
            allowed = {v.strip().lower() for v in values}
            held = project.people[attribute].reindex(found["person"]).fillna("")
            found = found[[v.lower() in allowed for v in held]]
    return found.sort_values(
        ["accepted", "score", "unit_id"], ascending=[False, False, True]
    ).reset_index(drop=True)


def _words(text: str) -> int:
    return len(re.findall(r"[\w'’-]+", re.sub(r"\[[^\]]*\]", " ", text)))


def _whole_brackets(text: str, start: int, end: int) -> tuple[int, int]:
    """The span grown so that no ``[stage direction]`` is cut in two."""
    inside = text[start:end]
    first_close, first_open = inside.find("]"), inside.find("[")
    if first_close != -1 and (first_open == -1 or first_close < first_open):
        opening = text.rfind("[", 0, start)
        if opening != -1 and text.rfind("]", 0, start) < opening:
            start = opening
    last_open, last_close = inside.rfind("["), inside.rfind("]")
    if last_open > last_close:
        closing = text.find("]", end)
        if closing != -1:
            end = closing + 1
    return start, end


def stand_alone(found: pd.DataFrame, project: ProjectData) -> pd.DataFrame:
    """``found`` with each quote's span (``quote_start``, ``quote_end``): the unit, grown to
    whole stage directions and, under ``MIN_WORDS`` words, to the neighbouring sentences of
    its turn; rows that still fall short are left out."""
    if found.empty:
        return found.assign(quote_start=pd.Series(dtype=int), quote_end=pd.Series(dtype=int))
    units = project.units
    turns = {
        key: list(zip(g["start"], g["end"], strict=True))
        for key, g in units[units["transcript_id"].isin(set(found["transcript_id"]))]
        .sort_values("start")
        .groupby(["transcript_id", "turn_index"])
    }
    starts, ends, keep = [], [], []
    for tid, turn, start, end in zip(
        found["transcript_id"], found["turn_index"], found["start"], found["end"], strict=True
    ):
        text = project.texts.get(tid, "")
        start, end = _whole_brackets(text, int(start), int(end))
        spans = turns.get((tid, turn), [])
        before = [s for s, e in spans if e <= start][::-1]  # nearest first
        after = [e for s, e in spans if s >= end]
        while _words(text[start:end]) < MIN_WORDS and (before or after):
            if before:
                start = before.pop(0)
            else:
                end = after.pop(0)
            start, end = _whole_brackets(text, start, end)
        starts.append(start)
        ends.append(end)
        keep.append(_words(text[start:end]) >= MIN_WORDS)
    out = found.assign(quote_start=starts, quote_end=ends)
    return out[keep].reset_index(drop=True)


def same_passage(found: pd.DataFrame, pick: int) -> np.ndarray:
    """Rows of ``found`` in the same passage as row ``pick``: overlapping spans, or
    neighbouring units of the same turn."""
    tid = found["transcript_id"].to_numpy()
    start_column = "quote_start" if "quote_start" in found.columns else "start"
    end_column = "quote_end" if "quote_end" in found.columns else "end"
    start, end = found[start_column].to_numpy(), found[end_column].to_numpy()
    turn, position = found["turn_index"].to_numpy(), found["position"].to_numpy()
    overlap = (start < end[pick]) & (start[pick] < end)
    neighbour = (turn == turn[pick]) & (np.abs(position - position[pick]) <= 1)
    return (tid == tid[pick]) & (overlap | neighbour)


def select_diverse(
    found: pd.DataFrame, similarity: np.ndarray, limit: int, per_participant: int
) -> list[int]:
    """Row numbers of ``found`` (sorted accepted first, then score), chosen by MMR.

    Accepted quotes are all considered before unreviewed ones. Within each, people are spread:
    the next quote comes from the least-quoted participants with a quote left, and among those
    it is the best ``LAMBDA x score - (1 - LAMBDA) x similarity to the quotes chosen``. Hard
    limits: ``per_participant`` quotes per person, never two from the same passage.
    """
    n = len(found)
    if n == 0:
        return []
    relevance = found["score"].to_numpy(dtype=float)
    people = found["person"].to_numpy()
    accepted = found["accepted"].to_numpy(dtype=bool)
    closest = np.zeros(n)  # highest similarity to any quote chosen so far
    open_ = np.ones(n, dtype=bool)
    quoted = np.zeros(n, dtype=int)  # how often each row's participant is quoted so far
    chosen: list[int] = []
    for tier in (True, False):
        while len(chosen) < limit:
            eligible = open_ & (accepted == tier)
            if not eligible.any():
                break
            eligible &= quoted == quoted[eligible].min()
            value = LAMBDA * relevance - (1 - LAMBDA) * closest
            value[~eligible] = -np.inf
            pick = int(np.argmax(value))  # the first of equals: the better-ranked one
            chosen.append(pick)
            closest = np.maximum(closest, similarity[:, pick].astype(float))
            open_ &= ~same_passage(found, pick)
            same_person = people == people[pick]
            quoted[same_person] += 1
            if quoted[pick] >= per_participant:
                open_ &= ~same_person
    return chosen


def find_quotes(
    project: ProjectData, request: QuoteRequest, vectors: UnitVectors | None = None
) -> QuoteResult:
    """The quote bank's answer to one request (see the module's docstring)."""
    request.check()
    fmt = parse_format(request.attribution_format)
    expr = query_expression(request, project.codebook.ids)
    check_filters(request.filters, project.people)
    found = candidates(project, request, expr)
    warnings = []
    verbatim = [
        project.texts.get(t, "")[s:e] == text
        for t, s, e, text in zip(
            found["transcript_id"], found["start"], found["end"], found["text"], strict=True
        )
    ]
    if not all(verbatim):
        bad = found.loc[[not v for v in verbatim], "unit_id"].tolist()
        warnings.append(
            f"{len(bad)} matching units were left out because their text no longer matches the "
            f"stored transcript at their offsets (e.g. unit {bad[0]}): run 'qcode run' again"
        )
        found = found[verbatim].reset_index(drop=True)
    matched = found
    found = stand_alone(found, project)
    if len(found) < len(matched):
        warnings.append(
            f"{len(matched) - len(found)} matching units are not quoted: under {MIN_WORDS} "
            "words even with the rest of their turn, they would not stand alone"
        )
    vectors = vectors or UnitVectors(project, None)
    similarity, method = vectors.similarity(found["unit_id"].tolist(), found["text"].tolist())
    picks = select_diverse(found, similarity, request.limit, request.per_participant)
    sizes = Counter(fmt.combination(project.person_attributes(p)) for p in project.people.index)
    quotes = [_quote(found.iloc[i], project, request, fmt, sizes) for i in picks]
    return QuoteResult(
        request=request,
        expression=str(expr),
        quotes=quotes,
        matched_units=len(matched),
        matched_participants=int(matched["person"].nunique()) if len(matched) else 0,
        diversity=method,
        warnings=warnings,
    )


def _quote(
    row: pd.Series,
    project: ProjectData,
    request: QuoteRequest,
    fmt: AttributionFormat,
    sizes: Counter[tuple[str, ...]],
) -> BankQuote:
    start, end = int(row["quote_start"]), int(row["quote_end"])
    source = project.texts[row["transcript_id"]][start:end]
    kept = trim_length(source, request.max_chars)
    attributes = project.person_attributes(row["person"])
    quote = BankQuote(
        unit_id=row["unit_id"],
        code_ids=list(row["code_ids"]),
        transcript_id=row["transcript_id"],
        start=start,
        end=end,
        kept_end=start + kept,
        text=source[:kept] + (CUT if kept < len(source) else ""),
        attribution=fmt.render(attributes),
        shown_attributes={f: attributes.get(f, "") for f in fmt.fields},
        group_size=sizes[fmt.combination(attributes)],
        k=request.k,
        accepted=bool(row["accepted"]),
        score=float(row["score"]),
    )
    if not verify_quote(quote, project.texts):  # a bug, never a person's input
        raise ReportError(f"quote of unit {quote.unit_id} is not the source's text")
    return quote
