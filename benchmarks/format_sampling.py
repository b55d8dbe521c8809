"""Which answer formats a chat backbone samples on habit questions, and whether telling it the menu helps.

GRPO learns from differences in reward within a group of sampled answers: a format the model never
samples gives the format term no gradient. This measures, on `preferences` items (no format asked;
the user has a habit per question kind), how many of ``--group`` sampled answers per item fall in
each format, how many are in the user's wanted one, and in how many groups the wanted format is
neither absent nor universal (the groups GRPO can learn the habit from). Three system-prompt
variants, the same items and seed for each:

- ``none``: the chat protocol as every run uses it;
- ``menu``: the four formats named in the system message, and "answer in the format this user prefers";
- ``menu_examples``: the same with each format shown on an example answer.

The variants are a measurement, not an option of the harness: the protocol itself is unchanged.

    python benchmarks/format_sampling.py --backbone smollm2 --out benchmarks/results/format_sampling.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import torch

from experiments.config import load_experiment
from experiments.run import assemble
from paradigms.agent import GenerationSettings
from tasks.protocols.base import USER_SUBJECT
from tasks.protocols.chat import ChatProtocol

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.yaml"

MENUS = {
    "none": "",
    "menu": (
        "Each user has a preferred format for answers: the bare value only, "
        'a JSON object with the key "answer", a bulleted list, or one full sentence. '
        "Answer in the format this user prefers."
    ),
    "menu_examples": (
        'Users choose how answers look. The possible formats, shown for the question "What is the capital of '
        'France?": the bare value only: Paris / a JSON object with the key "answer": {"answer": "Paris"} / a '
        "bulleted list: - Paris / one full sentence: The capital of France is Paris. Answer in the format "
        "this user prefers."
    ),
}


class MenuProtocol(ChatProtocol):
    """The chat protocol with a format menu before the system message of habit questions."""

    def __init__(self, menu: str):
        self.menu = menu

    def system_message(self, query, notes, declares_tools: bool) -> str:
        base = super().system_message(query, notes, declares_tools)
        if self.menu and query.subject != USER_SUBJECT and query.instruction is None:
            return "\n\n".join(part for part in (self.menu, base) if part)
        return base


def sample(
    backbone: str,
    threads: int,
    menu: str,
    items: int,
    group: int,
    temperature: float,
    seed: int,
    max_new_tokens: int,
):
    """Format counts of ``group`` sampled answers to each of the first ``items`` preference questions."""
    config = load_experiment(
        SMOKE,
        [
            f"backbone={backbone}",
            f"threads={threads}",
            "task.suite=preferences",
            f"seeds=[{seed}]",
            f"budget.feedback_events={items * group}",
            f"generation.max_new_tokens={max_new_tokens}",
        ],
    ).runs()[0]
    parts = assemble(config, progress=False)
    session = parts.session
    if session.protocol.name != "chat":
        raise SystemExit(
            f"backbone {backbone!r} speaks the {session.protocol.name} protocol; this needs a chat model"
        )
    session.protocol = MenuProtocol(menu)
    drawn = session.next_items(items)
    torch.manual_seed(seed)
    settings = GenerationSettings(max_new_tokens=config.generation.max_new_tokens, temperature=temperature)
    interaction = session.interact(
        parts.paradigm.model, parts.paradigm.tokenizer, drawn, group_size=group, settings=settings
    )
    sampled, wanted, in_wanted, with_signal = Counter(), Counter(), 0, 0
    for index, item in enumerate(drawn):
        episodes = interaction.episodes[index * group : (index + 1) * group]
        formats = [session.protocol.parse_answer(e.completion, item.candidates).format for e in episodes]
        sampled.update(str(f) for f in formats)
        wanted[item.wanted_format] += 1
        hits = sum(f == item.wanted_format for f in formats)
        in_wanted += hits
        with_signal += 0 < hits < group
    return {
        "formats_sampled": dict(sampled),
        "wanted_formats": dict(wanted),
        "answers": items * group,
        "in_wanted_format": in_wanted / (items * group),
        "groups_with_signal": with_signal,
        "groups": items,
        "examples": [e.completion for e in interaction.episodes[:group]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="the user (and the sampling seed)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=32, help="as experiments/comparison_smollm2.yaml"
    )
    parser.add_argument("--variants", nargs="+", default=list(MENUS), choices=list(MENUS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/format_sampling.json"))
    args = parser.parse_args()
    rows = {}
    for variant in args.variants:
        started = time.perf_counter()
        rows[variant] = sample(
            args.backbone,
            args.threads,
            MENUS[variant],
            args.items,
            args.group,
            args.temperature,
            args.seed,
            args.max_new_tokens,
        )
        rows[variant]["seconds"] = time.perf_counter() - started
        row = rows[variant]
        print(
            f"{variant}: sampled {row['formats_sampled']}, "
            f"in the wanted format {row['in_wanted_format']:.3f}, "
            f"groups with signal {row['groups_with_signal']}/{row['groups']}",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "variants": rows,
        "menus": {v: MENUS[v] for v in args.variants},
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": {"cpu_count": os.cpu_count(), "load_average_after": os.getloadavg()[0]},
    }
    args.out.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
