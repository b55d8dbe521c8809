"""Cost of deterministic mode's NaN-fill of new tensors, on the builtin base's own training steps.

``torch.use_deterministic_algorithms(True)`` (which ``experiments.seeding.seed_everything``
turns on for reproducible runs) also sets ``torch.utils.deterministic.fill_uninitialized_memory``,
which writes NaN into every new tensor before a kernel overwrites it. On CPU that touches every
page of every allocation. ``seed_everything`` turns the fill off; this benchmark shows why.

Each setting runs in its own process (the flags are process-wide): ``--steps`` steps of the
builtin base's recipe (the same code as ``harness base build``, into a temp directory), timed
per step, with the process's minor page faults. The result is a ratio within one run.

    python benchmarks/deterministic_fill.py [--steps 200] [--out benchmarks/results/deterministic_fill.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "deterministic_fill.json"
SETTINGS = {
    "deterministic, fill on (torch's default)": (True, True),
    "deterministic, fill off (seed_everything)": (True, False),
    "not deterministic": (False, False),
}


def child(deterministic: bool, fill: bool, steps: int) -> None:
    """Train ``steps`` base-build steps under the given flags; print one JSON line."""
    import torch

    from paradigms.builtin.build import train_base
    from paradigms.builtin.recipe import BaseRecipe

    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = fill
    recipe = dataclasses.replace(BaseRecipe(), steps=steps, decay_steps=max(1, steps // 5))
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        train_base(recipe, Path(scratch) / "model", progress=False)
        seconds = time.perf_counter() - started
    faults = int(Path("/proc/self/stat").read_text().split()[9]) if Path("/proc/self/stat").exists() else None
    print(json.dumps({"seconds_per_step": seconds / steps, "minor_page_faults": faults}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", nargs=2, metavar=("DETERMINISTIC", "FILL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0] == "1", args.child[1] == "1", args.steps)
        return
    rows = []
    for name, (deterministic, fill) in SETTINGS.items():
        command = [sys.executable, __file__, "--steps", str(args.steps)]
        command += ["--child", str(int(deterministic)), str(int(fill))]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        row = {"setting": name, **json.loads(output.strip().splitlines()[-1])}
        rows.append(row)
        faults = row["minor_page_faults"]
        print(f"{name}: {row['seconds_per_step']:.3f} s/step, {faults} page faults", flush=True)
    baseline = rows[1]["seconds_per_step"]
    for row in rows:
        row["ratio_to_seed_everything"] = row["seconds_per_step"] / baseline
    document = {"steps": args.steps, "cpu_count": os.cpu_count(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
