"""Building a builtin base (fast, on ``builtin:tiny``): its weights depend on the recipe only."""

import torch
from safetensors.torch import load_file

from experiments.base import BUILD_THREADS, ensure_base


def test_a_base_is_the_same_whatever_thread_count_the_caller_runs_with(tmp_path, monkeypatch):
    """A run with ``threads: 1`` that builds the base first must not leave a different base in the
    cache than a run at torch's default (thread counts change floating-point sums)."""
    before = torch.get_num_threads()
    weights = []
    try:
        for threads in (1, 3):
            monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / f"cache-{threads}"))
            torch.set_num_threads(threads)
            directory = ensure_base("builtin:tiny", progress=False)
            assert torch.get_num_threads() == threads  # the caller's count, restored
            weights.append(load_file(directory / "model.safetensors"))
    finally:
        torch.set_num_threads(before)
    first, second = weights
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first), f"built with {BUILD_THREADS}"
