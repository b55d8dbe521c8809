"""The drift matrix R: which evaluation fills which row, for every paradigm and algorithm.

A row i is the policy trained through phase i: the last evaluation after a batch drawn in
phase i (``eval/stream_phase``), which the runner forces at the end of every phase; phase j's
items are answered in phase j's world, so a policy that never changes has equal rows (BWT = FWT
= 0) and the oracle, who reads each phase's profile, answers every phase right (ACC = 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import continual
from analysis.load import load_runs
from analysis.runs import finished, run_table
from analysis.stats import continual_learning_metrics
from experiments.config import load_experiment
from experiments.run import run_experiment
from experiments.tracking import Tracker
from tasks.settings import TaskSettings
from tasks.suites import SUITES
from tests.conftest import SMOKE, TINY

PHASE = "eval/phase_accuracy/{}"


def _evaluations(points: dict[int, tuple[float | None, float, float]]) -> pd.DataFrame:
    """``{step: (stream phase or None, accuracy on phase 0, accuracy on phase 1)}`` as tidy rows."""
    rows = []
    for step, (stream, first, second) in points.items():
        rows += [(PHASE.format(0), step, first), (PHASE.format(1), step, second)]
        if stream is not None:
            rows.append(("eval/stream_phase", step, stream))
    return pd.DataFrame(rows, columns=["metric", "step", "value"])


def test_rows_are_the_phase_the_consumed_batch_was_drawn_in_not_the_step():
    # GRPO-like: a 96-event run whose batch of 32 events drawn at event 32 (phase 0) ends at 64,
    # past the schedule's phase change at 48; the evaluation at 64 closes phase 0
    matrix = continual.phase_matrix(
        _evaluations({0: (None, 0.4, 0.1), 64: (0, 0.9, 0.2), 96: (1, 0.7, 0.8)}), n_phases=2
    )
    np.testing.assert_allclose(matrix.accuracy, [[0.9, 0.2], [0.7, 0.8]])
    np.testing.assert_allclose(matrix.untrained, [0.4, 0.1])


def test_the_last_evaluation_of_a_phase_fills_its_row_and_unplaced_ones_none():
    matrix = continual.phase_matrix(
        _evaluations({0: (None, 0.1, 0.1), 16: (0, 0.3, 0.1), 32: (0, 0.5, 0.2), 40: (None, 0.0, 0.0)}),
        n_phases=2,
    )
    np.testing.assert_allclose(matrix.accuracy[0], [0.5, 0.2])
    assert np.isnan(matrix.accuracy[1]).all()  # no evaluation after a phase-1 batch


def test_a_run_logged_without_stream_phases_gets_a_note_and_no_matrix():
    table = _evaluations({0: (None, 0.4, 0.1), 48: (None, 0.4, 0.9)}).assign(run_id="r1")
    runs = pd.DataFrame({"run_id": ["r1"], "run_name": ["frozen-default-s0"], "task": ["default"]})
    matrices, notes = continual.phase_matrices(table, runs)
    assert matrices == {} and len(notes) == 1
    assert "frozen-default-s0" in notes[0] and "eval/stream_phase" in notes[0]


def _matrices(tracking_uri: str, experiment: str) -> dict[str, continual.PhaseMatrix]:
    table = load_runs([experiment], tracking_uri)
    runs = finished(run_table(table))
    matrices, notes = continual.phase_matrices(table, runs)
    assert notes == []
    return {runs.set_index("run_id").loc[run_id, "run_name"]: m for run_id, m in matrices.items()}


def test_a_frozen_policy_fills_every_row_alike(tracking_uri, tiny_base):
    """Rows filled and equal; the tiny base barely answers, so the slow test below is the one that
    tells phase j's world apart from the stream's (it fails when phase items follow the stream)."""
    run_experiment(load_experiment(SMOKE, [TINY]), Tracker(tracking_uri), progress=False)
    (matrix,) = _matrices(tracking_uri, "smoke").values()
    assert np.isfinite(matrix.accuracy).all() and np.isfinite(matrix.untrained).all()
    metrics = continual_learning_metrics(matrix.accuracy, matrix.untrained)
    assert metrics.bwt == 0.0 and metrics.fwt == 0.0  # exactly: the same answers in the same worlds
    np.testing.assert_array_equal(matrix.accuracy[0], matrix.untrained)


# 48 events in batches of 4 queries: GRPO and RLOO groups of 4 make 16-event batches, the one drawn
# at event 16 is still phase 0 and ends at 32, past the phase change at 24
GRID = [
    ["paradigm.name=memory"],
    ["paradigm.name=full_ft", "algorithm.name=grpo", "algorithm.group_size=4"],
    ["paradigm.name=adapter", "algorithm.name=reinforce", "algorithm.group_size=4"],
    ["paradigm.name=full_ft", "algorithm.name=ppo"],
    ["paradigm.name=adapter", "algorithm.name=sft"],
]


@pytest.mark.parametrize("overrides", GRID, ids=lambda o: "-".join(v.split("=")[1] for v in o[:2]))
def test_every_algorithm_fills_every_row_with_the_evaluation_that_ends_each_phase(
    overrides, tracking_uri, tiny_base
):
    # evaluations every 20 events: the schedule misses the phase change at 24, the runner does not
    settings = [TINY, "budget.feedback_events=48", "evaluation.every=20", "evaluation.general_items=4"]
    run_experiment(load_experiment(SMOKE, settings + overrides), Tracker(tracking_uri), progress=False)
    table = load_runs(["smoke"], tracking_uri)
    (matrix,) = _matrices(tracking_uri, "smoke").values()
    assert np.isfinite(matrix.accuracy).all(), matrix.accuracy
    stream = table[table["metric"] == "eval/stream_phase"].set_index("step")["value"]
    ends = sorted(table.loc[table["metric"] == "train/reward", "step"].astype(int))
    starts = [0, *ends[:-1]]  # a batch is drawn at the events consumed before it
    # the evaluation closing phase 0 follows the last batch drawn before the stream switched at 24
    end_of_phase_0 = max(end for start, end in zip(starts, ends, strict=True) if start < 24)
    assert stream[stream == 0].index.max() == end_of_phase_0
    assert stream[stream.index.max()] == 1


@pytest.mark.slow
def test_on_the_real_base_the_oracle_answers_every_phase_and_frozen_transfers_nothing(
    tracking_uri, real_base
):
    settings = ["budget.feedback_events=48", "evaluation.every=24", "evaluation.general_items=4"]
    for paradigm in ("frozen", "oracle"):
        experiment = load_experiment(SMOKE, [*settings, f"paradigm.name={paradigm}"])
        run_experiment(experiment, Tracker(tracking_uri), progress=False)
    matrices = _matrices(tracking_uri, "smoke")
    oracle = continual_learning_metrics(matrices["oracle-default-s0"].accuracy, None)
    assert oracle.acc == 1.0 and oracle.bwt == 0.0
    frozen = matrices["frozen-default-s0"]
    metrics = continual_learning_metrics(frozen.accuracy, frozen.untrained)
    assert metrics.bwt == 0.0 and metrics.fwt == 0.0


DRIFT_SUITES = [name for name in SUITES.names() if SUITES[name].n_phases > 1 and not SUITES[name].reads_file]


@pytest.mark.parametrize("suite", DRIFT_SUITES)
def test_the_matrix_scores_only_values_that_still_hold_and_the_changed_ones_apart(suite):
    options = TaskSettings()
    for seed in range(5):
        user = SUITES[suite].user(seed, options)
        last = len(user.changed_in) - 1
        phases = SUITES[suite].phase_eval(user, options)
        for phase, items in enumerate(phases):
            assert items, f"seed {seed}: phase {phase} has nothing left to score"
            for item in items:  # its truth never changes after the phase that set it
                kept = SUITES[suite].resolve(_row_of(item), user, last, options.world)
                assert (kept.gold, kept.wanted_format, kept.phase) == (item.gold, item.wanted_format, phase)
        assert SUITES[suite].updated_eval(user, options, 0) == []
        for phase in range(1, last + 1):
            updated = SUITES[suite].updated_eval(user, options, phase)
            assert updated and all(0 < item.phase <= phase for item in updated)  # the value set since
            changed = {name for p in range(1, phase + 1) for name in user.changed_in[p]}
            assert {_owner(item) for item in updated} == changed


def _row_of(item) -> dict:
    return {
        "question": item.query.question,
        "item": item.item,
        "search_enabled": item.query.search_enabled,
        "instruction": item.query.instruction,
    }


def _owner(item) -> str:
    return item.item if item.item.startswith("fact:") else f"format:{item.item.split(':')[2]}"


@pytest.mark.parametrize("suite", DRIFT_SUITES)
def test_the_oracles_backward_transfer_is_zero_on_every_drift_suite(suite, tracking_uri, tiny_base):
    settings = [TINY, f"task.suite={suite}", "paradigm.name=oracle", "budget.feedback_events=48"]
    run_experiment(load_experiment(SMOKE, settings), Tracker(tracking_uri), progress=False)
    (matrix,) = _matrices(tracking_uri, "smoke").values()
    assert continual_learning_metrics(matrix.accuracy).bwt == 0.0
    table = load_runs(["smoke"], tracking_uri)
    updating = table[table["metric"] == "eval/updating_accuracy"]
    stream = table[table["metric"] == "eval/stream_phase"].set_index("step")["value"]
    # logged at every evaluation after a batch drawn past the first change, and only there
    assert sorted(updating["step"].astype(int)) == sorted(int(s) for s, p in stream.items() if p >= 1)
