"""The jsonl suite: the schema's validation, the split by time, exported users round-tripping, LaMP."""

import json
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from experiments.cli import app
from experiments.config import ConfigError, load_experiment
from experiments.run import assemble, run_experiment
from experiments.tracking import Tracker
from tasks.converters.lamp import LampFormatError, lamp_to_log
from tasks.log_suite import JSONL
from tasks.settings import TaskSettings
from tasks.user_logs import LogError, grammar_problem, holdout_count, parse_line, read_log, write_log
from tests.conftest import SMOKE, TINY, metric_histories

FIXTURES = Path(__file__).parent / "fixtures" / "lamp"
GOOD = {"user": "ana", "time": 3, "subject": "my", "attribute": "dog", "answer": "rex"}


def line(**fields) -> str:
    return json.dumps({**GOOD, **fields})


def write(tmp_path: Path, lines: list[str], name: str = "log.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (line(time="yesterday"), "time"),
        (line(time=True), "time"),
        (line(answer=""), "answer"),
        (line(answer=7), "answer"),
        (line(subject=None), "subject"),
        (line(format="yaml"), "format"),
        (line(instruction="xml"), "instruction"),
        (line(rating=1.5), "rating"),
        (line(candidates=["max", "luna"]), "candidates"),
        (line(candidates="rex"), "candidates"),
        (line(attribute="hair colour"), "attribute"),
        (line(attribute="hair"), "attribute"),
        (line(subject="format"), "subject"),
        (line(anwser="rex"), "anwser"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "user"}), "user"),
    ],
)
def test_a_bad_line_is_named_by_its_number_and_field(text, field):
    with pytest.raises(LogError) as error:
        parse_line(text, 7, "log.jsonl")
    message = str(error.value)
    assert f"line 7, field '{field}'" in message and "\n" not in message


def test_an_unknown_field_suggests_the_close_one():
    with pytest.raises(LogError, match="did you mean 'answer'"):
        parse_line(line(anwser="rex"), 1)


def test_not_json_and_not_an_object_name_the_line():
    with pytest.raises(LogError, match="line 4: not valid JSON"):
        parse_line('{"user": "ana",', 4)
    with pytest.raises(LogError, match="line 5: not a JSON object"):
        parse_line("[1, 2]", 5)


def test_a_user_mixing_numbers_and_dates_is_refused(tmp_path):
    path = write(tmp_path, [line(), line(time="2024-01-01")])
    with pytest.raises(LogError, match="line 2, field 'time': user 'ana' mixes"):
        read_log(path)


def test_harness_run_stops_at_the_first_bad_line_with_one_line_and_exit_2(tmp_path, tracking_uri):
    path = write(
        tmp_path, [line(), line(time=4, attribute="city", answer="lima"), line(time=5, rating="great")]
    )
    result = CliRunner().invoke(
        app, ["run", str(SMOKE), "--set", "task.suite=jsonl", "--set", f"task.path={path}"]
    )
    assert result.exit_code == 2
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert "log.jsonl line 3, field 'rating'" in message
    assert not (tmp_path / "mlflow.db").exists()


def test_the_suite_and_the_path_go_together(tmp_path):
    with pytest.raises(ConfigError, match=r"task\.path: the jsonl suite reads"):
        load_experiment(SMOKE, ["task.suite=jsonl"])
    path = write(tmp_path, [line()])
    with pytest.raises(ConfigError, match=r"task\.path: only the jsonl suite reads a file"):
        load_experiment(SMOKE, [f"task.path={path}"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(SMOKE, ["task.suite=jsonl", f"task.path={tmp_path / 'missing.jsonl'}"])


def test_a_seed_without_a_user_and_a_user_left_without_lines_are_refused(tmp_path):
    path = write(tmp_path, [line(time=t) for t in range(5)])
    with pytest.raises(ConfigError, match=r"seeds: .* has 1 users, so seeds 0-0; got seed 1"):
        load_experiment(SMOKE, ["task.suite=jsonl", f"task.path={path}", "seeds=[0, 1]"])
    with pytest.raises(ConfigError, match=r"task\.holdout: user 'ana' .* leaves none to learn from"):
        load_experiment(SMOKE, ["task.suite=jsonl", f"task.path={path}", "task.holdout=5"])


# -- the split and the suite ---------------------------------------------------------------------


def test_holdout_is_a_share_or_a_count():
    assert holdout_count(10, 0.2) == 2
    assert holdout_count(3, 0.2) == 1  # at least one
    assert holdout_count(10, 4) == 4


def test_lines_are_ordered_by_time_then_file_order_and_split_latest_last(tmp_path):
    path = write(
        tmp_path,
        [
            line(time="2024-03-01T10:00:00", attribute="city", answer="lima"),
            line(user=7, time=1, answer="max"),
            line(time="2024-01-05", answer="rex"),
            line(time="2024-03-01T10:00:00+00:00", attribute="job", answer="chef"),
            line(time="2024-02-01", attribute="drink", answer="tea", format="json"),
        ],
    )
    log = read_log(path)
    assert log.users == ("ana", "7")  # order of first appearance: seed 0, seed 1
    learning, held_out = log.split(0, 2)
    assert [r.answer for r in learning] == ["rex", "tea"]
    assert [r.answer for r in held_out] == ["lima", "chef"]  # a tie keeps the file's order
    assert log.candidates(learning[0]) == ("max", "rex")  # every answer the file gives for ``dog``


def test_the_suite_serves_each_lines_own_answer_and_cycles_the_stream(tmp_path):
    path = write(
        tmp_path,
        [
            line(time=0, answer="rex"),
            line(time=1, answer="max"),  # the user's dog changed
            line(time=2, subject="kalo", attribute="color", answer="red", format="json"),
            line(time=3, subject="kalo", attribute="color", answer="red", instruction="list"),
            line(time=4, answer="max"),
        ],
    )
    options = TaskSettings(path=str(path), holdout=2)
    user = JSONL.user(0, options)
    assert user.profile(0).facts == {"dog": "max"} and user.profile(0).formats == {"color": "json"}
    stream = JSONL.stream(0, 5, options)
    items = [JSONL.resolve(row, user, 0) for row in stream]
    assert [i.gold for i in items] == ["rex", "max", "red", "rex", "max"]  # 3 learning lines, repeated
    assert items[2].wanted_format == "json" and not items[2].needs_search and items[0].needs_search
    [personal] = [JSONL.resolve(row, user, 0) for row in JSONL.personal_eval(0, options)]
    assert personal.item == "fact:dog" and personal.gold == "max"
    [instructed] = JSONL.instruction_eval(0, options, user)
    assert instructed.query.instruction == "list" == instructed.wanted_format


def test_corrections_use_the_users_own_words_and_a_rating_alone_corrects_nothing(tiny_base, tmp_path):
    path = write(
        tmp_path,
        [
            line(time=t, answer="rex", correction="it is rex .") if t % 2 else line(time=t, rating=0.0)
            for t in range(8)
        ]
        + [line(time=8)],
    )
    config = load_experiment(
        SMOKE, [TINY, "task.suite=jsonl", f"task.path={path}", "task.holdout=1", "budget.feedback_events=8"]
    ).runs()[0]
    parts = assemble(config, progress=False)
    items = parts.session.next_items(8)
    wrong = [parts.session.score([item], [_answer(parts, item, "max")]) for item in items]
    for index, interaction in enumerate(wrong):
        if index % 2:  # a correcting line: the user's words, a statement of the line's answer
            assert interaction.correction_texts == ["it is rex ."]
            assert interaction.corrections[0].value == "rex"
        else:  # a rated line: the rewards only
            assert interaction.corrections == [None] and interaction.correction_texts == [None]


def _answer(parts, item, value):
    from paradigms.agent import Episode

    completion = f"<answer> {value} </answer>"
    return Episode(item.query.question, [], completion=completion)


# -- exported simulated users round-trip -----------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        ["paradigm.name=memory"],
        ["paradigm.name=oracle"],
        ["paradigm.name=adapter", "algorithm.name=reinforce"],
        ["paradigm.name=hybrid", "algorithm.name=grpo", "algorithm.group_size=2"],
    ],
)
def test_an_exported_user_gives_the_simulated_suites_metrics(overrides, tracking_uri, tiny_base, tmp_path):
    common = [TINY, "task.suite=search_or_answer", "budget.feedback_events=24", *overrides]
    out = tmp_path / "users.jsonl"
    exported = CliRunner().invoke(app, ["export-users", str(SMOKE), "--out", str(out), *_sets(common)])
    assert exported.exit_code == 0, exported.output
    holdout = exported.output.split("task.holdout=")[1].split()[0]
    tracker = Tracker(tracking_uri)
    [simulated] = run_experiment(load_experiment(SMOKE, common), tracker, progress=False)
    logged = [*common, "task.suite=jsonl", f"task.path={out}", f"task.holdout={holdout}"]
    [replayed] = run_experiment(load_experiment(SMOKE, logged), tracker, progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    expected = metric_histories(client, simulated.run_id)
    got = metric_histories(client, replayed.run_id)
    assert expected == got
    assert len(expected["eval/personal_accuracy"]) >= 3 and "eval/instruction_following" in expected


def _sets(overrides: list[str]) -> list[str]:
    return [part for o in overrides for part in ("--set", o)]


def test_export_refuses_drift_and_writes_the_schema(tmp_path, tiny_base):
    result = CliRunner().invoke(app, ["export-users", str(SMOKE), "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 2 and "drift phases" in result.output
    out = tmp_path / "users.jsonl"
    result = CliRunner().invoke(
        app,
        ["export-users", str(SMOKE), "--out", str(out), *_sets(["task.suite=preferences", "seeds=[0,1]"])],
    )
    assert result.exit_code == 0, result.output
    log = read_log(out)
    assert log.users == ("0", "1") and grammar_problem(log) is None
    learning, held_out = log.split(0, int(result.output.split("task.holdout=")[1].split()[0]))
    assert len(learning) == 16 and {r.instruction for r in held_out} > {None}


# -- the LaMP converter --------------------------------------------------------------------------


def test_lamp_movie_tagging_becomes_one_user_per_query_with_the_query_held_out(tmp_path):
    lines = lamp_to_log(FIXTURES / "LaMP_2_dev_questions.json", FIXTURES / "LaMP_2_dev_outputs.json")
    path = write_log(lines, tmp_path / "lamp2.jsonl")
    log = read_log(path)
    assert log.users == ("110", "111")
    learning, [query] = log.split(0, 1)
    # the dated user's profile in date order, then LaMP's query the day after the last one
    assert [r.subject for r in learning] == ["movie 1100", "movie 1101", "movie 1102"]
    assert [r.answer for r in learning] == ["sci-fi", "twist ending", "sci-fi"]
    assert query.answer == "sci-fi" and query.question.startswith("Which tag does this movie relate to")
    assert query.question.endswith("artificial intelligence.") and len(query.candidates) == 15
    assert learning[0].question.endswith("the world he lives in is a simulation.")
    undated, [query] = log.split(1, 1)
    assert [r.answer for r in undated] == ["romance", "social commentary"] and query.answer == "romance"
    assert "the builtin grammar cannot say" in grammar_problem(log)


def test_lamp_ratings_and_the_refusals(tmp_path):
    lines = lamp_to_log(FIXTURES / "LaMP_3_dev_questions.json", FIXTURES / "LaMP_3_dev_outputs.json")
    assert [(line["attribute"], line["answer"]) for line in lines] == [
        ("score", "5"),
        ("score", "1"),
        ("score", "2"),
    ]
    bad = tmp_path / "outputs.json"
    bad.write_text(json.dumps({"task": "LaMP_4", "golds": []}))
    with pytest.raises(LampFormatError, match="LaMP_4"):
        lamp_to_log(FIXTURES / "LaMP_3_dev_questions.json", bad)
    questions = json.loads((FIXTURES / "LaMP_3_dev_questions.json").read_text())
    del questions[0]["profile"][1]["score"]
    broken = tmp_path / "questions.json"
    broken.write_text(json.dumps(questions))
    with pytest.raises(LampFormatError, match=r"questions\[0\].profile\[1\]: no 'score'"):
        lamp_to_log(broken, FIXTURES / "LaMP_3_dev_outputs.json")


def test_a_lamp_log_on_the_builtin_base_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "lamp.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "convert-lamp",
            "--questions",
            str(FIXTURES / "LaMP_2_dev_questions.json"),
            "--outputs",
            str(FIXTURES / "LaMP_2_dev_outputs.json"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0 and "task.holdout=1" in result.output
    with pytest.raises(ConfigError, match="line 1, field 'subject': the builtin grammar cannot say"):
        load_experiment(SMOKE, ["task.suite=jsonl", f"task.path={out}", "task.holdout=1"])
    config = load_experiment(
        SMOKE, ["task.suite=jsonl", f"task.path={out}", "task.holdout=1", "backbone=smollm2"]
    ).runs()[0]
    assert config.task.holdout == 1


def test_the_example_file_is_what_export_users_writes_and_the_named_files_validate(tmp_path, monkeypatch):
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "example.jsonl"
    result = CliRunner().invoke(
        app, ["export-users", str(root / "experiments" / "export_users.yaml"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text() == (root / "docs" / "user-logs-example.jsonl").read_text()
    assert "task.holdout=93" in result.output
    monkeypatch.chdir(root)  # user_logs.yaml names its file relative to the project root
    for name in ("user_logs", "hybrid", "export_users", "comparison"):
        shown = CliRunner().invoke(app, ["config", "show", str(root / "experiments" / f"{name}.yaml")])
        assert shown.exit_code == 0, (name, shown.output)


def test_meta_training_refuses_a_user_log(tmp_path):
    from experiments.meta_train import meta_settings

    path = write(tmp_path, [line(time=t) for t in range(5)])
    experiment = load_experiment(
        SMOKE, ["paradigm.name=adapter", "task.suite=jsonl", f"task.path={path}", "task.holdout=1"]
    )
    with pytest.raises(ConfigError, match=r"task\.suite: meta-training draws its own simulated users"):
        meta_settings(experiment)
