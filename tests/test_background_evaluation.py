"""Evaluations in a forked copy of the run (``evaluation.background``) log exactly the metrics evaluations in
place log, only for paradigms whose evaluation writes no state (every one, handing back what later
evaluations reuse), and bring the copy's errors home."""

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing import util

import mlflow
import pytest
import torch

import experiments.run as run_module
from experiments import background_evaluation
from experiments.config import load_experiment
from experiments.metrics import EVALUATION_WAIT_SECONDS
from experiments.peak_memory import freed_but_kept_bytes, release_freed_memory
from experiments.run import execute
from experiments.tracking import Tracker
from paradigms import answer_cache
from paradigms.session import Diverged, Session
from tests.conftest import SMOKE, TINY, metric_histories

pytestmark = pytest.mark.skipif(not background_evaluation.available(), reason="this platform cannot fork")
#: a one-thread run has a core to spare for its copy (this machine and CI: 2 cores)
SPARE = pytest.mark.skipif(
    not background_evaluation.a_core_to_spare(1, workers=1), reason="fewer than 2 usable cores"
)

ONE_THREAD = "threads=1"  # a copy evaluates only beside a one-thread run (the other core is its)
#: Every paradigm: their evaluations write nothing of the run but what the copy hands back.
IN_COPIES = {
    "full_ft-grpo": ["paradigm.name=full_ft", "algorithm.name=grpo", "algorithm.group_size=2"],
    "adapter-grpo": ["paradigm.name=adapter", "algorithm.name=grpo", "algorithm.group_size=2"],
    "full_ft-reinforce": ["paradigm.name=full_ft", "algorithm.name=reinforce"],
    "adapter-sft": ["paradigm.name=adapter", "algorithm.name=sft"],
    # three drift phases: evaluations at each phase's end, items answered in their own phase's world
    "full_ft-reinforce-drift": ["paradigm.name=full_ft", "algorithm.name=reinforce", "task.suite=drift"],
    # the adapter and a memory written with everything: the copy hands back the question vectors it embeds
    "hybrid-grpo": [
        "paradigm.name=hybrid",
        "algorithm.name=grpo",
        "algorithm.group_size=2",
        "paradigm.route=both",
    ],
    # the base as it is (its unchanged answers come back from the copies to the answer cache)
    "frozen": [],
    "frozen-tool_policy": ["paradigm.tool_policy=qlearning"],
    "oracle": ["paradigm.name=oracle"],
    "memory": ["paradigm.name=memory"],
}


def _record_forks(monkeypatch, started: list[int]) -> None:
    """Append the event of every copy forked from now on to ``started``."""
    start = background_evaluation.BackgroundEvaluation.start

    def counted(self, measure, label=None, serve=None):
        started.append(label)
        return start(self, measure, label, serve)

    monkeypatch.setattr(background_evaluation.BackgroundEvaluation, "start", counted)


@pytest.fixture
def forks(monkeypatch) -> list[int]:
    """The events of every evaluation started in a forked copy during the test (a new copy's, or one asked
    of the copy that stays: :func:`forked`)."""
    started: list[int] = []
    _record_forks(monkeypatch, started)
    request = background_evaluation.BackgroundEvaluation.request

    def counted_request(self, update, label=None):
        started.append(label)
        return request(self, update, label)

    monkeypatch.setattr(background_evaluation.BackgroundEvaluation, "request", counted_request)
    return started


@pytest.fixture
def forked(monkeypatch) -> list[int]:
    """The events at which a copy was forked during the test (not those asked of a copy that stays)."""
    started: list[int] = []
    _record_forks(monkeypatch, started)
    return started


def _tracked(config, tracker: Tracker, name: str) -> str:
    run = tracker.start_run("background-evaluation", name)
    execute(config, run, progress=False)
    run.finish()
    return run.run_id


#: The paradigms whose evaluation state a copy forked earlier loads (``Paradigm.evaluation_state``).
STANDING = [
    "full_ft-grpo",
    "adapter-grpo",
    "full_ft-reinforce",
    "adapter-sft",
    "full_ft-reinforce-drift",
    "frozen",
    "frozen-tool_policy",
    "oracle",
]
#: Evaluations after every batch (16 events for reinforce): at least two in a copy for every arm, and
#: weights that have moved at the second (a GRPO smoke run's first update shows at its third evaluation)
OFTEN = ["evaluation.every=4", "budget.feedback_events=32"]
#: Every arm as the smoke run evaluates it, and the arms served by one copy evaluating often
LOGGED = {**IN_COPIES, **{f"{arm}-often": [*IN_COPIES[arm], *OFTEN] for arm in STANDING}}


@SPARE
@pytest.mark.parametrize("overrides", LOGGED.values(), ids=LOGGED.keys())
def test_a_copy_logs_what_an_evaluation_in_place_logs(overrides, tracking_uri, tiny_base, forks):
    tracker, client = Tracker(tracking_uri), mlflow.MlflowClient(tracking_uri)
    in_place = load_experiment(SMOKE, [TINY, ONE_THREAD, "evaluation.background=false", *overrides]).runs()[0]
    in_place_id = _tracked(in_place, tracker, "in-place")
    assert forks == []
    answer_cache.SHARED.clear()  # the copies generate their answers, not find the run's in place stored
    beside = load_experiment(SMOKE, [TINY, ONE_THREAD, *overrides]).runs()[0]
    beside_id = _tracked(beside, tracker, "beside")
    expected = metric_histories(client, in_place_id)
    assert "eval/personal_accuracy" in expected
    assert ("eval/kl_to_base" in expected) is in_place.paradigm.uses_algorithm
    evaluations = [step for step, _ in expected["eval/personal_accuracy"]]
    # every evaluation but the last ran in a copy; the last is the one the run waits for anyway
    assert forks == evaluations[:-1], (forks, evaluations)
    assert metric_histories(client, beside_id) == expected
    assert beside.config_hash() == in_place.config_hash()  # where it evaluated is not a config
    waited = client.get_metric_history(beside_id, EVALUATION_WAIT_SECONDS)
    assert [m.step for m in waited] == evaluations


def _often(arm: str):
    return load_experiment(SMOKE, [TINY, ONE_THREAD, *OFTEN, *IN_COPIES[arm]]).runs()[0]


@SPARE
@pytest.mark.parametrize("arm", STANDING)
def test_one_copy_serves_every_evaluation_of_a_paradigm_that_says_its_state(arm, tiny_base, forks, forked):
    """Forked once, at evaluation 0; every later evaluation but the last is asked of the same copy."""
    execute(_often(arm), None, progress=False)
    assert forked == [0] and len(forks) >= 2, (forked, forks)


@SPARE
@pytest.mark.parametrize("arm", ["hybrid-grpo", "memory"])
def test_a_paradigm_without_an_evaluation_state_forks_a_copy_for_each(arm, tiny_base, forks, forked):
    execute(_often(arm), None, progress=False)
    assert forked == forks and len(forks) >= 2


@SPARE
def test_a_big_backbone_forks_a_copy_for_each(tiny_base, forks, forked, monkeypatch):
    """A copy that stays holds the pages the run rewrites meanwhile: not for a model past the limit."""
    monkeypatch.setattr(run_module, "STANDING_COPY_MAX_PARAMETERS", 0)
    execute(_often("full_ft-grpo"), None, progress=False)
    assert forked == forks and len(forks) >= 2


@SPARE
@pytest.mark.parametrize("arm", STANDING)
def test_the_copy_that_stays_computes_what_the_run_computes(
    arm, tiny_base, tmp_path, forks, forked, monkeypatch
):
    """At each evaluation the model the copy answers with has the run's exact tensors, configuration,
    generation defaults, module classes and adapter states (``computation_digest``), and the same random
    state: whatever a trainer changed of the model after the copy was forked, which a tiny run's metrics
    might not show."""
    from experiments.evaluation import Evaluator
    from paradigms.answer_cache import computation_digest

    evaluate = Evaluator.evaluate

    def digested_evaluate(self, paradigm, *args, **kwargs):
        with (tmp_path / f"{os.environ['WHERE']}.txt").open("a") as out:
            out.write(f"{self.session.events} {computation_digest(paradigm.model)} {torch.rand(1).item()}\n")
        return evaluate(self, paradigm, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "evaluate", digested_evaluate)
    for where, background in (("in-place", "false"), ("beside", "true")):
        monkeypatch.setenv("WHERE", where)
        overrides = [TINY, ONE_THREAD, *OFTEN, f"evaluation.background={background}", *IN_COPIES[arm]]
        execute(load_experiment(SMOKE, overrides).runs()[0], None, progress=False)
    assert forked == [0] and len(forks) >= 2  # one copy, asked at least once
    in_place = (tmp_path / "in-place.txt").read_text().splitlines()
    beside = (tmp_path / "beside.txt").read_text().splitlines()
    assert len(in_place) >= 3 and sorted(beside) == sorted(in_place)


@pytest.fixture
def evaluating_in_the_run(monkeypatch) -> Callable[[], bool]:
    """Whether this process (the run, not a copy of it) is inside an evaluation now."""
    from experiments.evaluation import Evaluator

    run, inside, evaluate = os.getpid(), [False], Evaluator.evaluate

    def flagged_evaluate(self, *args, **kwargs):
        inside[0] = True
        try:
            return evaluate(self, *args, **kwargs)
        finally:
            inside[0] = False

    monkeypatch.setattr(Evaluator, "evaluate", flagged_evaluate)
    return lambda: os.getpid() == run and inside[0]  # (a copy's counts stay in the copy)


@SPARE
def test_the_run_keeps_what_a_copy_embedded(tiny_base, forks, evaluating_in_the_run, monkeypatch):
    """A hybrid's copy embeds the evaluator's questions for its memory part and hands the vectors back: the
    run's own (last) evaluation embeds none of them again."""
    from paradigms.memory.embedders import MiniLMEmbedder

    embedded, embed = [], MiniLMEmbedder.embed

    def counted_embed(self, texts):
        if evaluating_in_the_run():
            embedded.extend(texts)
        return embed(self, texts)

    monkeypatch.setattr(MiniLMEmbedder, "embed", counted_embed)
    config = load_experiment(SMOKE, [TINY, ONE_THREAD, *IN_COPIES["hybrid-grpo"]]).runs()[0]
    execute(config, None, progress=False)
    assert len(forks) >= 2  # evaluation 0 (which embeds them) and at least one after
    assert embedded == []


@SPARE
def test_the_run_keeps_the_answers_a_copy_stored(tiny_base, forks, evaluating_in_the_run, monkeypatch):
    """A frozen run's copies answer with the base and hand their stored answers back: the run's own (last)
    evaluation is served them whole and generates nothing."""
    import paradigms.session as session_module

    generated, rollout = [], session_module.rollout

    def counted_rollout(model, tokenizer, queries, *args, **kwargs):
        if evaluating_in_the_run():
            generated.extend(queries)
        return rollout(model, tokenizer, queries, *args, **kwargs)

    monkeypatch.setattr(session_module, "rollout", counted_rollout)
    execute(load_experiment(SMOKE, [TINY, ONE_THREAD, *IN_COPIES["frozen"]]).runs()[0], None, progress=False)
    assert len(forks) >= 2
    assert generated == []


def test_a_paradigm_whose_evaluation_writes_its_state_evaluates_in_place(tiny_base, forks, monkeypatch):
    from paradigms.frozen import Frozen

    monkeypatch.setattr(Frozen, "evaluation_writes_no_state", False)
    execute(load_experiment(SMOKE, [TINY, ONE_THREAD]).runs()[0], None, progress=False)
    assert forks == []


def test_a_run_whose_evaluations_may_stop_it_evaluates_in_place(tiny_base, forks):
    """A sweep's pruner stops a trial at the evaluation it reads: in a copy, that would come later."""
    seen = []
    config = load_experiment(SMOKE, [TINY, ONE_THREAD, *IN_COPIES["full_ft-grpo"]]).runs()[0]
    execute(config, None, progress=False, on_eval=lambda events, values: seen.append(events))
    assert forks == [] and seen[0] == 0 and len(seen) > 2


def test_a_local_grid_worker_evaluates_in_place(tiny_base, forks, monkeypatch):
    """Two workers and their copies would spin against each other on the machine's cores."""
    monkeypatch.setenv(background_evaluation.LOCAL_WORKERS_VARIABLE, "2")
    execute(
        load_experiment(SMOKE, [TINY, ONE_THREAD, *IN_COPIES["full_ft-grpo"]]).runs()[0],
        None,
        progress=False,
    )
    assert forks == []


@pytest.mark.parametrize(
    ("threads", "cores", "workers", "spare"),
    [(1, 2, 1, True), (2, 2, 1, False), (1, 2, 2, False), (2, 4, 1, True), (1, 1, 1, False), (2, 8, 2, True)],
)
def test_a_copy_runs_only_on_cores_of_its_own(threads, cores, workers, spare):
    assert background_evaluation.a_core_to_spare(threads, cores, workers) is spare


def test_the_local_workers_say_how_many_they_are(monkeypatch):
    from experiments.sweep.processes import cores_shared_here, worker_environment

    monkeypatch.delenv(background_evaluation.LOCAL_WORKERS_VARIABLE, raising=False)
    assert worker_environment(2)[background_evaluation.LOCAL_WORKERS_VARIABLE] == "2"
    with cores_shared_here(2):
        assert os.environ[background_evaluation.LOCAL_WORKERS_VARIABLE] == "2"
    assert background_evaluation.LOCAL_WORKERS_VARIABLE not in os.environ


def _diverges():
    raise Diverged("eval/kl_to_base became nan after 8 feedback events")


def test_what_the_copy_raises_is_raised_here_with_its_traceback():
    background = background_evaluation.BackgroundEvaluation()
    background.start(_diverges, 8)
    with pytest.raises(Diverged, match="became nan") as raised:
        background.collect()
    cause = raised.value.__cause__
    assert isinstance(cause, background_evaluation.BackgroundEvaluationFailed)
    assert "at 8" in str(cause) and "_diverges" in str(cause)  # where, and the copy's traceback
    assert not background.pending


def test_a_copy_that_dies_is_reported_with_its_exit_code():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: os._exit(3), 16)
    with pytest.raises(background_evaluation.BackgroundEvaluationFailed, match="at 16 died with exit code 3"):
        background.collect()


def test_an_unwanted_copy_is_stopped():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: time.sleep(60), 0)
    process = background._in_flight.copy.process
    background.close()
    assert not process.is_alive() and not background.pending


def test_the_copy_collects_none_of_what_it_holds_of_the_run():
    """A full collection in the copy would walk every object of the run and write the pages they are on."""
    import gc

    background = background_evaluation.BackgroundEvaluation()
    held = len(gc.get_objects())
    background.start(gc.get_freeze_count, 0)
    assert background.collect()[1] >= held > 0
    assert gc.get_freeze_count() == 0  # the run's own collector is as it was
    background.close()


def test_the_result_comes_back_whole():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: ({"eval/personal_accuracy": 0.5}, 1.0, 0.25), 24)
    assert background.collect() == (24, ({"eval/personal_accuracy": 0.5}, 1.0, 0.25))


def _times(update):
    if update == "raise":
        raise ValueError("this update cannot be served")
    return update * 10


def test_a_copy_that_stays_answers_each_request_until_closed():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: "first", 0, serve=_times)
    process = background._in_flight.copy.process
    assert background.standing and background.collect() == (0, "first")
    for events in (8, 16):
        background.request(events, events)
        assert background.collect() == (events, events * 10)
    assert process.is_alive() and background.standing  # waiting for the next request
    background.close()
    assert process.exitcode == 0 and not background.standing and not multiprocessing.active_children()


def _sum_later(update):
    time.sleep(0.3)  # the run has changed its tensor meanwhile
    return float(update["weights"].sum())


def test_a_request_is_what_the_run_held_when_it_asked():
    """The update's tensors are copied when it is sent, not shared: training on after the request does not
    change what the copy evaluates."""
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: "first", 0, serve=_sum_later)
    background.collect()
    weights = torch.zeros(4)
    background.request({"weights": weights}, 8)
    weights.add_(1.0)  # the next optimizer step
    assert background.collect() == (8, 0.0)
    assert not weights.is_shared()
    background.close()


def test_a_request_carries_tensors_exactly_whatever_their_dtype_and_shape():
    import pickle

    tensors = {
        "float32": torch.randn(3, 5),
        "bfloat16": torch.randn(4, 2).to(torch.bfloat16),
        "int64": torch.arange(7),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "strided": torch.arange(12.0).reshape(3, 4).t(),  # not contiguous
        "parameter": torch.nn.Parameter(torch.ones(2, 2)),
    }
    back = pickle.loads(background_evaluation._pickled_copy({"policy": tensors, "flops": 1.5}))
    assert back["flops"] == 1.5
    for name, tensor in tensors.items():
        copy = back["policy"][name]
        assert copy.dtype == tensor.dtype and copy.shape == tensor.shape, name
        assert torch.equal(copy, tensor.detach()) and not copy.requires_grad, name


def test_the_copy_that_stays_goes_when_dismissed_though_its_pipe_lives_on():
    """A process forked meanwhile by other means holds the run's end of the requests' pipe too: the copy is
    told to go, and close() does not wait for that process."""
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: "first", 0, serve=_times)
    process = background._in_flight.copy.process
    background.collect()
    holder = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), daemon=True)
    holder.start()  # inherits every descriptor of the run, the requests' pipe among them
    try:
        started = time.monotonic()
        background.close()
        assert process.exitcode == 0 and time.monotonic() - started < background_evaluation.JOIN_SECONDS
    finally:
        holder.terminate()
        holder.join()


def test_a_copy_that_stays_and_raises_is_gone():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: "first", 0, serve=_times)
    background.collect()
    background.request("raise", 8)
    with pytest.raises(ValueError, match="cannot be served"):
        background.collect()
    assert not background.standing  # what it holds may be half-updated: the next evaluation forks
    background.close()
    assert not multiprocessing.active_children()


def test_a_request_to_a_copy_that_died_says_so_and_none_stays():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: "first", 0, serve=_times)
    process = background._in_flight.copy.process
    background.collect()
    process.kill()
    process.join()
    with pytest.raises(OSError):
        background.request(8, 8)
    assert not background.standing and not background.pending
    background.start(lambda: "next", 8)  # the runner evaluates in place, and the next evaluation forks
    assert background.collect() == (8, "next")
    background.close()


def test_a_new_copy_dismisses_the_one_that_stayed():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: "first", 0, serve=_times)
    process = background._in_flight.copy.process
    background.collect()
    background.start(lambda: "second", 8)
    assert background.collect() == (8, "second") and not background.standing
    process.join(timeout=30)
    assert process.exitcode == 0  # its requests' pipe ended: it left on its own
    background.close()


def _answer_then_linger(release):
    """Answer at once, then keep the copy alive after it sent its answer until ``release`` is set, at most
    30 s (its exit stands in for the kernel tearing a large copy down)."""
    util.Finalize(None, release.wait, args=(30,), exitpriority=0)  # runs as the copy exits, after answering
    return "answered"


def test_collecting_does_not_wait_for_the_copy_to_exit_and_close_reaps_it():
    release = multiprocessing.get_context("fork").Event()
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: _answer_then_linger(release), 32)
    process = background._in_flight.copy.process
    assert background.collect() == (32, "answered")
    assert process.is_alive() and not background.pending  # collected while the copy still exits
    background.start(lambda: "next", 40)  # a copy that has not exited does not hold up the next one
    assert background.collect() == (40, "next")
    release.set()
    background.close()
    assert process.exitcode == 0 and not multiprocessing.active_children()


@pytest.mark.parametrize(("threshold", "released"), [(0, 1), (2**62, 0)])
def test_freed_memory_is_handed_back_before_a_fork_when_there_is_much(threshold, released, monkeypatch):
    if background_evaluation.freed_but_kept_bytes() is None:
        pytest.skip("the C library does not say what it keeps (not glibc >= 2.33)")
    calls = []
    monkeypatch.setattr(background_evaluation, "RELEASE_FROM_BYTES", threshold)
    monkeypatch.setattr(background_evaluation, "release_freed_memory", lambda: calls.append(1))
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: 0, 0)
    assert background.collect() == (0, 0) and len(calls) == released


def test_what_the_allocator_keeps_is_read():
    if freed_but_kept_bytes() is None:
        pytest.skip("the C library does not say what it keeps (not glibc >= 2.33)")
    chunks = [bytearray(64 * 1024) for _ in range(2000)]  # 125 MiB in chunks the arenas serve
    del chunks[:-1]  # all but the last, so the arena's top stays in use and the rest stays kept
    assert freed_but_kept_bytes() >= 64 * 2**20
    del chunks
    release_freed_memory()
    assert freed_but_kept_bytes() < 64 * 2**20


def test_a_run_on_a_device_that_does_not_survive_a_fork_evaluates_in_place(tiny_base, forks, monkeypatch):
    monkeypatch.setattr(run_module, "resolve_device", lambda device: torch.device("mps"))
    execute(
        load_experiment(SMOKE, [TINY, ONE_THREAD, *IN_COPIES["full_ft-grpo"]]).runs()[0],
        None,
        progress=False,
    )
    assert forks == []


@SPARE
@pytest.mark.parametrize("background", ["true", "false"])
def test_a_run_that_fails_after_an_evaluation_logs_it_either_way(
    background, tracking_uri, tiny_base, monkeypatch
):
    """In place, the evaluation after the first batch is logged before the second one fails; in a copy too."""
    record, first = Session.record, []

    def failing(self, interaction, train_metrics=None):
        if self.events:
            raise RuntimeError("the second batch failed")
        record(self, interaction, train_metrics)
        first.append(self.events)

    monkeypatch.setattr(Session, "record", failing)
    overrides = [TINY, ONE_THREAD, f"evaluation.background={background}", "budget.feedback_events=48"]
    config = load_experiment(SMOKE, [*overrides, *IN_COPIES["full_ft-reinforce"]]).runs()[0]
    tracker, client = Tracker(tracking_uri), mlflow.MlflowClient(tracking_uri)
    run = tracker.start_run("background-evaluation", f"fails-{background}")
    with pytest.raises(RuntimeError, match="second batch failed"):
        execute(config, run, progress=False)
    run.finish("FAILED")
    steps = [m.step for m in client.get_metric_history(run.run_id, "eval/personal_accuracy")]
    assert steps == [0, *first]


class _TwoArguments(Exception):
    """Pickles, but does not unpickle: ``__init__`` wants two arguments and ``args`` holds one."""

    def __init__(self, first, second):
        super().__init__(f"{first} and {second}")


def _raises_two_arguments():
    raise _TwoArguments("a", "b")


def test_an_exception_that_does_not_unpickle_comes_back_as_its_traceback():
    background = background_evaluation.BackgroundEvaluation()
    background.start(_raises_two_arguments, 4)
    with pytest.raises(background_evaluation.BackgroundEvaluationFailed, match="_TwoArguments: a and b"):
        background.collect()
    assert not background.pending


def test_an_interrupt_while_waiting_stops_the_copy():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: time.sleep(60), 0)
    copy = background._in_flight.copy

    class Interrupted:
        def recv(self):
            raise KeyboardInterrupt

        def close(self):
            copy.answers.close()

    background._in_flight = background_evaluation._InFlight(
        background_evaluation._Copy(copy.process, Interrupted(), None), 0
    )
    with pytest.raises(KeyboardInterrupt):
        background.collect()
    assert not copy.process.is_alive() and not background.pending


def test_the_copy_leaves_ctrl_c_to_the_run():
    """Ctrl-C reaches the whole process group; the copy ignores it and the run stops it (SIGTERM, at once)."""
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: time.sleep(60), 0)
    process = background._in_flight.copy.process
    time.sleep(0.5)  # the copy has set its handlers
    os.kill(process.pid, signal.SIGINT)
    time.sleep(0.3)
    assert process.is_alive()
    started = time.perf_counter()
    background.close()
    assert not process.is_alive() and time.perf_counter() - started < 5
