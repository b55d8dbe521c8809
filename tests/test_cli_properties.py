"""A property test of the whole command line: whatever experiment file and ``--set`` values a
researcher writes, ``harness`` answers with status 0, 1 or 2, never a traceback, one line on exit 2
with nothing written, within bounded time and memory, and leaves its store readable.

The generated inputs mix valid values with the kinds of bad input that used to hang, exhaust the
machine or corrupt the store (issue 17): huge budgets, ``true`` and ``1e309`` as numbers, lists
where a name belongs, unsafe experiment names, ``seed`` beside ``seeds``, duplicate grid points,
empty files, YAML alias loops, unusable backbones and tracking stores. Most are bad, so most
invocations end at the config check, in milliseconds and without the model stack; the valid ones
run for a few feedback events on the tiny base.

Each invocation calls the real entry point (``experiments.cli.main``) in this process with:
- time bounded by an alarm (``INVOCATION_SECONDS``: far above any valid answer; it catches hangs),
- memory bounded by the address-space limit (``RLIMIT_AS`` = the process's size + ``HEADROOM``): an
  input that made the harness build a huge stream fails with MemoryError instead of filling the
  machine.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import signal
import sys
import tempfile
from pathlib import Path

import mlflow
import psutil
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.cli import main

INVOCATION_SECONDS = 120
HEADROOM = 3 * 2**30
EXAMPLES = 200

# -- what an experiment file holds ----------------------------------------------------------------
BAD_NUMBERS = st.sampled_from(
    [True, False, "1e309", ".inf", float("nan"), -1, 0, 10**12, 10**30, "abc", [1, 2], {"x": 1}, None]
)
GOOD = {
    "task.suite": st.sampled_from(["default", "user_facts", "preferences"]),
    "task.batch_size": st.sampled_from([1, 2, 4]),
    "task.search": st.booleans(),
    "paradigm.name": st.sampled_from(["frozen", "oracle"]),
    "budget.feedback_events": st.sampled_from([2, 4, 8]),
    "evaluation.every": st.sampled_from([4, 8]),
    "evaluation.general_items": st.sampled_from([2, 4]),
    "reward.weights.format": st.sampled_from([0.0, 0.5, 2.0]),
    "generation.max_new_tokens": st.sampled_from([8, 16]),
    "seeds": st.sampled_from([[0], [1], [0, 1]]),
}
BAD = {
    "task.suite": st.sampled_from([["default"], "nope", 3, None, {"a": 1}]),
    "task.batch_size": BAD_NUMBERS,
    "paradigm.name": st.sampled_from(["nope", "adapter ", ["frozen"], 7]),
    "paradigm.nmae": st.just("frozen"),
    "budget.feedback_events": BAD_NUMBERS,
    "evaluation.every": BAD_NUMBERS,
    "reward.weights.correctness": BAD_NUMBERS,
    "reward.weights.nope": st.just(1.0),
    "generation.temperature": BAD_NUMBERS,
    "generation.max_new_tokens": BAD_NUMBERS,
    "seed": st.sampled_from([5, -1, True, 10**9]),
    "seeds": st.sampled_from([[], [1, 1], [True], "0", [10**9], [-1]]),
    "name": st.sampled_from(["../../x", "a/b", "", ".hidden", "x" * 200, "two words", 3]),
    "backbone": st.sampled_from(
        ["/nonexistent/dir", "builtin:nope", "nobody-here/no-such-model", "not a model", "/tmp", ""]
    ),
    "device": st.sampled_from(["gpu", "cuda:x", 0]),
    "continual.replay": st.sampled_from([0.5, 2.0, "1e309"]),
    "grid": st.sampled_from(
        [
            [{"paradigm.name": "frozen"}, {"paradigm": {"name": "frozen"}}],
            [{"seed": 3}],
            [{"name": "x"}],
            "oracle",
            [["paradigm.name", "oracle"]],
        ]
    ),
}
KEYS = sorted(set(GOOD) | set(BAD))
EMPTY_FILES = ["", "# nothing\n", "{}\n"]


@st.composite
def settings_pairs(draw, max_size: int) -> dict:
    """Dotted key -> value, bad for its key three times in four (valid runs cost seconds, bad input
    milliseconds)."""
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=max_size, unique=True))
    chosen = {}
    for key in keys:
        kind = draw(st.sampled_from(["bad", "bad", "bad", "good"]))
        strategy = (BAD if kind == "bad" else GOOD).get(key) or (GOOD.get(key) or BAD[key])
        chosen[key] = draw(strategy)
    return chosen


def nest(pairs: dict) -> dict:
    tree: dict = {}
    for dotted, value in pairs.items():
        node = tree
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[last] = value
    return tree


#: What makes a valid run quick (a few events on the tiny base); any key may then be overridden.
QUICK_BASE = {
    "backbone": "builtin:tiny",
    "budget.feedback_events": 4,
    "evaluation.every": 4,
    "evaluation.general_items": 2,
    "generation.max_new_tokens": 8,
}


@st.composite
def experiment_text(draw) -> str:
    """An experiment file's text: mostly YAML of a (possibly bad) config, sometimes no config at all.

    An empty file is drawn only without ``--set`` values (see the test): with them it would be a
    valid run of every default, on the real base, for minutes.
    """
    kind = draw(st.sampled_from(["config"] * 8 + ["empty", "not yaml", "not a mapping", "alias loop"]))
    if kind == "empty":
        return draw(st.sampled_from(EMPTY_FILES))
    if kind == "not yaml":
        return draw(st.sampled_from(["task: [1, 2\n", "a: b: c\n", "\t- x\n"]))
    if kind == "not a mapping":
        return draw(st.sampled_from(["- 1\n- 2\n", "just text\n", "42\n"]))
    if kind == "alias loop":
        return "task: &a {suite: default, again: *a}\n"
    pairs = {**QUICK_BASE, **draw(settings_pairs(max_size=4))}
    return yaml.safe_dump(nest(pairs), sort_keys=False)


@st.composite
def set_options(draw) -> list[str]:
    """``--set KEY=VALUE`` arguments, values written as a researcher would type them."""
    pairs = draw(settings_pairs(max_size=2))
    args = []
    for key, value in pairs.items():
        text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
        text = text.removesuffix("\n...").strip()
        args += ["--set", f"{key}={text}"]
    if draw(st.booleans()):
        args += ["--set", draw(st.sampled_from(["novalue", "=3", "a..b=1", "budget.feedback_events.x=1"]))]
    return args


STORES = st.sampled_from(
    ["default"] * 6 + ["notascheme://x", "http://127.0.0.1:9", "sqlite:////no/such/folder/m.db"]
)


# -- invoking the real entry point with bounded time and memory -----------------------------------
class Hung(BaseException):  # not an Exception: a run must not record it as its own failure
    pass


def _alarm(signum, frame):
    raise Hung(f"an invocation ran longer than {INVOCATION_SECONDS} s")


@contextlib.contextmanager
def bounded():
    """Time (alarm) and address space (RLIMIT_AS) bounds around one invocation; restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = psutil.Process().memory_info().vms + HEADROOM
    resource.setrlimit(
        resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard)
    )
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(INVOCATION_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def invoke(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run ``harness ARGS`` through ``main()`` in ``cwd``; (status, stdout, stderr). An exception that
    escapes ``main`` is what the console script would print as a traceback: it fails the test."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    argv = sys.argv
    try:
        os.chdir(cwd)
        sys.argv = ["harness", *args]
        with bounded(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                status = 0
            except SystemExit as done:
                status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.argv = argv
        os.chdir(here)
    return status, out.getvalue(), err.getvalue()


def store_runs(store: Path) -> list:
    """Every run in the store (it must open and answer); [] when there is no store yet."""
    if not store.exists():
        return []
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


@pytest.fixture(scope="module")
def workspace(tiny_base):
    """One store shared by every generated invocation, as a researcher's working directory is."""
    with tempfile.TemporaryDirectory(prefix="cli-properties-") as scratch:
        yield Path(scratch)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    command=st.sampled_from(["run", "run", "config show"]),
    text=experiment_text(),
    options=set_options(),
    store=STORES,
)
def test_any_input_gets_a_clean_answer_and_leaves_the_store_readable(
    workspace, command, text, options, store
):
    case = Path(tempfile.mkdtemp(dir=workspace, prefix="case-"))
    (case / "exp.yaml").write_text(text)
    if text in EMPTY_FILES:  # an empty file alone: refused; with --set values: every default
        options = []
    db = workspace / "mlflow.db"
    args = [*command.split(), "exp.yaml", *options]
    if command == "run":
        args += ["--quiet", "--tracking-uri", f"sqlite:///{db}" if store == "default" else store]
    before = len(store_runs(db))

    status, _out, err = invoke(args, case)

    described = f"harness {' '.join(args)}\n--- exp.yaml\n{text}--- stderr\n{err[-2000:]}"
    assert status in (0, 1, 2), described
    assert "Traceback" not in err, described
    lines = [line for line in err.splitlines() if line.strip()]
    if status == 2:
        assert len(lines) == 1 and lines[0].startswith("error: "), described
        assert len(store_runs(db)) == before, described  # nothing written
    runs = store_runs(db)  # readable after every answer
    assert not [r for r in runs if r.info.status == "RUNNING"], described
    if status == 0 and command == "run":
        assert len(runs) > before, described
