"""The memory paradigm's config section (``paradigm:`` with ``name: memory``) and its store's settings,
declared once, beside the store and the paradigm that read them.

``StorePolicy`` holds what the config sets about the store (capacity, eviction, index kind,
deduplication, contradictions); the memory section is a ``StorePolicy`` plus the paradigm's own knobs
(retrieval, reflection, writing, embedder), and ``StoreSettings``, what a ``MemoryStore`` is built with,
is the same policy plus what the run decides (the embedder's width) and the index's tuning, which the
config does not expose. ``MemorySettings.store(dim)`` hands the one to the other.

Light (pydantic only): importing this module loads no FAISS or torch (the package's ``__init__`` is
empty), so the config is validated without them.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field, model_validator

from paradigms.sections import SECTION, ParadigmSettings, ToolPolicySettings

#: Notes retrieved into one prompt; more would crowd out the question.
MAX_TOP_K = 100

IndexKind = Literal["flat", "hnsw", "ivf"]
Eviction = Literal["oldest", "least_retrieved"]
Contradiction = Literal["replace", "keep_both", "newest_first"]
INDEX_KINDS: tuple[str, ...] = get_args(IndexKind)
EVICTION_POLICIES: tuple[str, ...] = get_args(Eviction)
CONTRADICTION_POLICIES: tuple[str, ...] = get_args(Contradiction)


class StorePolicy(BaseModel):
    """How a memory store keeps, deduplicates and indexes memories (the rules: ``paradigms.memory.store``)."""

    model_config = SECTION

    capacity: int | None = Field(256, ge=1, description="Most memories kept (None: unbounded).")
    eviction: Eviction = Field("oldest", description="Which memory goes when full.")
    index: IndexKind = Field("flat", description="Exact (flat) or approximate index.")
    dedup_threshold: float | None = Field(
        0.95,
        ge=-1,
        le=1,
        description="Cosine at which a memory with the same text is a duplicate (None: keep duplicates).",
    )
    contradiction: Contradiction = Field(
        "replace",
        description="A new lesson about the same key replaces the old one, sits beside it, or "
        "hides it in retrieval.",
    )


class StoreSettings(StorePolicy):
    """Everything a ``MemoryStore`` reads: its policy, the embedding width and the index's tuning."""

    dim: int = Field(ge=1, description="Embedding width; must equal the embedder's dim.")
    hnsw_m: int = Field(32, ge=1, description="HNSW graph degree.")
    hnsw_ef_construction: int = Field(40, ge=1, description="HNSW build beam width.")
    hnsw_ef_search: int = Field(
        64, ge=1, description="HNSW search beam width (raised to k when k is larger)."
    )
    ivf_nlist: int = Field(64, ge=1, description="IVF inverted lists.")
    ivf_nprobe: int = Field(8, ge=1, description="IVF lists scanned per query.")
    ivf_train_size: int | None = Field(
        None, ge=1, description="Vectors needed to train IVF (None: 39 * ivf_nlist, FAISS's minimum)."
    )

    @model_validator(mode="after")
    def _enough_to_train(self) -> StoreSettings:
        if self.ivf_train_size is not None and self.ivf_train_size < self.ivf_nlist:
            raise ValueError(f"ivf_train_size must be >= ivf_nlist ({self.ivf_nlist}); raise it or use None")
        return self

    @property
    def resolved_ivf_train_size(self) -> int:
        return self.ivf_train_size if self.ivf_train_size is not None else 39 * self.ivf_nlist


class MemorySettings(StorePolicy, ParadigmSettings):
    """The memory paradigm's section: its store's policy and how it retrieves, reflects and writes."""

    name: Literal["memory"] = "memory"
    top_k: int = Field(
        3, ge=0, le=MAX_TOP_K, description=f"Memories retrieved into each prompt (at most {MAX_TOP_K})."
    )
    reflection: Literal["llm", "template", "none"] = Field(
        "llm", description="Who writes lessons: the backbone, a template, or nobody (raw experiences stored)."
    )
    write_policy: Literal["all", "failures", "corrected"] = Field(
        "all", description="Which interactions are written: every one, failures only, corrected ones only."
    )
    embedder: Literal["minilm", "backbone"] = Field(
        "minilm", description="MiniLM sentence embeddings or the backbone's mean-pooled hidden states."
    )
    min_similarity: float = Field(
        -1.0, ge=-1, le=1, description="Retrieved memories below this cosine are left out of the prompt."
    )
    tool_policy: ToolPolicySettings = Field(
        default_factory=ToolPolicySettings,
        description="Who decides when to search: the model (none) or a learned Q-learning policy.",
    )

    def store(self, dim: int) -> StoreSettings:
        """The settings of this paradigm's store, for an embedder of width ``dim``."""
        return StoreSettings(dim=dim, **self.model_dump(include=set(StorePolicy.model_fields)))
