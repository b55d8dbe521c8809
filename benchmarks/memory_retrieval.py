"""Retrieval latency and build time of the memory store's vector indexes, 1e3 to 1e6 memories.

Measures the index classes ``MemoryStore.search`` queries (``paradigms.memory.store.make_index``
with the store's default settings: flat exact; hnsw M=32, efConstruction=40, efSearch=64; ivf
nlist=64, nprobe=8, flat until 39*64 = 2496 vectors) one query at a time, as the store does.
The store's own per-hit work (metadata lookups, the newest_first filter) is O(k) on top.

Vectors are random unit vectors of dim 384 (MiniLM's width), not MiniLM embeddings: MiniLM
embeds about 100 short texts per second on this 2-core CPU, so 1e6 texts would take ~3 hours,
and latency depends on the index and the size, not on where the vectors came from. Random
vectors are the hardest case for the approximate indexes (no cluster structure, near-uniform
similarities), so the recall@k reported against the exact flat results is a pessimistic bound
of what real embeddings would get.

Per size and index kind: build seconds (adding all vectors, in chunks; a build exceeding
``--build-budget`` seconds stops after the chunk that crossed it and is marked ``capped``,
with latency then measured on the vectors indexed so far), warm-up queries, then per-query
latency p50/p95/mean over ``--queries`` queries (``time.perf_counter``), recall@k against
flat, and the serialized index size. Machine load is recorded because the CPU may be shared.

    python benchmarks/memory_retrieval.py [--sizes 1000 10000 100000 1000000] [--queries 200]
        [--kinds flat hnsw ivf] [--out benchmarks/results/memory_retrieval.json]

Writes the JSON atomically and prints a Markdown table. No timing assertions anywhere.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from paradigms.memory.settings import INDEX_KINDS, StoreSettings
from paradigms.memory.store import VectorIndex, make_index

DIM = 384
WARMUP_QUERIES = 20
CHUNK = 50_000
PLANTED_SIMILARITY = 0.6  # about MiniLM's cosine between `ask my dog ?` and `note my dog rex .`
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "memory_retrieval.json"


def unit_vectors(count: int, seed: int) -> np.ndarray:
    """``(count, DIM)`` float32 rows of unit norm, reproducible from ``seed``."""
    vectors = np.random.default_rng(seed).standard_normal((count, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def planted_queries(stored: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Queries ``(count, DIM)`` at cosine ~PLANTED_SIMILARITY to random stored rows, and those rows' ids.

    A memory lookup looks like this (``ask my dog ?`` is far closer to ``note my dog rex .``
    than to any other memory), unlike a uniformly random query whose neighbours are all noise.
    """
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, len(stored), count)
    noise = unit_vectors(count, seed + 1)
    queries = PLANTED_SIMILARITY * stored[targets] + np.sqrt(1 - PLANTED_SIMILARITY**2) * noise
    return queries / np.linalg.norm(queries, axis=1, keepdims=True), targets


def planted_recall(index: VectorIndex, queries: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Fraction of planted queries whose target is in the top ``k`` (targets not indexed skipped)."""
    indexed = targets < len(index)  # a capped build indexed a prefix of the ids
    rows = index.search(queries[indexed], k)
    found = [
        target in {memory_id for memory_id, _ in row}
        for row, target in zip(rows, targets[indexed], strict=True)
    ]
    return float(np.mean(found))


def build(kind: str, vectors: np.ndarray, budget_seconds: float) -> tuple[VectorIndex, float, bool]:
    """An index of ``kind`` over ``vectors`` ``(N, DIM)`` (ids 0..N-1): (index, seconds, capped)."""
    index = make_index(StoreSettings(dim=DIM, index=kind))
    start = time.perf_counter()
    for offset in range(0, len(vectors), CHUNK):
        chunk = vectors[offset : offset + CHUNK]
        index.add(np.arange(offset, offset + len(chunk)), chunk)
        if time.perf_counter() - start > budget_seconds and offset + len(chunk) < len(vectors):
            return index, time.perf_counter() - start, True
    return index, time.perf_counter() - start, False


def time_queries(
    index: VectorIndex, warmup: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-query seconds ``(Q,)`` and hit ids ``(Q, k)`` (-1 where fewer than k), after ``warmup``."""
    for query in warmup:
        index.search(query[None, :], k)
    seconds = np.empty(len(queries))
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for row, query in enumerate(queries):
        start = time.perf_counter()
        hits = index.search(query[None, :], k)[0]
        seconds[row] = time.perf_counter() - start
        ids[row, : len(hits)] = [memory_id for memory_id, _ in hits]
    return seconds, ids


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k ids ``(Q, k)`` present in ``found`` ``(Q, k)``."""
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


def active_kind(index: VectorIndex) -> str:
    if index.kind == "ivf" and not index.trained:
        return "flat (ivf untrained)"
    return index.kind


def measure(
    kind: str,
    vectors: np.ndarray,
    queries: tuple[np.ndarray, np.ndarray],
    args: argparse.Namespace,
    exact: np.ndarray | None,
) -> tuple[dict, np.ndarray]:
    """One row of results for ``kind`` at ``len(vectors)`` memories, and its hit ids ``(Q, k)``.

    ``queries`` is (warm-up queries, timed queries); ``exact`` the flat index's ids for recall.
    """
    index, build_seconds, capped = build(kind, vectors, args.build_budget)
    seconds, ids = time_queries(index, *queries, args.k)
    planted = planted_queries(vectors, args.queries, args.seed + 3)
    row = {
        "kind": kind,
        "size": len(vectors),
        "indexed": len(index),
        "active_index": active_kind(index),
        "build_seconds": round(build_seconds, 3),
        "capped": capped,
        "p50_ms": round(float(np.percentile(seconds, 50)) * 1e3, 4),
        "p95_ms": round(float(np.percentile(seconds, 95)) * 1e3, 4),
        "mean_ms": round(float(seconds.mean()) * 1e3, 4),
        "recall_at_k": round(recall(ids, exact), 4) if exact is not None else 1.0,
        "planted_recall_at_k": round(planted_recall(index, *planted, args.k), 4),
        "index_bytes": int(faiss.serialize_index(index.faiss_index).nbytes),
    }
    del index
    gc.collect()
    return row, ids


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "faiss": faiss.__version__,
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "numpy": np.__version__,
        "load_average_start": list(os.getloadavg()),
    }


def markdown_table(rows: list[dict], k: int) -> str:
    lines = [
        f"| index | memories | indexed | build s | p50 ms | p95 ms | recall@{k} | planted recall@{k} "
        "| index MB | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        note = "build capped" if row["capped"] else ""
        if row["active_index"] != row["kind"]:
            note = row["active_index"]
        lines.append(
            f"| {row['kind']} | {row['size']:,} | {row['indexed']:,} | {row['build_seconds']:.2f} "
            f"| {row['p50_ms']:.3f} | {row['p95_ms']:.3f} | {row['recall_at_k']:.3f} "
            f"| {row['planted_recall_at_k']:.3f} "
            f"| {row['index_bytes'] / 1e6:.1f} | {note} |"
        )
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")
    os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates 0600; results are meant to be shared
    os.replace(handle.name, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200, help="timed queries per size and index")
    parser.add_argument("--k", type=int, default=5, help="hits per query")
    parser.add_argument("--kinds", nargs="+", choices=INDEX_KINDS, default=list(INDEX_KINDS))
    parser.add_argument("--build-budget", type=float, default=900.0, help="seconds before a build is capped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sorted(args.sizes)
    info = machine()
    stored = unit_vectors(sizes[-1], args.seed)  # each size uses the first `size` rows
    queries = (unit_vectors(WARMUP_QUERIES, args.seed + 1), unit_vectors(args.queries, args.seed + 2))
    rows = []
    for size in sizes:
        flat_row, exact = measure("flat", stored[:size], queries, args, None)  # the exact reference
        if "flat" in args.kinds:
            rows.append(flat_row)
            print(json.dumps(flat_row), file=sys.stderr, flush=True)
        for kind in (kind for kind in args.kinds if kind != "flat"):
            row, _ = measure(kind, stored[:size], queries, args, exact)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    info["load_average_end"] = list(os.getloadavg())
    settings = {key: value for key, value in StoreSettings(dim=DIM).model_dump().items() if key != "capacity"}
    payload = {
        "config": {
            "sizes": sizes,
            "queries": args.queries,
            "warmup_queries": WARMUP_QUERIES,
            "k": args.k,
            "dim": DIM,
            "seed": args.seed,
            "build_budget_seconds": args.build_budget,
            "store_settings": settings,
        },
        "machine": info,
        "notes": [
            "random unit vectors (dim 384), not MiniLM embeddings: MiniLM embeds ~100 texts/s here",
            "latency is one query per search call, as MemoryStore.search issues them",
            "recall_at_k: overlap with the exact flat top-k for uniformly random queries (worst case)",
            "planted_recall_at_k: share of queries at cosine 0.6 to one stored vector that find it",
            "a capped build measured latency on the vectors indexed before the budget ran out",
        ],
        "results": rows,
    }
    write_json(args.out, payload)
    print(markdown_table(rows, args.k))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
