"""Attributions in the evaluation's style, from participants' attributes only, and the k flag.

An attribution format is a Python format string (``"{role} – {local_authority} – {workstream}"``)
or a Jinja expression (anything with ``{{``). In a format string an attribute a participant does
not have is left out together with the separator before it, so ``Head teacher – LA-C`` never
reads ``Head teacher – LA-C – ``. The attributes a format shows are what could single a person
out: a quote whose combination of them is held by fewer than k participants is flagged.
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import jinja2
import jinja2.meta

from pipeline.report.errors import ReportError

# The evaluation's style: "Class teacher – West OS – Resource creator".
DEFAULT_FORMAT = "{role} – {local_authority} – {workstream}"
# What the per-run summaries have always shown: "Head teacher, LA-C, LEI workstream".
SUMMARY_FORMAT = "{role}, {local_authority}, {workstream} workstream"
# Speaker labels can be people's names (Teams exports): never part of an attribution.
FORBIDDEN_FIELDS = frozenset({"name", "names", "speaker", "speaker_label", "label"})
FALLBACK = "Participant"


@dataclass(frozen=True)
class AttributionFormat:
    """A parsed attribution format: its text, the attributes it shows, how to fill it in."""

    text: str
    fields: tuple[str, ...]
    jinja: bool

    @classmethod
    def parse(cls, text: str) -> AttributionFormat:
        if "{{" in text or "{%" in text:
            env = jinja2.Environment(autoescape=False)
            try:
                ast = env.parse(text)
            except jinja2.TemplateSyntaxError as error:
                raise ReportError(
                    f"attribution format {text!r} is not valid Jinja: {error.message}"
                ) from None
            fields = tuple(sorted(jinja2.meta.find_undeclared_variables(ast)))
            jinja = True
        else:
            try:
                parsed = list(string.Formatter().parse(text))
            except ValueError as error:
                raise ReportError(
                    f"attribution format {text!r} is not a format string ({error}); "
                    "write attributes in braces, e.g. '{role} – {local_authority}'"
                ) from None
            fields = tuple(dict.fromkeys(f for _, f, _, _ in parsed if f is not None))
            if any(not f.isidentifier() for f in fields):
                raise ReportError(
                    f"attribution format {text!r}: name each attribute in braces, e.g. {{role}}"
                )
            jinja = False
        if not fields:
            raise ReportError(
                f"attribution format {text!r} shows no attribute; use e.g. {DEFAULT_FORMAT!r}"
            )
        forbidden = sorted(set(fields) & FORBIDDEN_FIELDS)
        if forbidden:
            raise ReportError(
                f"attribution format {text!r} uses {forbidden[0]!r}: attributions are built from "
                "attributes (role, local_authority, workstream, network...), never names or "
                "speaker labels"
            )
        return cls(text, fields, jinja)

    def render(self, attributes: dict[str, str]) -> str:
        values = {f: str(attributes.get(f) or "").strip() for f in self.fields}
        if self.jinja:
            text = jinja2.Environment(autoescape=False).from_string(self.text).render(**values)
            return " ".join(text.split()) or FALLBACK
        return _fill(self.text, values) or FALLBACK

    def combination(self, attributes: dict[str, str]) -> tuple[str, ...]:
        """The values this format shows: what a reader could use to tell people apart."""
        return tuple(str(attributes.get(f) or "").strip() for f in self.fields)


def _fill(text: str, values: dict[str, str]) -> str:
    """Fill a format string, dropping each missing attribute with the separator before it;
    the text after the last attribute belongs to it ("{workstream} workstream")."""
    prefix, trailing, fields = "", "", []  # fields: (separator before, attribute)
    for i, (literal, field, _, _) in enumerate(string.Formatter().parse(text)):
        if field is None:
            trailing = literal
        elif i == 0:
            prefix = literal
            fields.append(("", field))
        else:
            fields.append((literal, field))
    shown = [(separator, values.get(f, "")) for separator, f in fields if values.get(f, "")]
    if not shown:
        return ""
    out = prefix + shown[0][1] + "".join(s + v for s, v in shown[1:])
    if values.get(fields[-1][1], ""):
        out += trailing
    return " ".join(out.split())


@lru_cache(maxsize=32)
def parse_format(fmt: str) -> AttributionFormat:
    return AttributionFormat.parse(fmt)


def attribution_text(attributes: dict[str, str], fmt: str = SUMMARY_FORMAT) -> str:
    return parse_format(fmt).render(attributes)


def group_sizes(people: list[dict[str, str]], fmt: AttributionFormat) -> Counter[tuple[str, ...]]:
    """How many participants hold each combination of the attributes ``fmt`` shows."""
    return Counter(fmt.combination(p) for p in people)
