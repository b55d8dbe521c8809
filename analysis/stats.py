"""Statistics for comparing paradigms: pure numpy/scipy functions, no I/O, no state.

Aggregates and intervals follow rliable (Agarwal et al., 2021, "Deep RL at the edge of the
statistical precipice"): the interquartile mean over all run×task scores, stratified bootstrap
percentile intervals that resample runs within each task, and the probability of improvement.
Continual-learning metrics follow GEM (Lopez-Paz & Ranzato, 2017). Learning-curve summaries
(forgetting, area under the curve, feedback events to reach a target) read one run's evaluation
curve, with x = feedback events consumed and y = accuracy.

Shapes in docstrings: ``scores: (runs, tasks)`` means one row per run (seed) and one column per
task; "task" is whatever the analysis stratifies over (a task suite, a user, a phase). Every
bootstrap takes ``seed``: an int, or a ``np.random.Generator`` that is drawn from (and so
advanced). The same int always gives the same interval.

Bad input (wrong shape, empty, NaN or infinite scores) raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import scipy.integrate
import scipy.stats

__all__ = [
    "ContinualLearningMetrics",
    "Interval",
    "area_under_curve",
    "average_accuracy",
    "backward_transfer",
    "continual_learning_metrics",
    "feedback_events_to_reach",
    "final_forgetting",
    "forgetting",
    "forgetting_curve",
    "forward_transfer",
    "interquartile_mean",
    "mean_score",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "stratified_bootstrap_ci",
]

DEFAULT_BOOTSTRAP_REPS = 2000
DEFAULT_CONFIDENCE = 0.95

Seed = int | np.random.Generator
Aggregate = Callable[[np.ndarray], float]


class Interval(NamedTuple):
    """A point estimate with its confidence interval; unpacks as ``point, lower, upper``."""

    point: float
    lower: float
    upper: float


class ContinualLearningMetrics(NamedTuple):
    """GEM's three numbers for one run; see :func:`continual_learning_metrics`."""

    acc: float
    bwt: float
    fwt: float


# --------------------------------------------------------------------------- validation


def _as_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """Return ``scores`` as a float array of shape (runs, tasks), or raise ValueError."""
    array = np.asarray(scores, dtype=float)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (runs, tasks), got shape {array.shape}; "
            f"for a single task use {name}[:, None]"
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); it needs at least one run and one task")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; drop or impute missing runs first")
    return array


def _as_curve(values: np.ndarray, name: str, min_points: int = 1) -> np.ndarray:
    """Return ``values`` as a finite 1-D float array of at least ``min_points`` points."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (evaluations,), got shape {array.shape}")
    if array.size < min_points:
        raise ValueError(f"{name} needs at least {min_points} evaluation(s), got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _as_learning_curve(
    feedback_events: np.ndarray, accuracy: np.ndarray, min_points: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    x = _as_curve(feedback_events, "feedback_events", min_points)
    y = _as_curve(accuracy, "accuracy", min_points)
    if x.shape != y.shape:
        raise ValueError(f"feedback_events and accuracy must have the same length, got {x.size} and {y.size}")
    if np.any(np.diff(x) <= 0):
        raise ValueError("feedback_events must be strictly increasing (one evaluation per step)")
    return x, y


def _check_bootstrap_args(reps: int, confidence: float) -> None:
    if int(reps) != reps or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")


def _percentile_interval(point: float, replicates: np.ndarray, confidence: float) -> Interval:
    """Percentile bootstrap interval: the (1-c)/2 and (1+c)/2 quantiles of the replicates."""
    tail = 100.0 * (1.0 - confidence) / 2.0
    lower, upper = np.percentile(replicates, [tail, 100.0 - tail])
    return Interval(float(point), float(lower), float(upper))


def _stratified_resample(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One stratified resample of ``scores: (runs, tasks)``: runs drawn with replacement per task."""
    runs, tasks = scores.shape
    run_index = rng.integers(0, runs, size=(runs, tasks))  # (runs, tasks), independent per column
    return scores[run_index, np.arange(tasks)]  # (runs, tasks)


# Resamples are drawn in blocks of at most this many scores, to bound memory on large arrays.
_RESAMPLE_BLOCK_SCORES = 1 << 20


def _stratified_resample_blocks(
    scores: np.ndarray, reps: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Yield ``reps`` stratified resamples of ``scores: (runs, tasks)`` as blocks (block, runs, tasks).

    The draws depend only on the rng state, ``reps`` and the shape, so a seed fixes every block.
    """
    runs, tasks = scores.shape
    block = max(1, _RESAMPLE_BLOCK_SCORES // scores.size)
    for start in range(0, reps, block):
        size = min(block, reps - start)
        run_index = rng.integers(0, runs, size=(size, runs, tasks))  # (block, runs, tasks)
        yield scores[run_index, np.arange(tasks)]  # (block, runs, tasks)


# --------------------------------------------------------------------------- aggregates


def interquartile_mean(scores: np.ndarray) -> float:
    """Interquartile mean (IQM) of all run×task scores, as in rliable.

    Args:
        scores: (runs, tasks) array of finite scores.

    Returns:
        The mean of the middle 50% of the flattened scores:
        ``scipy.stats.trim_mean(scores.ravel(), 0.25)``, which cuts ``int(0.25 * n)`` values from
        each end of the sorted ``n`` scores. Robust to outlier runs, less noisy than the median.
    """
    array = _as_scores(scores)
    return float(scipy.stats.trim_mean(array.ravel(), proportiontocut=0.25))


def mean_score(scores: np.ndarray) -> float:
    """Plain mean of all run×task scores.

    Args:
        scores: (runs, tasks) array of finite scores.

    Returns:
        ``scores.mean()`` over both axes (every task weighs the same when runs per task are equal).
    """
    return float(_as_scores(scores).mean())


def stratified_bootstrap_ci(
    scores: np.ndarray,
    aggregate: Aggregate = interquartile_mean,
    *,
    seed: Seed,
    reps: int = DEFAULT_BOOTSTRAP_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """Stratified bootstrap percentile interval of an aggregate across runs.

    Each of the ``reps`` replicates draws, independently for every task (column), ``runs`` rows
    with replacement from that column, and applies ``aggregate`` to the resampled (runs, tasks)
    array. The interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles
    of the replicates (rliable's default).

    Args:
        scores: (runs, tasks) array of finite scores; at least one run and one task.
        aggregate: maps a (runs, tasks) array to a float, e.g. :func:`interquartile_mean` (the
            default) or :func:`mean_score`.
        seed: int or ``np.random.Generator``; the same int gives the identical interval.
        reps: number of bootstrap replicates.
        confidence: coverage of the interval, in (0, 1).

    Returns:
        ``Interval(point, lower, upper)`` where ``point = aggregate(scores)``. With one run every
        replicate equals the data, so ``lower == point == upper``. A percentile interval is not
        forced to contain the point; on skewed data with few runs it may (rarely) not.
    """
    array = _as_scores(scores)
    _check_bootstrap_args(reps, confidence)
    rng = np.random.default_rng(seed)
    batched = _BATCHED_AGGREGATES.get(aggregate)
    blocks = []
    for resamples in _stratified_resample_blocks(array, int(reps), rng):  # (block, runs, tasks)
        if batched is not None:
            blocks.append(batched(resamples))  # (block,)
        else:
            blocks.append(np.array([aggregate(resample) for resample in resamples]))  # (block,)
    replicates = np.concatenate(blocks)  # (reps,)
    return _percentile_interval(aggregate(array), replicates, confidence)


def _interquartile_mean_batched(resamples: np.ndarray) -> np.ndarray:
    """IQM of each resample: (block, runs, tasks) -> (block,), the same trim_mean row by row."""
    return scipy.stats.trim_mean(resamples.reshape(resamples.shape[0], -1), proportiontocut=0.25, axis=1)


def _mean_score_batched(resamples: np.ndarray) -> np.ndarray:
    """Mean of each resample: (block, runs, tasks) -> (block,)."""
    return resamples.mean(axis=(1, 2))


# One scipy trim_mean call costs about half a millisecond whatever its size, so calling it once per
# replicate would make every IQM interval take a second; the built-in aggregates run per block instead.
_BATCHED_AGGREGATES: dict[Callable[[np.ndarray], float], Callable[[np.ndarray], np.ndarray]] = {
    interquartile_mean: _interquartile_mean_batched,
    mean_score: _mean_score_batched,
}


# --------------------------------------------------------------------------- comparisons


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y): probability that a run of X beats a run of Y on a random task, as in rliable.

    For each task, the Mann-Whitney statistic over all run pairs, with ties counting 1/2:
    ``P_t = (#{(i, j): x[i, t] > y[j, t]} + 0.5 * #{(i, j): x[i, t] == y[j, t]}) / (runs_x * runs_y)``,
    then averaged with equal weight over tasks. ``P(X > Y) + P(Y > X) == 1``; 0.5 means no
    difference.

    Args:
        scores_x: (runs_x, tasks) finite scores of group X.
        scores_y: (runs_y, tasks) finite scores of group Y, same tasks in the same column order;
            the number of runs may differ.

    Returns:
        A float in [0, 1].
    """
    x = _as_scores(scores_x, "scores_x")
    y = _as_scores(scores_y, "scores_y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"scores_x and scores_y must have the same number of tasks (columns), "
            f"got {x.shape[1]} and {y.shape[1]}"
        )
    return _probability_of_improvement(x, y)


def _probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) of validated ``x: (runs_x, tasks)`` and ``y: (runs_y, tasks)``."""
    pair_x = x[:, None, :]  # (runs_x, 1, tasks)
    pair_y = y[None, :, :]  # (1, runs_y, tasks)
    wins = np.sum(pair_x > pair_y, axis=(0, 1))  # (tasks,)
    ties = np.sum(pair_x == pair_y, axis=(0, 1))  # (tasks,)
    per_task = (wins + 0.5 * ties) / (x.shape[0] * y.shape[0])  # (tasks,)
    return float(per_task.mean())


def probability_of_improvement_ci(
    scores_x: np.ndarray,
    scores_y: np.ndarray,
    *,
    seed: Seed,
    reps: int = DEFAULT_BOOTSTRAP_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """:func:`probability_of_improvement` with a stratified bootstrap percentile interval.

    Each replicate resamples the runs of X and of Y independently of each other, and within each
    task (rliable's ``StratifiedIndependentBootstrap``), then recomputes P(X > Y).

    Args:
        scores_x: (runs_x, tasks) finite scores of group X.
        scores_y: (runs_y, tasks) finite scores of group Y.
        seed: int or ``np.random.Generator``; the same int gives the identical interval.
        reps: number of bootstrap replicates.
        confidence: coverage of the interval, in (0, 1).

    Returns:
        ``Interval(point, lower, upper)`` of P(X > Y). With one run in each group the interval
        collapses to the point.
    """
    point = probability_of_improvement(scores_x, scores_y)  # validates both arrays
    _check_bootstrap_args(reps, confidence)
    x = np.asarray(scores_x, dtype=float)
    y = np.asarray(scores_y, dtype=float)
    rng = np.random.default_rng(seed)
    replicates = np.array(
        [
            _probability_of_improvement(_stratified_resample(x, rng), _stratified_resample(y, rng))
            for _ in range(int(reps))
        ]
    )  # (reps,)
    return _percentile_interval(point, replicates, confidence)


# --------------------------------------------------------------------------- continual learning


def _as_phase_matrix(phase_accuracy: np.ndarray) -> np.ndarray:
    matrix = np.asarray(phase_accuracy, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(
            f"phase_accuracy must be a non-empty square (phases, phases) matrix R[i, j], got shape "
            f"{matrix.shape}"
        )
    return matrix


def _require_finite(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contains NaN or infinite values; evaluate every phase at that point")


def average_accuracy(phase_accuracy: np.ndarray) -> float:
    """GEM's ACC: mean accuracy over all phases after training through the last phase.

    ``ACC = (1/T) * sum_j R[T-1, j]``.

    Args:
        phase_accuracy: (T, T) matrix, ``R[i, j]`` = accuracy on phase j's items after training
            through phase i. Only the last row is read (it must be finite).

    Returns:
        ACC, in the units of R (higher is better).
    """
    matrix = _as_phase_matrix(phase_accuracy)
    last_row = matrix[-1]  # (T,)
    _require_finite(last_row, "phase_accuracy[T-1, :]")
    return float(last_row.mean())


def backward_transfer(phase_accuracy: np.ndarray) -> float:
    """GEM's BWT: how training on later phases changed accuracy on earlier ones.

    ``BWT = (1/(T-1)) * sum_{j < T-1} (R[T-1, j] - R[j, j])``. Negative means forgetting.

    Args:
        phase_accuracy: (T, T) matrix, ``R[i, j]`` = accuracy on phase j's items after training
            through phase i. Only the last row and the diagonal are read (they must be finite).

    Returns:
        BWT (higher is better); NaN when T == 1 (there is no earlier phase).
    """
    matrix = _as_phase_matrix(phase_accuracy)
    phases = matrix.shape[0]
    if phases == 1:
        return float("nan")
    final = matrix[-1, :-1]  # (T-1,)
    just_learned = np.diag(matrix)[:-1]  # (T-1,)
    _require_finite(final, "phase_accuracy[T-1, :]")
    _require_finite(just_learned, "the diagonal of phase_accuracy")
    return float(np.mean(final - just_learned))


def forward_transfer(phase_accuracy: np.ndarray, untrained_accuracy: np.ndarray) -> float:
    """GEM's FWT: how training on earlier phases helps a phase before it is trained on.

    ``FWT = (1/(T-1)) * sum_{j > 0} (R[j-1, j] - b[j])``, with ``b[j]`` the untrained model's
    accuracy on phase j.

    Args:
        phase_accuracy: (T, T) matrix, ``R[i, j]`` = accuracy on phase j's items after training
            through phase i. Only the superdiagonal ``R[j-1, j]`` is read (it must be finite).
        untrained_accuracy: (T,) vector ``b``; ``b[0]`` is not used.

    Returns:
        FWT (higher is better); NaN when T == 1 (there is no later phase).
    """
    matrix = _as_phase_matrix(phase_accuracy)
    phases = matrix.shape[0]
    baseline = np.asarray(untrained_accuracy, dtype=float)
    if baseline.shape != (phases,):
        raise ValueError(
            f"untrained_accuracy must have shape ({phases},) to match phase_accuracy, got {baseline.shape}"
        )
    if phases == 1:
        return float("nan")
    before_training = np.diag(matrix, k=1)  # (T-1,): R[j-1, j] for j = 1..T-1
    _require_finite(before_training, "the superdiagonal of phase_accuracy")
    _require_finite(baseline[1:], "untrained_accuracy[1:]")
    return float(np.mean(before_training - baseline[1:]))


def continual_learning_metrics(
    phase_accuracy: np.ndarray, untrained_accuracy: np.ndarray | None = None
) -> ContinualLearningMetrics:
    """ACC, BWT and FWT of one run (Lopez-Paz & Ranzato 2017, GEM).

    With T phases and ``R[i, j]`` the accuracy on phase j's items after training through phase i:

    - ``ACC = (1/T) * sum_j R[T-1, j]`` (:func:`average_accuracy`);
    - ``BWT = (1/(T-1)) * sum_{j < T-1} (R[T-1, j] - R[j, j])`` (:func:`backward_transfer`);
    - ``FWT = (1/(T-1)) * sum_{j > 0} (R[j-1, j] - b[j])`` (:func:`forward_transfer`).

    Args:
        phase_accuracy: (T, T) matrix R. Entries the formulas do not read may be NaN (e.g.
            phases not evaluated at that point).
        untrained_accuracy: optional (T,) vector b of the untrained model's accuracy per phase.

    Returns:
        ``ContinualLearningMetrics(acc, bwt, fwt)``; ``fwt`` is NaN without ``untrained_accuracy``,
        ``bwt`` and ``fwt`` are NaN when T == 1.
    """
    fwt = float("nan") if untrained_accuracy is None else forward_transfer(phase_accuracy, untrained_accuracy)
    return ContinualLearningMetrics(
        acc=average_accuracy(phase_accuracy), bwt=backward_transfer(phase_accuracy), fwt=fwt
    )


# --------------------------------------------------------------------------- learning curves


def forgetting(base_accuracy: float, accuracy: float | np.ndarray) -> float | np.ndarray:
    """Forgetting: the untouched base's general-probe accuracy minus the current one.

    The one definition the evaluator logs (``eval/forgetting``) and the analysis recomputes: the drop
    from the model before any learning (Biderman et al. 2024, "LoRA Learns Less and Forgets Less"),
    not from the best value seen during a run, so it does not depend on how often a run is evaluated.

    Args:
        base_accuracy: the untouched base's accuracy on the general probe (a scalar).
        accuracy: the current accuracy on the same probe, a scalar or ``(evaluations,)``.

    Returns:
        ``base_accuracy - accuracy``, signed (a gain over the base is negative; lower is better),
        of ``accuracy``'s shape (a float for a scalar).
    """
    base = float(base_accuracy)
    if not np.isfinite(base):
        raise ValueError(f"base_accuracy must be finite, got {base_accuracy!r}")
    if np.ndim(accuracy) == 0:
        current = float(accuracy)
        if not np.isfinite(current):
            raise ValueError(f"accuracy must be finite, got {accuracy!r}")
        return base - current
    return base - _as_curve(accuracy, "accuracy")  # (evaluations,)


def forgetting_curve(general_accuracy: np.ndarray, base_accuracy: float) -> np.ndarray:
    """Forgetting at each evaluation (:func:`forgetting` of every point of a run's curve).

    Args:
        general_accuracy: (evaluations,) accuracy on the general probe, in evaluation order.
        base_accuracy: the untouched base's accuracy on the same probe.

    Returns:
        (evaluations,) array ``base_accuracy - y[k]`` (signed; lower is better).
    """
    return forgetting(base_accuracy, _as_curve(general_accuracy, "general_accuracy"))


def final_forgetting(general_accuracy: np.ndarray, base_accuracy: float) -> float:
    """Forgetting at the end of a run: the untouched base's accuracy minus the final accuracy.

    Args:
        general_accuracy: (evaluations,) accuracy on the general probe, in evaluation order.
        base_accuracy: the untouched base's accuracy on the same probe.

    Returns:
        ``base_accuracy - y[-1]`` (signed; lower is better), the last entry of :func:`forgetting_curve`.
    """
    return float(forgetting_curve(general_accuracy, base_accuracy)[-1])


def area_under_curve(feedback_events: np.ndarray, accuracy: np.ndarray, *, normalize: bool = False) -> float:
    """Area under a learning curve by the trapezoidal rule.

    Args:
        feedback_events: (evaluations,) strictly increasing x, feedback events consumed.
        accuracy: (evaluations,) y, accuracy at each evaluation; at least two evaluations.
        normalize: divide by ``x[-1] - x[0]`` so the result is the curve's mean accuracy over the
            run, in the units of ``accuracy`` (comparable across runs of different lengths).

    Returns:
        ``sum_k (x[k+1] - x[k]) * (y[k] + y[k+1]) / 2``, in accuracy × feedback events, or in
        accuracy units when ``normalize``.
    """
    x, y = _as_learning_curve(feedback_events, accuracy, min_points=2)
    area = float(scipy.integrate.trapezoid(y, x))
    return area / float(x[-1] - x[0]) if normalize else area


def feedback_events_to_reach(
    feedback_events: np.ndarray, accuracy: np.ndarray, target: float, *, interpolate: bool = False
) -> float:
    """Feedback events a run needed to first reach a target accuracy (sample efficiency).

    Args:
        feedback_events: (evaluations,) strictly increasing x, feedback events consumed.
        accuracy: (evaluations,) y, accuracy at each evaluation.
        target: the accuracy to reach (``y >= target`` counts as reached).
        interpolate: if False, return the x of the first evaluation with ``y >= target``. If True,
            interpolate linearly between that evaluation ``k`` and the one before it, returning
            ``x[k-1] + (target - y[k-1]) * (x[k] - x[k-1]) / (y[k] - y[k-1])``; when ``k == 0``
            there is nothing before it and ``x[0]`` is returned.

    Returns:
        The feedback events as a float, or NaN (not None, so results stack into float arrays and
        pandas columns) when the curve never reaches ``target``.
    """
    x, y = _as_learning_curve(feedback_events, accuracy)
    if not np.isfinite(target):
        raise ValueError(f"target must be a finite accuracy, got {target!r}")
    reached = np.flatnonzero(y >= target)
    if reached.size == 0:
        return float("nan")
    first = int(reached[0])
    if not interpolate or first == 0:
        return float(x[first])
    # y[first - 1] < target <= y[first], so the slope is positive and the root lies in the segment.
    x0, x1, y0, y1 = x[first - 1], x[first], y[first - 1], y[first]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))
