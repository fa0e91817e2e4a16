"""One validated settings object: the flow's parameters and the CLI's overrides.

Defaults live here and nowhere else; the docs' settings reference is generated from this class
(docsite/reference.py), and a test checks every setting and default appears in the built site.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import SettingsError

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"


def preferred_precision(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """bf16 only where the CPU does bfloat16 in hardware (AVX512-BF16 or AMX). Elsewhere torch
    emulates it: on an AMD EPYC without them, bf16 encoding was about 6x slower than fp32."""
    try:
        flags = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "fp32"
    return "bf16" if re.search(r"\b(?:avx512_bf16|amx_bf16)\b", flags) else "fp32"


class Settings(BaseModel):
    """Everything that changes what a run produces. Recorded in every run manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: Literal["sentence", "window", "turn"] = Field(
        "sentence", description="What gets coded: one sentence, a window of sentences, a turn."
    )
    window_size: int = Field(3, ge=1, le=20, description="Sentences per unit when unit=window.")
    code_interviewer: bool = Field(
        False, description="Also suggest codes for interviewer turns (kept as context anyway)."
    )
    min_unit_words: int = Field(
        4, ge=0, description="Units shorter than this ('Yes.', 'Mm-hmm.') get no suggestions."
    )
    model: str = Field(
        BUNDLED_MODEL,
        description="Sentence-transformers model: the bundled one, or a local model folder.",
    )
    batch_size: int = Field(64, ge=1, le=4096, description="Texts per encoder batch.")
    precision: Literal["fp32", "bf16", "int8"] = Field(
        preferred_precision(),
        description="Encoder arithmetic: bf16 (about 3x faster on CPUs with bfloat16 hardware, "
        "cosine >= 0.9998 to fp32), fp32, or int8 (int8 matrix products: faster than fp32 on "
        "CPUs without bfloat16, but zero-shot F1 about 0.016 lower; an option, never the "
        "default); the default is bf16 only on CPUs with bfloat16 hardware. "
        "Part of the embedding cache key.",
    )
    task_runner: Literal["local", "dask"] = Field(
        "local",
        description="Where embedding and assignment run: in this process, or on a Dask cluster.",
    )
    dask_address: str | None = Field(
        None,
        description="Scheduler of an existing Dask cluster (task_runner=dask); "
        "default: a local cluster on this machine.",
    )
    chunk_size: int = Field(
        8192, ge=64, description="Units per embedding-and-assignment task (one task per chunk)."
    )
    threshold: float = Field(
        0.35,
        ge=-1.0,
        le=1.0,
        description="Minimum score for a code to be suggested for a transcript unit (below it "
        "the unit stays uncoded: small talk, off-topic asides).",
    )
    answer_threshold: float = Field(
        0.2,
        ge=-1.0,
        le=1.0,
        description="Minimum score for a code to be suggested for a free-standing text (survey "
        "answer, code-segments): answers are nearly always about something.",
    )
    top_k: int = Field(3, ge=1, le=50, description="At most this many codes per unit.")
    relative_cutoff: float = Field(
        0.02,
        ge=0.0,
        le=2.0,
        description="Drop codes scoring more than this below the unit's best code.",
    )
    example_weight: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Score mix: weight of the best-matching example vs the code's centroid.",
    )
    stance_weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Weight of the unit's stance (the codebook's inhibitor-to-enabler direction) "
        "in enabler and inhibitor scores.",
    )
    context_weight: float = Field(
        0.5,
        ge=0.0,
        le=2.0,
        description="Weight of the neighbouring sentences (same turn) in a unit's vector.",
    )
    classifier: Path | None = Field(
        None,
        description="Trained coder folder (qcode train / qcode retrain); default: zero-shot.",
    )
    tune_encoder: bool = Field(
        True,
        description="qcode train and retrain: fine-tune the sentence encoder on the decisions "
        "before the coder learns (better codes, a minute or two more; saved with the coder).",
    )
    quotes_per_code: int = Field(5, ge=0, le=50, description="Quotes shown in each summary.")
    quote_max_chars: int = Field(400, ge=40, description="Longer quotes are trimmed with [...].")
    attribution_format: str = Field(
        "{role} – {local_authority} – {workstream}",
        min_length=1,
        description="How quotes are attributed in reports (attributes only, never names).",
    )
    k_anonymity: int = Field(
        3, ge=1, description="Flag a quote whose attribution fewer than this many people share."
    )
    template_dir: Path | None = Field(
        None, description="Folder of your own Jinja templates; missing ones fall back to ours."
    )
    store: str | None = Field(
        None,
        description="Project database: an SQLite file or a postgresql:// URL (default: "
        "project.sqlite in the output folder).",
    )
    cache_dir: Path | None = Field(
        None, description="Embedding cache folder (default: .cache/ in the project)."
    )
    privacy: Literal["off", "warn", "redact", "stop"] = Field(
        "warn",
        description="Personal data found: code the redacted text and warn (warn), also write "
        "redacted copies (redact), stop the run (stop), or skip the check (off).",
    )
    privacy_names: Path | None = Field(
        None, description="YAML list of the project's school and place names (and 'allow:')."
    )
    on_error: Literal["skip", "stop"] = Field(
        "skip", description="Bad transcript: skip it and report it, or stop the run."
    )

    @classmethod
    def from_overrides(cls, base: Settings | None = None, **overrides: object) -> Settings:
        """Apply CLI overrides, turning pydantic's errors into one readable message."""
        data = (base or cls()).model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise SettingsError(f"invalid setting: {problems}") from None


def describe_settings() -> list[tuple[str, str, str]]:
    """(name, default, help) rows, one per setting."""
    rows = []
    for name, field in Settings.model_fields.items():
        rows.append((name, repr(field.default), field.description or ""))
    return rows
