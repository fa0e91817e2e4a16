"""Build the West Partnership development set from the evaluation reports in ../shared/seeds/.

A statement is a passage the report itself files under an enabler or inhibitor heading (a bold
bullet in a "key features that enabled progress" or "challenges to progress" list) or a sentence
the report itself calls an enabler, a challenge, trust, momentum and so on. Its codes come from
that placement, through the table below, never from reading the statement and judging it.

Usage: python benchmarks/west_seeds/build_statements.py [--seeds ../shared/seeds]
Writes statements.csv (segment_id,text,codes) and statements_meta.csv (source, heading, split)
beside this file. Deterministic: the same reports give the same files.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPLIT_SEED = 13  # fixed before any measuring; dev/test halves by bullet (see README)

EVAL = "west_partnership_evaluation_2022.md"
BTTF = "west_back_to_the_future_2022.md"

# (report, start of the bold bullet label, codes). Enabler lists first, then inhibitor lists.
BULLETS: list[tuple[str, str, str]] = [
    # Executive summary: "The key features that have enabled workstream progress ... are:"
    (EVAL, "changes to the internal architecture", "structure.architecture"),
    (EVAL, "responsiveness of the WP to sector needs", "process.responsiveness"),
    (
        EVAL,
        "network structure providing focus",
        "structure.focus_priorities;purpose.shared_purpose",
    ),
    (EVAL, "collaborative and networked learning", "process.collaboration_sharing"),
    (EVAL, "transparent processes which rely", "ts.transparency;process.leadership_coordination"),
    (EVAL, "a reputation for high-quality professional", "process.professional_learning"),
    (EVAL, "an environment conducive to organic growth", "process.organic_growth"),
    # Executive summary: "Key features that have presented challenges or slowed ... are:"
    (EVAL, "sustaining the eco-system (this", "structure.ecosystem_churn"),
    (EVAL, "a lack of clarity of goals", "purpose.goal_clarity;structure.role_clarity"),
    (EVAL, "key messages and ideas reaching teachers", "process.reaching_teachers"),
    (EVAL, "follow-through on impact", "process.follow_through"),
    (EVAL, "communications between and across networks", "process.communications"),
    (EVAL, "perceived WP expectations of LA input", "structure.la_context"),
    # "On key features which enabled progress - achievements and successes"
    (EVAL, "Internal Architecture", "structure.architecture"),
    (EVAL, "Networked Learning", "process.collaboration_sharing"),
    (EVAL, "Developing Agency and Collective Capacity", "purpose.agency_capacity"),
    (EVAL, "The IOC Programme", "purpose.agency_capacity"),
    (EVAL, "WP Responsiveness to Sector Needs", "process.responsiveness"),
    (EVAL, "A 'Safe Space'", "ts.trust"),
    (EVAL, "Organic Growth/Regenerative Networks", "process.organic_growth"),
    (EVAL, "WP Adding Value to the Local Authorities", "process.adding_value"),
    (EVAL, "WP Reputation and Quality of Provision", "process.professional_learning"),
    (EVAL, "Joint-practice development", "process.collaboration_sharing"),
    (EVAL, "Partnership with ES", "process.external_partnership"),
    # "On challenges to progress and constraints on network effectiveness"
    (EVAL, "Sustaining the eco-system", "structure.ecosystem_churn"),
    (EVAL, "Reaching teachers", "process.reaching_teachers"),
    (EVAL, "Communications", "process.communications"),
    (EVAL, "Follow-through: capturing", "process.follow_through"),
    (EVAL, "Variations in LA priorities and resources", "structure.la_context"),
    (EVAL, "Clarity of goals and roles", "ROLES_GOALS"),
    # Back to the Future, "2. Key Facilitators and Inhibitors": facilitators
    (BTTF, "Networked Learning", "process.collaboration_sharing"),
    (BTTF, "Developing Agency and Collective Capacity", "purpose.agency_capacity"),
    (BTTF, "A `Safe Space`", "SAFE_SPACE"),
    (BTTF, "Adding Value to the Local Authorities", "process.adding_value"),
    (BTTF, "Partnership with Education Scotland", "process.external_partnership"),
    # ... and "the following inhibitors will require careful consideration"
    (BTTF, "Sustaining the eco-system", "structure.ecosystem_churn"),
    (BTTF, "Reaching teachers", "process.reaching_teachers"),
    (BTTF, "Communications", "process.communications"),
    (BTTF, "Follow-through: Capturing", "process.follow_through"),
    (BTTF, "Local Authority context", "structure.la_context"),
    (BTTF, "Clarity of roles and responsibilities", "ROLES_GOALS"),
]

# Sentences in the narrative that the report itself names as an enabler, a challenge, trust,
# momentum lost and so on: (report, start of the sentence, codes).
SENTENCES: list[tuple[str, str, str]] = [
    (EVAL, "**Network Structure** – the focus of the network", "structure.focus_priorities"),
    (EVAL, "They appreciated the uniform approach", "structure.focus_priorities"),
    (EVAL, "This 'drilling-down' of priorities", "structure.focus_priorities"),
    (EVAL, "The composition of the networks reflected", "structure.focus_priorities"),
    (EVAL, "**Network Purpose** – There was a belief", "purpose.shared_purpose"),
    (EVAL, "There was an opportunity to share learning", "purpose.shared_purpose"),
    (EVAL, "Network capacities were also vital", "process.leadership_coordination"),
    (EVAL, "High levels of cohesion are associated with trust", "ts.trust"),
    (EVAL, "Participants felt confident that they could openly", "ts.trust"),
    (EVAL, "Where this was evident, it translated into a culture", "ts.transparency"),
    (EVAL, "Workstream leads (WP and LA) played a key role", "process.leadership_coordination"),
    (EVAL, "Engagement and feedback were crucial enablers", "process.responsiveness"),
    (EVAL, "The commitment and dedication of individuals", "ts.tenacity"),
    (EVAL, "Evaluation participants were keen to acknowledge", "ts.tenacity"),
    (EVAL, "Other capacities evident in the network", "process.leadership_coordination"),
    (EVAL, "MS Teams was also an enabler", "process.digital_connection"),
    (EVAL, "The main challenges mentioned were time", "ts.time_pressure;context.resources"),
    (EVAL, "Producing the videos was deemed", "ts.time_pressure;context.resources"),
    (EVAL, "The issue re time and training", "ts.time_pressure"),
    (EVAL, "Reach and communications were mentioned", "process.reaching_teachers"),
    (EVAL, "However, there are concerns that to fully embed", "context.resources"),
    (EVAL, "There is an *impression* that West OS has lost", "ts.tenacity_lacking"),
    (EVAL, "There was also a belief that not having anyone", "structure.ecosystem_churn"),
    (EVAL, "Networking was enabled by good relationships", "ts.trust"),
    (EVAL, "There were also positive and transparent discussions", "ts.transparency"),
    (EVAL, "MS Teams was also believed to have been", "process.digital_connection"),
    (EVAL, "In terms of online delivery of the programme", "ts.time_pressure"),
    (EVAL, "Communications could have been improved", "process.communications"),
    (EVAL, "Given that successful completion of the programme", "ts.time_pressure"),
    (EVAL, "The different levels of support make it", "context.resources"),
    (EVAL, "There was a gap in follow-up monitoring", "process.follow_through"),
    (EVAL, "They believe this would benefit all network activity", "ts.transparency_lacking"),
    (EVAL, "What they would like to know, though", "ts.transparency_lacking"),
    (EVAL, "A great deal of trust has been established", "ts.trust"),
    (EVAL, "One of the main challenges for the WP", "structure.ecosystem_churn"),
    (EVAL, "Whilst West OS has had a significant impact", "process.communications"),
    (BTTF, "First, cultural change takes **time**", "ts.time;ts.transparency;ts.trust;ts.tenacity"),
]


def clean(text: str) -> str:
    """Markdown to plain text: no bold, footnote marks, code ticks or doubled spaces."""
    text = re.sub(r"<sup>.*?</sup>", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("**", "").replace("`", "'").replace("*", "")
    return " ".join(text.split())


SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z'‘“(])")


def sentences(text: str) -> list[str]:
    """Split on sentence ends (keeps 'e.g., West OS' and 'pp. 19' together)."""
    parts = [p.strip() for p in SENTENCE_END.split(text) if p.strip()]
    out: list[str] = []
    for part in parts:
        if out and (out[-1].endswith(("e.g.", "i.e.", "pp.", "c.f.")) or len(part.split()) < 3):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def chunks(sents: list[str], size: int = 2) -> list[str]:
    """Consecutive pairs of sentences; a short last sentence joins the pair before it."""
    out = [" ".join(sents[i : i + size]) for i in range(0, len(sents), size)]
    if len(out) > 1 and len(sents) % size == 1 and len(sents[-1].split()) < 10:
        out[-2] = f"{out[-2]} {out.pop()}"
    return out


def bullet_text(lines: list[str], start: int, raw: bool = False) -> str:
    """A bullet's text, including a continuation paragraph after a page break."""
    parts = [lines[start] if raw else lines[start][2:]]
    for line in (raw.strip() for raw in lines[start + 1 :]):
        if not line or line.startswith(("---", "<sup>")):
            continue
        if not line[0].islower():
            break
        parts.append(line)
    return " ".join(parts) if raw else clean(" ".join(parts))


def strip_label(raw: str) -> str:
    """Drop the bold heading (it names the code) and the dash after it."""
    body = clean(re.sub(r"^- \*\*.*?\*\*\s*[–:-]?\s*", "", raw))
    return body[:1].upper() + body[1:]


def chunk_codes(rule: str, chunk: str) -> str:
    """Codes for one chunk of a bullet; two bullets mix two codes and are split by keyword."""
    low = chunk.lower()
    if rule == "ROLES_GOALS":  # "Clarity of goals and roles" / "roles and responsibilities"
        codes = []
        if re.search(r"\bgoal|\baims?\b|benefits", low):
            codes.append("purpose.goal_clarity")
        if re.search(r"\broles?\b|responsibilit|direction of travel|membership", low):
            codes.append("structure.role_clarity")
        return ";".join(codes or ["structure.role_clarity"])
    if rule == "SAFE_SPACE":  # the bullet ends on organic growth
        return "process.organic_growth" if "organic" in low else "ts.trust"
    return rule


def build(seeds: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for source, label, rule in BULLETS:
        lines = (seeds / source).read_text(encoding="utf-8").splitlines()
        hits = [
            i for i, line in enumerate(lines) if clean(line).startswith(f"- {clean(label)}".strip())
        ]
        if len(hits) != 1:
            raise SystemExit(f"{source}: bullet '{label}' found {len(hits)} times, expected once")
        text = bullet_text(lines, hits[0])
        body = strip_label(bullet_text(lines, hits[0], raw=True))
        if lines[hits[0]].rstrip().endswith("**"):  # a list item in bold: one statement
            pieces = [text.rstrip(";, ").removesuffix(" and").rstrip(";, ")]
        else:
            pieces = chunks(sentences(body))
        group = f"{source}#{label}"
        for piece in pieces:
            rows.append(
                {"text": piece, "codes": chunk_codes(rule, piece), "source": source, "group": group}
            )
    for source, start, codes in SENTENCES:
        key = clean(start)
        paragraphs = [clean(line) for line in (seeds / source).read_text("utf-8").splitlines()]
        found = [p for p in paragraphs if key in p]
        if len(found) != 1 or found[0].count(key) != 1:
            raise SystemExit(f"{source}: sentence '{start}' not found exactly once")
        at = paragraphs.index(found[0])
        sentence = sentences(found[0][found[0].index(key) :])[0]
        for word in ("Network Structure – ", "Network Purpose – "):
            sentence = sentence.removeprefix(word)
        rows.append({"text": sentence, "codes": codes, "source": source, "group": f"{source}@{at}"})
    return dedupe(rows)


def dedupe(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Back to the Future repeats the evaluation's bullets nearly word for word: keep one."""
    kept: list[dict[str, str]] = []
    seen: list[set[str]] = []
    for row in rows:
        words = set(re.findall(r"[a-z]+", row["text"].lower()))
        if any(len(words & s) / max(1, len(words | s)) >= 0.6 for s in seen):
            continue
        seen.append(words)
        kept.append(row)
    return kept


def split(rows: list[dict[str, str]]) -> None:
    """Dev/test halves by bullet (chunks of one bullet stay together), balanced in size."""
    groups = sorted({r["group"] for r in rows})
    order = np.random.default_rng(SPLIT_SEED).permutation(len(groups))
    size = {"dev": 0, "test": 0}
    half: dict[str, str] = {}
    for index in order:
        g = groups[index]
        n = sum(r["group"] == g for r in rows)
        side = "dev" if size["dev"] <= size["test"] else "test"
        half[g] = side
        size[side] += n
    for r in rows:
        r["split"] = half[r["group"]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=Path, default=HERE.parents[1] / ".." / "shared" / "seeds")
    args = parser.parse_args()
    rows = build(args.seeds)
    split(rows)
    for i, r in enumerate(rows, 1):
        r["segment_id"] = f"WS-{i:03d}"
    with open(HERE / "statements.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["segment_id", "text", "codes"])
        w.writerows([r["segment_id"], r["text"], r["codes"]] for r in rows)
    with open(HERE / "statements_meta.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["segment_id", "source", "heading", "split"])
        w.writerows(
            [r["segment_id"], r["source"], r["group"].split("#")[-1], r["split"]] for r in rows
        )
    dev = sum(r["split"] == "dev" for r in rows)
    print(f"{len(rows)} statements ({dev} dev, {len(rows) - dev} test)")


if __name__ == "__main__":
    main()
