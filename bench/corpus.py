"""A realistic benchmark corpus: N pages of interviews in the sample transcripts' style.

Why generated: a national review is ~7,000 pages and we cannot ship real interviews. Repeating
the eight sample transcripts would make almost every sentence a duplicate, and the embedding
cache would then make any benchmark meaningless. So sentences are *recombined*: an order-2 word
Markov chain over the sample's own sentences (participants and interviewers separately), with
sentence lengths drawn from the sample's distribution and light variation (authorities, numbers,
a few synonyms, spoken fillers). Interview structure follows the sample: YAML front matter,
``Interviewer:``/``Participant:`` turns (``P1``-``P3`` in group interviews), multi-paragraph
answers. The same seed gives the same corpus, byte for byte.

    python -m bench.corpus --pages 700 --out /tmp/corpus --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "transcripts_sample"
WORDS_PER_PAGE = 500
SENTENCE_END = re.compile(r"(?<=[.?!])[\"”’')]*\s+(?=[\"“‘(]?[A-Z0-9])")
FINAL = re.compile(r"[.?!][\"”’')]*$")
EOS = "\x00"

ROLES = [
    "Head teacher",
    "Depute head teacher",
    "Principal teacher",
    "Class teacher",
    "Quality improvement officer",
    "Workstream lead officer",
    "Education Scotland officer",
    "Secondary head teacher",
    "Educational psychologist",
    "Network facilitator",
]
AUTHORITIES = [f"LA-{c}" for c in "ABCDEFGH"]
WORKSTREAMS = ["CLN", "CLTA", "LEI"]
NETWORKS = [
    "Headteacher peer network",
    "West Online School",
    "Early level network",
    "Moderation network",
    "Numeracy network",
    "Leadership of Equity and Improvement",
    "Secondary subject network",
    "Digital learning network",
]
SYNONYMS = {
    "really": ["genuinely", "honestly", "really"],
    "wee": ["little", "small", "wee"],
    "group": ["network", "group", "team"],
    "colleagues": ["colleagues", "folk", "staff", "peers"],
    "school": ["school", "establishment", "school"],
    "think": ["think", "suppose", "feel"],
    "important": ["important", "crucial", "key"],
    "difficult": ["difficult", "hard", "tricky"],
    "meetings": ["meetings", "sessions", "calls"],
}
FILLERS = ["Um, ", "I mean, ", "You know, ", "So, ", "Well, ", "And ", "Honestly, ", "Yeah, "]
CLOSERS = [" I think.", ", if that makes sense.", ", to be honest.", ", you know."]


@dataclass
class CorpusStats:
    pages: int
    seed: int
    transcripts: int
    words: int
    sentences: int
    unique_sentences: int
    unique_share: float
    unique_share_4_words: float
    verbatim_from_sample_share: float
    mean_sentence_words: float
    files: list[str] = field(default_factory=list)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]


def sample_sentences() -> tuple[list[list[str]], list[list[str]], list[int]]:
    """(participant turns, interviewer turns) as sentence lists, and sentences per answer."""
    from pipeline.environment import configure_environment

    configure_environment()
    from pipeline.ingest import read_transcripts

    transcripts, _ = read_transcripts(SAMPLE)
    participant, interviewer, per_turn = [], [], []
    for t in transcripts:
        for turn in t.turns:
            sentences = split_sentences(t.text[turn.start : turn.end].replace("\n", " "))
            if not sentences:
                continue
            if turn.speaker_kind == "interviewer":
                interviewer.append(sentences)
            else:
                participant.append(sentences)
                per_turn.append(len(sentences))
    return participant, interviewer, per_turn


class Chain:
    """Order-2 word Markov chain with a target sentence length."""

    def __init__(self, sentences: list[str]):
        self.next: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.lengths = [len(s.split()) for s in sentences]
        for s in sentences:
            words = s.split()
            if not words:
                continue
            if not FINAL.search(words[-1]):
                words[-1] += "."
            state = ("", "")
            for w in [*words, EOS]:
                self.next[state].append(w)
                state = (state[1], w)
        self.open = {k: [w for w in v if w != EOS] for k, v in self.next.items()}

    def sentence(self, rng: random.Random) -> str:
        target = rng.choice(self.lengths)
        words: list[str] = []
        state = ("", "")
        while True:
            options = self.next[state]
            word = rng.choice(options)
            if word == EOS and len(words) < 0.6 * target and self.open.get(state):
                word = rng.choice(self.open[state])
            elif len(words) >= target and EOS in options:
                word = EOS
            if word == EOS or len(words) > 2 * target + 8:
                break
            words.append(word)
            state = (state[1], word)
        text = " ".join(words)
        return text if FINAL.search(text) else text.rstrip(",;:-") + "."


def vary(sentence: str, rng: random.Random) -> str:
    """Light variation: other authorities and numbers, a synonym, a filler now and then."""
    out = re.sub(r"\bLA-[A-H]\b", lambda _: rng.choice(AUTHORITIES), sentence)
    out = re.sub(r"\b\d{1,3}\b", lambda m: str(max(1, int(m.group()) + rng.randint(-3, 3))), out)
    words = out.split(" ")
    for i, w in enumerate(words):
        if w in SYNONYMS and rng.random() < 0.3:
            words[i] = rng.choice(SYNONYMS[w])
    out = " ".join(words)
    roll = rng.random()
    if roll < 0.08 and out[:1].isupper():
        out = rng.choice(FILLERS) + out[0].lower() + out[1:]
    elif roll < 0.12 and out.endswith(".") and len(out.split()) > 5:
        out = out[:-1] + rng.choice(CLOSERS)
    return out


class Generator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        participant, interviewer, per_turn = sample_sentences()
        self.source = {s for turn in participant + interviewer for s in turn}
        self.participant = Chain([s for turn in participant for s in turn])
        self.interviewer = Chain([s for turn in interviewer for s in turn])
        self.per_turn = per_turn
        self.questions = [s for turn in interviewer for s in turn if s.endswith("?")]
        self.sentences: list[str] = []
        self.seen: set[str] = set()

    def fresh(self, chain: Chain, question: bool = False) -> str:
        """A sentence that is neither a sample sentence nor one already written (when it has
        four words or more), so the corpus is not the sample again; short ones may repeat,
        as "Yes." does in real speech."""
        for _ in range(12):
            s = vary(chain.sentence(self.rng), self.rng)
            if question and not s.endswith("?"):
                continue
            if len(s.split()) < 4 or (s not in self.source and s not in self.seen):
                break
        else:
            s = vary(self.rng.choice(self.questions), self.rng) if question else s
        self.seen.add(s)
        return s

    def answer(self) -> str:
        rng = self.rng
        n = rng.choice(self.per_turn)
        sentences = [self.fresh(self.participant) for _ in range(n)]
        self.sentences += sentences
        paragraphs, cut = [], 0
        while cut < len(sentences):
            step = rng.randint(3, 8)
            paragraphs.append(" ".join(sentences[cut : cut + step]))
            cut += step
        return "\n\n".join(paragraphs)

    def question(self) -> str:
        rng = self.rng
        lead = [self.fresh(self.interviewer) for _ in range(rng.choice([0, 0, 1, 1, 2]))]
        sentences = [*lead, self.fresh(self.interviewer, question=True)]
        self.sentences += sentences
        return " ".join(sentences)

    def transcript(self, number: int, words: int) -> tuple[str, str]:
        rng = self.rng
        group = rng.random() < 0.1
        workstream = rng.choice(WORKSTREAMS)
        meta = [
            "---",
            f"interview_id: BENCH-{number:04d}",
            f"workstream: {workstream}",
            f"network: {rng.choice(NETWORKS)}",
            f"date: 202{rng.randint(1, 3)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            f"interview_type: {'group' if group else 'individual'}",
        ]
        speakers = ["Participant"]
        if group:
            speakers = [f"P{i}" for i in range(1, rng.randint(2, 4) + 1)]
            meta.append("participants:")
            for s in speakers:
                meta.append(
                    f"  {s}: {{role: {rng.choice(ROLES)}, local_authority: "
                    f"{rng.choice(AUTHORITIES)}, workstream: {workstream}}}"
                )
        else:
            meta.insert(2, f"role: {rng.choice(ROLES)}")
            meta.insert(3, f"local_authority: {rng.choice(AUTHORITIES)}")
        meta.append("---")
        body: list[str] = []
        count = 0
        while count < words:
            q = self.question()
            body.append(f"Interviewer: {q}")
            count += len(q.split())
            for speaker in rng.sample(speakers, rng.randint(1, len(speakers))):
                a = self.answer()
                body.append(f"{speaker}: {a}")
                count += len(a.split())
        suffix = ".md" if rng.random() < 0.7 else ".txt"
        return suffix, "\n".join(meta) + "\n\n" + "\n\n".join(body) + "\n"


def write_corpus(out: Path, pages: int, seed: int = 1) -> CorpusStats:
    """Write about ``pages`` x 500 words of interviews into ``out`` (emptied first)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("bench_*"):
        old.unlink()
    gen = Generator(seed)
    total, number, files = 0, 0, []
    budget = pages * WORDS_PER_PAGE
    while total < budget:
        number += 1
        size = min(gen.rng.randint(3000, 5200), max(budget - total, 400))
        suffix, text = gen.transcript(number, size)
        path = out / f"bench_{number:04d}{suffix}"
        path.write_text(text, encoding="utf-8")
        files.append(path.name)
        total += len(text.split())
    return stats(gen, pages, seed, total, files)


def stats(gen: Generator, pages: int, seed: int, words: int, files: list[str]) -> CorpusStats:
    sentences = gen.sentences
    longer = [s for s in sentences if len(s.split()) >= 4]
    return CorpusStats(
        pages=pages,
        seed=seed,
        transcripts=len(files),
        words=words,
        sentences=len(sentences),
        unique_sentences=len(set(sentences)),
        unique_share=round(len(set(sentences)) / max(len(sentences), 1), 4),
        unique_share_4_words=round(len(set(longer)) / max(len(longer), 1), 4),
        verbatim_from_sample_share=round(
            sum(s in gen.source for s in sentences) / max(len(sentences), 1), 4
        ),
        mean_sentence_words=round(sum(len(s.split()) for s in sentences) / len(sentences), 2),
        files=files,
    )


def edit_transcript(path: Path, seed: int = 2) -> None:
    """A realistic edit: two answers' sentences rewritten and a new exchange at the end."""
    gen = Generator(seed)
    text = path.read_text(encoding="utf-8")
    head, body = text.split("\n---\n", 1)
    paragraphs = body.split("\n\n")
    label = re.search(r"^(Participant|P\d+):", body, re.M)
    speaker = label.group(1) if label else "Participant"
    answers = [i for i, p in enumerate(paragraphs) if p.startswith(f"{speaker}:")]
    for i in answers[len(answers) // 3 : len(answers) // 3 + 2]:
        paragraphs[i] = f"{speaker}: " + gen.answer().split("\n\n")[0]
    paragraphs += [f"Interviewer: {gen.question()}", f"{speaker}: {gen.answer()}\n"]
    path.write_text(head + "\n---\n" + "\n\n".join(paragraphs), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=700)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = write_corpus(args.out, args.pages, args.seed)
    print(json.dumps({k: v for k, v in asdict(result).items() if k != "files"}, indent=2))


def record_real_run(
    path: Path, transcripts, problems, nlp, encoder, codebook, embedding_cache
) -> Path:
    """Code ``transcripts`` with the real stages (segment, embed, assign; no Prefect: the
    flow's own tests cover that path) and record the run in a new project store at ``path``."""
    from datetime import UTC, datetime

    from pipeline.assign import ZeroShotCoder, assign_units, build_prototypes, embedded_mask
    from pipeline.embed import embed_texts
    from pipeline.outputs import build_manifest, new_run_id
    from pipeline.segment import segment, units_frame
    from pipeline.settings import Settings
    from pipeline.store import Store

    settings = Settings()
    units = units_frame(segment(transcripts, nlp, settings), transcripts)
    vectors, encoded = embed_texts(
        units.loc[embedded_mask(units, settings), "text"].tolist(), encoder, embedding_cache
    )
    prototypes = build_prototypes(codebook, encoder, embedding_cache)
    suggestions, best = assign_units(units, vectors, ZeroShotCoder(prototypes, settings), settings)
    units = units.merge(best, on="unit_id", how="left")
    run_id = new_run_id(transcripts, codebook, settings, encoder.fingerprint)
    manifest = build_manifest(
        run_id,
        datetime.now(UTC),
        transcripts,
        problems,
        codebook,
        settings,
        {"name": encoder.name, "fingerprint": encoder.fingerprint},
        units,
        suggestions,
        {},
        encoded,
    )
    with Store(path) as store:
        store.record_run(manifest, transcripts, units, suggestions, codebook)
    return path


if __name__ == "__main__":
    main()
