"""analysis.stats against hand-computed values on tiny arrays, plus bootstrap determinism and edge cases."""

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from analysis.stats import (
    ContinualLearningMetrics,
    Interval,
    area_under_curve,
    average_accuracy,
    backward_transfer,
    continual_learning_metrics,
    feedback_events_to_reach,
    final_forgetting,
    forgetting,
    forgetting_curve,
    forward_transfer,
    interquartile_mean,
    mean_score,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)

REPS = 200  # enough to exercise the bootstrap, small enough to keep every test fast

# 4 runs × 2 tasks; the flattened sorted scores are 1 2 3 4 5 6 7 100.
SCORES = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0], [4.0, 100.0]])

# GEM accuracy matrix, T = 3: R[i, j] = accuracy on phase j after training through phase i.
R = np.array(
    [
        [0.8, 0.3, 0.2],
        [0.6, 0.9, 0.4],
        [0.5, 0.7, 0.9],
    ]
)
B = np.array([0.1, 0.2, 0.3])


# --------------------------------------------------------------------------- aggregates


def test_interquartile_mean_drops_the_outer_quarters():
    # n = 8, cut int(0.25 * 8) = 2 from each end: mean(3, 4, 5, 6) = 18 / 4 = 4.5 (the 100 is ignored)
    assert interquartile_mean(SCORES) == pytest.approx(4.5)


def test_interquartile_mean_with_too_few_scores_to_trim_is_the_mean():
    # n = 3, int(0.75) = 0 cut: mean(1, 2, 6) = 3
    assert interquartile_mean(np.array([[1.0, 2.0, 6.0]])) == pytest.approx(3.0)


def test_mean_score_averages_every_run_and_task():
    # (1 + 2 + 3 + 4 + 5 + 6 + 7 + 100) / 8 = 128 / 8 = 16
    assert mean_score(SCORES) == pytest.approx(16.0)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((0, 3)), "empty"),
        (np.zeros((3, 0)), "empty"),
        (np.array([1.0, 2.0]), "2-D"),
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([[1.0, np.inf]]), "NaN or infinite"),
    ],
)
def test_bad_scores_are_rejected_with_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        interquartile_mean(bad)
    with pytest.raises(ValueError, match=message):
        stratified_bootstrap_ci(bad, seed=0, reps=REPS)
    with pytest.raises(ValueError, match=message):
        probability_of_improvement(bad, np.ones((2, 2)))


# --------------------------------------------------------------------------- stratified bootstrap


@pytest.mark.parametrize("aggregate", [interquartile_mean, mean_score])
def test_bootstrap_is_deterministic_under_a_fixed_seed(aggregate):
    scores = np.random.default_rng(1).normal(size=(6, 3))
    first = stratified_bootstrap_ci(scores, aggregate, seed=7, reps=REPS)
    second = stratified_bootstrap_ci(scores, aggregate, seed=7, reps=REPS)
    assert first == second
    from_generator = stratified_bootstrap_ci(scores, aggregate, seed=np.random.default_rng(7), reps=REPS)
    assert from_generator == first
    assert stratified_bootstrap_ci(scores, aggregate, seed=8, reps=REPS) != first


@pytest.mark.parametrize("aggregate", [interquartile_mean, mean_score])
def test_bootstrap_ci_contains_the_point_estimate(aggregate):
    scores = np.random.default_rng(2).uniform(size=(10, 4))
    interval = stratified_bootstrap_ci(scores, aggregate, seed=0, reps=REPS)
    assert isinstance(interval, Interval)
    assert interval.point == aggregate(scores)
    assert interval.lower < interval.point < interval.upper


def test_bootstrap_with_a_single_run_collapses_to_the_point():
    # one run: every resample is the data itself, so every replicate equals the point
    scores = np.array([[0.2, 0.4, 0.9]])
    point, lower, upper = stratified_bootstrap_ci(scores, seed=0, reps=REPS)
    assert lower == point == upper == pytest.approx(0.5)  # IQM of 3 scores cuts nothing: mean = 1.5 / 3


def test_bootstrap_resamples_runs_independently_within_each_task():
    # Rows are [k, k]. Resampling whole rows would keep both columns equal in every replicate;
    # stratified resampling draws each column's runs independently, so they come apart.
    scores = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])

    def fraction_of_rows_that_differ(resampled: np.ndarray) -> float:
        return float(np.mean(resampled[:, 0] != resampled[:, 1]))

    point, _, upper = stratified_bootstrap_ci(scores, fraction_of_rows_that_differ, seed=0, reps=REPS)
    assert point == 0.0
    assert upper > 0.0


def test_bootstrap_rejects_bad_reps_and_confidence():
    with pytest.raises(ValueError, match="reps"):
        stratified_bootstrap_ci(SCORES, seed=0, reps=0)
    with pytest.raises(ValueError, match="confidence"):
        stratified_bootstrap_ci(SCORES, seed=0, reps=REPS, confidence=95)


def test_narrower_confidence_gives_a_nested_interval():
    scores = np.random.default_rng(3).normal(size=(8, 2))
    wide = stratified_bootstrap_ci(scores, mean_score, seed=0, reps=REPS, confidence=0.95)
    narrow = stratified_bootstrap_ci(scores, mean_score, seed=0, reps=REPS, confidence=0.5)
    assert wide.lower <= narrow.lower <= narrow.upper <= wide.upper


# --------------------------------------------------------------------------- probability of improvement


def test_probability_of_improvement_by_hand():
    # task 0: x = {3, 1}, y = {2, 2}: pairs (3>2, 3>2, 1<2, 1<2) -> 2 wins / 4 = 0.5
    # task 1: x = {5, 5}, y = {5, 4}: pairs (5=5, 5>4, 5=5, 5>4) -> (2 + 0.5 * 2) / 4 = 0.75
    # mean over tasks: (0.5 + 0.75) / 2 = 0.625
    x = np.array([[3.0, 5.0], [1.0, 5.0]])
    y = np.array([[2.0, 5.0], [2.0, 4.0]])
    assert probability_of_improvement(x, y) == pytest.approx(0.625)
    assert probability_of_improvement(y, x) == pytest.approx(0.375)


def test_probability_of_improvement_with_all_ties_is_one_half():
    # every pair ties: 0.5 * 6 / 6 per task
    assert probability_of_improvement(np.full((2, 3), 0.7), np.full((3, 3), 0.7)) == 0.5


def test_probability_of_improvement_allows_different_run_counts():
    # one task, x = {1, 2, 3}, y = {2}: 3 > 2 wins, 2 = 2 ties, 1 < 2 -> (1 + 0.5) / 3 = 0.5
    assert probability_of_improvement(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0]])) == pytest.approx(
        0.5
    )


def test_probability_of_improvement_matches_scipy_mann_whitney_u():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 4, size=(5, 3)).astype(float)  # small integers: plenty of ties
    y = rng.integers(0, 4, size=(7, 3)).astype(float)
    expected = np.mean(
        [scipy.stats.mannwhitneyu(x[:, t], y[:, t], alternative="greater").statistic / 35 for t in range(3)]
    )
    assert probability_of_improvement(x, y) == pytest.approx(expected)


def test_probability_of_improvement_needs_the_same_tasks():
    with pytest.raises(ValueError, match="same number of tasks"):
        probability_of_improvement(np.ones((2, 2)), np.ones((2, 3)))


def test_probability_of_improvement_ci_is_deterministic_and_contains_the_point():
    rng = np.random.default_rng(5)
    x = rng.normal(0.3, 1.0, size=(8, 3))
    y = rng.normal(0.0, 1.0, size=(6, 3))
    first = probability_of_improvement_ci(x, y, seed=11, reps=REPS)
    assert first == probability_of_improvement_ci(x, y, seed=11, reps=REPS)
    assert first.point == probability_of_improvement(x, y)
    assert 0.0 <= first.lower < first.point < first.upper <= 1.0


def test_probability_of_improvement_ci_with_single_runs_collapses():
    # task 0: 2 > 1 -> 1; task 1: 1 = 1 -> 0.5; mean 0.75; one run each, so every replicate is the data
    x = np.array([[2.0, 1.0]])
    y = np.array([[1.0, 1.0]])
    assert probability_of_improvement_ci(x, y, seed=0, reps=REPS) == (0.75, 0.75, 0.75)


# --------------------------------------------------------------------------- continual learning


def test_average_accuracy_is_the_mean_of_the_last_row():
    # (0.5 + 0.7 + 0.9) / 3 = 2.1 / 3 = 0.7
    assert average_accuracy(R) == pytest.approx(0.7)


def test_backward_transfer_compares_the_last_row_with_the_diagonal():
    # j = 0: 0.5 - 0.8 = -0.3; j = 1: 0.7 - 0.9 = -0.2; mean = -0.25
    assert backward_transfer(R) == pytest.approx(-0.25)


def test_forward_transfer_compares_the_superdiagonal_with_the_untrained_model():
    # j = 1: R[0, 1] - b[1] = 0.3 - 0.2 = 0.1; j = 2: R[1, 2] - b[2] = 0.4 - 0.3 = 0.1; mean = 0.1
    assert forward_transfer(R, B) == pytest.approx(0.1)


def test_continual_learning_metrics_bundles_the_three():
    metrics = continual_learning_metrics(R, B)
    assert isinstance(metrics, ContinualLearningMetrics)
    assert metrics == pytest.approx((0.7, -0.25, 0.1))
    without_baseline = continual_learning_metrics(R)
    assert without_baseline.acc == pytest.approx(0.7)
    assert without_baseline.bwt == pytest.approx(-0.25)
    assert math.isnan(without_baseline.fwt)


def test_continual_learning_ignores_entries_the_formulas_do_not_read():
    # R[0, 2] (two phases ahead) is never read, so it may be missing
    partial = R.copy()
    partial[0, 2] = np.nan
    assert continual_learning_metrics(partial, B) == pytest.approx((0.7, -0.25, 0.1))
    partial[1, 2] = np.nan  # the superdiagonal is read by FWT
    with pytest.raises(ValueError, match="superdiagonal"):
        forward_transfer(partial, B)


def test_continual_learning_with_one_phase():
    metrics = continual_learning_metrics(np.array([[0.6]]), np.array([0.1]))
    assert metrics.acc == pytest.approx(0.6)
    assert math.isnan(metrics.bwt)
    assert math.isnan(metrics.fwt)


def test_continual_learning_rejects_bad_shapes():
    with pytest.raises(ValueError, match="square"):
        average_accuracy(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        forward_transfer(R, np.ones(2))


# --------------------------------------------------------------------------- learning curves


def test_forgetting_is_the_untouched_base_minus_the_current_accuracy_signed():
    assert forgetting(0.8, 0.5) == pytest.approx(0.3)
    assert forgetting(0.5, 0.8) == pytest.approx(-0.3)  # a gain over the base is negative
    np.testing.assert_allclose(forgetting(0.6, np.array([0.6, 0.4, 0.7])), [0.0, 0.2, -0.1])
    with pytest.raises(ValueError, match="base_accuracy"):
        forgetting(float("nan"), 0.5)


def test_forgetting_curve_does_not_depend_on_the_best_value_seen():
    # the base is 0.6: a curve that rose to 0.9 and fell back to 0.6 has forgotten nothing
    y = np.array([0.6, 0.9, 0.6, 0.5])
    np.testing.assert_allclose(forgetting_curve(y, 0.6), [0.0, -0.3, 0.0, 0.1])
    # the same final accuracy gives the same forgetting however often the run was evaluated
    assert final_forgetting(y, 0.6) == final_forgetting(y[[0, 3]], 0.6) == pytest.approx(0.1)
    assert final_forgetting(np.array([0.9]), 0.9) == 0.0


def test_area_under_curve_by_trapezoids():
    # x = 0 10 30, y = 0.2 0.4 0.4: 10 * (0.2 + 0.4) / 2 + 20 * (0.4 + 0.4) / 2 = 3 + 8 = 11
    x = np.array([0, 10, 30])
    y = np.array([0.2, 0.4, 0.4])
    assert area_under_curve(x, y) == pytest.approx(11.0)
    # normalized by the x-range 30: 11 / 30, the curve's mean accuracy
    assert area_under_curve(x, y, normalize=True) == pytest.approx(11.0 / 30.0)


def test_area_under_curve_rejects_unusable_curves():
    with pytest.raises(ValueError, match="at least 2"):
        area_under_curve(np.array([0]), np.array([0.5]))
    with pytest.raises(ValueError, match="strictly increasing"):
        area_under_curve(np.array([0, 10, 10]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="same length"):
        area_under_curve(np.array([0, 10, 20]), np.array([0.1, 0.2]))


def test_feedback_events_to_reach_the_first_evaluation_at_target():
    # y >= 0.6 first at index 2 (0.6 counts as reached), x = 20; the later dip does not matter
    x = np.array([0, 10, 20, 30])
    y = np.array([0.2, 0.4, 0.6, 0.5])
    assert feedback_events_to_reach(x, y, 0.6) == 20.0
    # interpolated between (10, 0.4) and (20, 0.6): 10 + (0.5 - 0.4) * 10 / 0.2 = 15
    assert feedback_events_to_reach(x, y, 0.5, interpolate=True) == pytest.approx(15.0)
    # without interpolation 0.5 is first reached at x = 20
    assert feedback_events_to_reach(x, y, 0.5) == 20.0


def test_feedback_events_to_reach_a_target_met_at_the_start():
    # already at target at the first evaluation: x[0], interpolated or not
    x = np.array([5, 10])
    y = np.array([0.9, 0.95])
    assert feedback_events_to_reach(x, y, 0.8) == 5.0
    assert feedback_events_to_reach(x, y, 0.8, interpolate=True) == 5.0


def test_feedback_events_to_reach_a_target_never_reached_is_nan():
    x = np.array([0, 10, 20])
    y = np.array([0.1, 0.3, 0.2])
    assert math.isnan(feedback_events_to_reach(x, y, 0.5))
    assert math.isnan(feedback_events_to_reach(x, y, 0.5, interpolate=True))


# --------------------------------------------------------------------------- properties

_small_scores = arrays(
    np.float64,
    st.tuples(st.integers(1, 5), st.integers(1, 3)),
    elements=st.floats(-10, 10, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=50, deadline=None)
@given(_small_scores, _small_scores)
def test_probability_of_improvement_is_antisymmetric(x, y):
    if x.shape[1] != y.shape[1]:
        y = np.resize(y, (y.shape[0], x.shape[1]))
    assert probability_of_improvement(x, y) + probability_of_improvement(y, x) == pytest.approx(1.0)


@settings(max_examples=50, deadline=None)
@given(_small_scores)
def test_interquartile_mean_lies_between_min_and_max(scores):
    iqm = interquartile_mean(scores)
    assert scores.min() - 1e-9 <= iqm <= scores.max() + 1e-9


def test_builtin_aggregates_give_the_same_interval_as_any_callable():
    # the bootstrap batches interquartile_mean and mean_score; a wrapper takes the one-by-one path
    scores = np.random.default_rng(6).normal(size=(5, 3))
    for aggregate in (interquartile_mean, mean_score):

        def one_by_one(resample: np.ndarray, aggregate=aggregate) -> float:
            return aggregate(resample)

        batched = stratified_bootstrap_ci(scores, aggregate, seed=3, reps=REPS)
        assert stratified_bootstrap_ci(scores, one_by_one, seed=3, reps=REPS) == pytest.approx(batched)
