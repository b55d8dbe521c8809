"""Configs, runs, sweeps, tracking and the CLI."""

from paradigms.cpu_kernels import pin_cpu_kernels

pin_cpu_kernels()  # before any tensor is computed: every run on the same kernels, whatever the host
