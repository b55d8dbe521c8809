"""Config validation: clear one-line errors with exit status 2, never a traceback."""

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from experiments.cli import app
from experiments.config import ConfigError, load_experiment
from tests.conftest import SMOKE_CONFIG_HASH, SMOKE_PARAMS

runner = CliRunner()
SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path, text: str, *overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_experiment(write(tmp_path, text), overrides)
    return str(caught.value)


def test_unknown_key_suggests_the_closest_name(tmp_path):
    assert (
        error_of(tmp_path, "paradigm:\n  nmae: frozen\n")
        == "unknown key 'paradigm.nmae': did you mean 'paradigm.name'?"
    )
    assert "did you mean 'reward.weights.search_cost'" in error_of(
        tmp_path, "reward: {weights: {serch_cost: 1}}"
    )


def test_wrong_type_and_out_of_range_name_the_field(tmp_path):
    assert error_of(tmp_path, "budget: {feedback_events: abc}").startswith(
        "budget.feedback_events: input should"
    )
    assert error_of(tmp_path, "budget: {feedback_events: 0}").startswith(
        "budget.feedback_events: input should be greater than 0"
    )
    message = error_of(tmp_path, "{}", "reward.weights.search_cost=-1")
    assert message.startswith("reward.weights.search_cost: input should be greater than or equal to 0")


def test_unknown_names_list_the_known_ones(tmp_path):
    assert "known: adapter, frozen, full_ft, hybrid, memory, oracle" in error_of(
        tmp_path, "paradigm: {name: nope}"
    )
    assert "did you mean 'user_facts'" in error_of(tmp_path, "task: {suite: usr_facts}")
    assert error_of(tmp_path, "algorithm: {name: nope}").startswith(
        "algorithm.name: unknown algorithm 'nope'"
    )


def test_grid_points_are_validated_before_anything_runs(tmp_path):
    message = error_of(tmp_path, "grid:\n  - {paradigm.name: oracle}\n  - {budget.feedback_events: -5}\n")
    assert message.startswith("budget.feedback_events") and "grid point" in message


def test_overrides_reach_every_run_and_win_over_the_grid(tmp_path):
    path = write(
        tmp_path,
        "seeds: [0, 1]\ngrid:\n  - {paradigm.name: frozen, budget.feedback_events: 9}\n"
        "  - {paradigm.name: oracle}\n",
    )
    runs = load_experiment(path, ["budget.feedback_events=7"]).runs()
    assert [r.run_name() for r in runs] == [
        "frozen-default-s0",
        "frozen-default-s1",
        "oracle-default-s0",
        "oracle-default-s1",
    ]
    assert {r.budget.feedback_events for r in runs} == {7}


def test_config_hash_ignores_only_the_seed():
    runs = load_experiment(SMOKE, ["seeds=[0, 1]"]).runs()
    assert runs[0].config_hash() == runs[1].config_hash()
    other = load_experiment(SMOKE, ["reward.weights.search_cost=0.3"]).runs()[0]
    assert other.config_hash() != runs[0].config_hash()


def test_the_smoke_configs_params_and_hash_are_pinned():
    config = load_experiment(SMOKE).base
    assert config.flat() == SMOKE_PARAMS
    assert list(config.flat()) == list(SMOKE_PARAMS)  # the order config show prints them in
    assert config.config_hash() == SMOKE_CONFIG_HASH


def test_flat_params_use_dotted_keys():
    flat = load_experiment(SMOKE).base.flat()
    assert flat["reward.weights.search_cost"] == 0.1
    assert flat["paradigm.name"] == "frozen"


@pytest.mark.parametrize(
    ("text", "args", "fragment"),
    [
        ("paradigm:\n  nmae: frozen\n", [], "did you mean 'paradigm.name'"),
        ("task: [1, 2\n", [], "not valid YAML"),
        ("- 1\n- 2\n", [], "must be a mapping"),
        ("{}", ["--set", "budget.feedback_events=0"], "budget.feedback_events"),
        ("{}", ["--set", "novalue"], "expected KEY=VALUE"),
        (
            "budget: {feedback_events: 5}",
            ["--set", "budget.feedback_events.x=1"],
            "is a value, not a section",
        ),
        ("seeds: [1, 1]\n", [], "repeats a seed"),
        ("{}", ["--set", "task.shared_formats=1.5"], "task.shared_formats"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, text, args, fragment):
    result = runner.invoke(app, ["config", "show", str(write(tmp_path, text)), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0]


def test_cli_missing_file_exits_2(tmp_path):
    for command in (["run", str(tmp_path / "nope.yaml")], ["config", "show", str(tmp_path / "nope.yaml")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2
        assert "no such experiment file" in result.stderr


def test_config_show_prints_the_resolved_config():
    result = runner.invoke(app, ["config", "show", str(SMOKE), "--set", "reward.weights.format=0.25"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["config"]["reward"]["weights"]["format"] == 0.25
    assert shown["config"]["generation"]["max_new_tokens"] == 32  # defaults are filled in
    assert shown["runs"] == ["frozen-default-s0"]


# -- fuzzing: malformed YAML and overrides never give a traceback, always exit 2 -----------------
KEYS = [
    "task",
    "task.suite",
    "paradigm",
    "paradigm.name",
    "budget.feedback_events",
    "reward.weights.format",
    "reward.weights.nope",
    "evaluation.every",
    "generation.temperature",
    "seeds",
    "grid",
    "seed",
    "backbone",
    "device",
    "dtype",
    "x",
    "task.search",
    "budget",
]
VALUES = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-2, 2), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.dictionaries(st.sampled_from(KEYS), VALUES, min_size=1, max_size=4))
def test_fuzzed_configs_exit_0_or_2_without_traceback(tmp_path, tree):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(tree))
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.text(max_size=60))
def test_fuzzed_yaml_text_exits_0_or_2_without_traceback(tmp_path, raw):
    path = tmp_path / "fuzz.yaml"
    path.write_text(raw)
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output


@settings(max_examples=60, deadline=None)
@given(override=st.text(max_size=30))
def test_fuzzed_overrides_exit_0_or_2_without_traceback(override):
    result = runner.invoke(app, ["config", "show", str(SMOKE), "--set", override])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output


# -- strict input: what used to run, crash late or exhaust the machine is refused up front ---------
@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("budget.feedback_events=true", "budget.feedback_events: true is not a number"),
        ("reward.weights.correctness=1e309", "reward.weights.correctness: input should be a finite number"),
        ("reward.weights.correctness=.inf", "reward.weights.correctness: inf is not a finite number"),
        ("generation.temperature=.nan", "generation.temperature: nan is not a finite number"),
        (
            "budget.feedback_events=1000000000000",
            "budget.feedback_events: input should be less than or equal",
        ),
        ("task.batch_size=100000", "task.batch_size: input should be less than or equal"),
        ("generation.max_new_tokens=100000000", "generation.max_new_tokens: input should be less than"),
        ("task.suite=[default]", "task.suite: must be one suite name"),
        ("name=../../x", 'name: "../../x" is not a safe name'),
        ("seed=5", "seed: the experiment's seeds [0] set every run's seed"),
        ("seeds=[1000000000]", "seeds: 1000000000 is not below"),
        ("paradigm.tool_policy.epsilon=true", "paradigm.tool_policy.epsilon: true is not a number"),
        ("continual.distill_prompts=1000000", "continual.distill_prompts: input should be less than"),
    ],
)
def test_values_that_would_run_wrongly_or_exhaust_the_machine_are_refused(override, fragment):
    with pytest.raises(ConfigError) as caught:
        load_experiment(SMOKE, [override])
    assert str(caught.value).startswith(fragment), str(caught.value)


def test_paradigm_and_algorithm_sections_are_strict_too(tmp_path):
    assert error_of(tmp_path, "paradigm: {name: adapter, rank: true}").startswith(
        "paradigm.rank: true is not a number"
    )
    assert error_of(tmp_path, "paradigm: {name: adapter, rank: 100000}").startswith("paradigm.rank: input")
    assert error_of(
        tmp_path, "paradigm: {name: adapter}\nalgorithm: {name: grpo, group_size: 1000}"
    ).startswith("algorithm.group_size: input should be less than or equal to 64")
    message = error_of(
        tmp_path,
        "paradigm: {name: adapter}\nalgorithm: {name: grpo, group_size: 64}\ntask: {batch_size: 512}",
    )
    assert message.startswith("task.batch_size: 512 queries x algorithm.group_size 64")


def test_a_file_that_sets_nothing_is_refused_but_overrides_count(tmp_path):
    message = error_of(tmp_path, "# nothing here\n")
    assert "sets nothing, so every default would run" in message
    path = write(tmp_path, "")
    assert load_experiment(path, ["budget.feedback_events=8"]).base.budget.feedback_events == 8


def test_seed_is_short_for_seeds_and_seeds_on_the_command_line_win(tmp_path):
    assert load_experiment(write(tmp_path, "seed: 3\n")).seeds == [3]
    assert load_experiment(write(tmp_path, "seed: 3\n"), ["seeds=[1, 2]"]).seeds == [1, 2]
    assert load_experiment(SMOKE, ["seeds=[4]"]).runs()[0].seed == 4
    assert "seed" in error_of(tmp_path, "seed: 3\nseeds: [0]\n")
    assert error_of(tmp_path, "grid:\n  - {seed: 3}\n").startswith("grid: key 'seed' cannot be overridden")


def test_grid_points_that_are_the_same_run_are_refused(tmp_path):
    message = error_of(
        tmp_path, "grid:\n  - {paradigm.name: frozen}\n  - {paradigm: {name: frozen}}\n  - {}\n"
    )
    assert message.startswith("grid: points 1 ({'paradigm.name': 'frozen'}) and 2")
    assert (
        len(
            load_experiment(
                write(tmp_path, "grid:\n  - {paradigm.name: frozen}\n  - {paradigm.name: oracle}\n")
            ).runs()
        )
        == 2
    )


def test_yaml_that_no_config_holds_is_refused(tmp_path):
    assert "refers to itself" in error_of(tmp_path, "task: &a {suite: default, again: *a}\n")
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6)
    )
    assert "expands to more than 100,000 values" in error_of(tmp_path, bomb)
    assert "key 1 is not a name" in error_of(tmp_path, "task: {1: default}\n")
    (tmp_path / "huge.yaml").write_text("x: " + "a" * 1_100_000)
    with pytest.raises(ConfigError, match="is not an experiment file"):
        load_experiment(tmp_path / "huge.yaml")


def test_the_experiment_name_from_the_file_name_must_be_safe_too(tmp_path):
    path = tmp_path / "my experiment.yaml"
    path.write_text("budget: {feedback_events: 8}\n")
    with pytest.raises(ConfigError, match=r"name \(from the file name 'my experiment.yaml'\)"):
        load_experiment(path)
    assert load_experiment(path, ["name=my-experiment"]).name == "my-experiment"


def test_importing_the_config_loads_no_model_stack():
    """The light core: validating a config (and the CLI module) imports no torch, transformers, FAISS."""
    code = (
        "import sys; import experiments.cli, experiments.config; "
        "from experiments.config import load_experiment; load_experiment(sys.argv[1]); "
        "print(sorted(m for m in ('torch', 'transformers', 'faiss', 'peft', 'trl', 'datasets', 'mlflow') "
        "if m in sys.modules))"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code, str(SMOKE)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
