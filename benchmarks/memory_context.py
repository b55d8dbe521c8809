"""Context tokens per query against interactions seen, for the memory paradigm (and the oracle).

Runs ``memory`` (several ``top_k``) and the ``oracle`` on one suite with the real builtin base
and records, at every evaluation, the context tokens each paradigm adds per query, its store
size and its personal accuracy. Nothing is logged to MLflow.

    python benchmarks/memory_context.py --events 400 --every 50 --out benchmarks/results/memory_context.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from experiments import metrics as m
from experiments.config import load_experiment
from experiments.run import execute

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.yaml"


def measure(overrides: list[str]) -> list[dict]:
    config = load_experiment(SMOKE, overrides).runs()[0]
    rows: list[dict] = []

    def record(events: int, results: dict[str, float]) -> None:
        rows.append(
            {
                "events": events,
                "context_tokens_per_query": results[m.CONTEXT_TOKENS_PER_QUERY],
                "personal_accuracy": results[m.PERSONAL_ACCURACY],
                "search_calls_per_query": results[m.SEARCH_CALLS_PER_QUERY],
                "store_entries": results.get("memory/store_entries", 0.0),
            }
        )

    execute(config, run=None, progress=False, on_eval=record)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--suite", default="default")
    parser.add_argument("--top-k", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memory_context.json"))
    args = parser.parse_args()
    common = [
        f"task.suite={args.suite}",
        f"budget.feedback_events={args.events}",
        f"evaluation.every={args.every}",
        "backbone=builtin",
    ]
    results = {}
    for top_k in args.top_k:
        started = time.perf_counter()
        results[f"memory-top{top_k}"] = measure([*common, "paradigm.name=memory", f"paradigm.top_k={top_k}"])
        print(f"memory top_k={top_k}: {time.perf_counter() - started:.0f} s", flush=True)
    results["oracle"] = measure([*common, "paradigm.name=oracle"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"suite": args.suite, "events": args.events, "runs": results}, indent=2))
    print("| run | " + " | ".join(str(r["events"]) for r in results["oracle"]) + " |")
    print("| --- |" + " ---: |" * len(results["oracle"]))
    for name, rows in results.items():
        print(f"| {name} | " + " | ".join(f"{r['context_tokens_per_query']:.1f}" for r in rows) + " |")


if __name__ == "__main__":
    main()
