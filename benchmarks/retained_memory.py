"""What a run's logged peak memory inherits from the runs before it in the same process.

A grid runs its configs one after another in one process. Each run's ``cost/peak_rss_bytes`` starts
from the resident set it finds: memory an earlier run freed stays resident while the C library keeps it
in its arenas, and objects an earlier run left in reference cycles stay until Python's collector frees
them. ``experiments.peak_memory.reset_peak_rss`` hands the freed memory back first
(``release_freed_memory``). This runs SmolLM2 runs of ``experiments/comparison_smollm2.yaml`` (seed 0, one
thread, a short budget), each mode in a fresh process:

- ``retained``: a ``full_ft`` + ``grpo`` run, then the resident size, after Python's collector and after
  an explicit ``malloc_trim(0)``: what the process kept of it, and who kept it;
- ``alone``: an ``adapter`` + ``sft`` run on its own (its own need);
- ``no-release``, ``release``, ``collect``: the ``full_ft`` + ``grpo`` run, then the ``adapter`` + ``sft``
  run, nothing in between, with the release made a no-op (the behaviour before it), as it is, and with a
  full ``gc.collect()`` before it (timed).

    python benchmarks/retained_memory.py --out benchmarks/results/retained_memory.json

About an hour here (measured with the other core busy); the machine's load changes the times, not the sizes.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST, SECOND = "full_ft:grpo", "adapter:sft"
MODES = ("retained", "alone", "no-release", "release", "collect")
GB = 2**30


def measure(mode: str, events: int) -> list[dict]:
    """The mode's runs in this process (see the module's docstring)."""
    import psutil

    from experiments import peak_memory
    from experiments.config import load_experiment
    from experiments.run import execute

    trim = peak_memory.release_freed_memory
    collected: list[float] = []
    if mode == "no-release":
        peak_memory.release_freed_memory = lambda: None
    elif mode == "collect":

        def collect_then_trim():
            started = time.perf_counter()
            gc.collect()
            collected.append(time.perf_counter() - started)
            trim()

        peak_memory.release_freed_memory = collect_then_trim
    overrides = ["seeds=[0]", "threads=1", f"budget.feedback_events={events}", f"evaluation.every={events}"]
    runs = load_experiment(ROOT / "experiments" / "comparison_smollm2.yaml", overrides).runs()
    process = psutil.Process()
    rows = []
    arms = {"retained": [FIRST], "alone": [SECOND]}.get(mode, [FIRST, SECOND])
    for arm in arms:
        paradigm, _, algorithm = arm.partition(":")
        config = next(c for c in runs if c.paradigm.name == paradigm and c.algorithm.name == algorithm)
        final = execute(config, None, progress=False)
        row = {"arm": arm, "logged_peak_gb": final["cost/peak_rss_bytes"] / GB}
        row["resident_after_gb"] = process.memory_info().rss / GB
        if collected:
            row["collect_seconds_before"] = collected[-1]
        rows.append(row)
    if mode == "retained":
        gc.collect()
        rows[-1]["after_collector_gb"] = process.memory_info().rss / GB
        ctypes.CDLL(None).malloc_trim(0)
        rows[-1]["after_malloc_trim_gb"] = process.memory_info().rss / GB
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--events", type=int, default=16, help="feedback events per run (16)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.events)))
        return
    results = {"benchmark": "retained_memory", "events": args.events, "arms": [FIRST, SECOND], "modes": {}}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for mode in MODES:
        command = [sys.executable, __file__, "--child", mode, "--events", str(args.events)]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
        results["modes"][mode] = json.loads(done.stdout.strip().splitlines()[-1])
        for row in results["modes"][mode]:
            print(mode, {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
