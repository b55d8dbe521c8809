"""The builtin base: built once per recipe, cached on disk by the recipe's hash, logged to MLflow.

``backbone: builtin`` is the default recipe; ``backbone: builtin:tiny`` is a seconds-long build
with the same code path, for fast tests (not competent); ``backbone: builtin:oversearch`` is the
default recipe with a miscalibrated search habit (it searches on every world question about
``home``), the testbed of the learned tool policy. The cache lives under
``$HARNESS_CACHE_DIR`` (default ``~/.cache/paradigm-harness``); a file lock keeps parallel
workers from building the same base twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from paradigms.backbone import BUILTIN_MARKER, CACHE_ENV, cache_root, file_lock
from paradigms.builtin.recipe import OVERSEARCH_RECIPE, TINY_RECIPE, BaseRecipe

__all__ = ["CACHE_ENV", "cache_root"]
EXPERIMENT = "builtin-base"
RECIPES: dict[str, BaseRecipe] = {
    "builtin": BaseRecipe(),
    "builtin:tiny": TINY_RECIPE,
    "builtin:oversearch": OVERSEARCH_RECIPE,
}
COMPETENCE_FILE = "competence.json"


#: Named backbones that are not builtin bases: name -> what provides their directory.
NAMED_BACKBONES = ("smollm2",)


def is_builtin(backbone: str) -> bool:
    return backbone in RECIPES


def resolve_backbone(spec: str, tracker=None, progress: bool = True) -> str:
    """The directory or hub id to load for a config's ``backbone``: a builtin base (built and cached on
    first use), ``smollm2`` (converted and cached on first use), or the spec itself."""
    if is_builtin(spec):
        return str(ensure_base(spec, tracker=tracker, progress=progress))
    if spec == "smollm2":
        from paradigms.smollm2 import ensure_smollm2

        return str(ensure_smollm2(progress=progress))
    return spec


def base_dir(recipe: BaseRecipe) -> Path:
    return cache_root() / "builtin" / recipe.digest()


def read_competence(directory: Path) -> dict | None:
    path = directory / COMPETENCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def ensure_base(spec: str = "builtin", tracker=None, progress: bool = True, force: bool = False) -> Path:
    """The directory of the built base for ``spec``, building (and logging) it first if needed.

    A built base is a Hugging Face model directory plus ``competence.json`` (its skill figures
    and build time) and ``recipe.json``.
    """
    recipe = RECIPES[spec]
    directory = base_dir(recipe)
    if not force and read_competence(directory) is not None:
        return directory
    with file_lock(directory):
        if not force and read_competence(directory) is not None:
            return directory  # another process built it while we waited
        from experiments.evaluation import base_competence
        from paradigms.builtin.build import train_base

        started = time.perf_counter()
        model, tokenizer = train_base(recipe, directory, progress=progress)
        build_seconds = time.perf_counter() - started
        figures = {**base_competence(model, tokenizer), "build_seconds": build_seconds}
        (directory / BUILTIN_MARKER).write_text(
            json.dumps({"spec": spec, "digest": recipe.digest(), **asdict(recipe)}, indent=2)
        )
        scratch = directory / f".{COMPETENCE_FILE}.tmp"
        scratch.write_text(json.dumps(figures, indent=2))
        scratch.rename(directory / COMPETENCE_FILE)
        if tracker is not None:
            _log_build(tracker, spec, recipe, directory, figures)
    return directory


def _log_build(tracker, spec: str, recipe: BaseRecipe, directory: Path, figures: dict) -> None:
    run = tracker.start_run(
        EXPERIMENT,
        f"{spec.replace(':', '-')}-{recipe.digest()}",
        tags={"backbone": spec, "recipe_digest": recipe.digest()},
    )
    try:
        run.log_params({f"recipe.{k}": v for k, v in asdict(recipe).items()})
        run.log_metrics({f"base/{k}": v for k, v in figures.items()}, step=recipe.steps)
        run.log_artifact(directory, "model")
        run.finish()
    except BaseException as error:
        run.finish("FAILED", error=f"{type(error).__name__}: {error}")
        raise


def describe(spec: str = "builtin") -> dict:
    """What ``harness base info`` prints: recipe, cache path and, once built, the figures."""
    recipe = RECIPES[spec]
    directory = base_dir(recipe)
    return {
        "spec": spec,
        "digest": recipe.digest(),
        "path": str(directory),
        "built": read_competence(directory) is not None,
        "recipe": asdict(recipe),
        "competence": read_competence(directory),
    }
