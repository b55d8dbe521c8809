"""The harness's overhead per RL step, as a ratio to raw ``generate`` + forward/backward, per algorithm.

For each algorithm, one process measures both, on the same model and the same batches:

- **harness**: ``paradigm.train(session)`` for a few steps: rollout through the search-tool loop,
  reward scoring, the algorithm's update (GRPO: inside TRL's trainer), feedback bookkeeping.
  No evaluation and no MLflow (the runner's callback is replaced by a no-op).
- **raw**: for the same prompts, one plain ``generate`` call per step with as many new tokens
  as the longest completion the harness produced in that step, plus one forward and backward
  pass over the harness's own sequences.

The ratio harness / raw is the overhead (1.0 = none). It is split in two: the rollout (the session's
``interact``: search-tool loop and scoring) against raw ``generate``, and the rest of the step (the
update, and for GRPO everything TRL's trainer does around it) against raw forward+backward. The
rollout's ratio compares the whole ``interact`` (generation, tool calls and scoring) with a generate
as long as the longest *agent* token count; ``rollout_generation_total_length_ratio`` takes scoring
out (``harness_scoring_seconds``) and compares with a raw generate as long as the longest whole
completion (tool tokens included, ``raw_generate_total_length_seconds``), which is what the rollout
produces. ``full_length_ratio`` is the step against that generate plus one forward+backward;
``algorithm_ratio`` for ``ppo`` against its own passes (a no-grad forward for old log-probabilities
and values, then ``epochs`` forward+backward). ``steady_full_length_ratio`` leaves out what a run
pays once (building the trainer, TRL's ``free_memory`` garbage collection, the first step's
warm-up): the harness's time from the first step's feedback to the last step's against the raw work
in between. Also reported: completion tokens (the agent's own) per second of harness time.
Timings are noisy on a shared machine: each algorithm is measured ``--repeats`` times (a fresh
model each time, after one untimed warm-up run) and the median ratio is reported, with every
repeat kept in the results file.

    python benchmarks/rl_overhead.py --paradigm adapter --steps 12 --repeats 3 \
        --out benchmarks/results/rl_overhead.json
    python benchmarks/rl_overhead.py --backbone smollm2 --threads 1 --steps 3 --repeats 3 \
        --out benchmarks/results/rl_overhead_smollm2.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import torch

from experiments.config import load_experiment
from experiments.run import assemble
from paradigms.rl import batching
from paradigms.session import FeedbackReport

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.yaml"


def _stopwatch(owner, method: str) -> list[float]:
    """Replace ``owner.method`` with a timed copy; the returned one-item list accumulates its seconds."""
    inner, total = getattr(owner, method), [0.0]

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - started

    setattr(owner, method, timed)
    return total


def harness_time(base: list[str], algorithm: str, steps: int, batch: int, group: int):
    """Seconds for ``steps`` harness steps (all, and from the first step's feedback to the last's), of
    which in the rollout and in scoring, the interactions produced and the paradigm.

    ``base``: the overrides naming backbone, threads and paradigm (``KEY=VALUE``). The steady part
    leaves out what a run pays once (building the trainer, the first step's warm-up): between the
    first and the last feedback lie the updates of steps 1..N-1 and the rollouts of steps 2..N."""
    events = steps * batch * group
    config = load_experiment(
        SMOKE,
        [
            *base,
            f"algorithm.name={algorithm}",
            f"algorithm.group_size={group}",
            f"task.batch_size={batch}",
            f"budget.feedback_events={events}",
            "task.suite=default",
        ],
    ).runs()[0]
    parts = assemble(config, progress=False)
    interactions, stamps = [], []

    def keep(report: FeedbackReport) -> None:
        interactions.append(report.interaction)
        stamps.append(time.perf_counter())

    parts.session.on_feedback = keep
    in_rollout = _stopwatch(parts.session, "interact")
    in_scoring = _stopwatch(parts.session, "score")
    started = time.perf_counter()
    parts.paradigm.train(parts.session)
    total = time.perf_counter() - started
    steady = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return total, steady, in_rollout[0], in_scoring[0], interactions, parts.paradigm


def raw_generate(model, ids, attention, pad, new_tokens: int) -> float:
    started = time.perf_counter()
    model.eval()
    with torch.no_grad():
        model.generate(
            input_ids=ids,
            attention_mask=attention,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=True,
            pad_token_id=pad,
        )
    model.train()
    return time.perf_counter() - started


class RawStep(NamedTuple):
    """Seconds of one step's raw work on the harness's own batch."""

    generate: float  # plain generate to the longest agent token count
    generate_total: float  # ... to the longest whole completion, tool tokens included
    forward_backward: float
    forward: float  # no grad


def raw_time(paradigm, interactions) -> list[RawStep]:
    """Per step, the raw work (:class:`RawStep`) over the same batches."""
    model, tokenizer = paradigm.model, paradigm.tokenizer
    pad = tokenizer.pad_token_id
    steps = []
    for interaction in interactions:
        episodes = interaction.episodes
        width = max(len(e.prompt_ids) for e in episodes)
        ids = torch.tensor([[pad] * (width - len(e.prompt_ids)) + e.prompt_ids for e in episodes])
        attention = (ids != pad).long()
        new_tokens = max(e.agent_tokens for e in episodes)
        batch = batching.collate(episodes, pad, paradigm.device)
        generating = raw_generate(model, ids, attention, pad, new_tokens)
        generating_total = raw_generate(
            model, ids, attention, pad, max(len(e.completion_ids) for e in episodes)
        )
        started = time.perf_counter()
        logits = batching.forward(model, batch).logits
        batching.token_logprobs(logits, batch).sum().backward()
        model.zero_grad(set_to_none=True)
        updating = time.perf_counter() - started
        started = time.perf_counter()
        with torch.no_grad():
            batching.token_logprobs(batching.forward(model, batch).logits, batch)
        steps.append(RawStep(generating, generating_total, updating, time.perf_counter() - started))
    return steps


def measure(base: list[str], algorithm: str, steps: int, batch: int, group: int) -> dict:
    """One repeat: the harness's steps, then the raw equivalent on the same model and batches."""
    harness, steady, rollout, scoring, interactions, paradigm = harness_time(
        base, algorithm, steps, batch, group
    )
    per_step = raw_time(paradigm, interactions)
    generate, generate_total, forward_backward, forward = (
        sum(column) for column in zip(*per_step, strict=True)
    )
    raw = generate + forward_backward
    # the same batch generated to its whole length (a searching episode's tool reply included)
    raw_full = generate_total + forward_backward
    # the raw work between the first and the last feedback: the rollouts of steps 2..N, the updates of 1..N-1
    raw_steady = sum(s.generate_total for s in per_step[1:]) + sum(s.forward_backward for s in per_step[:-1])
    # PPO's own passes: old log-probabilities and values (one no-grad forward) and `epochs` forward+backward
    epochs = getattr(paradigm.learner.settings, "epochs", 1) if algorithm == "ppo" else 1
    raw_algorithm = generate_total + (forward if algorithm == "ppo" else 0.0) + epochs * forward_backward
    tokens = sum(e.agent_tokens for i in interactions for e in i.episodes)
    return {
        "steps": len(interactions),
        "responses": sum(len(i.episodes) for i in interactions),
        "harness_seconds": harness,
        "harness_rollout_seconds": rollout,
        "harness_scoring_seconds": scoring,
        "raw_seconds": raw,
        "raw_generate_seconds": generate,
        "raw_generate_total_length_seconds": generate_total,
        "raw_forward_backward_seconds": forward_backward,
        "raw_forward_seconds": forward,
        "overhead_ratio": harness / raw,
        # against the same batch generated to its whole length: the issue's "raw generate + one
        # forward+backward of the same batch"
        "full_length_ratio": harness / raw_full,
        "harness_steady_seconds": steady,
        "raw_steady_seconds": raw_steady,
        # the same, without what a run pays once (the trainer's construction, first-step warm-up)
        "steady_full_length_ratio": steady / raw_steady if raw_steady else float("nan"),
        # PPO: against its own algorithmic passes (= full_length_ratio for the other algorithms)
        "algorithm_ratio": harness / raw_algorithm,
        "rollout_ratio": rollout / generate,
        # the rollout without scoring, against a raw generate as long as the whole completion
        "rollout_generation_total_length_ratio": (rollout - scoring) / generate_total,
        "update_ratio": (harness - rollout) / forward_backward,
        "completion_tokens_per_second": tokens / harness,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="builtin", help="builtin, smollm2, or any backbone spec")
    parser.add_argument("--paradigm", default="adapter", choices=["adapter", "full_ft"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the runs (0: torch's own)")
    parser.add_argument("--algorithms", nargs="+", default=["grpo", "reinforce", "ppo", "sft"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4, help="queries per step")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="measurements per algorithm (median kept)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rl_overhead.json"))
    args = parser.parse_args()
    base = [f"backbone={args.backbone}", f"threads={args.threads}", f"paradigm.name={args.paradigm}"]
    rows = []
    for algorithm in args.algorithms:
        group = 1 if algorithm == "sft" else args.group
        # warm-up: first-call costs of torch/HF
        harness_time(base, algorithm, 1, args.batch, group)
        repeats = [measure(base, algorithm, args.steps, args.batch, group) for _ in range(args.repeats)]
        median = {
            key: statistics.median(r[key] for r in repeats)
            for key in repeats[0]
            if key.endswith(("_ratio", "_second", "_seconds"))
        }
        rows.append(
            {
                "algorithm": algorithm,
                "backbone": args.backbone,
                "paradigm": args.paradigm,
                "median": median,
                "repeats": repeats,
            }
        )
        print(
            f"{algorithm}: harness {median['harness_seconds']:.1f} s, raw {median['raw_seconds']:.1f} s, "
            f"ratio {median['overhead_ratio']:.2f}, full length {median['full_length_ratio']:.2f}, "
            f"steady {median['steady_full_length_ratio']:.2f}, own passes {median['algorithm_ratio']:.2f} "
            f"(rollout {median['rollout_ratio']:.2f}, "
            f"update {median['update_ratio']:.2f}), "
            f"{median['completion_tokens_per_second']:.0f} completion tokens/s",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "rows": rows,
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": {"cpu_count": os.cpu_count(), "load_average_after": os.getloadavg()[0]},
    }
    args.out.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
