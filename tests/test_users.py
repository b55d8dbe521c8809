"""Simulated users: the population's shared format preferences (``task.shared_formats``)."""

import pytest

from experiments.config import load_experiment
from tasks.settings import TaskSettings
from tasks.suites import SUITES
from tasks.users import make_user, population_formats
from tests.conftest import SMOKE

N_USERS = 3000


def favourite_share(shared: float) -> float:
    """Share of (user, question kind) pairs whose format is the population's favourite."""
    favourite = population_formats()
    hits = total = 0
    for seed in range(N_USERS):
        for kind, fmt in make_user(seed, shared_formats=shared).profile(0).formats.items():
            hits += fmt == favourite[kind]
            total += 1
    return hits / total


@pytest.mark.parametrize("shared", [0.0, 0.5, 1.0])
def test_the_share_holding_the_favourite_is_shared_plus_chance_of_the_rest(shared):
    # P(favourite) = shared + (1 - shared) / 4 formats: 0.25, 0.625, 1.0
    assert favourite_share(shared) == pytest.approx(shared + (1 - shared) / 4, abs=0.02)


def test_sharing_changes_only_formats_and_nothing_at_zero():
    for seed in range(50):
        alone, shared = make_user(seed, n_phases=3), make_user(seed, n_phases=3, shared_formats=0.7)
        assert make_user(seed, n_phases=3, shared_formats=0.0) == alone
        assert [p.facts for p in shared.phases] == [p.facts for p in alone.phases]
        assert shared.changed_in == alone.changed_in  # the same drift schedule


def test_the_suite_builds_users_from_the_task_options():
    suite = SUITES["preferences"]
    assert suite.user(3) == make_user(3)
    assert suite.user(3, TaskSettings(shared_formats=1.0)).profile(0).formats == population_formats()
    config = load_experiment(SMOKE, ["task.suite=preferences", "task.shared_formats=1"]).runs()[0]
    assert suite.user(0, config.task).profile(0).formats == population_formats()


def test_a_share_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="shared_formats"):
        make_user(0, shared_formats=1.5)
