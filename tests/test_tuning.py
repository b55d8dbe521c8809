"""harness tune and tuned values: disjoint users, refusals, and a study end to end on the tiny base."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from typer.testing import CliRunner

from analysis.report import build_report
from experiments import tuned as tuned_values
from experiments.cli import app
from experiments.config import ConfigError, load_experiment
from experiments.run import curve_mean
from experiments.tuning import at_edge, choose, load_tuning
from tasks.users import META_USER_SEED_START, TUNING_USER_SEED_START, tuning_user_seeds, user_population
from tests.conftest import ROOT, SMOKE, TINY

COMPARISON = ROOT / "experiments" / "comparison.yaml"
LEARNING_ARMS = [
    "full_ft-grpo",
    "full_ft-reinforce",
    "full_ft-ppo",
    "full_ft-sft",
    "adapter-grpo",
    "adapter-reinforce",
    "adapter-ppo",
    "adapter-sft",
    "hybrid-grpo",  # its adapter is tuned like the adapter (3e-3 in this fixture)
]


def tuned_file(path: Path, backbone: str = "builtin:tiny", suite: str = "default", **changes) -> Path:
    """A valid tuned-values file for the comparison's learning arms (lr 1e-4 full_ft, 3e-3 adapter)."""
    arms = {
        arm: tuned_values.ArmResult(
            values={"algorithm.learning_rate": 1e-4 if arm.startswith("full_ft") else 3e-3}, criterion=0.5
        )
        for arm in LEARNING_ARMS
    }
    fields = dict(
        backbone=backbone,
        base_digest=tuned_values.base_digest(backbone),
        suite=suite,
        criterion="eval/personal_accuracy_auc",
        budget={"feedback_events": 600, "evaluation_every": 100},
        tuning_users=tuning_user_seeds(2),
        trials_per_arm=7,
        arms=arms,
    )
    fields.update(changes)
    return tuned_values.write(path, tuned_values.TunedValues(**fields), "a test file")


def comparison(path: Path, *overrides: str):
    return load_experiment(COMPARISON, [TINY, f"tuned={path}", *overrides])


# --------------------------------------------------------------------------- users


def test_tuning_users_and_evaluation_users_never_overlap():
    tuning = tuning_user_seeds(1000)
    assert min(tuning) == TUNING_USER_SEED_START and max(tuning) < META_USER_SEED_START
    assert {user_population(s) for s in tuning} == {"tuning"}
    # an evaluation run refuses a tuning user's seed, and a tuning run an evaluation user's
    with pytest.raises(ConfigError, match="tuning user's seed"):
        load_experiment(SMOKE, [f"seeds=[{TUNING_USER_SEED_START}]"])
    with pytest.raises(ConfigError, match="evaluation user's seed"):
        load_experiment(SMOKE, ["task.users=tuning", "seeds=[0]"])
    assert load_experiment(SMOKE, [f"seeds=[{TUNING_USER_SEED_START - 1}]"]).runs()[0].seed < min(tuning)
    # every run harness tune plans is a tuning user's; every run of the comparison an evaluation user's
    plan = load_tuning(COMPARISON, [TINY, "tuned=null"])
    assert [study.arm for study in plan.arms] == LEARNING_ARMS
    for study in plan.arms:  # the values reach the sweep as numbers (PyYAML reads JSON's 3e-05 as text)
        assert all(type(c) is float for c in study.plan.spec.space["algorithm.learning_rate"].choices)
    planned = [study.plan.config({}, seed) for study in plan.arms for seed in study.plan.seeds]
    assert planned and all(c.task.users == "tuning" and c.seed in tuning for c in planned)
    evaluated = load_experiment(COMPARISON, [TINY, "tuned=null"]).runs()
    assert all(c.task.users == "evaluation" and c.seed < TUNING_USER_SEED_START for c in evaluated)
    assert not {c.seed for c in planned} & {c.seed for c in evaluated}


# --------------------------------------------------------------------------- tuned values


def test_the_comparison_runs_each_learning_arm_at_its_tuned_values(tmp_path):
    path = tuned_file(tmp_path / "tiny.yaml")
    runs = comparison(path).runs()
    rates = {tuned_values.arm_name(c): c.algorithm.learning_rate for c in runs if c.algorithm.trains}
    assert rates == {arm: 1e-4 if arm.startswith("full_ft") else 3e-3 for arm in LEARNING_ARMS}
    assert {c.tuned_from for c in runs if c.algorithm.trains} == {
        f"{path.as_posix()} (7 trials x 2 users x 600 events)"
    }
    assert all(c.tuned_from == "" for c in runs if not c.algorithm.trains)
    # --set still wins over the tuned values; tuned=null runs every arm at the config's own value
    one_arm = ["grid=[]", "paradigm.name=full_ft", "algorithm.name=ppo"]
    assert {c.algorithm.learning_rate for c in comparison(path, *one_arm).runs()} == {1e-4}
    forced = comparison(path, *one_arm, "algorithm.learning_rate=0.002").runs()
    assert {c.algorithm.learning_rate for c in forced} == {0.002}
    untuned = load_experiment(COMPARISON, [TINY, "tuned=null"]).runs()
    assert {c.algorithm.learning_rate for c in untuned if c.algorithm.trains} == {1e-3}


def test_the_backbone_placeholder_picks_the_runs_backbones_file(tmp_path):
    tuned_file(tmp_path / "builtin-tiny.yaml")
    runs = load_experiment(COMPARISON, [TINY, f"tuned={tmp_path}/{{backbone}}.yaml"]).runs()
    assert {c.algorithm.learning_rate for c in runs if c.paradigm.name == "adapter"} == {3e-3}
    with pytest.raises(ConfigError, match=r"builtin\.yaml: no such tuned-values file.*harness tune"):
        load_experiment(COMPARISON, [f"tuned={tmp_path}/{{backbone}}.yaml"])


@pytest.mark.parametrize(
    ("file_fields", "overrides", "message"),
    [
        ({"backbone": "builtin"}, [], "tuned for backbone 'builtin', not 'builtin:tiny'"),
        ({"base_digest": "0123456789ab"}, [], "another build of 'builtin:tiny'"),
        ({}, ["task.suite=preferences"], "tuned on suite 'default', not 'preferences'"),
        ({"suite": "drift"}, [], "tuned on suite 'drift', not 'default'"),
    ],
)
def test_the_comparison_refuses_values_tuned_for_another_backbone_or_suite(
    tmp_path, file_fields, overrides, message
):
    path = tuned_file(tmp_path / "other.yaml", **file_fields)
    with pytest.raises(ConfigError, match=message):
        comparison(path, *overrides)


def test_the_comparison_refuses_a_file_without_one_of_its_arms(tmp_path):
    path = tuned_file(tmp_path / "partial.yaml")
    data = yaml.safe_load(path.read_text())
    del data["arms"]["adapter-ppo"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="no values for arm 'adapter-ppo'"):
        comparison(path)


def test_a_refused_file_is_one_stderr_line_and_exit_2(tmp_path, tracking_uri):
    path = tuned_file(tmp_path / "other.yaml", suite="drift")
    result = CliRunner().invoke(app, ["run", str(COMPARISON), "--set", TINY, "--set", f"tuned={path}"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "tuned on suite 'drift'" in result.stderr
    assert mlflow.MlflowClient(tracking_uri).get_experiment_by_name("comparison") is None


# --------------------------------------------------------------------------- the criterion and the choice


def test_the_criterion_is_the_curve_mean_so_far():
    assert curve_mean([(0, 0.4)]) == 0.4
    # trapezoids: (0.4 + 0.6) / 2 * 100 + (0.6 + 1.0) / 2 * 100 = 130 over 200 events
    assert curve_mean([(0, 0.4), (100, 0.6), (200, 1.0)]) == pytest.approx(0.65)


def _trial(lr: float, criterion: float) -> tuned_values.TrialResult:
    return tuned_values.TrialResult(params={"algorithm.learning_rate": lr}, criterion=criterion)


def test_choose_takes_the_best_mean_and_the_smaller_value_on_ties():
    assert choose([_trial(1e-3, 0.5), _trial(1e-4, 0.7), _trial(1e-2, 0.6)]).params == {
        "algorithm.learning_rate": 1e-4
    }
    assert choose([_trial(1e-3, 0.7), _trial(1e-4, 0.7)]).params["algorithm.learning_rate"] == 1e-4
    # a value tried twice counts by its mean
    assert choose([_trial(1e-3, 0.9), _trial(1e-3, 0.1), _trial(1e-4, 0.6)]).params == {
        "algorithm.learning_rate": 1e-4
    }


def test_at_edge_flags_a_value_at_the_end_of_its_range():
    grid = {"algorithm.learning_rate": CategoricalDistribution([1e-5, 1e-4, 1e-3])}
    assert at_edge({"algorithm.learning_rate": 1e-3}, grid)
    assert at_edge({"algorithm.learning_rate": 1e-5}, grid)
    assert not at_edge({"algorithm.learning_rate": 1e-4}, grid)
    span = {"algorithm.learning_rate": FloatDistribution(1e-5, 1e-2, log=True)}
    assert not at_edge({"algorithm.learning_rate": 3e-4}, span)


# --------------------------------------------------------------------------- end to end


def small_comparison(tmp_path: Path) -> Path:
    """The comparison's shape in seconds: frozen and two learning arms, two values, one tuning user."""
    document = {
        "name": "tcompare",
        "task": {"suite": "default", "batch_size": 4},
        "budget": {"feedback_events": 16},
        "evaluation": {"every": 8, "general_items": 8},
        "seeds": [0, 1],
        "backbone": "builtin:tiny",
        "tuned": str(tmp_path / "tuned" / "{backbone}.yaml"),
        "tuning": {
            "space": {"algorithm.learning_rate": {"type": "categorical", "choices": [1.0e-4, 1.0e-2]}},
            "users": 1,
            "out": str(tmp_path / "tuned" / "{backbone}.yaml"),
        },
        "grid": [
            {"paradigm.name": "frozen"},
            {"paradigm.name": "full_ft", "algorithm.name": "reinforce"},
            {"paradigm.name": "adapter", "algorithm.name": "sft"},
        ],
    }
    path = tmp_path / "tcompare.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_tune_then_run_then_report(tmp_path, tracking_uri, tiny_base, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the journal goes to ./optuna-journal
    file = small_comparison(tmp_path)
    runner = CliRunner()
    before = runner.invoke(app, ["run", str(file), "--quiet"])
    assert before.exit_code == 2 and "no such tuned-values file" in before.stderr  # nothing tuned yet

    tuned = runner.invoke(app, ["tune", str(file), "--quiet"])
    assert tuned.exit_code == 0, tuned.output
    written = tuned_values.read(tmp_path / "tuned" / "builtin-tiny.yaml")
    assert sorted(written.arms) == ["adapter-sft", "full_ft-reinforce"]
    assert written.backbone == "builtin:tiny" and written.suite == "default"
    assert written.tuning_users == tuning_user_seeds(1) and written.trials_per_arm == 2
    for arm in written.arms.values():
        assert sorted(t.params["algorithm.learning_rate"] for t in arm.trials) == [1e-4, 1e-2]
        assert arm.values == choose(arm.trials).params
    client = mlflow.MlflowClient(tracking_uri)
    tuning_runs = [
        r
        for r in client.search_runs([client.get_experiment_by_name("tcompare-tuning").experiment_id])
        if "paradigm" in r.data.tags
    ]
    assert len(tuning_runs) == 2 * 2  # arms x values x one tuning user
    assert {int(r.data.tags["seed"]) for r in tuning_runs} == set(tuning_user_seeds(1))
    assert all("eval/personal_accuracy_auc" in r.data.metrics for r in tuning_runs)

    tuning_id = client.get_experiment_by_name("tcompare-tuning").experiment_id
    logged = len(client.search_runs([tuning_id]))
    again = runner.invoke(app, ["tune", str(file), "--quiet"])  # resumes: nothing new runs
    assert again.exit_code == 0, again.output
    assert len(client.search_runs([tuning_id])) == logged
    assert tuned_values.read(tmp_path / "tuned" / "builtin-tiny.yaml") == written

    after = runner.invoke(app, ["run", str(file), "--quiet"])
    assert after.exit_code == 0, after.output
    report = build_report(["tcompare"], tracking_uri, tmp_path / "report")
    table = report.table_csv.read_text().splitlines()
    header = table[0].split(",")
    assert header[:7] == ["paradigm", "algorithm", "variant", "group", "runs", "learning_rate", "tuned_from"]
    rows = {line.split(",")[0] + "/" + line.split(",")[1]: line.split(",") for line in table[1:]}
    for arm, key in (("full_ft-reinforce", "full_ft/reinforce"), ("adapter-sft", "adapter/sft")):
        assert float(rows[key][5]) == written.arms[arm].values["algorithm.learning_rate"]
        assert "(2 trials x 1 users x 16 events)" in rows[key][6]
    assert rows["frozen/none"][5:7] == ["", ""]
    markdown = report.markdown.read_text()
    assert "| LR | Tuned on |" in markdown and "2 trials x 1 users x 16 events" in markdown


def test_continual_strengths_are_tuned_only_for_arms_with_a_mechanism(tmp_path):
    file = small_comparison(tmp_path)
    document = yaml.safe_load(file.read_text())
    document["tuning"]["space"]["continual.strength"] = {"type": "categorical", "choices": [0.1, 1.0]}
    document["grid"].append(
        {"paradigm.name": "full_ft", "algorithm.name": "reinforce", "continual.regularizer": "l2sp"}
    )
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    spaces = {study.arm: sorted(study.plan.spec.space) for study in load_tuning(file).arms}
    assert spaces == {
        "full_ft-reinforce": ["algorithm.learning_rate"],
        "adapter-sft": ["algorithm.learning_rate"],
        "full_ft-reinforce-l2sp": ["algorithm.learning_rate", "continual.strength"],
    }
