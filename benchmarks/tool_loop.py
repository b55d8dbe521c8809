"""A searching episode's cost against a raw ``generate`` of the same total length, with and without
the cached tool loop; and how often the two loops' episodes differ.

One process, one model (the builtin base unless ``--backbone``), the run's own sampling settings and
batches of the default suite's items (each ``--shapes`` entry: queries x responses per query; the
default ``4x8`` is an RL step's batch, ``1x1`` a single episode), every episode made to search (the
tool decision ``search``: each opens with a search call, so each has at least two generation rounds).
Per batch, from the same seed, three timings:

- **recompute**: ``rollout(..., reuse_cache=False)``, the former loop: every round after a tool
  reply is a new ``generate`` over prompt + completion so far + reply;
- **cached**: ``rollout(...)``, resuming each round from the previous round's keys and values;
- **raw**: one plain ``generate`` of the same prompts, sampling as many new tokens as the batch's
  longest completion (agent and tool tokens: the same total length), no tool, no stop strings.

The ratios recompute / raw and cached / raw are computed per repeat (each repeat: ``--episodes``
episodes in whole batches, the three timed back to back per batch, in rotating order); the median
over ``--repeats`` is reported with every repeat kept. Also counted, exactly (no clock): the token
positions each path fed the model's forward passes. The machine may be shared: timings are ratios
within one run.

**Agreement.** For ``--agreement`` batches of the first shape, greedy and sampled, the two loops run
from the same seed and their episodes are compared (token ids and env mask); also, over every
forward pass, whether its last-position logits are bit-identical and the largest absolute difference
(rounding: carried keys and values were computed in another batch shape; the first round's passes
are the same computation in both loops). Both loops compute every row at every step and read
every prefix whole here (``drop_ended_rows=False, share_prefix=False``), so that their passes pair
up and compare row by row: what is compared is the tool loop's cache alone (the other two savings
have their own checks: ``tests/test_open_rows.py``, ``tests/test_shared_prefix.py``).

    python benchmarks/tool_loop.py --repeats 3 --out benchmarks/results/tool_loop.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from experiments.config import load_experiment
from experiments.run import assemble
from paradigms.agent import SEARCH, GenerationSettings, rollout

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.yaml"


class Counter:
    """Counts the token positions fed to the model and keeps each forward's last-position logits."""

    def __init__(self, model, keep_logits: bool = False):
        self.positions, self.logits, self.keep_logits = 0, [], keep_logits
        self.hooks = [model.get_input_embeddings().register_forward_hook(self._count)]
        if keep_logits:
            self.hooks.append(model.get_output_embeddings().register_forward_hook(self._keep))

    def _count(self, module, inputs, output) -> None:
        self.positions += inputs[0].numel()

    def _keep(self, module, inputs, output) -> None:
        self.logits.append(output[:, -1].detach().clone())

    def reset(self) -> None:
        self.positions, self.logits = 0, []

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def setup(backbone: str):
    """The model, tokenizer, protocol and sampling settings of a run, and a drawer of item batches."""
    config = load_experiment(
        SMOKE, [f"backbone={backbone}", "task.suite=default", "budget.feedback_events=1000000"]
    ).runs()[0]
    parts = assemble(config, progress=False)
    session, paradigm = parts.session, parts.paradigm

    def draw(queries: int, group: int, batches: int) -> list[tuple[list, list]]:
        """``batches`` batches of the stream's next ``queries`` items, each repeated ``group`` times."""
        drawn = []
        for _ in range(batches):
            items = [item for item in session.next_items(queries) for _ in range(group)]
            drawn.append(([i.query for i in items], [session.tool()] * len(items)))
        return drawn

    return paradigm.model, paradigm.tokenizer, session.protocol, session.generation, draw


def run_loop(model, tokenizer, protocol, settings, queries, tools, seed: int, reuse: bool, **options):
    torch.manual_seed(seed)
    return rollout(
        model,
        tokenizer,
        queries,
        tools,
        settings,
        decisions=[SEARCH] * len(queries),
        protocol=protocol,
        reuse_cache=reuse,
        **options,
    )


@torch.no_grad()
def raw_generate(model, tokenizer, protocol, settings, queries, new_tokens: int, seed: int) -> None:
    prompts = [protocol.encode_prompt(protocol.render_prompt(q, [], tokenizer), tokenizer) for q in queries]
    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    torch.manual_seed(seed)
    model.generate(
        input_ids=ids,
        attention_mask=attention,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=True,
        temperature=settings.temperature,
        top_k=settings.top_k or None,
        top_p=None,
        pad_token_id=pad,
    )


def measure(model, tokenizer, protocol, settings, drawn, repeat: int) -> dict:
    """One repeat: per batch, the three timings back to back (order rotating with the batch)."""
    counter = Counter(model)
    seconds = {"recompute": 0.0, "cached": 0.0, "raw": 0.0}
    positions = dict.fromkeys(seconds, 0)
    episodes = searches = tokens = 0
    model.eval()
    try:
        for index, (queries, tools) in enumerate(drawn):
            seed = 1000 * repeat + index
            # the raw generate's length is the longest completion, known after a loop ran
            first = run_loop(model, tokenizer, protocol, settings, queries, tools, seed, reuse=True)
            length = max(len(e.completion_ids) for e in first)
            episodes += len(first)
            searches += sum(e.search_calls for e in first)
            tokens += sum(len(e.completion_ids) for e in first)
            loop = partial(run_loop, model, tokenizer, protocol, settings, queries, tools, seed)
            runs = {
                "recompute": partial(loop, reuse=False),
                "cached": partial(loop, reuse=True),
                "raw": partial(raw_generate, model, tokenizer, protocol, settings, queries, length, seed),
            }
            names = list(runs)
            order = names[index % 3 :] + names[: index % 3]
            for name in order:
                counter.reset()
                started = time.perf_counter()
                runs[name]()
                seconds[name] += time.perf_counter() - started
                positions[name] += counter.positions
    finally:
        counter.remove()
    return {
        "episodes": episodes,
        "search_calls_per_episode": searches / episodes,
        "completion_tokens_per_episode": tokens / episodes,
        **{f"{name}_seconds": value for name, value in seconds.items()},
        **{f"{name}_positions": value for name, value in positions.items()},
        "recompute_ratio": seconds["recompute"] / seconds["raw"],
        "cached_ratio": seconds["cached"] / seconds["raw"],
        "cached_speedup": seconds["recompute"] / seconds["cached"],
    }


def agreement(model, tokenizer, protocol, settings, drawn, temperature: float) -> dict:
    """Episodes (and their tokens) that differ between the two loops from the same seed."""
    settings = GenerationSettings(
        max_new_tokens=settings.max_new_tokens,
        temperature=temperature,
        top_k=settings.top_k,
        max_searches=settings.max_searches,
    )
    counter = Counter(model, keep_logits=True)
    # the i-th pass of both loops holds the same rows: greedy decoding otherwise computes only the rows
    # still open (which two loops may top up with different ended rows), and the recomputing loop's
    # greedy rounds add a one-row pass over a prefix their rows share
    whole = {"drop_ended_rows": False, "share_prefix": False}
    differing_episodes = differing_tokens = episodes = tokens = 0
    identical_steps = steps = 0
    largest = 0.0
    try:
        for index, (queries, tools) in enumerate(drawn):
            counter.reset()
            before = run_loop(model, tokenizer, protocol, settings, queries, tools, index, False, **whole)
            logits_before = counter.logits
            counter.reset()
            after = run_loop(model, tokenizer, protocol, settings, queries, tools, index, True, **whole)
            for a, b in zip(before, after, strict=True):
                episodes += 1
                tokens += len(a.completion_ids)
                same = a.completion_ids == b.completion_ids and a.env_mask == b.env_mask
                differing_episodes += not same
                differing_tokens += sum(
                    x != y for x, y in zip(a.completion_ids, b.completion_ids, strict=False)
                )
                differing_tokens += abs(len(a.completion_ids) - len(b.completion_ids))
            for x, y in zip(logits_before, counter.logits, strict=False):
                if x.shape == y.shape:
                    steps += 1
                    identical_steps += torch.equal(x, y)
                    largest = max(largest, (x - y).abs().max().item())
    finally:
        counter.remove()
    return {
        "temperature": temperature,
        "episodes": episodes,
        "differing_episodes": differing_episodes,
        "completion_tokens": tokens,
        "differing_tokens": differing_tokens,
        "decoding_steps_compared": steps,
        "decoding_steps_bit_identical": identical_steps,
        "largest_logit_difference": largest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="builtin")
    parser.add_argument(
        "--shapes", nargs="+", default=["4x8", "1x1"], help="batch shapes, queries x responses per query"
    )
    parser.add_argument(
        "--episodes", type=int, default=384, help="timed episodes per repeat and shape (whole batches)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--agreement", type=int, default=50, help="batches of the first shape compared, greedy and sampled"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tool_loop.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    model, tokenizer, protocol, settings, draw = setup(args.backbone)
    rows = []
    for shape in args.shapes:
        queries, group = (int(n) for n in shape.split("x"))
        batches = max(1, args.episodes // (queries * group))
        timed = draw(queries, group, batches)
        measure(model, tokenizer, protocol, settings, timed[:2], repeat=99)  # warm-up: first-call costs
        repeats = []
        for repeat in range(args.repeats):
            repeats.append(measure(model, tokenizer, protocol, settings, timed, repeat))
            r = repeats[-1]
            print(
                f"{shape} repeat {repeat}: recompute / raw {r['recompute_ratio']:.2f}, "
                f"cached / raw {r['cached_ratio']:.2f}, recompute / cached {r['cached_speedup']:.2f}",
                flush=True,
            )
        median = {key: statistics.median(r[key] for r in repeats) for key in repeats[0]}
        per_batch = {n: median[f"{n}_positions"] / batches for n in ("recompute", "cached", "raw")}
        print(
            f"{shape} median of {args.repeats}: recompute / raw {median['recompute_ratio']:.2f}, "
            f"cached / raw {median['cached_ratio']:.2f}, positions fed per batch: recompute "
            f"{per_batch['recompute']:.0f}, cached {per_batch['cached']:.0f}, raw {per_batch['raw']:.0f}",
            flush=True,
        )
        rows.append({"shape": shape, "batches": batches, "median": median, "repeats": repeats})
    queries, group = (int(n) for n in args.shapes[0].split("x"))
    compared = draw(queries, group, args.agreement)
    agreements = [
        agreement(model, tokenizer, protocol, settings, compared, t) for t in (0.0, settings.temperature)
    ]
    for a in agreements:
        print(
            f"temperature {a['temperature']}: {a['differing_episodes']} of {a['episodes']} episodes differ "
            f"({a['differing_tokens']} of {a['completion_tokens']} tokens); "
            f"{a['decoding_steps_bit_identical']} of {a['decoding_steps_compared']} steps' logits "
            f"bit-identical, largest difference {a['largest_logit_difference']:.2e}",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "rows": rows,
        "agreement": agreements,
        "settings": {
            "max_new_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_k": settings.top_k,
            "max_searches": settings.max_searches,
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg()[0],
            "shared": "other jobs ran on the machine throughout",
        },
    }
    args.out.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
