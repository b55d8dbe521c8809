"""``harness meta-train``: learn an adapter start with Reptile, save it, log it as an MLflow run.

The experiment file's base config says what is meta-learned (``paradigm: adapter`` with its rank,
the ``algorithm`` of the inner loop, the ``task.suite`` whose users are sampled, the backbone);
its ``meta:`` section holds Reptile's knobs (``paradigms.settings.MetaSettings``, checked by
``experiments.config.meta_settings`` before anything runs). The learned start is written to
``--out`` as a PEFT adapter directory (``adapter_model.safetensors``, ``adapter_config.json``) plus
``meta.json`` (the meta config, the users it saw, the base), and an ``adapter`` run starts from it
with ``paradigm.init=DIR``.

MLflow: one run named ``meta-<suite>-s<seed>`` with tag ``kind=meta``, the meta settings and the
run config as params, per iteration ``meta/...`` metrics at step = feedback events consumed by
meta-training so far, and the saved directory as the ``meta_init`` artifact.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from experiments import metrics as m
from experiments.config import Experiment, flatten, meta_settings
from experiments.errors import describe_error
from experiments.run import load_seeded_backbone, make_session
from experiments.tracking import Tracker
from paradigms import PARADIGMS
from paradigms.meta import MetaIteration, meta_train
from paradigms.session import Session
from tasks.suites import SUITES


def run_meta_training(
    experiment: Experiment, out: Path, tracker: Tracker, progress: bool = True
) -> tuple[str, list[MetaIteration]]:
    """Meta-train per ``experiment`` and save the start to ``out``; returns the MLflow run id and iterations.

    A failure marks the run FAILED (error tag) and propagates; ``out`` is written only at the end.
    """
    settings = meta_settings(experiment)
    config = experiment.base
    run = tracker.start_run(
        experiment.name,
        f"meta-{config.task.suite}-s{settings.seed}",
        tags={
            "kind": "meta",
            "paradigm": config.paradigm.name,
            "algorithm": config.algorithm.name,
            "task": config.task.suite,
            "seed": str(settings.seed),
            "backbone": config.backbone,
        },
    )
    iterations: list[MetaIteration] = []
    try:
        run.log_params(
            {**config.flat(), **{f"meta.{k}": v for k, v in flatten(settings.model_dump()).items()}}
        )
        loaded = load_seeded_backbone(config, settings.seed, tracker, progress)
        backbone, options = loaded.backbone, loaded.options
        adapter = PARADIGMS["adapter"](config.paradigm, backbone, config.algorithm)
        suite = SUITES[config.task.suite]

        def user_session(user_seed: int, callback) -> Session:
            user = suite.user(user_seed, options)
            stream = suite.stream(user_seed, settings.inner_events, options)
            return make_session(config, backbone, options, user, stream, settings.inner_events, callback)

        bar = tqdm(total=settings.iterations, desc="meta-train", unit="user", disable=not progress)
        started = time.perf_counter()

        def on_iteration(step: MetaIteration) -> None:
            iterations.append(step)
            run.log_metrics(
                {
                    m.META_LR: step.meta_lr,
                    m.META_INNER_REWARD_FIRST: step.inner_reward_first,
                    m.META_INNER_REWARD_LAST: step.inner_reward_last,
                    m.META_INNER_FORMAT_LAST: step.inner_format_last,
                    m.META_STEP_NORM: step.step_norm,
                    m.WALL_SECONDS: time.perf_counter() - started,
                },
                step.events,
            )
            bar.update(1)
            bar.set_postfix(reward=f"{step.inner_reward_last:.2f}", format=f"{step.inner_format_last:.2f}")

        try:
            meta_train(adapter, settings, user_session, on_iteration)
        finally:
            bar.close()
        out = Path(out)
        adapter.policy.save_pretrained(out, safe_serialization=True)
        (out / "README.md").unlink(missing_ok=True)  # PEFT's model card template
        (out / "meta.json").write_text(
            json.dumps(
                {
                    "meta": settings.model_dump(),
                    "user_seeds": sorted({s for i in iterations for s in i.user_seeds}),
                    "suite": config.task.suite,
                    "task": config.task.model_dump(mode="json"),
                    "algorithm": config.algorithm.model_dump(mode="json"),
                    "paradigm": config.paradigm.model_dump(mode="json"),
                    "backbone": config.backbone,
                    "feedback_events": iterations[-1].events if iterations else 0,
                    "mlflow_run_id": run.run_id,
                    "iterations": [asdict(i) for i in iterations],
                },
                indent=2,
            )
        )
        run.log_artifact(out, "meta_init")
        run.finish()
    except (KeyboardInterrupt, SystemExit):
        run.finish("KILLED", error="interrupted")
        raise
    except Exception as error:
        run.finish("FAILED", error=describe_error(error))
        raise
    return run.run_id, iterations
