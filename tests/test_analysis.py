"""analysis/: tidy table, parquet round trip, figures, report files and their determinism.

The runs are synthetic but logged to a real MLflow SQLite store with ``MlflowClient``, the way
experiments/tracking.py logs them: one parent run (``kind=experiment``, ``experiment.yaml``
artifact) and nested child runs with the contract tags, dotted params and step = feedback events.
"""

from __future__ import annotations

import filecmp
import math
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from analysis import continual, figures, tables
from analysis.load import CONFIGS_ATTR, load_parquet, load_runs, save_parquet, tidy_table
from analysis.report import build_report, log_report
from analysis.runs import finished, run_table
from experiments.cli import drift_schedule

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "synthetic"
PARADIGMS = ("frozen", "memory", "oracle")
SEEDS = (0, 1, 2)
EVAL_STEPS = (0, 100, 200, 300, 400)
TRAIN_STEPS = tuple(range(40, 401, 40))
WEIGHTS = {"correctness": 1.0, "format": 0.5, "tool_efficiency": 0.2, "search_cost": 0.1}
EXPERIMENT_YAML = "name: synthetic\nseeds: [0, 1, 2]\ngrid:\n- {paradigm.name: frozen}\n"
FAILED_NAME = "memory-default-s3"
FAILED_ERROR = "RuntimeError: diverged after 120 feedback events"


def _accuracy(paradigm: str, seed: int, step: int) -> float:
    start = {"frozen": 0.2, "memory": 0.3, "oracle": 0.9}[paradigm]
    gain = {"frozen": 0.0, "memory": 0.6, "oracle": 0.05}[paradigm]
    return round(min(1.0, start + gain * step / 400 + 0.01 * seed), 4)


def _eval_metrics(paradigm: str, seed: int, step: int) -> dict[str, float]:
    general = 0.9 - (0.05 * step / 400 if paradigm == "memory" else 0.0) - 0.01 * seed
    metrics = {
        "eval/personal_accuracy": _accuracy(paradigm, seed, step),
        "eval/general_accuracy": general,
        "eval/base_general_accuracy": 0.9 - 0.01 * seed,
        "eval/general_knowledge": general + 0.05,
        "eval/base_general_knowledge": 0.95 - 0.01 * seed,
        "eval/forgetting": 0.9 - 0.01 * seed - general,
        "eval/instruction_following": 0.8 - (0.2 * step / 400 if paradigm == "memory" else 0.0),
        "eval/base_instruction_following": 0.8,
        "eval/instruction_forgetting": 0.2 * step / 400 if paradigm == "memory" else 0.0,
        "eval/format_compliance": 0.5 + 0.1 * seed,
        "eval/search_calls_per_query": 1.0 - step / 800 if paradigm == "memory" else 0.0,
        "eval/kl_to_base": 0.0 if paradigm == "frozen" else 0.01 * step / 100 + 0.001 * seed,
        "cost/wall_seconds": 1.0 + step / 10 + seed,
        "cost/train_flops": 0.0 if paradigm != "memory" else 1e9 * step,
        "cost/inference_flops": 2e8 * step,
        "cost/total_flops": 2e8 * step + (0.0 if paradigm != "memory" else 1e9 * step),
        "cost/trainable_params": 0.0,
        "cost/context_tokens_per_query": 20.0,
        "cost/storage_bytes": 1000.0 * step if paradigm == "memory" else 0.0,
        "cost/peak_rss_bytes": 1e8,
        "cost/generated_tokens": 10.0 * step,
        "cost/prompt_tokens": 30.0 * step,
        # memory answers each question twice here (a group of 2): half the questions at equal events
        "cost/user_questions": step / 2 if paradigm == "memory" else float(step),
    }
    if paradigm == "memory":  # its learning is a fifth reflection, the rest note embeddings; a quarter
        # of its inference embeds the questions for retrieval
        metrics["memory/reflection_flops"] = 0.2e9 * step
        metrics["memory/note_embedding_flops"] = 0.8e9 * step
        metrics["memory/retrieval_embedding_flops"] = 0.5e8 * step
    if paradigm == "memory":  # its notes cost it all of its drop on both probes
        metrics["eval/general_accuracy_without_notes"] = 0.9 - 0.01 * seed
        metrics["eval/general_knowledge_without_notes"] = 0.95 - 0.01 * seed
    if paradigm == "memory":  # a two-phase drift: phase 1 is learned after step 200, phase 0 fades a bit
        metrics["eval/phase_accuracy/0"] = 0.2 + min(step, 200) / 400 - max(0, step - 200) / 2000
        metrics["eval/phase_accuracy/1"] = 0.1 + max(0, step - 200) / 300 + 0.01 * seed
        if step > 0:  # the batch before step 200 was drawn in phase 0, later ones in phase 1
            metrics["eval/stream_phase"] = 0.0 if step <= 200 else 1.0
    return metrics


def _train_metrics(paradigm: str, seed: int, step: int) -> dict[str, float]:
    accuracy = _accuracy(paradigm, seed, step)
    searches = 1.0 if paradigm == "memory" else 0.0
    components = {"correctness": accuracy, "format": 0.6, "tool_efficiency": -0.2 * searches}
    components["search_cost"] = -searches
    total = sum(WEIGHTS[k] * v for k, v in components.items())
    return {"train/reward": total, **{f"train/reward/{k}": v for k, v in components.items()}}


def _params(paradigm: str, seed: int) -> dict[str, str]:
    return {
        "paradigm.name": paradigm,
        "algorithm.name": "none",
        "task.suite": "default",
        "budget.feedback_events": "400",
        "evaluation.every": "100",
        "seed": str(seed),
        **{f"reward.weights.{k}": str(v) for k, v in WEIGHTS.items()},
    }


def synthetic_runs() -> list[dict]:
    """The child runs: name, tags, params, metrics ``[(key, value, step)]``, status and error."""
    specs = [(p, s, EVAL_STEPS, TRAIN_STEPS, "FINISHED", None) for p in PARADIGMS for s in SEEDS]
    specs.append(("memory", 3, (), (), "FAILED", FAILED_ERROR))  # failed before any metric
    runs = []
    for paradigm, seed, eval_steps, train_steps, status, error in specs:
        metrics = [
            (k, v, step) for step in eval_steps for k, v in _eval_metrics(paradigm, seed, step).items()
        ]
        metrics += [
            (k, v, step) for step in train_steps for k, v in _train_metrics(paradigm, seed, step).items()
        ]
        tags = {
            "paradigm": paradigm,
            "algorithm": "none",
            "task": "default",
            "seed": str(seed),
            "config_hash": f"hash-{paradigm}",
            "backbone": "builtin",
        }
        runs.append(
            {
                "name": f"{paradigm}-default-s{seed}",
                "tags": tags,
                "params": _params(paradigm, seed),
                "metrics": metrics,
                "status": status,
                "error": error,
            }
        )
    return runs


def synthetic_table() -> pd.DataFrame:
    """The same runs as a tidy table built in memory (run ids made up), for tests that need no store."""
    rows = []
    for index, run in enumerate(synthetic_runs()):
        base = {
            "run_id": f"run{index:02d}",
            "run_name": run["name"],
            "experiment": EXPERIMENT,
            "status": run["status"],
            "error": run["error"] or "",
            **run["tags"],
            **{f"param.{k}": v for k, v in run["params"].items()},
        }
        rows += [{**base, "metric": k, "step": step, "value": v} for k, v, step in run["metrics"]] or [
            {**base, "metric": None, "step": None, "value": float("nan")}
        ]
    return tidy_table(rows, {EXPERIMENT: [{"source": "a synthetic parent", "text": EXPERIMENT_YAML}]})


META_RUN_NAME = "meta-preferences-s0"


def make_store(directory: Path) -> str:
    """A SQLite MLflow store in ``directory`` with the synthetic experiment; returns its URI."""
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(directory / "artifacts").as_uri())
    parent_id = client.create_run(
        experiment_id, run_name="synthetic-10-runs", tags={"kind": "experiment"}
    ).info.run_id
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "experiment.yaml"
        config.write_text(EXPERIMENT_YAML)
        client.log_artifact(parent_id, str(config))
    for run in synthetic_runs():
        tags = {**run["tags"], MLFLOW_PARENT_RUN_ID: parent_id}
        run_id = client.create_run(experiment_id, run_name=run["name"], tags=tags).info.run_id
        metrics = [Metric(key, value, 1000 + step, step) for key, value, step in run["metrics"]]
        params = [Param(k, v) for k, v in run["params"].items()]
        client.log_batch(run_id, params=params)
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        if run["error"] is not None:
            client.set_tag(run_id, "error", run["error"])
        client.set_terminated(run_id, run["status"])
    # a meta-training run (harness meta-train) carries a paradigm tag and meta.* params but is no row
    meta_id = client.create_run(
        experiment_id,
        run_name=META_RUN_NAME,
        tags={"kind": "meta", "paradigm": "adapter", "algorithm": "grpo"},
    ).info.run_id
    client.log_batch(
        meta_id, metrics=[Metric("meta/meta_lr", 0.5, 1000, 64)], params=[Param("meta.users", "8")]
    )
    client.set_terminated(meta_id, "FINISHED")
    client.set_terminated(parent_id, "FAILED")
    return uri


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def table(store) -> pd.DataFrame:
    return load_runs([EXPERIMENT], store)


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    return build_report(
        [EXPERIMENT], store, tmp_path_factory.mktemp("report"), seed=0, drift=drift_schedule()
    )


# --------------------------------------------------------------------------- tidy table


def test_tidy_table_has_one_row_per_run_metric_step(table):
    finished_runs = len(PARADIGMS) * len(SEEDS)
    eval_rows = {p: sum(len(_eval_metrics(p, 0, step)) for step in EVAL_STEPS) for p in PARADIGMS}
    train_keys = len(_train_metrics("memory", 0, 0))
    expected = sum(len(SEEDS) * (eval_rows[p] + train_keys * len(TRAIN_STEPS)) for p in PARADIGMS)
    expected += 1  # the failed run logged no metric: one row with metric, step and value missing
    assert len(table) == expected
    assert table["run_id"].nunique() == finished_runs + 1
    assert list(table.columns[:13]) == [
        "run_id",
        "run_name",
        "experiment",
        "status",
        "error",
        "paradigm",
        "algorithm",
        "task",
        "seed",
        "config_hash",
        "backbone",
        "sweep",
        "trial",
    ]
    assert list(table.columns[-3:]) == ["metric", "step", "value"]
    assert "param.reward.weights.search_cost" in table.columns
    assert "param.budget.feedback_events" in table.columns
    assert not table.duplicated(["run_id", "metric", "step"]).any()
    assert set(table["experiment"]) == {EXPERIMENT}
    assert str(table["step"].dtype) == "Int64" and table["value"].dtype == np.float64
    failed = table[table["status"] == "FAILED"]
    assert set(failed["run_name"]) == {FAILED_NAME} and set(failed["error"]) == {FAILED_ERROR}
    assert len(failed) == 1 and failed["metric"].isna().all() and failed["step"].isna().all()
    assert "synthetic-10-runs" not in set(table["run_name"])  # the parent run is not a row
    assert META_RUN_NAME not in set(table["run_name"]) and "param.meta.users" not in table.columns
    assert table.attrs[CONFIGS_ATTR][EXPERIMENT][0]["text"] == EXPERIMENT_YAML
    order = table[["experiment", "run_name", "run_id", "metric", "step"]]
    assert order.equals(order.sort_values(list(order.columns), kind="mergesort"))


def test_parquet_round_trip_is_equal(table, tmp_path):
    path = save_parquet(table, tmp_path / "runs.parquet")
    loaded = load_parquet(path)
    pd.testing.assert_frame_equal(loaded, table)
    assert loaded.attrs == table.attrs


def test_the_store_and_the_in_memory_table_agree_but_for_run_ids(table):
    in_memory = synthetic_table()
    pd.testing.assert_frame_equal(in_memory.drop(columns="run_id"), table.drop(columns="run_id"))


def test_grid_points_are_variants_not_pooled():
    base = synthetic_table()
    memory = base[base["paradigm"] == "memory"]
    costly = memory.assign(run_id=memory["run_id"] + "-costly", **{"param.reward.weights.search_cost": "0.5"})
    runs = finished(run_table(tidy_table(pd.concat([base, costly]).to_dict("records"))))
    assert sorted(set(runs["variant"])) == [
        "",
        "reward.weights.search_cost=0.1",
        "reward.weights.search_cost=0.5",
    ]
    main = tables.comparison_table(tidy_table(pd.concat([base, costly]).to_dict("records")), runs, seed=0)
    assert main["group"].tolist() == [
        "frozen",
        "memory (reward.weights.search_cost=0.1)",
        "memory (reward.weights.search_cost=0.5)",
        "oracle",
    ]
    assert main["runs"].tolist() == [3, 3, 3, 3]


def test_phase_matrix_rows_are_the_last_evaluation_trained_through_each_phase():
    table = synthetic_table()
    runs = finished(run_table(table))
    matrices, notes = continual.phase_matrices(table, runs)
    assert len(matrices) == len(SEEDS) and notes == []  # only the finished memory runs log phases
    seed0 = runs.loc[runs["run_name"] == "memory-default-s0", "run_id"].item()
    accuracy, untrained = matrices[seed0]
    phases = {step: _eval_metrics("memory", 0, step) for step in (0, 200, 400)}
    expected = [
        [
            phases[200]["eval/phase_accuracy/0"],
            phases[200]["eval/phase_accuracy/1"],
        ],  # 200 events: phase 0 done
        [phases[400]["eval/phase_accuracy/0"], phases[400]["eval/phase_accuracy/1"]],
    ]
    np.testing.assert_allclose(accuracy, expected)
    np.testing.assert_allclose(
        untrained, [phases[0]["eval/phase_accuracy/0"], phases[0]["eval/phase_accuracy/1"]]
    )


def test_metric_name_helpers_build_the_contract_names():
    from analysis import names

    assert names.phase_metric(3) == "eval/phase_accuracy/3"
    assert names.reward_metric("format") == "train/reward/format"


# --------------------------------------------------------------------------- figures


def test_every_figure_writes_png_and_pdf_or_says_why_it_skipped(report):
    by_name = {f.name: f for f in report.figures}
    expected = {
        "learning_curves",
        "learning_curves_by_questions",
        "learning_vs_forgetting",
        "accuracy_vs_compute",
        "search_calls",
        "reward_decomposition",
        "forgetting_vs_kl",
        "phase_heatmap",
        "sweep_pareto",
        "sweep_importances",
    }
    assert set(by_name) == expected
    for name in expected - {"sweep_pareto", "sweep_importances"}:
        figure = by_name[name]
        assert figure.skipped is None, (name, figure.skipped)
        assert sorted(p.suffix for p in figure.paths) == [".pdf", ".png"]
        assert all(p.is_file() and p.stat().st_size > 1000 for p in figure.paths)
    assert by_name["sweep_pareto"].skipped == "no Optuna study given"
    assert not by_name["sweep_importances"].paths


def test_figure_pdfs_embed_truetype_fonts_never_type3(report):
    pdfs = [path for figure in report.figures for path in figure.paths if path.suffix == ".pdf"]
    assert pdfs
    for pdf in pdfs:
        data = pdf.read_bytes()  # matplotlib writes font dictionaries uncompressed
        assert b"/Type3" not in data, pdf.name
        assert b"/FontFile2" in data, pdf.name  # an embedded TrueType font program
        if shutil.which("pdffonts"):
            listing = subprocess.run(
                ["pdffonts", str(pdf)], capture_output=True, text=True, check=True
            ).stdout
            assert "Type 3" not in listing and "TrueType" in listing, listing


def test_figures_are_drawn_to_be_shown_at_their_natural_size(report):
    from PIL import Image

    from analysis.style import MAX_WIDTH, PNG_DPI

    for figure in report.figures:
        if figure.png is not None:
            with Image.open(figure.png) as image:
                assert image.width <= MAX_WIDTH * PNG_DPI + 1, (figure.name, image.width)


def test_figures_skip_with_a_reason_when_their_data_is_absent(table, tmp_path):
    no_phases = table[~table["metric"].str.startswith("eval/phase_accuracy/", na=False)]
    result = figures.phase_heatmap(no_phases, tmp_path)
    assert result.skipped and "phase_accuracy" in result.skipped and not result.paths
    empty = table.iloc[0:0]
    for figure in figures.TABLE_FIGURES:
        result = figure(empty, tmp_path)
        assert result.skipped, figure.__name__
    assert not list(tmp_path.iterdir())


def test_sweep_figures_draw_an_optuna_study(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="sweep", directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["personal_accuracy", "train_flops"])

    def objective(trial):
        weight = trial.suggest_float("search_cost", 0.0, 1.0)
        rate = trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)
        return 1.0 - (weight - 0.3) ** 2, rate * 1e6

    study.optimize(objective, n_trials=12)
    pareto = figures.sweep_pareto(study, tmp_path)
    importances = figures.sweep_importances(study, tmp_path, seed=0)
    for result in (pareto, importances):
        assert result.skipped is None and all(p.is_file() for p in result.paths)
    single = optuna.create_study(study_name="single")
    assert "one objective" in figures.sweep_pareto(single, tmp_path).skipped


def test_pareto_front_keeps_only_non_dominated_runs():
    cost = [0.0, 1.0, 1.0, 2.0, 3.0]
    accuracy = [0.2, 0.5, 0.4, 0.45, 0.9]
    assert figures.pareto_front(cost, accuracy).tolist() == [0, 1, 4]


# --------------------------------------------------------------------------- report


def test_report_writes_every_file_and_lists_the_failed_run(report, table):
    for path in (report.markdown, report.html, report.table_csv, report.table_tex, report.learning_csv):
        assert path.is_file() and path.stat().st_size > 0
    assert report.continual_csv is not None and report.continual_csv.is_file()
    assert report.finished_runs == 9 and report.unfinished_runs == (FAILED_NAME,)
    markdown = report.markdown.read_text(encoding="utf-8")
    assert "## Failed and killed runs" in markdown
    assert FAILED_NAME in markdown and FAILED_ERROR in markdown
    assert EXPERIMENT_YAML.splitlines()[1] in markdown  # the parent's experiment.yaml
    main = pd.read_csv(report.table_csv, keep_default_na=False)
    assert main["paradigm"].tolist() == ["frozen", "memory", "oracle"]
    assert main["runs"].tolist() == [3, 3, 3]
    memory = main[main["paradigm"] == "memory"].iloc[0]
    finals = [_accuracy("memory", s, 400) for s in SEEDS]
    assert math.isclose(memory["personal_accuracy.iqm"], float(np.mean(finals)), rel_tol=1e-5)
    assert (
        memory["personal_accuracy.ci_low"]
        <= memory["personal_accuracy.iqm"]
        <= memory["personal_accuracy.ci_high"]
    )
    # forgetting = base minus final knowledge; memory's notes cause all of it
    assert math.isclose(memory["forgetting.iqm"], 0.05, rel_tol=1e-6)
    notes = tables.notes_table(table, finished(run_table(table)), seed=0)
    assert notes["paradigm"].tolist() == ["memory"]  # the only runs that logged the probe without notes
    assert math.isclose(notes["notes_forgetting.iqm"].iloc[0], 0.05, rel_tol=1e-6)
    assert "From notes" in markdown
    # instruction override beside it: memory's retrieved habits override 0.2 of explicit requests at 400
    assert math.isclose(memory["instruction_forgetting.iqm"], 0.2, rel_tol=1e-6)
    assert main.loc[main["paradigm"] == "frozen", "instruction_forgetting.iqm"].item() == 0
    assert "Instr. override" in markdown
    tex = report.table_tex.read_text(encoding="utf-8")
    assert all(rule in tex for rule in ("\\toprule", "\\midrule", "\\bottomrule")) and "full\\_ft" not in tex
    continual = pd.read_csv(report.continual_csv, keep_default_na=False)
    assert continual["paradigm"].tolist() == ["memory"]
    assert continual["bwt.iqm"].iloc[0] < 0  # phase 0 fades after the drift


def test_with_fewer_than_four_runs_per_group_the_captions_say_the_iqm_is_the_mean(report):
    sentence = "With fewer than 4 runs (every group here) the IQM trims nothing: it is the mean of the runs."
    assert sentence in report.markdown.read_text(encoding="utf-8")
    assert sentence in report.table_tex.read_text(encoding="utf-8")
    four = pd.DataFrame({"runs": [4, 5]})
    assert tables.small_group_note(four) == ""
    assert "(1 of the 2 groups here)" in tables.small_group_note(pd.DataFrame({"runs": [3, 4]}))


def test_sample_efficiency_is_counted_in_feedback_events_and_in_user_questions(report):
    learning = pd.read_csv(report.learning_csv).set_index("paradigm")
    # every memory run first reaches 0.8 at its last evaluation: 400 events, 200 questions (groups of 2)
    assert all(_accuracy("memory", s, 400) >= 0.8 > _accuracy("memory", s, 300) for s in SEEDS)
    assert learning.loc["memory", "events_to_target.iqm"] == 400
    assert learning.loc["memory", "questions_to_target.iqm"] == 200
    assert learning.loc["oracle", "questions_to_target.iqm"] == learning.loc["oracle", "events_to_target.iqm"]
    assert "Questions to 0.8" in report.markdown.read_text(encoding="utf-8")
    by_name = {f.name: f for f in report.figures}
    assert "user questions" in by_name["learning_curves_by_questions"].caption
    assert "instruction override" in by_name["learning_vs_forgetting"].caption


def test_html_is_self_contained_with_data_uri_images(report):
    text = report.html.read_text(encoding="utf-8")
    drawn = [f for f in report.figures if f.skipped is None]
    assert text.count('src="data:image/png;base64,') == len(drawn)
    assert 'src="http' not in text and "<script" not in text and "<link" not in text


def test_tables_are_byte_identical_when_rebuilt_from_the_store_and_from_parquet(report, store, tmp_path):
    drift = drift_schedule()  # the same inputs as the report's: its runs and the suites' schedule
    again = build_report([EXPERIMENT], store, tmp_path / "again", seed=0, drift=drift)
    offline = build_report(
        [EXPERIMENT], None, tmp_path / "offline", parquet=report.parquet, seed=0, drift=drift
    )
    for rebuilt in (again, offline):
        for original, copy in zip(report.tables, rebuilt.tables, strict=True):
            assert original.name == copy.name
            assert filecmp.cmp(original, copy, shallow=False), original.name


def test_log_report_adds_a_report_run_that_tables_ignore(report, store):
    run_id = log_report(store, EXPERIMENT, report.out_dir)
    client = mlflow.MlflowClient(store)
    run = client.get_run(run_id)
    assert run.info.run_name == "report" and run.data.tags["kind"] == "report"
    assert run.info.status == "FINISHED"
    assert {"report.md", "report.html", "table.csv", "table.tex"} <= {
        a.path for a in client.list_artifacts(run_id)
    }
    assert run_id not in set(load_runs([EXPERIMENT], store)["run_id"])


def test_unknown_experiment_is_one_clear_error(store, tmp_path):
    with pytest.raises(ValueError, match="no MLflow experiment named 'nope'"):
        build_report(["nope"], store, tmp_path)


def test_phase_changes_and_matrix_sizes_come_from_the_drift_schedule_passed_in():
    runs = pd.DataFrame(
        {"run_id": ["a", "b"], "task": ["drift", "default"], "param.budget.feedback_events": ["90", "400"]}
    )
    schedule = continual.DriftSchedule(
        {"drift": 3, "default": 2}, lambda events, budget, n: events * n // budget
    )
    assert continual.phase_changes(runs, schedule) == [(30, 1), (60, 2), (200, 1)]
    assert continual.phase_changes(runs, None) == []  # without the suites' facts, no phase starts
    assert continual.phase_changes(runs, continual.DriftSchedule({}, schedule.phase_at)) == []
    # a drift run that logged phases 0 and 1 only: T is its suite's 3 with the schedule, 2 without
    table = pd.DataFrame(
        {
            "run_id": ["a"] * 4,
            "metric": [
                "eval/phase_accuracy/0",
                "eval/phase_accuracy/1",
                "eval/stream_phase",
                "eval/phase_accuracy/0",
            ],
            "step": [0, 0, 30, 30],
            "value": [0.1, 0.2, 0.0, 0.5],
        }
    )
    listed = pd.DataFrame({"run_id": ["a"], "run_name": ["frozen-drift-s0"], "task": ["drift"]})
    with_schedule, _ = continual.phase_matrices(table, listed, drift=schedule)
    without, _ = continual.phase_matrices(table, listed)
    assert with_schedule["a"].accuracy.shape == (3, 3) and without["a"].accuracy.shape == (2, 2)
    assert with_schedule["a"].accuracy[0, 0] == 0.5


def test_the_harness_passes_its_suites_schedule_to_the_report():
    from tasks.suites import SUITES, phase_at

    schedule = drift_schedule()
    assert schedule.phases == {name: SUITES[name].n_phases for name in SUITES.names()}
    assert schedule.phases["drift"] == 3 and schedule.phase_at is phase_at


def test_analysis_imports_no_torch_no_task_code_and_no_training_package():
    # analysis reads one pure module beside its own, experiments.metrics (the metric names); the task
    # suites' facts are passed in (DriftSchedule), so a report needs only the logged runs
    code = (
        "import sys\n"
        "import analysis.load, analysis.figures, analysis.report, analysis.tables, analysis.continual\n"
        "from analysis import continual\n"
        "bad = [m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules]\n"
        "bad += [m for m in sys.modules if m == 'tasks' or m.startswith('tasks.')]\n"
        "bad += [m for m in sys.modules if m == 'paradigms' or m.startswith('paradigms.')]\n"
        "bad += [m for m in sys.modules if m.startswith('experiments.') and m != 'experiments.metrics']\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_compute_table_splits_each_groups_flops_into_shares_that_add_up(report, table):
    compute = pd.read_csv(report.compute_csv, keep_default_na=False).set_index("group")
    shares = [f"{part}_share" for part in tables.COMPUTE_PARTS]
    assert np.allclose(compute[shares].sum(axis=1), 1.0)
    memory = compute.loc["memory"]  # per event at 400: inference 0.2e9 (0.05e9 of it queries), learning 1e9
    assert math.isclose(memory["total_flops"], 1.2e9 * 400)
    per_event = {"answering": 0.15e9, "query_embeddings": 0.05e9, "updates": 0.0, "reflection": 0.2e9}
    per_event["note_embeddings"] = 0.8e9
    for part, flops in per_event.items():
        assert math.isclose(memory[f"{part}_share"], flops / 1.2e9, abs_tol=1e-6), part  # CSV: 6 digits
    assert compute.loc["frozen", "answering_share"] == 1.0  # no memory metrics: all inference is answering
    assert "Where the compute goes" in report.markdown.read_text(encoding="utf-8")


def test_runs_without_the_instruction_probe_get_no_instruction_column():
    """Runs logged before the instruction probe keep the table they had (no empty column)."""
    table = synthetic_table()
    table = table[table["metric"] != "eval/instruction_forgetting"]
    main = tables.comparison_table(table, finished(run_table(table)), seed=0)
    assert not any(c.startswith("instruction_forgetting") for c in main.columns)
    assert tables.main_columns(main) == tables.MAIN_COLUMNS


def test_the_forgetting_label_names_the_probe_the_runs_measured_it_on():
    """Runs logged before the knowledge probe measured ``eval/forgetting`` on the general probe: a
    figure must not call that knowledge forgetting."""
    from analysis.runs import forgetting_label

    def rows(run_id: str, metrics: dict[str, float]) -> list[dict]:
        return [{"run_id": run_id, "metric": k, "step": 96, "value": v} for k, v in metrics.items()]

    general_only = rows("old", {"eval/forgetting": 0.4, "eval/general_accuracy": 0.6})
    with_knowledge = rows("new", {"eval/forgetting": 0.1, "eval/general_knowledge": 0.9})
    assert forgetting_label(pd.DataFrame(general_only)) == "forgetting (general probe)"
    assert forgetting_label(pd.DataFrame(with_knowledge)) == "knowledge forgetting"
    assert forgetting_label(pd.DataFrame(general_only + with_knowledge)) == (
        "forgetting (knowledge or general probe)"
    )
