"""What a chat backbone knows and can do, measured once and cached with it.

For a backbone that speaks the chat protocol (its world is the real world, ``tasks.worlds``):

1. **Known facts**: every real-world fact asked plainly (no format request, no tool), greedy; the
   facts it answers right form the world its runs use (``WorldView.restricted``), so stream,
   evaluation and probe ask only what the untouched model knows.
2. **General probe**: the restricted world's probe facts in every format; kept are the questions the
   untouched model answers right (value and format), re-asked until the kept set is stable (batches
   change a little with their composition), so a run's general accuracy starts at 1.0 and
   forgetting is measured on knowledge the model had.
3. **Competence figures** (``harness base info``): the same figures the builtin base reports
   (``base_competence``), so a researcher sees which tasks are in reach before spending hours on a
   comparison. Runs need only 1 and 2, so these are measured when first asked for.

The card is cached as JSON under ``<harness cache>/competence/`` keyed by the model's files and the
code and data that define the probes, so a change to either re-measures it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from functools import cache
from pathlib import Path

from experiments.evaluation import answer_probe, base_competence
from paradigms.agent import GenerationSettings
from paradigms.backbone import Backbone, cache_root, file_lock
from tasks import probes
from tasks import worlds as worlds_module
from tasks.protocols import chat as chat_protocol
from tasks.worlds import REAL_WORLD_FILE, WorldView, real_world

#: Competence probes' size for a real model (each item is a greedy generation).
COMPETENCE_ITEMS = 100
#: Rounds of re-asking the kept general probe at most (it is stable after one or two).
MAX_KEEP_ROUNDS = 4
GREEDY = GenerationSettings(max_new_tokens=32, temperature=0.0)


@cache
def _code_digest() -> str:
    """The code and data a card's measurement depends on (the chat protocol, the probes, the worlds and
    the measuring function), hashed at first use in a process (so an edit made while runs are going
    does not change the key mid-experiment, and edits elsewhere never re-measure a card)."""
    digest = hashlib.sha256(REAL_WORLD_FILE.read_bytes())
    for source in (chat_protocol, probes, worlds_module, measure_world):
        digest.update(inspect.getsource(source).encode())
    return digest.hexdigest()


def card_digest(source: str | Path, dtype: str) -> str:
    """A key over the model's files (or hub id), the dtype, and the code and data behind the probes."""
    digest = hashlib.sha256(f"{source}|{dtype}|{_code_digest()}".encode())
    path = Path(source)
    if path.is_dir():
        for file in sorted(path.iterdir()):
            if file.is_file():
                digest.update(f"{file.name}:{file.stat().st_size}".encode())
    return digest.hexdigest()[:12]


def card_path(source: str | Path, dtype: str) -> Path:
    name = Path(str(source)).name or str(source).replace("/", "--")
    return cache_root() / "competence" / f"{name}-{card_digest(source, dtype)}.json"


def read_card(source: str | Path, dtype: str) -> dict | None:
    path = card_path(source, dtype)
    return json.loads(path.read_text()) if path.is_file() else None


def ensure_card(
    backbone: Backbone, source: str | Path, dtype: str, progress: bool = True, competence: bool = False
) -> dict:
    """The backbone's cached card, measuring what is missing first (minutes, once): its known facts and
    general probe always, its competence figures when ``competence``."""
    path = card_path(source, dtype)

    def complete(card: dict | None) -> bool:
        return card is not None and (not competence or "competence" in card)

    card = json.loads(path.read_text()) if path.is_file() else None
    if complete(card):
        return card
    with file_lock(path):
        card = json.loads(path.read_text()) if path.is_file() else None
        if complete(card):
            return card  # measured by another process while we waited
        if progress:
            what = "knows and can do" if competence else "knows"
            print(f"measuring what {backbone.name} {what} (once; cached in {path.parent})", flush=True)
        started = time.perf_counter()
        card = card or measure_world(backbone)
        if competence and "competence" not in card:
            card["competence"] = measure_competence(backbone, card)
        card["measure_seconds"] = card.get("measure_seconds", 0.0) + time.perf_counter() - started
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(card, indent=2))
        scratch.rename(path)
    return card


def card_world(card: dict) -> WorldView:
    """The real world restricted to the facts the card says the backbone knows."""
    return real_world(frozenset(tuple(fact) for fact in card["known_facts"]))


def measure_world(backbone: Backbone) -> dict:
    """The facts an untouched chat backbone knows and the general-probe questions it answers right."""
    model, tokenizer, protocol = backbone.model, backbone.tokenizer, backbone.protocol
    everything = real_world()
    asked = probes.known_facts_probe(everything)
    _, components = answer_probe(model, tokenizer, asked, GREEDY, protocol)
    known = [
        [item.query.subject, item.query.attribute]
        for item, right in zip(asked, components["correctness"], strict=True)
        if right
    ]
    world = real_world(frozenset(tuple(k) for k in known))
    general = probes.general_probe(world=world)
    kept = [probes.probe_key(i) for i in general]
    for _ in range(MAX_KEEP_ROUNDS):
        items = probes.general_probe(world=world, keep=kept)
        _, components = answer_probe(model, tokenizer, items, GREEDY, protocol)
        still = [
            probes.probe_key(i)
            for i, right, formatted in zip(
                items, components["correctness"], components["format"], strict=True
            )
            if right and formatted
        ]
        if still == kept:
            break
        kept = still
    return {
        "backbone": backbone.name,
        "protocol": protocol.name,
        "known_facts": known,
        "known_fact_share": len(known) / len(asked),
        "general_probe": kept,
        "general_probe_asked": len(general),
    }


def measure_competence(backbone: Backbone, card: dict) -> dict:
    """The builtin base's competence figures, for a chat backbone on its known world and kept probe."""
    world = card_world(card)
    return base_competence(
        backbone.model,
        backbone.tokenizer,
        backbone.protocol,
        world,
        general=probes.general_probe(world=world, keep=card["general_probe"]),
        n=COMPETENCE_ITEMS,
    )


def describe_backbone(spec: str, device: str = "auto", dtype: str = "float32", progress: bool = True) -> dict:
    """What ``harness base info --backbone SPEC`` prints for a non-builtin backbone: where it lives, its
    protocol, and its competence figures (measured on first use, then read from the cache)."""
    from experiments.backbones import resolve_backbone
    from paradigms.backbone import load_backbone

    source = resolve_backbone(spec, progress=progress)
    backbone = load_backbone(source, device, dtype)
    if backbone.protocol.world == "builtin":
        raise ValueError(
            f"{spec} speaks the builtin grammar; `harness base info` describes builtin bases by name"
        )
    card = ensure_card(backbone, source, dtype, progress=progress, competence=True)
    world = card_world(card)
    return {
        "spec": spec,
        "path": source,
        "protocol": card["protocol"],
        "parameters": backbone.parameter_count(),
        "competence": card["competence"],
        "known_facts": {
            "share": round(card["known_fact_share"], 3),
            **{kind: sum(1 for _, k in card["known_facts"] if k == kind) for kind in world.kind_names},
        },
        "general_probe": {"kept": len(card["general_probe"]), "asked": card["general_probe_asked"]},
        "card": str(card_path(source, dtype)),
        "measure_seconds": round(card["measure_seconds"], 1),
    }
