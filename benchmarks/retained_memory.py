"""What a run's logged peak memory inherits from the runs before it in the same process.

A grid runs its configs one after another in one process. Each run's ``cost/peak_rss_bytes`` starts
from the resident set it finds, and the memory an earlier run freed stays resident while the C library
keeps it in its arenas; ``experiments.peak_memory.reset_peak_rss`` hands it back first
(``release_freed_memory``). This runs two SmolLM2 runs of ``experiments/comparison_smollm2.yaml`` in one
process (seed 0, one thread, a short budget: ``full_ft`` + ``grpo``, then ``adapter`` + ``sft``) twice, in
a fresh process each time: with the release, and with it turned into a no-op (the behaviour before it).
For each run it keeps the logged peak, the resident size after the run, after Python's collector, and
after an explicit ``malloc_trim(0)`` (what the C library had kept).

    python benchmarks/retained_memory.py --out benchmarks/results/retained_memory.json

About 15 minutes on one core; the machine's other load changes the times, not the sizes.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARMS = ("full_ft:grpo", "adapter:sft")
GB = 2**30


def measure(release: bool, events: int) -> list[dict]:
    """The two runs in this process; ``release=False`` makes the release a no-op first."""
    import psutil

    from experiments import peak_memory
    from experiments.config import load_experiment
    from experiments.run import execute

    if not release:
        peak_memory.release_freed_memory = lambda: None
    overrides = ["seeds=[0]", "threads=1", f"budget.feedback_events={events}", f"evaluation.every={events}"]
    runs = load_experiment(ROOT / "experiments" / "comparison_smollm2.yaml", overrides).runs()
    process = psutil.Process()
    rows = []
    for arm in ARMS:
        paradigm, _, algorithm = arm.partition(":")
        config = next(c for c in runs if c.paradigm.name == paradigm and c.algorithm.name == algorithm)
        final = execute(config, None, progress=False)
        row = {"arm": arm, "logged_peak_gb": final["cost/peak_rss_bytes"] / GB}
        row["resident_after_gb"] = process.memory_info().rss / GB
        gc.collect()
        row["after_collector_gb"] = process.memory_info().rss / GB
        ctypes.CDLL(None).malloc_trim(0)
        row["after_malloc_trim_gb"] = process.memory_info().rss / GB
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--events", type=int, default=16, help="feedback events per run (16)")
    parser.add_argument("--child", choices=["release", "no-release"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child == "release", args.events)))
        return
    results = {"benchmark": "retained_memory", "events": args.events, "arms": list(ARMS), "modes": {}}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for mode in ("no-release", "release"):
        command = [sys.executable, __file__, "--child", mode, "--events", str(args.events)]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
        results["modes"][mode] = json.loads(done.stdout.strip().splitlines()[-1])
        for row in results["modes"][mode]:
            print(mode, {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
