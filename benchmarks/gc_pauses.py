"""How long the garbage collector's full collections take in a grid's process and in its evaluation copies.

Runs ``harness run`` of an experiment file in this process (the arguments after ``--`` are the command's,
``--tracking-uri`` included) with a ``gc`` callback installed, which every forked evaluation copy inherits,
and records each full (generation-2) collection: the process that made it (the run, or a copy), when, how
long it took and what it freed. A full collection walks every object of the process, so in a process that
has loaded the ML stack and MLflow and made several runs it is ~0.3-0.5 s, more than a builtin GRPO step or
evaluation; ``experiments.run.run_of_several`` makes one before each run and freezes the rest, and a copy
freezes what it inherits (``experiments.background_evaluation``).

    python benchmarks/gc_pauses.py --out benchmarks/results/gc_pauses_comparison_s0.json -- \\
        experiments/comparison.yaml --set 'seeds=[0]' --set threads=1 --tracking-uri sqlite:////tmp/gc.db
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from experiments.cli import app as harness


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="write the collections here (JSON)")
    parser.add_argument("run", nargs=argparse.REMAINDER, help="-- then `harness run`'s arguments")
    args = parser.parse_args()
    command = [a for a in args.run if a != "--"]
    if not command:
        parser.error("give `harness run`'s arguments after --")
    run_pid = os.getpid()
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "collections.jsonl"
        started: dict[str, float] = {}

        def timed(phase: str, info: dict) -> None:
            if phase == "start":
                started["at"] = time.perf_counter()
            elif info["generation"] == 2:
                seconds = time.perf_counter() - started.get("at", time.perf_counter())
                row = {
                    "pid": os.getpid(),
                    "at": time.time(),
                    "seconds": seconds,
                    "freed": info["collected"],
                    "frozen": gc.get_freeze_count(),  # objects it skipped (inside a run: what came before)
                }
                with log.open("a") as out:  # one short line each: appends from several processes stay whole
                    out.write(json.dumps(row) + "\n")

        gc.callbacks.append(timed)
        began = time.time()
        try:
            harness(["run", *command], standalone_mode=False)
        finally:
            gc.callbacks.remove(timed)
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for row in rows:
        row["process"] = "run" if row.pop("pid") == run_pid else "copy"
        row["at"] = row["at"] - began
    summary = {}
    for process in ("run", "copy"):
        for walked in ("everything", "skipping frozen"):
            seconds = [
                r["seconds"]
                for r in rows
                if r["process"] == process and (r["frozen"] > 0) == (walked == "skipping frozen")
            ]
            summary[f"{process}, {walked}"] = figures = {
                "full_collections": len(seconds),
                "seconds_total": sum(seconds),
                "seconds_median": statistics.median(seconds) if seconds else 0.0,
                "seconds_max": max(seconds, default=0.0),
            }
            print(
                f"{process:4s} {walked:15s} full collections {len(seconds):3d}  total "
                f"{figures['seconds_total']:6.2f} s  max {figures['seconds_max']:.2f} s"
            )
    result = {
        "benchmark": "gc_pauses",
        "command": ["harness", "run", *command],
        "summary": summary,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
