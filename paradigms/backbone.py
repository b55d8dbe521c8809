"""Loading a backbone: any Hugging Face causal LM (hub id or local directory) with its tokenizer.

The builtin base is a local directory too (built and cached by ``harness base build``), so
every backbone goes through the same loader. Device and dtype come from the config; nothing
here assumes a CPU.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    _reference: torch.nn.Module | None = field(default=None, repr=False)

    def reference(self) -> torch.nn.Module:
        if self._reference is None:
            self._reference = copy.deepcopy(self.model).eval()
            for parameter in self._reference.parameters():
                parameter.requires_grad_(False)
        return self._reference

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def load_backbone(source: str | Path, device: str = "auto", dtype: str = "float32") -> Backbone:
    """Load a causal LM and its tokenizer from a hub id or a directory, offline-friendly.

    Pads on the left (generation) and falls back to the end-of-sequence token for padding when
    the tokenizer has none.
    """
    torch_device = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=DTYPES[dtype]).to(torch_device)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return Backbone(name=str(source), model=model, tokenizer=tokenizer, device=torch_device)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer, in name order: equal iff bitwise-equal weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
