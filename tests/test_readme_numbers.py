"""Every number the README quotes from a results table is the committed table's value, as rounded there.

Covered: the builtin-base comparison tables (``results/comparison/table.csv``, and the re-run on the
rebuilt base, ``results/comparison-rebuilt/table.csv``) with the figures the first table's
paragraphs quote from ``continual.csv`` and ``runs.parquet``, the SmolLM2 table (first and last
evaluation of each run in ``results/comparison-smollm2/runs.parquet``; the README's and
docs/real-model.md's), the hybrid sentence (``results/hybrid/table.csv``), docs/continual.md's
table (``results/continual/table.csv``), docs/real-model.md's warm-start curve
(``results/warm-start-smollm2/runs.parquet``) and the user-0 re-run's README (its ``eval/`` values are
the committed user 0's, its peak-memory table is its parquet's).
Reading the committed files only: no run, no store.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = ROOT / "results"
INTERVAL = re.compile(r"^(-?\d+\.\d+) \[(-?\d+\.\d+), (-?\d+\.\d+)\]$")


def readme_table(header: str, text: str = README) -> pd.DataFrame:
    """The Markdown table of ``text`` (the README) whose header row starts with ``header``, as strings,
    by first column."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    columns, body = rows[0], rows[2:]  # rows[1] is the --- separator
    return pd.DataFrame(body, columns=columns).set_index(columns[0])


def committed_table(directory: str) -> pd.DataFrame:
    """``results/<directory>/table.csv`` by group, empty cells kept as empty strings."""
    return pd.read_csv(RESULTS / directory / "table.csv", keep_default_na=False).set_index("group")


def interval(frame: pd.DataFrame, group: str, key: str) -> str:
    """``IQM [low, high]`` of ``key`` for ``group``, at the README's two decimals."""
    row = frame.loc[group]
    return f"{row[f'{key}.iqm']:.2f} [{row[f'{key}.ci_low']:.2f}, {row[f'{key}.ci_high']:.2f}]"


def same_decimals(quoted: str, value: float) -> bool:
    """``quoted`` is ``value`` written with as many decimals as ``quoted`` has (``-0.00`` is ``0.00``)."""
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    return f"{value:.{decimals}f}".replace("-0.00", "0.00") == quoted.replace("-0.00", "0.00")


# --------------------------------------------------------------------------- builtin base


@pytest.fixture(scope="module")
def builtin():
    table = committed_table("comparison")
    continual = pd.read_csv(RESULTS / "comparison" / "continual.csv").set_index("group")
    return table, continual


@pytest.mark.parametrize(
    ("directory", "header"),
    [
        ("comparison", "| group | personal accuracy | forgetting | instruction override | total FLOPs |"),
        ("comparison-rebuilt", "| group (rebuilt base) | personal accuracy | forgetting |"),
    ],
)
def test_the_builtin_comparison_tables_are_the_committed_tables(directory, header):
    table = committed_table(directory)
    quoted = readme_table(header)
    assert sorted(quoted.index) == sorted(table.index)  # every group, each once
    for group, row in quoted.iterrows():
        assert row["personal accuracy"] == interval(table, group, "personal_accuracy"), group
        for column, key in (("forgetting", "forgetting"), ("instruction override", "instruction_forgetting")):
            assert row[column].replace("-0.00", "0.00") == interval(table, group, key).replace(
                "-0.00", "0.00"
            ), (group, column)
        assert float(row["total FLOPs"]) == float(f"{table.loc[group, 'total_flops.iqm']:.1e}"), group


def test_the_builtin_paragraph_quotes_the_committed_tables(builtin):
    table, continual = builtin
    memory_flops = re.search(r"memory is the most expensive arm on the builtin base \((\S+),", README)
    assert float(memory_flops.group(1)) == float(f"{table.loc['memory', 'total_flops.iqm']:.1e}")
    assert table["total_flops.iqm"].idxmax() == "memory"
    bwt = re.search(r"memory's BWT is (\S+ \[\S+ \S+\])", README).group(1)
    assert bwt == interval(continual, "memory", "bwt")
    updating = re.search(r"for every changed fact \(updating accuracy (\S+)\)", README).group(1)
    assert same_decimals(updating, continual.loc["memory", "updating_accuracy.iqm"])
    low, high = re.search(r"the RL arms update (\S+)-(\S+) of changed facts", README).groups()
    rl = continual[continual["algorithm"].isin(["grpo", "ppo", "reinforce"])]["updating_accuracy.iqm"]
    assert same_decimals(low, rl.min()) and same_decimals(high, rl.max())
    frozen = re.search(r"of changed facts, frozen (\S+) \(it", README).group(1)
    assert same_decimals(frozen, continual.loc["frozen", "updating_accuracy.iqm"])


def test_the_probes_paragraph_quotes_the_committed_runs():
    """The general-probe drops the paragraph sets beside the two probes are the same runs'
    ``eval/base_general_accuracy - eval/general_accuracy``, summarized as the table is."""
    from analysis.aggregate import group_summaries
    from analysis.runs import final_values, finished, run_table

    runs = pd.read_parquet(RESULTS / "comparison" / "runs.parquet")
    drop = final_values(runs, "eval/base_general_accuracy") - final_values(runs, "eval/general_accuracy")
    general = group_summaries(finished(run_table(runs)), {"drop": drop}, seed=0).set_index("group")
    paragraph = " ".join(README[README.index("What the two probes changed.") :].split("\n\n")[0].split())
    sft = re.search(r"full fine-tuning with SFT (\S+ \[\S+ \S+\]) on the general probe", paragraph).group(1)
    assert sft == interval(general, "full_ft/sft", "drop")
    for label, group in (("the adapter with SFT", "adapter/sft"), ("the hybrid", "hybrid/grpo")):
        quoted = re.search(rf"{label} (\S+) on the general probe", paragraph).group(1)
        assert same_decimals(quoted, general.loc[group, "drop.iqm"]), group
    both = re.search(r"memory and the oracle (\S+) on the general probe", paragraph).group(1)
    assert same_decimals(both, general.loc["memory", "drop.iqm"])
    assert same_decimals(both, general.loc["oracle", "drop.iqm"])
    table = committed_table("comparison")
    knowledge, instruction = re.search(
        r"now (\S+ \[\S+ \S+\]) knowledge forgetting and (\S+ \[\S+ \S+\]) instruction override", paragraph
    ).groups()
    assert knowledge == interval(table, "full_ft/sft", "forgetting")
    assert instruction == interval(table, "full_ft/sft", "instruction_forgetting")
    assert (table["forgetting.ci_low"].round(2) <= 0).all()  # "every interval reaches 0"


# --------------------------------------------------------------------------- SmolLM2


def groups(runs: pd.DataFrame) -> list[str]:
    """Each row's group as the SmolLM2 tables name it: the paradigm, with ``/algorithm`` where it has one."""
    return [
        p if a == "none" else f"{p}/{a}" for p, a in zip(runs["paradigm"], runs["algorithm"], strict=True)
    ]


@pytest.mark.parametrize("document", ["README.md", "docs/real-model.md"])
def test_the_smollm2_table_is_the_committed_runs_first_and_last_evaluation(document: str):
    """Each cell is the mean over the group's users (runs) of a metric's first or last evaluation."""
    runs = pd.read_parquet(RESULTS / "comparison-smollm2" / "runs.parquet")
    text = (ROOT / document).read_text(encoding="utf-8")
    quoted = readme_table("| group | learning rate | personal accuracy | general accuracy |", text)
    names = runs.drop_duplicates("run_id").assign(group=lambda frame: groups(frame))
    assert sorted(quoted.index) == sorted(set(names["group"]))
    for group, row in quoted.iterrows():
        run_ids = names.loc[names["group"] == group, "run_id"].tolist()

        def curves(metric: str, ids: list[str] = run_ids) -> list[list[float]]:
            points = runs[runs["run_id"].isin(ids) & (runs["metric"] == metric)].sort_values("step")
            return [points.loc[points["run_id"] == r, "value"].tolist() for r in ids]

        def first(metric: str) -> float:
            starts = [c[0] for c in curves(metric)]
            return sum(starts) / len(starts)

        def last(metric: str) -> float:
            ends = [c[-1] for c in curves(metric)]
            return sum(ends) / len(ends)

        for column, metric in (
            ("personal accuracy", "eval/personal_accuracy"),
            ("general accuracy", "eval/general_accuracy"),
        ):
            start, end = row[column].split(" → ")
            assert same_decimals(start, first(metric)) and same_decimals(end, last(metric)), (group, column)
        assert same_decimals(row["knowledge forgetting"], last("eval/forgetting")), group
        assert same_decimals(row["format compliance"], last("eval/format_compliance")), group
        assert same_decimals(row["instruction following"], last("eval/instruction_following")), group
        assert same_decimals(row["minutes"], last("cost/wall_seconds") / 60), group
        rates = runs.loc[runs["run_id"].isin(run_ids), "param.algorithm.learning_rate"]
        if row["learning rate"] == "-":
            assert rates.isna().all() or names.loc[names["group"] == group, "algorithm"].eq("none").all()
        else:
            assert (rates.astype(float) == float(row["learning rate"])).all(), group


def test_the_hybrid_sentence_quotes_the_committed_hybrid_table():
    table = pd.read_csv(RESULTS / "hybrid" / "table.csv").set_index("group")
    worst, memory = re.search(r"does worst \((\S+) against memory's (\S+)\)", README).groups()
    accuracy = table["personal_accuracy.iqm"]
    assert accuracy.idxmin() == "hybrid/grpo (paradigm.route=kind)"  # facts to memory, habits to the adapter
    assert same_decimals(worst, accuracy.min()) and same_decimals(memory, accuracy["memory"])


# --------------------------------------------------------------------------- docs/continual.md

CONTINUAL_DOC = (ROOT / "docs" / "continual.md").read_text(encoding="utf-8")


def continual_config(row: pd.Series) -> str:
    """The docs table's name of a results/continual group (its paradigm and non-default mechanism)."""
    if row["paradigm"] == "adapter":
        return "adapter"
    settings = dict(pair.split("=") for pair in row["variant"].split(", "))
    regularizer = settings["continual.regularizer"]
    if regularizer != "none":
        return f"full_ft + {dict(l2sp='L2-SP', ewc='EWC', kl='KL')[regularizer]} (strength 1)"
    if float(settings["continual.replay"]) > 0:
        return f"full_ft + replay 0.25 ({settings['continual.replay_source']})"
    if float(settings["continual.distill"]) > 0:
        return "full_ft + distill 1"
    return "full_ft"


@pytest.mark.parametrize(
    ("directory", "header"),
    [("continual", "| config | knowledge forgetting"), ("continual-rebuilt", "| config (rebuilt base) |")],
)
def test_the_continual_doc_tables_are_the_committed_tables(directory, header):
    """docs/continual.md's two tables: the first base build's runs, and the same grid on the rebuilt base."""
    table = pd.read_csv(RESULTS / directory / "table.csv", keep_default_na=False)
    table = table.assign(config=table.apply(continual_config, axis=1)).set_index("config")
    quoted = readme_table(header, CONTINUAL_DOC)
    assert sorted(quoted.index) == sorted(table.index)
    plain = table.loc["full_ft", "total_flops.iqm"]
    for config, row in quoted.iterrows():
        for column, key in (
            ("knowledge forgetting", "forgetting"),
            ("instruction override", "instruction_forgetting"),
            ("personal accuracy", "personal_accuracy"),
        ):
            assert row[column].replace("-0.00", "0.00") == interval(table, config, key).replace(
                "-0.00", "0.00"
            ), (config, column)
        flops, ratio = row["total FLOPs (x full_ft)"].split(" ")
        assert float(flops) == float(f"{table.loc[config, 'total_flops.iqm']:.2e}"), config
        assert ratio == f"({table.loc[config, 'total_flops.iqm'] / plain:.2f})", config


def test_the_warm_start_curve_in_the_real_model_doc_is_the_committed_run():
    """docs/real-model.md's table (indented in a list item): each cell is the run's value at that step."""
    doc = (ROOT / "docs" / "real-model.md").read_text(encoding="utf-8")
    quoted = readme_table("| metric | 0 |", "\n".join(line.strip() for line in doc.splitlines()))
    runs = pd.read_parquet(RESULTS / "warm-start-smollm2" / "runs.parquet")
    assert runs["run_id"].nunique() == 1 and (runs["param.algorithm.warm_start_events"] == "64").all()
    steps = [int(column.split()[0]) for column in quoted.columns]
    for name, row in quoted.iterrows():
        metric = "eval/" + name.replace(" ", "_")
        curve = runs[runs["metric"] == metric].set_index("step")["value"]
        assert sorted(curve.index) == steps, metric
        for column, step in zip(quoted.columns, steps, strict=True):
            assert same_decimals(row[column], curve[step]), (metric, step)


def test_the_user0_rerun_repeats_the_committed_user_0_and_quotes_its_own_peaks():
    """results/comparison-smollm2-user0-rerun/README.md: every ``eval/`` value of its eight runs equals the
    committed comparison's user 0 at the same run and step, and its peak table is each run's largest
    ``cost/peak_rss_bytes`` in GiB, the committed one's beside it."""
    rerun_dir = RESULTS / "comparison-smollm2-user0-rerun"
    committed = pd.read_parquet(RESULTS / "comparison-smollm2" / "runs.parquet")
    committed = committed[committed["seed"].astype(str) == "0"]
    rerun = pd.read_parquet(rerun_dir / "runs.parquet")

    def evaluations(runs: pd.DataFrame) -> pd.Series:
        points = runs[runs["metric"].str.startswith("eval/")]
        return points.set_index(["run_name", "metric", "step"])["value"].sort_index()

    before, after = evaluations(committed), evaluations(rerun)
    assert before.index.equals(after.index) and len(after) > 300
    assert (before == after).all()

    def peaks(runs: pd.DataFrame) -> pd.Series:
        rows = runs[runs["metric"] == "cost/peak_rss_bytes"]
        return rows.groupby(groups(rows))["value"].max() / 2**30

    peaks_before, peaks_after = peaks(committed), peaks(rerun)
    readme = (rerun_dir / "README.md").read_text(encoding="utf-8")
    quoted = readme_table("| run | committed", readme)
    assert sorted(quoted.index) == sorted(peaks_after.index)
    for group, row in quoted.iterrows():
        assert row.iloc[0] == f"{peaks_before[group]:.2f}", group
        assert row.iloc[1] == f"{peaks_after[group]:.2f}", group
