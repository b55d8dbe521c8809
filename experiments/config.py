"""The configuration schema: one run's config, and an experiment file (base config, grid, seeds).

Every field is documented where it is declared. ``load_experiment`` reads a YAML file, applies
``--set`` overrides and validates everything up front; any problem becomes a ``ConfigError``
whose message is one line naming the field and the fix (the CLI prints it and exits 2).

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from experiments import tuned as tuned_values
from paradigms import ALGORITHMS, PARADIGMS
from paradigms.algorithms import AlgorithmSettings
from paradigms.base import ParadigmSettings
from paradigms.rl.continual import ContinualSettings
from tasks.registry import UnknownName
from tasks.suites import SUITES, TaskOptions
from tasks.users import META_USER_SEED_START, TUNING_USER_SEED_START, user_population


class ConfigError(ValueError):
    """Bad input in a config: the message is one line naming the field and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Section):
    suite: str = Field(
        "default",
        description="Task family: user_facts, preferences, search_or_answer, drift, "
        "default (see tasks/suites.py).",
    )
    search: bool = Field(
        True, description="Whether the search tool over the user's knowledge base is offered."
    )
    feedback: Literal["text", "scalar"] = Field(
        "text",
        description="Feedback channel: reward components plus a textual correction, or the rewards only.",
    )
    search_results: int = Field(2, ge=1, description="Lines a search returns at most.")
    shared_formats: float = Field(
        0.0,
        ge=0,
        le=1,
        description="How much users share their format preferences: per question kind, the chance "
        "a user holds the population's favourite format instead of a uniformly random one (0: "
        "nothing shared; the structure a meta-learned start can exploit, see experiments/meta.yaml).",
    )
    max_searches: int = Field(
        2, ge=0, description="Search calls allowed per query; further calls get nothing."
    )
    batch_size: int = Field(
        4, ge=1, description="Queries answered between two learning steps (every paradigm)."
    )
    users: Literal["evaluation", "tuning"] = Field(
        "evaluation",
        description="Which user population the seeds name: evaluation users (seeds below 9e8) or "
        "the tuning users harness tune chooses hyperparameters on (seeds from 9e8 up); each refuses "
        "the other's seeds, so no tuning user is ever evaluated.",
    )

    def options(self) -> TaskOptions:
        """The knobs the task suite itself reads (users, stream, evaluation, feedback)."""
        return TaskOptions(
            search=self.search,
            feedback=self.feedback,
            search_results=self.search_results,
            shared_formats=self.shared_formats,
        )


class RewardWeights(_Section):
    correctness: float = Field(1.0, ge=0, description="Weight of answering the right value (0/1).")
    format: float = Field(0.5, ge=0, description="Weight of a well-formed answer in the wanted format (0/1).")
    tool_efficiency: float = Field(
        0.2, ge=0, description="Weight of the penalty for wasted searches (-calls)."
    )
    search_cost: float = Field(0.1, ge=0, description="Weight of the cost of every search call (-calls).")


class RewardConfig(_Section):
    weights: RewardWeights = Field(
        default_factory=RewardWeights, description="Non-negative weight per reward component."
    )


class BudgetConfig(_Section):
    feedback_events: int = Field(
        800, gt=0, description="Scored responses a run consumes (a group of 8 is 8)."
    )


class EvaluationConfig(_Section):
    every: int = Field(
        100, gt=0, description="Evaluate after every this many feedback events (and at 0, end)."
    )
    general_items: int = Field(
        72, ge=1, le=144, description="General-probe questions per evaluation (of 144)."
    )


class GenerationConfig(_Section):
    max_new_tokens: int = Field(32, gt=0, description="Tokens an answer may take, tool output included.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature while learning (0 = greedy).")
    eval_temperature: float = Field(0.0, ge=0, description="Temperature at evaluation (0 = greedy).")
    top_k: int = Field(0, ge=0, description="Top-k sampling cut-off (0 = off).")


class RunConfig(_Section):
    """One run: a paradigm with an algorithm on a task suite, under one seed."""

    task: TaskConfig = Field(default_factory=TaskConfig, description="The task suite and its knobs.")
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
        description="'builtin' (the harness's own tiny base), a hub id or a local "
        "directory holding a causal LM and its tokenizer.",
    )
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto, cpu, mps, cuda or cuda:N."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights' dtype.")
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
        """A hash of everything but the seed: runs that differ only by seed share it."""
        payload = {k: v for k, v in self.flat().items() if k != "seed"}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def run_name(self) -> str:
        """``adapter-grpo-preferences-s0``; no algorithm when there is none; continual mechanisms after it
        (``full_ft-grpo-replay0.25+ewc-preferences-s0``)."""
        parts = [self.paradigm.name]
        if self.algorithm.name != "none":
            parts.append(self.algorithm.name)
        if self.continual.active:
            parts.append(self.continual.label)
        tool_policy = getattr(self.paradigm, "tool_policy", None)
        if tool_policy is not None and tool_policy.name != "none":
            parts.append(tool_policy.name)  # frozen-qlearning-search_or_answer-s0
        if getattr(self.paradigm, "init", None) is not None:
            parts.append("init")  # adapter-grpo-init-preferences-s0: starts from a saved adapter
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


_EXPERIMENT_KEYS = {"name", "description", "grid", "seeds", "sweep", "meta", "tuning", "tuned"}


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


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as YAML (``3``, ``0.5``, ``true``, ``[0, 1]``, ``text``)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set reward.weights.search_cost=0.5")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key must be dotted field names, e.g. paradigm.name")
    try:
        return key, yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        return key, value


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
    given = first.get("input")
    shown = json.dumps(given, default=str) if not isinstance(given, dict) else "a section"
    return (
        f"{field}: {first['msg'].lower()} (got {shown}); fix the value in the file or with --set {field}=..."
    )


def _validate_named(section: Any, registry, field: str, default: str) -> Any:
    if section is None:
        section = {"name": default}
    if not isinstance(section, dict):
        raise ConfigError(f"{field}: must be a section like {{name: {default}}}, got {json.dumps(section)}")
    name = section.get("name", default)
    if not isinstance(name, str):
        raise ConfigError(f"{field}.name: must be a name, got {json.dumps(name)}")
    try:
        settings_model = registry[name]
    except UnknownName as unknown:
        raise ConfigError(f"{field}.name: {unknown}") from None
    settings_model = getattr(settings_model, "Settings", settings_model)
    try:
        return settings_model.model_validate({**section, "name": name})
    except ValidationError as error:
        raise ConfigError(_describe(error, settings_model, prefix=f"{field}.")) from None


def _check_continual(section: Any, paradigm: str, paradigm_class: type) -> None:
    """The ``continual:`` section applies only to paradigms that change weights, and must do something."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError(f"continual: must be a section like {{replay: 0.2}}, got {json.dumps(section)}")
    try:
        settings = ContinualSettings.model_validate(section)
    except ValidationError as error:
        raise ConfigError(_describe(error, ContinualSettings, prefix="continual.")) from None
    if settings != ContinualSettings() and not getattr(paradigm_class, "supports_continual", False):
        accepting = [n for n in PARADIGMS.names() if getattr(PARADIGMS[n], "supports_continual", False)]
        raise ConfigError(
            f"continual: applies only to paradigms that change weights ({', '.join(accepting)}), not "
            f"{paradigm!r}; remove the continual section or choose one of those paradigms"
        )
    if settings.regularizer != "none" and settings.strength == 0:
        raise ConfigError(
            "continual.strength: 0 switches the regularizer off; set it above 0 or continual.regularizer=none"
        )


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


def build_run_config(raw: Mapping[str, Any], where: str = "") -> RunConfig:
    """Validate one run's raw config tree (experiment-only keys are ignored here)."""
    tree = {k: v for k, v in raw.items() if k not in _EXPERIMENT_KEYS}
    try:
        paradigm = _validate_named(tree.pop("paradigm", None), PARADIGMS, "paradigm", "frozen")
        paradigm_class = PARADIGMS[paradigm.name]
        algorithm = _validate_named(
            tree.pop("algorithm", None),
            ALGORITHMS,
            "algorithm",
            "grpo" if paradigm_class.uses_algorithm and "grpo" in ALGORITHMS else "none",
        )
        if paradigm_class.uses_algorithm != algorithm.trains:
            if paradigm_class.uses_algorithm:
                fix = f"choose one of: {', '.join(n for n in ALGORITHMS.names() if n != 'none')}"
            else:
                fix = "set algorithm.name=none (it learns without changing weights)"
            raise ConfigError(
                f"algorithm.name: {algorithm.name!r} does not apply to paradigm {paradigm.name!r}; {fix}"
            )
        _check_continual(tree.get("continual"), paradigm.name, paradigm_class)
        task = tree.get("task") or {}
        if isinstance(task, dict) and "suite" in task and task["suite"] not in SUITES:
            raise ConfigError(f"task.suite: {SUITES.unknown_message(str(task['suite']))}")
        try:
            config = RunConfig.model_validate({**tree, "paradigm": paradigm, "algorithm": algorithm})
        except ValidationError as error:
            raise ConfigError(_describe(error, RunConfig)) from None
        _check_population(config)
        return config
    except ConfigError as error:
        raise ConfigError(f"{error}{where}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The file's top-level mapping; a missing, unreadable or non-mapping file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such experiment file; pass the path of a YAML file (see experiments/*.yaml)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}; fix the syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: must be a mapping of config keys (task:, paradigm:, ...), not a {type(data).__name__}"
        )
    return data


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Read, override and validate an experiment file: every run config is checked before anything runs."""
    raw = read_yaml(path)
    parsed = dict(parse_override(o) for o in overrides)
    top = {k: v for k, v in parsed.items() if k.split(".")[0] in _EXPERIMENT_KEYS}
    run_overrides = {k: v for k, v in parsed.items() if k not in top}
    raw = apply_overrides(raw, top)
    name = raw.get("name", Path(path).stem)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"name: must be a non-empty string, got {json.dumps(name, default=str)}")
    seeds = raw.get("seeds", [raw.get("seed", 0)])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise ConfigError(
            f"seeds: must be a non-empty list of non-negative integers, got {json.dumps(seeds)}"
        )
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: {seeds} repeats a seed; list each seed once")
    grid = raw.get("grid") or []
    if not isinstance(grid, list) or not all(isinstance(p, dict) for p in grid):
        raise ConfigError(
            "grid: must be a list of mappings of dotted overrides, e.g. - {paradigm.name: oracle}"
        )
    for point in grid:
        for key in point:
            if not isinstance(key, str) or not key or key.split(".")[0] in _EXPERIMENT_KEYS:
                raise ConfigError(
                    f"grid: key {key!r} cannot be overridden per grid point; use a config field"
                )
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
    body = {k: v for k, v in raw.items() if k not in _EXPERIMENT_KEYS}
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
    experiment.runs()  # validate every grid point now, before anything is written
    return experiment


def load_run_config(data: Mapping[str, Any]) -> RunConfig:
    """A run config from a logged ``config.yaml`` (``harness run --from-run``)."""
    return build_run_config(dict(data))
