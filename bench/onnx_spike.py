"""Spike (issue 16): the bundled MiniLM under ONNX Runtime against torch, same texts and batches.

Not part of qcode: it needs ``pip install onnxruntime onnx``, which are not dependencies. It
exports the transformer to ONNX (opset 17, TorchScript exporter), encodes NHS answers with
qcode's own fixed-shape batches (``pipeline.embed``) and mean pooling, in fp32 and with ONNX
Runtime's dynamic int8 quantisation, two interleaved rounds each, and compares the vectors with
qcode's torch encoder.

Usage: python -m bench.onnx_spike [N_TEXTS]  ->  bench/results/onnx-spike.json
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.embed import PAD_MULTIPLE, SentenceTransformerEncoder, batch_rows, bundled_model_path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["input_ids", "token_type_ids", "attention_mask"]


def answers(limit: int) -> list[str]:
    texts: list[str] = []
    path = ROOT / "benchmarks" / "nhs_fft_v6" / "segments.csv"
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if (row.get("text") or "").strip():
                texts.append(row["text"].strip())
            if len(texts) >= limit:
                break
    return texts


def export(model: Any, folder: Path) -> Path:
    import torch

    class Transformer(torch.nn.Module):
        def __init__(self, bert: Any):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, token_type_ids: Any, attention_mask: Any) -> Any:
            out = self.bert(
                input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask
            )
            return out.last_hidden_state

    dummy = model.tokenizer(["hello world"], return_tensors="pt")
    path = folder / "minilm.onnx"
    axes = {n: {0: "rows", 1: "width"} for n in [*NAMES, "last_hidden_state"]}
    torch.onnx.export(
        Transformer(model[0].auto_model).eval(),
        tuple(dummy[n] for n in NAMES),
        str(path),
        input_names=NAMES,
        output_names=["last_hidden_state"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    return path


def session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_encode(sess: Any, tokenizer: Any, limit: int, texts: list[str]) -> np.ndarray:
    """qcode's batches (``SentenceTransformerEncoder.encode``) with mean pooling in numpy."""
    encoded = tokenizer(list(texts), truncation=True, max_length=limit)
    ids = encoded["input_ids"]
    shape_of = [min(-(-len(x) // PAD_MULTIPLE) * PAD_MULTIPLE, limit) for x in ids]
    order = sorted(range(len(texts)), key=lambda i: (shape_of[i], i))
    out = np.empty((len(texts), 384), dtype=np.float32)
    start = 0
    while start < len(order):
        width = shape_of[order[start]]
        size = batch_rows(width, 64)
        stop = start
        while stop < len(order) and stop - start < size and shape_of[order[stop]] == width:
            stop += 1
        rows = order[start:stop]
        batch = {n: np.zeros((size, width), dtype=np.int64) for n in NAMES}
        batch["input_ids"].fill(tokenizer.pad_token_id or 0)
        for r in range(size):
            i = rows[min(r, len(rows) - 1)]
            for name in NAMES:
                batch[name][r, : len(ids[i])] = encoded[name][i]
        hidden = sess.run(None, batch)[0]
        mask = batch["attention_mask"][..., None].astype(np.float32)
        vectors = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        out[rows] = vectors[: len(rows)]
        start = stop
    return out


def main() -> None:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch.set_num_threads(2)
    texts = answers(int(sys.argv[1]) if len(sys.argv) > 1 else 1500)
    encoder = SentenceTransformerEncoder("bundled", bundled_model_path(), "minilm", "spike")
    model = encoder.model
    folder = Path(tempfile.mkdtemp())
    clock = time.perf_counter()
    fp32_path = export(model, folder)
    export_s = time.perf_counter() - clock
    int8_path = folder / "minilm-int8.onnx"
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    limit = int(model.max_seq_length)
    tokenizer = model.tokenizer
    fp32, int8 = session(fp32_path), session(int8_path)
    ways = {
        "torch": lambda t: encoder.encode(t),
        "ort_fp32": lambda t: ort_encode(fp32, tokenizer, limit, t),
        "ort_int8": lambda t: ort_encode(int8, tokenizer, limit, t),
    }
    for way in ways.values():
        way(texts[:50])  # warm up
    result: dict = {
        "texts": len(texts),
        "threads": 2,
        "export_s": round(export_s, 1),
        "load_average_before": os.getloadavg()[0],
    }
    vectors = {}
    for _ in range(2):
        for name, way in ways.items():
            clock = time.perf_counter()
            vectors[name] = way(texts)
            result.setdefault(f"{name}_s", []).append(round(time.perf_counter() - clock, 2))
    for name in ("ort_fp32", "ort_int8"):
        cos = (vectors[name] * vectors["torch"]).sum(1)
        result[f"{name}_cosine_min_p1_mean"] = [
            float(cos.min()),
            float(np.percentile(cos, 1)),
            float(cos.mean()),
        ]
    alone = ways["ort_fp32"](texts[:37])
    result["ort_fp32_batch_independent"] = bool(np.array_equal(alone, vectors["ort_fp32"][:37]))
    result["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))
    out = ROOT / "bench" / "results" / "onnx-spike.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
