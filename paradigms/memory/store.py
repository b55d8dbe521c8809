"""The memory paradigm's storage: a FAISS inner-product index over unit vectors plus metadata.

A memory is a ``MemoryRecord``: the ``text`` that was embedded and is placed in prompts (a
lesson line such as ``note my dog rex .``), an optional ``key`` naming what it is about
(``fact:dog``, ``format:color``) and the episode it came from. ``MemoryStore`` adds, finds,
evicts, saves and loads them; the paradigm decides what to write and what to put in prompts.

Rules (all deterministic: the same calls in the same order give the same store and results):

- **Similarity** is the inner product of unit vectors (cosine). Hits are ordered by score
  descending, ties by smaller id.
- **Deduplication** (``dedup_threshold`` t, None disables): a new memory is a duplicate of an
  existing one when ``sim >= t`` and (their texts are equal after whitespace normalization or
  ``sim >= 0.999``). The existing memory with the highest similarity among those (ties: smaller
  id), looked up among the new vector's 8 nearest neighbours, absorbs it: its ``time`` becomes
  ``max(old time, new time)``; nothing else changes and ``add`` returns None.
- **Contradictions** between memories with the same ``key`` and different (normalized) text:
  ``replace`` removes the older ones when the new one is written (before the dedup check);
  ``keep_both`` keeps all of them visible to search; ``newest_first`` keeps all but search only
  ever returns the newest memory of each key (largest ``time``, ties by larger id), ranked by
  its own score; the older ones reappear if the newest is removed.
- **Capacity** (None: unbounded): after a write that exceeds it, memories are evicted one by
  one, ``oldest`` by (time, id) or ``least_retrieved`` by (times_retrieved, time, id), never
  the memory just written (otherwise a full ``least_retrieved`` store could learn nothing new).
- **Index kinds**: ``flat`` is exact (``IndexIDMap2(IndexFlatIP)``) and supports removal.
  ``hnsw`` (``IndexIDMap2(IndexHNSWFlat)``) cannot remove vectors, so removed ids become
  tombstones filtered out of results (search over-fetches by their number) and the graph is
  rebuilt from the live vectors once tombstones outnumber live memories (amortized O(1)
  rebuilds per removal); tombstones are saved with the store. ``ivf`` searches a flat index
  until ``ivf_train_size`` vectors exist (default 39 per list, FAISS's minimum for a sound
  k-means), then trains ``IndexIVFFlat`` on them once and moves every vector over; it never
  goes back, even if evictions shrink it. IVF and HNSW are approximate: search and the dedup
  lookup may miss a neighbour the flat index would find.
- **Persistence** writes ``index.faiss`` (``faiss.write_index``), ``memories.jsonl`` and
  ``store.json`` into a fresh temporary sibling directory and renames it into place, so an
  interrupted save leaves either the previous store or the new one, never half of one. No pickle.

FAISS on CPU gave bit-identical flat, HNSW (including multi-threaded batch adds) and IVF
indexes across repeated builds here, so the OpenMP thread count is left alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from paradigms.memory.embedders import Embedder
from paradigms.memory.settings import StoreSettings
from tasks.grammar import normalize

#: Similarity at or above which two memories are duplicates whatever their texts.
NEAR_IDENTICAL = 0.999
#: How many nearest neighbours of a new memory the dedup rule looks at.
DEDUP_CANDIDATES = 8
STORE_FORMAT = 1
INDEX_FILE, MEMORIES_FILE, SETTINGS_FILE = "index.faiss", "memories.jsonl", "store.json"

Hit = tuple[int, float]  # (memory id, similarity)


@dataclass(kw_only=True)
class MemoryRecord:
    """One memory. ``id`` is assigned by the store (the value passed to ``add`` is ignored)."""

    text: str  # what was embedded and what goes into prompts, e.g. ``note my dog rex .``
    id: int = -1  # stable for the memory's lifetime, never reused
    key: str | None = None  # what it is about, e.g. ``fact:dog``; None: no contradiction handling
    query: str = ""  # the user query of the episode it came from
    response: str = ""  # the agent's response in that episode
    reward: float = 0.0  # weighted total reward of that response
    components: dict[str, float] = field(default_factory=dict)  # reward components
    correction: str | None = None  # the user's textual correction, if any
    lesson: str | None = None  # the reflected lesson, if any
    time: int = 0  # feedback events consumed when written (refreshed by a duplicate write)
    times_retrieved: int = 0  # how often search returned it with update_counts=True


def as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    """``vectors`` as a C-contiguous float32 ``(N, dim)`` array (a ``(dim,)`` vector becomes N=1)."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (N, {dim}), got {np.shape(vectors)}")
    return matrix


def _as_ids(ids: Iterable[int]) -> np.ndarray:
    return np.ascontiguousarray(np.fromiter((int(i) for i in ids), dtype=np.int64))


def _hits(scores: np.ndarray, ids: np.ndarray) -> list[list[Hit]]:
    """Per query, valid (id, score) pairs sorted by score descending then id; -1 padding dropped."""
    rows = []
    for score_row, id_row in zip(scores, ids, strict=True):
        row = [(int(i), float(s)) for s, i in zip(score_row, id_row, strict=True) if i >= 0]
        row.sort(key=lambda hit: (-hit[1], hit[0]))
        rows.append(row)
    return rows


class FlatIndex:
    """Exact inner-product search with removal: ``IndexIDMap2(IndexFlatIP(dim))``."""

    kind = "flat"

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.faiss_index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        """Add ``vectors`` ``(N, dim)`` under new, distinct ``ids``."""
        self.faiss_index.add_with_ids(as_matrix(vectors, self.dim), _as_ids(ids))

    def remove(self, ids: Iterable[int]) -> None:
        self.faiss_index.remove_ids(_as_ids(ids))

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-``k`` hits per query row of ``queries`` ``(Q, dim)``."""
        return _search(self.faiss_index, as_matrix(queries, self.dim), min(k, len(self)))

    def ids_and_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All stored ``ids (N,)`` and their ``vectors (N, dim)``, in insertion order."""
        ids = faiss.vector_to_array(self.faiss_index.id_map).astype(np.int64)
        vectors = faiss.downcast_index(self.faiss_index.index).reconstruct_n(0, len(ids))
        return ids, np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)

    def state(self) -> dict:
        return {}


def _search(index: faiss.Index, queries: np.ndarray, k: int) -> list[list[Hit]]:
    if k <= 0:
        return [[] for _ in range(len(queries))]
    # FAISS parallelizes these searches over queries, so one query gains nothing from OpenMP
    # threads; but IndexIDMap2 still opens a parallel region to translate labels, which on a busy
    # 2-core machine waits for a scheduler slice (measured 8 ms per query with 2 threads vs
    # 0.1 ms with 1). Single queries (the store's case) therefore run on one thread.
    threads = faiss.omp_get_max_threads()
    if len(queries) == 1:
        faiss.omp_set_num_threads(1)
    try:
        scores, ids = index.search(queries, k)  # (Q, k), (Q, k)
    finally:
        faiss.omp_set_num_threads(threads)
    return _hits(scores, ids)


class HNSWIndex:
    """Approximate search over ``IndexIDMap2(IndexHNSWFlat)``; removal by tombstones (see module doc)."""

    kind = "hnsw"

    def __init__(
        self, settings: StoreSettings, index: faiss.Index | None = None, tombstones: Iterable[int] = ()
    ) -> None:
        self.dim = settings.dim
        self.settings = settings
        self.faiss_index = index if index is not None else self._empty_index()
        self._graph = faiss.downcast_index(self.faiss_index.index)
        self._graph.hnsw.efSearch = settings.hnsw_ef_search
        self.tombstones: set[int] = set(tombstones)

    def _empty_index(self) -> faiss.Index:
        graph = faiss.IndexHNSWFlat(self.dim, self.settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.settings.hnsw_ef_construction
        return faiss.IndexIDMap2(graph)

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal) - len(self.tombstones)

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        """Add ``vectors`` ``(N, dim)`` under ids never used before in this index."""
        self.faiss_index.add_with_ids(as_matrix(vectors, self.dim), _as_ids(ids))

    def remove(self, ids: Iterable[int]) -> None:
        """Tombstone live ``ids``; rebuild the graph when tombstones outnumber live vectors."""
        self.tombstones.update(int(i) for i in ids)
        if len(self.tombstones) > len(self):
            self._rebuild()

    def _rebuild(self) -> None:
        all_ids = faiss.vector_to_array(self.faiss_index.id_map).astype(np.int64)
        vectors = self._graph.storage.reconstruct_n(0, len(all_ids)).reshape(len(all_ids), self.dim)
        live = np.array([i not in self.tombstones for i in all_ids.tolist()], dtype=bool)
        self.faiss_index = self._empty_index()
        self._graph = faiss.downcast_index(self.faiss_index.index)
        self._graph.hnsw.efSearch = self.settings.hnsw_ef_search
        self.tombstones = set()
        if live.any():
            self.add(all_ids[live], vectors[live])

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-``k`` live hits per query row (fetches ``k + len(tombstones)`` then filters)."""
        fetch = min(k + len(self.tombstones), int(self.faiss_index.ntotal))
        rows = _search(self.faiss_index, as_matrix(queries, self.dim), fetch)
        return [[hit for hit in row if hit[0] not in self.tombstones][:k] for row in rows]

    def state(self) -> dict:
        return {"tombstones": sorted(self.tombstones)}


class IVFIndex:
    """``IndexIVFFlat`` (inner product) trained once enough vectors exist; flat search before that.

    The trained index uses FAISS's own ids with a hashtable direct map, so removal and
    reconstruction by id work natively.
    """

    kind = "ivf"

    def __init__(self, settings: StoreSettings, index: faiss.Index | None = None) -> None:
        self.dim = settings.dim
        self.settings = settings
        self._flat: FlatIndex | None = None
        self._ivf: faiss.IndexIVFFlat | None = None
        if isinstance(index, faiss.IndexIVFFlat):
            self._ivf = index
            self._ivf.nprobe = settings.ivf_nprobe
        else:
            self._flat = FlatIndex(self.dim, index)

    @property
    def trained(self) -> bool:
        return self._ivf is not None

    @property
    def faiss_index(self) -> faiss.Index:
        return self._ivf if self._ivf is not None else self._flat.faiss_index

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        """Add ``vectors`` ``(N, dim)`` under new ids; trains IVF when the total reaches the train size."""
        ids, vectors = _as_ids(ids), as_matrix(vectors, self.dim)
        if self._ivf is not None:
            self._ivf.add_with_ids(vectors, ids)
            return
        if len(self._flat) + len(ids) < self.settings.resolved_ivf_train_size:
            self._flat.add(ids, vectors)
            return
        old_ids, old_vectors = self._flat.ids_and_vectors()
        self._train(np.concatenate([old_ids, ids]), np.concatenate([old_vectors, vectors]))

    def _train(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, self.settings.ivf_nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vectors)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        ivf.add_with_ids(vectors, ids)
        ivf.nprobe = self.settings.ivf_nprobe
        self._ivf, self._flat = ivf, None

    def remove(self, ids: Iterable[int]) -> None:
        if self._ivf is not None:
            self._ivf.remove_ids(_as_ids(ids))
        else:
            self._flat.remove(ids)

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-``k`` hits per query row (exact until trained, then over ``ivf_nprobe`` lists)."""
        return _search(self.faiss_index, as_matrix(queries, self.dim), min(k, len(self)))

    def state(self) -> dict:
        return {"trained": self.trained}


VectorIndex = FlatIndex | HNSWIndex | IVFIndex


def make_index(settings: StoreSettings) -> VectorIndex:
    """An empty index of kind ``settings.index``; the same class ``MemoryStore`` searches with."""
    if settings.index == "flat":
        return FlatIndex(settings.dim)
    if settings.index == "hnsw":
        return HNSWIndex(settings)
    return IVFIndex(settings)


def read_index(path: Path, settings: StoreSettings, state: dict) -> VectorIndex:
    """The index written by ``faiss.write_index`` at ``path``, with its saved ``state``."""
    loaded = faiss.read_index(str(path))
    if settings.index == "flat":
        return FlatIndex(settings.dim, loaded)
    if settings.index == "hnsw":
        return HNSWIndex(settings, loaded, state.get("tombstones", ()))
    return IVFIndex(settings, loaded)


def _copy(record: MemoryRecord) -> MemoryRecord:
    return dataclasses.replace(record, components=dict(record.components))


class MemoryStore:
    """Memories with a FAISS index over their text embeddings; the rules are in the module docstring.

    ``embedder`` embeds texts on ``add`` and string queries on ``search``; without one, every
    ``add`` and ``search`` must pass a vector. Vectors are compared by inner product as given,
    so pass unit-norm vectors (every ``Embedder`` returns them).
    """

    def __init__(self, settings: StoreSettings, embedder: Embedder | None = None) -> None:
        if embedder is not None and embedder.dim != settings.dim:
            raise ValueError(
                f"settings.dim is {settings.dim} but embedder {embedder.name!r} has dim {embedder.dim}; "
                "set dim to the embedder's"
            )
        self.settings = settings
        self.embedder = embedder
        self.embedder_name = embedder.name if embedder is not None else None
        self._index: VectorIndex = make_index(settings)
        self._records: dict[int, MemoryRecord] = {}
        self._key_members: dict[str, set[int]] = {}
        self._next_id = 0

    # ----------------------------------------------------------------------------- writing

    def add(self, record: MemoryRecord, vector: np.ndarray | None = None) -> int | None:
        """Write ``record`` (embedding its ``text`` unless ``vector`` ``(dim,)`` is given).

        Returns the new memory's id, or None when it was a duplicate and only refreshed an
        existing memory's time. Applies, in order: ``replace`` contradiction removal, dedup,
        insertion, capacity eviction. The caller's record is not modified.
        """
        vector = self._vector_for_text(record.text) if vector is None else self._one_vector(vector)
        if self.settings.contradiction == "replace":
            self._remove_ids(self._contradicted_by(record))
        duplicate = self._find_duplicate(record.text, vector)
        if duplicate is not None:
            duplicate.time = max(duplicate.time, record.time)
            return None
        memory_id = self._insert(record, vector)
        self._evict_over_capacity(protected=memory_id)
        return memory_id

    def remove(self, ids: Iterable[int]) -> int:
        """Delete the memories with these ids (unknown ids are ignored); returns how many went."""
        present = [i for i in dict.fromkeys(int(i) for i in ids) if i in self._records]
        self._remove_ids(present)
        return len(present)

    def _vector_for_text(self, text: str) -> np.ndarray:
        if self.embedder is None:
            raise ValueError("this store has no embedder; pass a vector, or create/load it with an embedder")
        return as_matrix(self.embedder.embed([text]), self.settings.dim)

    def _one_vector(self, vector: np.ndarray) -> np.ndarray:
        matrix = as_matrix(vector, self.settings.dim)
        if len(matrix) != 1:
            raise ValueError(f"expected one vector of shape ({self.settings.dim},), got {np.shape(vector)}")
        return matrix

    def _contradicted_by(self, record: MemoryRecord) -> list[int]:
        if record.key is None:
            return []
        text = normalize(record.text)
        members = sorted(self._key_members.get(record.key, ()))
        return [i for i in members if normalize(self._records[i].text) != text]

    def _find_duplicate(self, text: str, vector: np.ndarray) -> MemoryRecord | None:
        threshold = self.settings.dedup_threshold
        if threshold is None or not self._records:
            return None
        text = normalize(text)
        for memory_id, score in self._index.search(vector, DEDUP_CANDIDATES)[0]:
            existing = self._records[memory_id]
            if score >= threshold and (score >= NEAR_IDENTICAL or normalize(existing.text) == text):
                return existing
        return None

    def _insert(self, record: MemoryRecord, vector: np.ndarray) -> int:
        memory_id = self._next_id
        self._next_id += 1
        memory = dataclasses.replace(record, id=memory_id, components=dict(record.components))
        self._index.add([memory_id], vector)
        self._records[memory_id] = memory
        if memory.key is not None:
            self._key_members.setdefault(memory.key, set()).add(memory_id)
        return memory_id

    def _remove_ids(self, ids: list[int]) -> None:
        if not ids:
            return
        for memory_id in ids:
            memory = self._records.pop(memory_id)
            if memory.key is not None:
                members = self._key_members[memory.key]
                members.discard(memory_id)
                if not members:
                    del self._key_members[memory.key]
        self._index.remove(ids)

    def _evict_over_capacity(self, protected: int) -> None:
        capacity = self.settings.capacity
        while capacity is not None and len(self._records) > capacity:
            candidates = (r for r in self._records.values() if r.id != protected)
            victim = min(candidates, key=self._eviction_order)
            self._remove_ids([victim.id])

    def _eviction_order(self, record: MemoryRecord) -> tuple[int, ...]:
        if self.settings.eviction == "least_retrieved":
            return (record.times_retrieved, record.time, record.id)
        return (record.time, record.id)

    # ----------------------------------------------------------------------------- reading

    def search(
        self, query: str | np.ndarray, k: int, update_counts: bool = True
    ) -> list[tuple[MemoryRecord, float]]:
        """The ``k`` most similar visible memories as ``(copy of record, cosine)``, best first.

        ``query`` is a text (embedded with the store's embedder) or a ``(dim,)`` vector. With
        ``update_counts`` each returned memory's ``times_retrieved`` grows by one (the copies
        show the new count); with False the store is left exactly as it was (evaluation).
        """
        if k <= 0 or not self._records:
            return []
        vector = self._vector_for_text(query) if isinstance(query, str) else self._one_vector(query)
        hits = self._visible_hits(vector, k)
        if update_counts:
            for memory_id, _ in hits:
                self._records[memory_id].times_retrieved += 1
        return [(_copy(self._records[memory_id]), score) for memory_id, score in hits]

    def _visible_hits(self, vector: np.ndarray, k: int) -> list[Hit]:
        if self.settings.contradiction != "newest_first":
            return self._index.search(vector, k)[0]
        fetch = k
        while True:
            hits = [hit for hit in self._index.search(vector, fetch)[0] if self._is_newest_of_key(hit[0])]
            if len(hits) >= k or fetch >= len(self._records):
                return hits[:k]
            fetch = min(2 * fetch, len(self._records))

    def _is_newest_of_key(self, memory_id: int) -> bool:
        key = self._records[memory_id].key
        if key is None:
            return True
        newest = max(self._key_members[key], key=lambda i: (self._records[i].time, i))
        return newest == memory_id

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, memory_id: object) -> bool:
        return memory_id in self._records

    def get(self, memory_id: int) -> MemoryRecord:
        """A copy of the memory with this id (KeyError if absent)."""
        return _copy(self._records[memory_id])

    def records(self) -> list[MemoryRecord]:
        """Copies of every memory, by id."""
        return [_copy(self._records[i]) for i in sorted(self._records)]

    @property
    def index(self) -> VectorIndex:
        """The vector index (read-only use: searching it directly bypasses the store's rules)."""
        return self._index

    def nbytes(self) -> int:
        """Bytes the saved store occupies: serialized FAISS index + memories.jsonl + store.json.

        Serializes the index, so it costs O(size) time and a transient copy of the index.
        """
        index_bytes = faiss.serialize_index(self._index.faiss_index).nbytes
        return index_bytes + len(self._memories_jsonl().encode()) + len(self._store_json().encode())

    # ----------------------------------------------------------------------------- persistence

    def _memories_jsonl(self) -> str:
        records = (dataclasses.asdict(self._records[i]) for i in sorted(self._records))
        return "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)

    def _store_json(self) -> str:
        meta = {
            "format": STORE_FORMAT,
            "settings": self.settings.model_dump(),
            "next_id": self._next_id,
            "embedder": self.embedder_name,
            "index_state": self._index.state(),
        }
        return json.dumps(meta, sort_keys=True, indent=2) + "\n"

    def save(self, directory: str | Path) -> Path:
        """Write the store to ``directory`` (created or replaced as a whole) and return its path.

        Refuses (ValueError) to replace an existing non-empty directory that is not a store.
        """
        target = Path(directory)
        if target.exists() and any(target.iterdir()) and not (target / SETTINGS_FILE).exists():
            raise ValueError(f"{target} exists and is not a memory store; choose an empty or new directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            faiss.write_index(self._index.faiss_index, str(staging / INDEX_FILE))
            (staging / MEMORIES_FILE).write_text(self._memories_jsonl(), encoding="utf-8")
            (staging / SETTINGS_FILE).write_text(self._store_json(), encoding="utf-8")
            for name in (INDEX_FILE, MEMORIES_FILE, SETTINGS_FILE):
                _fsync(staging / name)
            _swap_in(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, directory: str | Path, embedder: Embedder | None = None) -> MemoryStore:
        """The store saved in ``directory``; the same queries then give identical results.

        ``embedder`` must have the name recorded at save time (ValueError otherwise); None
        allows vector queries only.
        """
        source = Path(directory)
        meta = json.loads((source / SETTINGS_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != STORE_FORMAT:
            raise ValueError(f"{source} has store format {meta.get('format')!r}; expected {STORE_FORMAT}")
        saved_embedder = meta["embedder"]
        if embedder is not None and saved_embedder is not None and embedder.name != saved_embedder:
            raise ValueError(
                f"{source} was embedded with {saved_embedder!r}, not {embedder.name!r}; pass that embedder"
            )
        store = cls(StoreSettings.model_validate(meta["settings"]), embedder)
        store.embedder_name = saved_embedder
        store._index = read_index(source / INDEX_FILE, store.settings, meta["index_state"])
        store._next_id = int(meta["next_id"])
        for line in (source / MEMORIES_FILE).read_text(encoding="utf-8").splitlines():
            memory = MemoryRecord(**json.loads(line))
            store._records[memory.id] = memory
            if memory.key is not None:
                store._key_members.setdefault(memory.key, set()).add(memory.id)
        if len(store._index) != len(store._records):
            raise ValueError(
                f"{source} is inconsistent: {len(store._index)} vectors, {len(store._records)} memories"
            )
        return store


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _swap_in(staging: Path, target: Path) -> None:
    """Move the complete ``staging`` directory to ``target``, replacing any previous store.

    POSIX cannot rename over a non-empty directory, so an old store is first renamed aside; a
    crash between the two renames leaves both complete copies (old one under a ``.old`` name).
    """
    if not target.exists():
        staging.rename(target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    retired.rmdir()
    target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
