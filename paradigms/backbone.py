"""Loading a backbone: any Hugging Face causal LM (hub id or local directory) with its tokenizer,
and the protocol it speaks.

The builtin base is a local directory too (built and cached by ``harness base build``), and so is
SmolLM2 (``paradigms/smollm2.py``), so every backbone goes through the same loader. Device and
dtype come from the config; nothing here assumes a CPU. The protocol (``tasks.protocols``) is the
builtin grammar for the builtin bases (their directory holds ``recipe.json``) and the chat protocol
for a model whose tokenizer has a chat template; a model with neither is refused unless the config
names a protocol.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from paradigms.backbone_files import (  # re-exported: where they were first defined
    BUILTIN_MARKER,
    CACHE_ENV,
    BackboneUnavailable,
    cache_root,
    file_lock,
)
from tasks.protocols import PROTOCOLS, Protocol

__all__ = ["BUILTIN_MARKER", "CACHE_ENV", "Backbone", "BackboneUnavailable", "cache_root", "file_lock"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on a CUDA device that supports it, else float32."""
    if dtype != "auto":
        return DTYPES[dtype]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def resolve_protocol(source: str | Path, tokenizer, protocol: str = "auto") -> Protocol:
    """The protocol a backbone speaks: the one named, or ``auto`` (grammar for a builtin base, chat for a
    tokenizer with a chat template; otherwise ``BackboneUnavailable``)."""
    if protocol != "auto":
        return PROTOCOLS[protocol]
    if (Path(source) / BUILTIN_MARKER).is_file():
        return PROTOCOLS["grammar"]
    if getattr(tokenizer, "chat_template", None):
        return PROTOCOLS["chat"]
    raise BackboneUnavailable(
        f"backbone {source}: its tokenizer has no chat template, so the chat protocol cannot render prompts; "
        "use a chat (instruction-tuned) model, or set protocol: grammar to speak the harness's word grammar "
        "(which a base model must first be trained on)"
    )


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class Backbone:
    """A loaded causal LM: ``model`` is what paradigms answer and learn with.

    ``reference()`` returns a frozen copy of the weights as loaded (the base that KL and
    forgetting are measured against), made on first use.
    """

    name: str
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    protocol: Protocol = field(default_factory=lambda: PROTOCOLS["grammar"])
    _reference: torch.nn.Module | None = field(default=None, repr=False)

    def reference(self) -> torch.nn.Module:
        if self._reference is None:
            self._reference = copy.deepcopy(self.model).eval()
            for parameter in self._reference.parameters():
                parameter.requires_grad_(False)
        return self._reference

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def load_backbone(
    source: str | Path, device: str = "auto", dtype: str = "float32", protocol: str = "auto"
) -> Backbone:
    """Load a causal LM, its tokenizer and its protocol from a hub id or a directory, offline-friendly.

    Pads on the left (generation) and falls back to the end-of-sequence token for padding when
    the tokenizer has none.
    """
    torch_device = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    spoken = resolve_protocol(source, tokenizer, protocol)
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=resolve_dtype(dtype, torch_device))
    model = model.to(torch_device)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return Backbone(name=str(source), model=model, tokenizer=tokenizer, device=torch_device, protocol=spoken)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer, in name order: equal iff bitwise-equal weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
