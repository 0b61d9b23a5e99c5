"""Benchmarks behind ``posetracker bench``; each module exposes ``register(bench_subparsers)``."""
