"""Tune: fine-tune the sentence encoder on people's coding (SetFit-style), before the coder learns.

Why: a frozen encoder finds the topic of a passage but was never told what this codebook means
by its codes. Tuning moves each coded unit's vector towards the label + definition of the codes
people gave it and away from the other codes' definitions, so similar passages of one code end up
close together and the learned coder (``pipeline.learn``) has less to do. On the NHS development
split (docs/quality.md) it lifts the learned coder at 250 labels by about two points.

The recipe, chosen for a 2-core machine: one pair per (unit, code people gave it); a softmax over
every code's definition (the codebook's other codes are the negatives, rejected ones among them;
a unit's other accepted codes are masked, not punished); the definitions' vectors are fixed for an
epoch, so a step encodes only the units; at most ``max_steps`` steps, so 1,000 decisions fit in the
``qcode retrain`` budget. Seeded, so the same decisions give the same model on one machine.

The tuned model is saved as a sentence-transformers folder (safetensors weights, JSON configs,
tokenizer files; no pickles) inside the coder's folder, and a run with that coder encodes with it.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.embed import SentenceTransformerEncoder, load_encoder
from pipeline.settings import Settings

ENCODER_FOLDER = "encoder"  # inside a trained coder's folder
Progress = Callable[[str, int, int], None]


def tuned_encoder_path(classifier: Path | None) -> Path | None:
    """The tuned encoder saved with a trained coder, or None (the coder reads base vectors)."""
    if classifier is None:
        return None
    path = Path(classifier) / ENCODER_FOLDER
    return path if (path / "modules.json").is_file() else None


def run_settings(settings: Settings) -> Settings:
    """The settings a run codes with: a coder trained with a tuned encoder brings it, so the
    units are encoded by the model the coder learned from."""
    tuned = tuned_encoder_path(settings.classifier)
    if tuned is None:
        return settings
    return settings.model_copy(update={"model": str(tuned)})


def fine_tune(
    encoder: SentenceTransformerEncoder,
    texts: list[str],
    labels: np.ndarray,
    code_texts: list[str],
    epochs: int = 2,
    max_steps: int = 80,
    batch_size: int = 16,
    learning_rate: float = 1e-4,
    scale: float = 20.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> object:
    """A tuned copy of ``encoder``'s model (the encoder itself is left as it was).

    ``labels`` is a (units, codes) bool matrix of people's codes; ``code_texts`` each code's
    label + definition, in the same order as the columns.
    """
    import torch

    torch.manual_seed(seed)
    if encoder.precision == "fp32":
        model = copy.deepcopy(encoder.model)
    else:
        # Trained in fp32 whatever precision the encoder computes in: with bfloat16 weights
        # (the default on CPUs with bf16 hardware) most of AdamW's small updates round away,
        # and tuning lowered the learned coder (0.547 against 0.569 frozen on the quality
        # test's set). The tuned copy is saved in fp32 and loaded in the run's precision.
        model = dataclasses.replace(encoder, precision="fp32", _model=None).model
    model.max_seq_length = min(int(model.max_seq_length or 128), 128)  # units are short
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    pairs = [(i, c) for i, row in enumerate(np.asarray(labels, bool)) for c in np.flatnonzero(row)]
    rng = np.random.default_rng(seed)
    per_epoch = -(-len(pairs) // batch_size)
    total = min(max_steps, per_epoch * epochs)
    normalize = torch.nn.functional.normalize
    step = 0
    while step < total:
        model.eval()
        with torch.no_grad():  # the definitions are the fixed targets of this epoch
            targets = normalize(model(model.preprocess(code_texts))["sentence_embedding"], dim=1)
        model.train()
        order = rng.permutation(len(pairs))
        for start in range(0, len(order), batch_size):
            if step >= total:
                break
            chosen = [pairs[k] for k in order[start : start + batch_size]]
            vectors = normalize(
                model(model.preprocess([texts[i] for i, _ in chosen]))["sentence_embedding"],
                dim=1,
            )
            logits = vectors @ targets.T * scale
            others = torch.from_numpy(np.asarray(labels, bool)[[i for i, _ in chosen]].copy())
            others[torch.arange(len(chosen)), [c for _, c in chosen]] = False
            logits = logits.masked_fill(others, -1e4)  # a unit's other codes are not wrong
            loss = torch.nn.functional.cross_entropy(
                logits, torch.as_tensor([c for _, c in chosen])
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if progress:
                progress("tuning the encoder", step, total)
    model.eval()
    return model


def save_tuned(model: object, folder: Path, precision: str) -> SentenceTransformerEncoder:
    """Save the tuned model in ``folder`` (replacing an older one) and load it as an encoder."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(folder), safe_serialization=True)  # type: ignore[attr-defined]
    return load_encoder(str(folder), precision=precision)
