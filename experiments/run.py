"""The runner: an experiment's grid × seeds, one MLflow child run each under one parent run.

For one run: seed everything, load the backbone, build the user, stream and evaluation items
from the suite, hand the paradigm a ``Session`` whose callback logs training metrics after every
batch and evaluates every ``evaluation.every`` feedback events, then save the paradigm's state.
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm

from analysis.stats import area_under_curve
from experiments import background_evaluation
from experiments import metrics as m
from experiments.backbones import resolve_backbone
from experiments.base import RECIPES
from experiments.config import Experiment, RunConfig
from experiments.consumed import ConsumedStream
from experiments.errors import describe_error
from experiments.evaluation import PARTS_TOGETHER_MAX_PARAMETERS, Evaluator, _mean
from experiments.peak_memory import peak_rss_bytes, reset_peak_rss
from experiments.seeding import TORCH_THREADS_TAG, isolated_rng, seed_everything
from experiments.tracking import TrackedRun, Tracker, group_labels
from paradigms import PARADIGMS
from paradigms.backbone import Backbone, load_backbone, resolve_device
from paradigms.base import Paradigm
from paradigms.collector import older_objects_frozen
from paradigms.compute import forward_flops, parameter_count
from paradigms.cpu_kernels import CPU_CAPABILITY_TAG
from paradigms.session import Diverged, FeedbackReport, Session
from tasks import probes
from tasks.settings import TaskSettings
from tasks.suites import SUITES
from tasks.worlds import WorldView, builtin_world

#: Backbones up to this many parameters have one forked copy evaluate every evaluation of a run in turn,
#: brought up to date at each (``Paradigm.evaluation_state``), when the paradigm can say what that takes:
#: a fork is ~14 ms of page-table copying for the ~450 MB any ML process holds (8 forks: ~4% of a builtin
#: GRPO run) and the builtin base's state ~2-3 ms to send. A copy that stays holds the pages the run rewrites
#: meanwhile, which in a 10 GB SmolLM2 run (optimizer state, activations) would double its memory: bigger
#: backbones fork a copy for each evaluation, whose time there is minutes.
STANDING_COPY_MAX_PARAMETERS = 10_000_000

#: The artifact holding, at every evaluation, the user questions answered and their digest
#: (``experiments.consumed``): equal for every paradigm at an equal number of questions.
STREAM_CONSUMED_FILE = "stream_consumed.json"


@dataclass
class Measured:
    """One evaluation as ``execute`` measures it, in place or in a forked copy of the run (which sends it
    back whole): what the run logs and what it keeps of the evaluation's work."""

    results: dict[str, float]  # the metrics
    seconds: float  # the evaluation's own
    generating: float  # its rollouts' seconds (``cost/generation_seconds`` counts them)
    base: dict[str, float] | None  # the untouched base's probe scores, when it measured them
    kept: dict[str, Any]  # what the paradigm keeps for later evaluations (``Paradigm.evaluation_keeps``)
    answers: list  # the requests it stored in the answer cache (``AnswerCache.stored_since``)


class RunFailed(RuntimeError):
    """One or more runs raised; each is marked FAILED in MLflow with its error."""


@dataclass
class RunResult:
    name: str
    run_id: str
    status: str
    final: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def _backbone_source(config: RunConfig, tracker: Tracker | None, progress: bool) -> str:
    return resolve_backbone(config.backbone, tracker=tracker, progress=progress)


def backbone_world(
    backbone: Backbone, source: str, config: RunConfig, progress: bool = True
) -> tuple[WorldView, list[str] | None]:
    """The world a run's questions come from and the general-probe questions it keeps.

    The builtin grammar's world is fixed and fully known to its base (keep: every probe question);
    a chat backbone's is the real world restricted to what it knows, with the general probe it
    answers right (``experiments.competence``: measured once per backbone, cached).
    """
    if backbone.protocol.world == "builtin":
        return builtin_world(), None
    from experiments.competence import card_world, ensure_card

    card = ensure_card(backbone, source, config.dtype, progress=progress)
    return card_world(card), card["general_probe"]


def prepare_backbones(configs: list[RunConfig], tracker: Tracker | None, progress: bool = True) -> None:
    """Make, before any run starts, what the runs of ``configs`` share, so no run's duration holds it.

    Every builtin base they use is built (or waited for), logged as its own run in ``builtin-base``;
    a named backbone (``smollm2``) is converted; a chat backbone's competence card is measured,
    loading the backbone only when its card is not cached yet. A failure here is left to the runs,
    which record it (each FAILED with its error) as they would without this step.
    """
    from experiments.competence import card_path, ensure_card  # only a chat backbone needs them

    for spec, dtype, protocol, device in sorted(
        {(c.backbone, c.dtype, c.protocol, c.device) for c in configs}
    ):
        try:
            source = resolve_backbone(spec, tracker=tracker, progress=progress)
            if spec in RECIPES or card_path(source, dtype).is_file():
                continue
            backbone = load_backbone(source, device, dtype, protocol)
            if backbone.protocol.world != "builtin":
                ensure_card(backbone, source, dtype, progress=progress)
        except Exception:  # the run that needs this backbone fails with the error, recorded
            continue


def _check_finite(values: dict[str, float], events: int) -> None:
    for key, value in values.items():
        if not math.isfinite(value):
            raise Diverged(
                f"{key} became {value} after {events} feedback events; lower the learning rate "
                f"or the reward weights"
            )


def curve_mean(curve: list[tuple[int, float]]) -> float:
    """The mean of a (feedback events, accuracy) curve so far: its normalized trapezoid area
    (analysis.stats.area_under_curve), or the one accuracy when there is one point."""
    if len(curve) == 1:
        return float(curve[0][1])
    events, accuracy = zip(*curve, strict=True)
    return area_under_curve(np.asarray(events, dtype=float), np.asarray(accuracy), normalize=True)


@dataclass
class RunParts:
    """Everything one run is made of, wired together but not started."""

    config: RunConfig
    seeds: dict
    paradigm: Paradigm
    session: Session
    evaluator: Evaluator
    stream: Dataset
    personal_eval: Dataset


@dataclass
class SeededBackbone:
    """A run's backbone loaded after seeding, with the world its questions come from."""

    backbone: Backbone
    world: WorldView
    general_keep: list[str] | None  # the general-probe questions a chat backbone answers right
    options: TaskSettings  # the config's task settings in that world
    seeds: dict  # what seed_everything set (the run logs it)


def load_seeded_backbone(
    config: RunConfig, seed: int, tracker: Tracker | None = None, progress: bool = True
) -> SeededBackbone:
    """Set torch's threads (``config.threads``), seed everything with ``seed``, load the backbone
    and its world; seeds again when measuring a chat backbone's card (first use) drew random
    numbers, so a run starts from the same state whether or not the card was cached."""
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    seeds = seed_everything(seed)
    source = _backbone_source(config, tracker, progress)
    backbone = load_backbone(source, config.device, config.dtype, config.protocol)
    world, general_keep = backbone_world(backbone, source, config, progress)
    if general_keep is not None:
        seeds = seed_everything(seed)
    return SeededBackbone(backbone, world, general_keep, config.task.with_world(world), seeds)


def make_session(
    config: RunConfig,
    backbone: Backbone,
    options: TaskSettings,
    user,
    stream,
    events: int,
    on_feedback: Callable[[FeedbackReport], None] = lambda report: None,
) -> Session:
    """The session a paradigm learns in, from the config's suite, reward weights, generation and
    batch size: ``events`` feedback events of ``stream`` answered for ``user`` (a run's whole
    budget, or one meta-training inner loop)."""
    return Session(
        SUITES[config.task.suite],
        user,
        stream,
        options,
        config.reward.weights.model_dump(),
        config.generation.rollout(config.task.max_searches),
        events,
        config.task.batch_size,
        on_feedback,
        backbone.protocol,
    )


def assemble(
    config: RunConfig,
    tracker: Tracker | None = None,
    progress: bool = True,
    answer_cache: bool = True,
    measure_base: bool = True,
) -> RunParts:
    """Seed, load the backbone, build the user, stream, evaluation items, paradigm and session.

    The session's callback does nothing until the caller sets ``parts.session.on_feedback``.
    ``answer_cache=False`` makes every evaluation generate all its answers (``paradigms.answer_cache``:
    the reference the cache is tested against; the metrics are the same either way).
    ``measure_base=False`` leaves the untouched base's probe scores to the caller
    (``Evaluator.measure_base`` on ``evaluator.reference``, which computes as the base did).
    """
    loaded = load_seeded_backbone(config, config.seed, tracker, progress)
    backbone, world, options = loaded.backbone, loaded.world, loaded.options
    suite = SUITES[config.task.suite]
    user = suite.user(config.seed, options)
    stream = suite.stream(config.seed, config.budget.feedback_events, options)
    personal_eval = suite.personal_eval(config.seed, options)
    session = make_session(config, backbone, options, user, stream, config.budget.feedback_events)
    if not answer_cache:
        session.answers = None
    # the untouched base, copied before a paradigm wraps or trains the model (KL)
    reference = backbone.reference() if config.paradigm.uses_algorithm else None
    evaluator = Evaluator(
        session,
        personal_eval.to_list(),
        probes.general_probe(config.evaluation.general_items, world=world, keep=loaded.general_keep),
        suite.phase_eval(user, options),
        config.generation.rollout(config.task.max_searches, evaluation=True),
        reference,
        instructions=suite.instruction_eval(config.seed, options, user),
        updated=[suite.updated_eval(user, options, phase) for phase in range(suite.n_phases)],
        knowledge=probes.knowledge_probe(world),
        parts_together=backbone.parameter_count() <= PARTS_TOGETHER_MAX_PARAMETERS,
    )
    if measure_base:  # forgetting's reference point: the base before any paradigm touches it
        with isolated_rng(), session.fixed_weights():
            evaluator.measure_base(backbone.model, backbone.tokenizer)
    paradigm = PARADIGMS[config.paradigm.name](config.paradigm, backbone, config.algorithm)
    if config.continual.active:  # the config refuses it for paradigms that do not change weights
        paradigm.use_continual(config.continual)
    paradigm.bind(session)
    return RunParts(config, loaded.seeds, paradigm, session, evaluator, stream, personal_eval)


def execute(
    config: RunConfig,
    run: TrackedRun | None,
    tracker: Tracker | None = None,
    progress: bool = True,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    answer_cache: bool = True,
) -> dict[str, float]:
    """Run one config to the end and return its final evaluation metrics.

    Logs to ``run`` when given (metrics at ``step`` = feedback events consumed). Evaluates at
    step 0, every ``evaluation.every`` events, at the end, and, on drift suites, after the last
    batch of each phase (before the stream draws from the next one), logging there the phase the
    consumed batch was drawn in (``eval/stream_phase``): the drift matrix's rows are those
    evaluations, for every paradigm and algorithm whatever its batch size. ``on_eval`` sees every
    evaluation (a sweep's pruner uses it). An evaluation never changes the weights, so its greedy answers
    come from the session's answer cache where an identical call was answered with the same weights
    (``answer_cache=False``: always generated; the metrics are the same). With ``evaluation.background``,
    no ``on_eval`` and a core to spare, a paradigm whose evaluation writes no state
    (``Paradigm.evaluation_writes_no_state``) is evaluated in a forked copy of the run while it trains on
    (``experiments.background_evaluation``; the same metrics), all but the last evaluation: one copy for
    them all on a small backbone when the paradigm has an evaluation state (``Paradigm.evaluation_state``,
    :data:`STANDING_COPY_MAX_PARAMETERS`), else a copy for each.
    """
    reset_peak_rss()  # cost/peak_rss_bytes: this run's peak where possible (its peak_rss_scope tag)
    # an evaluation that writes nothing of the run, with cores to spare: a copy answers it beside training.
    # Not when on_eval may stop the run (a sweep's pruner): it must stop at the event it would in place.
    in_background = (
        config.evaluation.background
        and on_eval is None
        and resolve_device(config.device).type == "cpu"  # CUDA and Metal do not survive a fork
        and PARADIGMS[config.paradigm.name].evaluation_writes_no_state
        and background_evaluation.a_core_to_spare(config.threads or torch.get_num_threads())
    )
    # a paradigm that changes weights keeps a copy of the base for the KL (evaluator.reference): the first
    # copy answers the untouched base's probe on it; the others' model is the base, probed before the run
    base_in_copy = in_background and config.paradigm.uses_algorithm
    parts = assemble(config, tracker, progress, answer_cache, measure_base=not base_in_copy)
    paradigm, session, evaluator = parts.paradigm, parts.session, parts.evaluator
    if run is not None:
        run.log_dict({"seeds": parts.seeds}, "seeds.json")
        run.set_tags(
            {
                CPU_CAPABILITY_TAG: parts.seeds["cpu_capability"],
                TORCH_THREADS_TAG: str(parts.seeds["torch_threads"]),
            }
        )
        run.log_dataset(parts.stream, f"{config.task.suite}-stream-s{config.seed}", "training")
        run.log_dataset(parts.personal_eval, f"{config.task.suite}-eval-s{config.seed}", "evaluation")
    drifts = session.suite.n_phases > 1
    answering_parameters = parameter_count(paradigm.model)
    # one copy for every evaluation, brought up to date at each, where the paradigm says what that takes
    standing = (
        in_background
        and answering_parameters <= STANDING_COPY_MAX_PARAMETERS
        and paradigm.evaluation_state() is not None
    )
    consumed = ConsumedStream(
        getattr(config.algorithm, "group_size", 1) if config.paradigm.uses_algorithm else 1
    )
    state = {
        "next_eval": 0,
        "last_eval": -1,
        "generated": 0,
        "prompt": 0,
        "evaluation_seconds": 0.0,
        "waited_seconds": 0.0,  # training stood still for evaluations (all of them, in place)
        "answer_flops": 0.0,  # the shared rollout's forward passes over the stream (every paradigm)
        "final": {},
        "stream_phase": None,  # the phase the last consumed batch was drawn in
        "curve": [],
    }
    background = background_evaluation.BackgroundEvaluation()
    bar = tqdm(
        total=config.budget.feedback_events,
        desc=config.run_name(),
        unit="event",
        disable=not progress,
        dynamic_ncols=True,
    )

    def log(values: dict[str, float], step: int) -> None:
        if run is not None:
            run.log_metrics(values, step)

    def measure(events: int) -> Measured:
        """The evaluation at ``events`` (:class:`Measured`). Reads the run and writes nothing of it but the
        session's answer cache and seconds, the evaluator's base scores and what the paradigm keeps for
        later evaluations: the same in place or in a copy, which hands these back."""
        base, generating = None, session.generation_seconds
        stored = len(session.answers.stored) if session.answers is not None else 0
        # the evaluation schedule must not change what training draws; the weights are fixed meanwhile
        with isolated_rng(), session.fixed_weights():
            if evaluator.base_general_accuracy is None:  # not measured before the run (in_background)
                base = evaluator.measure_base(evaluator.reference, paradigm.tokenizer)
            started = time.perf_counter()  # the base's probe is not an evaluation's time, as in place
            results = evaluator.evaluate(paradigm, state["stream_phase"])
        seconds = time.perf_counter() - started
        results[m.GENERATED_TOKENS] = float(state["generated"])
        results[m.PROMPT_TOKENS] = float(state["prompt"])
        results[m.GENERATION_SECONDS] = session.generation_seconds
        results[m.EVALUATION_SECONDS] = state["evaluation_seconds"] + seconds
        results[m.INFERENCE_FLOPS] = state["answer_flops"] + paradigm.inference_flops()
        results[m.TOTAL_FLOPS] = results[m.TRAIN_FLOPS] + results[m.INFERENCE_FLOPS]
        results[m.USER_QUESTIONS] = float(consumed.questions)
        if drifts and state["stream_phase"] is not None:
            results[m.STREAM_PHASE] = float(state["stream_phase"])
        return Measured(
            results,
            seconds,
            session.generation_seconds - generating,
            base,
            paradigm.evaluation_keeps(),
            session.answers.stored_since(stored) if session.answers is not None else [],
        )

    def up_to_date(events: int) -> dict[str, Any]:
        """What a copy of the run forked at an earlier evaluation needs to measure the evaluation at
        ``events`` as a copy forked now would (:func:`measure_up_to_date`): the paradigm's evaluation state,
        the session's clock and seconds, the run's tallies and the random states (an evaluation draws from
        them inside ``isolated_rng``)."""
        return {
            "events": events,
            "paradigm": paradigm.evaluation_state(),
            "session": (session.events, session.position, session.generation_seconds),
            "state": state,
            "questions": consumed.questions,
            "random": (random.getstate(), np.random.get_state(), torch.get_rng_state()),
        }

    def measure_up_to_date(update: dict[str, Any]) -> Measured:
        """In the copy that stays: become the run as :func:`up_to_date` read it, then :func:`measure`."""
        paradigm.load_evaluation_state(update["paradigm"])
        session.events, session.position, session.generation_seconds = update["session"]
        state.update(update["state"])
        consumed.questions = update["questions"]
        python_state, numpy_state, torch_state = update["random"]
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        return measure(update["events"])

    def record(events: int, measured: Measured, waited: float, in_copy: bool) -> None:
        """Log the evaluation at ``events`` (``waited``: the seconds training stood still for it)."""
        results, seconds = measured.results, measured.seconds
        # what a copy did for the run: its rollout seconds are the run's too, its stored answers and kept
        # values serve later evaluations; its peak is its own, and the run's may be higher
        if in_copy:
            session.generation_seconds += measured.generating
            results[m.PEAK_RSS_BYTES] = max(results[m.PEAK_RSS_BYTES], float(peak_rss_bytes()))
            if measured.base is not None:  # every later evaluation compares with the base it measured
                evaluator.use_base(measured.base)
            paradigm.adopt_evaluation_keeps(measured.kept)  # (a memory's question vectors)
            if session.answers is not None:
                session.answers.adopt(measured.answers)
        state["evaluation_seconds"] += seconds
        state["waited_seconds"] += waited
        results[m.EVALUATION_WAIT_SECONDS] = state["waited_seconds"]
        state["curve"].append((events, results[m.PERSONAL_ACCURACY]))
        results[m.PERSONAL_ACCURACY_AUC] = curve_mean(state["curve"])
        _check_finite(results, events)
        log(results, events)
        state["final"] = results
        bar.set_postfix(
            personal=f"{results[m.PERSONAL_ACCURACY]:.2f}",
            general=f"{results[m.GENERAL_ACCURACY]:.2f}",
            searches=f"{results[m.SEARCH_CALLS_PER_QUERY]:.2f}",
        )
        if on_eval is not None:
            on_eval(events, results)

    def collect() -> None:
        """Log the evaluation in flight, waiting for it if it has not answered yet."""
        started = time.perf_counter()
        events, measured = background.collect()
        record(events, measured, time.perf_counter() - started, in_copy=True)

    def evaluate(events: int, last: bool = False) -> None:
        """Evaluate the policy as it is at ``events``: in place, or in a forked copy while training goes
        on (``in_background``; not the evaluation after training, which the run waits for anyway)."""
        if background.pending:
            collect()  # one in flight at a time: metrics are logged in the order of their events
        started = time.perf_counter()
        state["last_eval"] = events
        while state["next_eval"] <= events:
            state["next_eval"] += config.evaluation.every
        if in_background and not last:
            try:
                if background.standing:
                    background.request(up_to_date(events), events)
                else:
                    background.start(
                        lambda: measure(events), events, serve=measure_up_to_date if standing else None
                    )
            except OSError:  # no copy to be had (the fork was refused, the copy that stayed died): in place
                pass
            else:
                consumed.mark(events)
                state["waited_seconds"] += time.perf_counter() - started
                return
        measured = measure(events)
        consumed.mark(events)
        record(events, measured, time.perf_counter() - started, in_copy=False)

    def on_feedback(report: FeedbackReport) -> None:
        interaction = report.interaction
        consumed.add(interaction.items)
        state["generated"] += sum(e.agent_tokens for e in interaction.episodes)
        state["prompt"] += sum(len(e.prompt_ids) for e in interaction.episodes)
        state["answer_flops"] += forward_flops(
            answering_parameters, sum(len(e.prompt_ids) + len(e.completion_ids) for e in interaction.episodes)
        )
        values = {
            m.TRAIN_REWARD: _mean(interaction.rewards),
            m.TRAIN_SEARCH_CALLS_PER_QUERY: _mean([e.search_calls for e in interaction.episodes]),
        }
        values.update(
            {
                m.TRAIN_REWARD_COMPONENT.format(component=name): _mean(v)
                for name, v in interaction.components.items()
            }
        )
        values.update(report.train_metrics)
        _check_finite(values, report.events)
        log(values, report.events)
        bar.update(report.events - bar.n)
        state["stream_phase"] = interaction.phase
        # the next batch is drawn in a later phase: this is the policy trained through this one
        phase_ends = drifts and interaction.phase < session.phase
        if background.ready():
            collect()
        if report.events >= state["next_eval"] or phase_ends:
            evaluate(report.events, last=session.done)

    session.on_feedback = on_feedback
    try:
        evaluate(0)
        paradigm.train(session)
        if background.pending:
            collect()
        if state["last_eval"] != session.events:  # the end of the run, wherever the schedule fell
            evaluate(session.events, last=True)  # (GRPO may stop short of the budget by less than a batch)
    except Exception:
        if background.pending:  # the run failed after an evaluation in flight: log it, as in place it was
            with contextlib.suppress(Exception):
                collect()
        raise
    finally:
        background.close()
        bar.close()
    if run is not None:
        run.log_dict(consumed.record(), STREAM_CONSUMED_FILE)
        with tempfile.TemporaryDirectory() as scratch:
            files = paradigm.save(Path(scratch))
            if files:
                run.log_artifact(Path(scratch), "state")
    return state["final"]


@contextlib.contextmanager
def run_of_several() -> Iterator[None]:
    """Around each run of a process that makes several (a grid, a grid worker, a sweep's trials): what the
    runs before it left is collected first, then the collector skips every older object while it runs
    (``paradigms.collector``). A run's paradigm, model and trainer are reference cycles that only a full
    collection frees, and one comes every so often, each ~0.4 s late in a grid's process: one landed in an
    evaluation's wait or in a copy, making it 0.6-0.7 s instead of ~0.2 s. Collected first, they are not
    kept through the next run (frozen, they would be: a SmolLM2 model), and the run's ``cost/peak_rss_bytes``
    leaves them out. The collection is not the run's time (``cost/wall_seconds`` starts after it)."""
    gc.collect()
    with older_objects_frozen():
        yield


def run_experiment(
    experiment: Experiment, tracker: Tracker, progress: bool = True, parent_name: str | None = None
) -> list[RunResult]:
    """Every (grid point, seed) of ``experiment`` as a child of one new parent run.

    A run that raises is marked FAILED (error in its ``error`` tag) and the others go on; a
    Ctrl-C marks the running child and the parent KILLED and propagates. Raises ``RunFailed``
    at the end when any run failed.
    """
    configs = experiment.runs()
    prepare_backbones(configs, tracker, progress)
    groups = group_labels(configs)
    parent = tracker.start_run(
        experiment.name,
        parent_name or f"{experiment.name}-{len(configs)}-runs",
        tags={"kind": "experiment", "n_runs": len(configs)},
    )
    parent.log_dict(experiment.record(), "experiment.yaml")
    results: list[RunResult] = []
    child: TrackedRun | None = None
    try:
        for index, config in enumerate(configs):
            if progress:
                print(f"[{index + 1}/{len(configs)}] {config.run_name()}", flush=True)
            child = tracker.start_config_run(experiment.name, config, groups[index], parent)
            try:
                with run_of_several():
                    final = execute(config, child, tracker, progress)
                child.finish()
                results.append(RunResult(config.run_name(), child.run_id, "FINISHED", final))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # a failed run is recorded and the experiment goes on
                child.finish("FAILED", error=describe_error(error))
                results.append(
                    RunResult(config.run_name(), child.run_id, "FAILED", error=describe_error(error))
                )
            child = None
    except (KeyboardInterrupt, SystemExit):
        if child is not None:
            child.finish("KILLED", error="interrupted")
        parent.finish("KILLED", error="interrupted")
        raise
    failed = [r for r in results if r.status == "FAILED"]
    parent.set_tags({"n_failed": len(failed)})
    parent.finish(
        "FAILED" if failed else "FINISHED",
        error="; ".join(f"{r.name}: {r.error}" for r in failed) if failed else None,
    )
    if failed:
        raise RunFailed("; ".join(f"{r.name} failed ({r.error})" for r in failed))
    return results
