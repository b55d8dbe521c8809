"""The CPU kernels are pinned, recorded, and a cached base built with other kernels is rebuilt."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from experiments.base import BUILTIN_MARKER, COMPETENCE_FILE, built_with, describe, ensure_base
from paradigms.cpu_kernels import CAPABILITY_ENV, cpu_capability
from tests.conftest import ROOT

PROBE = "import paradigms, torch; torch.ones(8).exp().sum(); print(torch.backends.cpu.get_cpu_capability())"


def kernels_of_a_fresh_process(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != CAPABILITY_ENV}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_harness_pins_avx2_and_an_explicit_choice_wins():
    if kernels_of_a_fresh_process(**{CAPABILITY_ENV: "avx512"}) not in {"AVX2", "AVX512"}:
        pytest.skip("this processor has no AVX2: torch runs its default kernels whatever is asked")
    assert kernels_of_a_fresh_process() == "AVX2"
    assert kernels_of_a_fresh_process(**{CAPABILITY_ENV: "default"}) == "DEFAULT"


def test_a_cached_base_built_with_other_kernels_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    directory = ensure_base("builtin:tiny", progress=False)
    assert built_with(directory) == cpu_capability() == describe("builtin:tiny")["cpu_capability"]
    weights = {name: tensor.clone() for name, tensor in load_file(directory / "model.safetensors").items()}

    for recorded in ("SOME_OTHER_ISA", None):  # another host's kernels; a version that recorded none
        marker = json.loads((directory / BUILTIN_MARKER).read_text())
        marker.pop("cpu_capability")
        if recorded:
            marker["cpu_capability"] = recorded
        (directory / BUILTIN_MARKER).write_text(json.dumps(marker))
        (directory / "model.safetensors").unlink()  # a new file: a mapped one must not change under torch
        (directory / "model.safetensors").write_bytes(b"weights of another build")
        assert ensure_base("builtin:tiny", progress=False) == directory
        assert built_with(directory) == cpu_capability()
        rebuilt = load_file(directory / "model.safetensors")  # rebuilt: the same weights as the first build
        assert rebuilt.keys() == weights.keys() and all(torch.equal(rebuilt[k], weights[k]) for k in weights)
        assert (directory / COMPETENCE_FILE).is_file()
