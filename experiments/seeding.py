"""One ``seed_everything`` for every run."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from paradigms.cpu_kernels import cpu_capability

#: The run tag holding the torch thread count the run computed with (``seed_everything``'s record).
TORCH_THREADS_TAG = "torch_threads"


def seed_everything(seed: int) -> dict[str, object]:
    """Seed Python, NumPy and torch, and make torch's CPU kernels deterministic.

    The data order needs no global seed: the user, the stream and the evaluation items are
    drawn from their own generators named after ``seed`` (``tasks.suites``, ``tasks.users``),
    so they are the same for every paradigm. Returns what was set, for logging, with the CPU
    kernels torch runs (``paradigms.cpu_kernels``: the same seed on other kernels gives other sums) and
    its thread count (another count rounds sums differently).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN before a kernel overwrites it (a
    # debugging aid against reads of uninitialized memory). On CPU that touches every page of
    # every allocation: measured 3x slower training steps (0.71 s vs 0.24 s per base-build
    # step, 17x the page faults). The kernels stay deterministic without it.
    torch.utils.deterministic.fill_uninitialized_memory = False
    return {
        "python_random": seed,
        "numpy": seed,
        "torch": seed,
        "torch_deterministic_algorithms": True,
        "torch_fill_uninitialized_memory": False,
        "cpu_capability": cpu_capability(),
        # CPU kernels split their sums by thread, so the count decides the last bits of every float
        "torch_threads": torch.get_num_threads(),
        "data_order": f"derived from seed {seed} (user-{seed}, stream-<suite>-{seed})",
    }


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Run the block without moving Python's, NumPy's or torch's global random state.

    The evaluator runs inside the training loop; whatever random numbers it draws must not
    shift the training's, or the evaluation schedule (``evaluation.every``) would change what
    is learned. The states are saved on entry and restored on exit, exceptions included.
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
