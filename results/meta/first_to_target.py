"""The meta-learning table of docs/meta-learning.md, from this directory's runs.parquet alone.

Per population (``task.shared_formats``) and start (``paradigm.init``: LoRA's default or the
meta-learned one): each held-out user's first evaluation with ``eval/format_compliance`` >= 0.8
("-" if none within the run), how many users reached it, the median over users (a user who never
reached it counts as beyond the run's budget), the meta start's faster / slower / tie counts
against the default start on the same user with a two-sided sign test on the non-ties, and the
mean compliance over the run's evaluations. The median is "-" when a user who never reached 0.8 is
in its middle.

    .venv/bin/python results/meta/first_to_target.py
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd

TARGET = 0.8
RUNS = Path(__file__).resolve().parent / "runs.parquet"


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p of ``wins`` against ``losses`` (ties left out) at p = 0.5."""
    n = wins + losses
    tail = sum(math.comb(n, k) for k in range(0, min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def main() -> None:
    table = pd.read_parquet(RUNS)
    table = table[(table["status"] == "FINISHED") & (table["metric"] == "eval/format_compliance")]
    budget = int(table["param.budget.feedback_events"].astype(int).max())
    table = table.assign(
        population=table["param.task.shared_formats"].astype(float),
        meta=table["param.paradigm.init"].fillna("").astype(str).str.contains("meta"),
        user=table["seed"].astype(int),
    )
    first: dict[tuple[float, bool], dict[int, int | None]] = {}
    means: dict[tuple[float, bool], float] = {}
    for (population, meta), group in table.groupby(["population", "meta"]):
        reached = {}
        for user, curve in group.groupby("user"):
            curve = curve.sort_values("step")
            hits = curve.loc[curve["value"] >= TARGET, "step"]
            reached[user] = int(hits.iloc[0]) if len(hits) else None
        first[(population, meta)] = reached
        means[(population, meta)] = float(group.groupby("user")["value"].mean().mean())
    print(
        "| population | start | first >= 0.8, users in order | reached | median | meta faster / slower / tie "
        "| mean over the run |"
    )
    print("| --- | --- | --- | ---: | ---: | --- | ---: |")
    for population in sorted({p for p, _ in first}, reverse=True):
        plain, meta = first[(population, False)], first[(population, True)]
        users = sorted(plain)
        for is_meta, reached in ((False, plain), (True, meta)):
            cells = " ".join(str(reached[u]) if reached[u] is not None else "-" for u in users)
            ordered = sorted(reached[u] if reached[u] is not None else budget + 1 for u in users)
            middle = ordered[(len(ordered) - 1) // 2 : len(ordered) // 2 + 1]
            median = statistics.median(ordered) if max(middle) <= budget else None
            count = sum(reached[u] is not None for u in users)
            versus = ""
            if is_meta:
                far = budget + 1
                faster = sum((meta[u] or far) < (plain[u] or far) for u in users)
                slower = sum((meta[u] or far) > (plain[u] or far) for u in users)
                ties = len(users) - faster - slower
                versus = f"{faster} / {slower} / {ties} (sign test p = {sign_test(faster, slower):.3f})"
            start = "meta-learned" if is_meta else "LoRA default (B = 0)"
            shown_median = "-" if median is None else f"{median:g}"
            print(
                f"| shared {population:g} | {start} | {cells} | {count} of {len(users)} | {shown_median} "
                f"| {versus} | {means[(population, is_meta)]:.3f} |"
            )


if __name__ == "__main__":
    main()
