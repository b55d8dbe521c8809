"""One set of CPU kernels for every run, so a result does not depend on the host's instruction set.

torch picks its vectorised CPU kernels by the processor it runs on (AVX-512 on a recent x86 host,
AVX2 on an older one), and the two sum floating-point numbers in different orders. The difference
is small per operation but a training run compounds it: the builtin base built on an AVX-512 host
has other weights than the same recipe built on an AVX2 host, and every run on it then logs other
numbers. The harness therefore asks torch for AVX2 kernels, which every x86-64 processor of the last
decade has, unless ``ATEN_CPU_CAPABILITY`` is already set (an explicit choice wins; a faster
AVX-512 run is then a different, equally reproducible, set of numbers).

torch reads the variable at its first CPU operation, not at import, so ``pin_cpu_kernels`` works
as long as it runs before any tensor is computed; importing `paradigms` calls it, and every part of
the harness that computes (runs, base builds, the benchmarks of results) imports `paradigms` first.
Every run records the kernels it ran with (``cpu_capability`` tag), and a builtin base records the
kernels it was built with, so a cached base built with others is rebuilt rather than reused.
"""

from __future__ import annotations

import os

CAPABILITY_ENV = "ATEN_CPU_CAPABILITY"
#: The kernels the harness asks for (results/README.md: which committed results predate the pin).
PINNED_CAPABILITY = "avx2"
#: The tag naming the kernels a run (or a base build) ran with: ``AVX2`` unless overridden.
CPU_CAPABILITY_TAG = "cpu_capability"


def pin_cpu_kernels() -> None:
    """Ask torch for the pinned kernels unless the environment already names some (idempotent)."""
    os.environ.setdefault(CAPABILITY_ENV, PINNED_CAPABILITY)


def cpu_capability() -> str:
    """The kernels this process's torch runs (``AVX2``, ``AVX512``, ``DEFAULT``, ...); imports torch."""
    import torch

    return torch.backends.cpu.get_cpu_capability()
