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
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from paradigms.backbone_files import BUILTIN_MARKER, CACHE_ENV, cache_root, file_lock
from paradigms.builtin.recipe import OVERSEARCH_RECIPE, TINY_RECIPE, BaseRecipe
from paradigms.cpu_kernels import CPU_CAPABILITY_TAG, cpu_capability

__all__ = ["CACHE_ENV", "cache_root"]
EXPERIMENT = "builtin-base"
RECIPES: dict[str, BaseRecipe] = {
    "builtin": BaseRecipe(),
    "builtin:tiny": TINY_RECIPE,
    "builtin:oversearch": OVERSEARCH_RECIPE,
}
COMPETENCE_FILE = "competence.json"
#: Torch threads a base is built with, whatever the machine or the run that asks for it: the thread
#: count changes floating-point sums (builtin:tiny's weights came out 4e-6 apart with 1 and with 2
#: threads), so a base is a function of its recipe only with the count fixed. 2: the builds this
#: project's results, calibrations and CI were made with (torch's default on 2 cores).
BUILD_THREADS = 2
#: What each builtin base is, and how long its one-time build takes (2 CPU cores: README, BASE-NOTES).
ABOUT: dict[str, str] = {
    "builtin": "the harness's own base: a 2-layer Llama trained on the general world "
    "(built once, about 10 minutes on 2 CPU cores)",
    "builtin:tiny": "a test base with the same code path that has learned almost nothing "
    "(built once, in seconds)",
    "builtin:oversearch": "the builtin base with a needless-search habit on `home` questions, the "
    "tool policy's testbed (built once, about 10 minutes on 2 CPU cores)",
}


def base_dir(recipe: BaseRecipe) -> Path:
    return cache_root() / "builtin" / recipe.digest()


def read_competence(directory: Path) -> dict | None:
    path = directory / COMPETENCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def is_built(spec: str) -> bool:
    """Whether the base ``spec`` is in the cache (its competence file is written last)."""
    return (base_dir(RECIPES[spec]) / COMPETENCE_FILE).is_file()


def built_with(directory: Path) -> str | None:
    """The CPU kernels the cached base in ``directory`` was built with (None: not recorded)."""
    path = directory / BUILTIN_MARKER
    return json.loads(path.read_text()).get("cpu_capability") if path.is_file() else None


def ensure_base(spec: str = "builtin", tracker=None, progress: bool = True, force: bool = False) -> Path:
    """The directory of the built base for ``spec``, building (and logging) it first if needed.

    A built base is a Hugging Face model directory plus ``competence.json`` (its skill figures
    and build time) and ``recipe.json`` (the recipe and the CPU kernels it was built with); it is
    built with ``BUILD_THREADS`` torch threads whatever the caller's count (restored after), so the
    same recipe on the same kernels gives the same weights. A cached base built with other kernels
    than this process runs (``paradigms.cpu_kernels``), or by a version that did not record them, is
    rebuilt rather than reused: its weights are not the ones this process would build.
    """
    recipe = RECIPES[spec]
    directory = base_dir(recipe)
    kernels = cpu_capability()

    def usable() -> bool:
        return read_competence(directory) is not None and built_with(directory) == kernels

    if not force and usable():
        return directory
    with file_lock(directory):
        if not force and usable():
            return directory  # another process built it while we waited
        from experiments.evaluation import base_competence
        from paradigms.builtin.build import train_base

        if progress:
            if not force and read_competence(directory) is not None:
                print(
                    f"the cached {spec} was built with {built_with(directory) or 'unrecorded'} CPU kernels "
                    f"and this process runs {kernels}: rebuilding it",
                    file=sys.stderr,
                    flush=True,
                )
            print(f"building {spec}: {ABOUT[spec]}; cached in {directory}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        with torch_threads(BUILD_THREADS):
            model, tokenizer = train_base(recipe, directory, progress=progress)
            build_seconds = time.perf_counter() - started
            figures = {**base_competence(model, tokenizer), "build_seconds": build_seconds}
        marker = {"spec": spec, "digest": recipe.digest(), **asdict(recipe), "cpu_capability": kernels}
        (directory / BUILTIN_MARKER).write_text(json.dumps(marker, indent=2))
        scratch = directory / f".{COMPETENCE_FILE}.tmp"
        scratch.write_text(json.dumps(figures, indent=2))
        scratch.rename(directory / COMPETENCE_FILE)
        if tracker is not None:
            _log_build(tracker, spec, recipe, directory, figures, kernels)
        if progress:
            print(f"built {spec} in {build_seconds:.0f} s", file=sys.stderr, flush=True)
    return directory


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads, then restore the caller's count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _log_build(tracker, spec: str, recipe: BaseRecipe, directory: Path, figures: dict, kernels: str) -> None:
    run = tracker.start_run(
        EXPERIMENT,
        f"{spec.replace(':', '-')}-{recipe.digest()}",
        tags={"backbone": spec, "recipe_digest": recipe.digest(), CPU_CAPABILITY_TAG: kernels},
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
        "cpu_capability": built_with(directory),
        "recipe": asdict(recipe),
        "competence": read_competence(directory),
    }
