"""The harness's overhead per RL step, as a ratio to raw ``generate`` + forward/backward, per algorithm.

For each algorithm, one process measures both, on the same model and the same batches:

- **harness**: ``paradigm.train(session)`` for a few steps: rollout through the search-tool loop,
  reward scoring, the algorithm's update (GRPO: inside TRL's trainer), feedback bookkeeping.
  No evaluation and no MLflow (the runner's callback is replaced by a no-op).
- **raw**: for the same prompts, one plain ``generate`` call per step with as many new tokens
  as the longest completion the harness produced in that step, plus one forward and backward
  pass over the harness's own sequences.

The ratio harness / raw is the overhead (1.0 = none). Also reported: completion tokens (the
agent's own) per second of harness time. Timings are noisy on a shared machine; the ratio is
taken within one run, interleaving nothing else, after one untimed warm-up step per algorithm.

    python benchmarks/rl_overhead.py --paradigm adapter --steps 6 --out benchmarks/results/rl_overhead.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from experiments.config import load_experiment
from experiments.run import assemble
from paradigms.rl import batching
from paradigms.session import FeedbackReport

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.yaml"


def harness_time(paradigm_name: str, algorithm: str, steps: int, batch: int, group: int):
    """Seconds for ``steps`` harness steps, and the interactions they produced."""
    events = steps * batch * group
    config = load_experiment(
        SMOKE,
        [
            "backbone=builtin",
            f"paradigm.name={paradigm_name}",
            f"algorithm.name={algorithm}",
            f"algorithm.group_size={group}",
            f"task.batch_size={batch}",
            f"budget.feedback_events={events}",
            "task.suite=default",
        ],
    ).runs()[0]
    parts = assemble(config, progress=False)
    interactions = []

    def keep(report: FeedbackReport) -> None:
        interactions.append(report.interaction)

    parts.session.on_feedback = keep
    started = time.perf_counter()
    parts.paradigm.train(parts.session)
    return time.perf_counter() - started, interactions, parts.paradigm


def raw_time(paradigm, interactions) -> float:
    """Seconds of plain generate + forward/backward over the same batches."""
    model, tokenizer = paradigm.model, paradigm.tokenizer
    pad = tokenizer.pad_token_id
    total = 0.0
    for interaction in interactions:
        episodes = interaction.episodes
        width = max(len(e.prompt_ids) for e in episodes)
        ids = torch.tensor([[pad] * (width - len(e.prompt_ids)) + e.prompt_ids for e in episodes])
        attention = (ids != pad).long()
        new_tokens = max(e.agent_tokens for e in episodes)
        batch = batching.collate(episodes, pad, paradigm.device)
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
        logits = batching.forward(model, batch).logits
        batching.token_logprobs(logits, batch).sum().backward()
        model.zero_grad(set_to_none=True)
        total += time.perf_counter() - started
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paradigm", default="adapter", choices=["adapter", "full_ft"])
    parser.add_argument("--algorithms", nargs="+", default=["grpo", "reinforce", "ppo", "sft"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4, help="queries per step")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rl_overhead.json"))
    args = parser.parse_args()
    rows = []
    for algorithm in args.algorithms:
        group = 1 if algorithm == "sft" else args.group
        harness_time(args.paradigm, algorithm, 1, args.batch, group)  # warm-up: first-call costs of torch/HF
        harness, interactions, paradigm = harness_time(
            args.paradigm, algorithm, args.steps, args.batch, group
        )
        raw = raw_time(paradigm, interactions)
        tokens = sum(e.agent_tokens for i in interactions for e in i.episodes)
        rows.append(
            {
                "algorithm": algorithm,
                "paradigm": args.paradigm,
                "steps": len(interactions),
                "responses": sum(len(i.episodes) for i in interactions),
                "harness_seconds": harness,
                "raw_seconds": raw,
                "overhead_ratio": harness / raw,
                "completion_tokens_per_second": tokens / harness,
            }
        )
        print(
            f"{algorithm}: harness {harness:.1f} s, raw {raw:.1f} s, ratio {harness / raw:.2f}, "
            f"{tokens / harness:.0f} completion tokens/s",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2)
    )


if __name__ == "__main__":
    main()
