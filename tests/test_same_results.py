"""``benchmarks/same_results.py``: the check behind "this change moved no result" compares what a run
answered and leaves out what measures the machine (``experiments.metrics.measures_the_machine``)."""

import importlib.util

import pandas as pd

from experiments import metrics as m
from tests.conftest import ROOT


def _same_results():
    spec = importlib.util.spec_from_file_location("same_results", ROOT / "benchmarks" / "same_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(values: dict[str, float], run: str = "frozen-0") -> pd.DataFrame:
    return pd.DataFrame(
        [{"run_name": run, "metric": metric, "step": 0, "value": value} for metric, value in values.items()]
    )


def test_machine_metrics_are_time_memory_and_latency_only():
    machine = [m.WALL_SECONDS, m.PEAK_RSS_BYTES, m.EVALUATION_SECONDS, "memory/retrieval_latency_p95_ms"]
    answered = [m.PERSONAL_ACCURACY, m.CONTEXT_TOKENS_PER_QUERY, m.SEARCH_CALLS_PER_QUERY, m.TRAIN_FLOPS]
    assert all(m.measures_the_machine(metric) for metric in machine)
    assert not any(m.measures_the_machine(metric) for metric in answered)


def test_a_moved_answer_metric_is_reported_and_a_slower_machine_is_not():
    committed = _table({m.PERSONAL_ACCURACY: 0.5, m.CONTEXT_TOKENS_PER_QUERY: 30.0, m.WALL_SECONDS: 10.0})
    rerun = _table({m.PERSONAL_ACCURACY: 0.5, m.CONTEXT_TOKENS_PER_QUERY: 33.0, m.WALL_SECONDS: 99.0})
    other_user = _table({m.PERSONAL_ACCURACY: 0.9}, run="frozen-1")  # not in the re-run: not compared
    result = _same_results().compare(rerun, pd.concat([committed, other_user]))
    assert (result["values_compared"], result["identical"]) == (2, 1)
    assert (result["eval_values_compared"], result["eval_identical"]) == (1, 1)
    moved = {m.CONTEXT_TOKENS_PER_QUERY: {"values": 1, "largest_relative": 0.1}}
    assert result["differing_by_metric"] == moved
