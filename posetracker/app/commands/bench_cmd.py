"""``posetracker bench ...``: the project's speed, memory and accuracy benchmarks."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable

from posetracker.app.benchmarks import (
    association,
    dataset,
    estimate,
    models_table,
    pipeline,
    sppe,
    tracking,
    train,
    video,
)
from posetracker.core.outputs import POLICY, claim_outputs
from posetracker.io.sources import IMAGE_SUFFIXES

BENCH_MODULES: tuple = (tracking, estimate, models_table, pipeline, sppe, association, train,
                         dataset, video)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: speed, memory and accuracy figures",
                       description="Benchmarks that print the figures the issues ask for.")
    kinds = p.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    for module in BENCH_MODULES:
        module.register(kinds)
    # every benchmark's files (--out, --pictures) under the output policy (an input, unwritable,
    # in use: refused)
    for bench in kinds.choices.values():
        run = bench.get_default("func")
        outputs = [a.dest for a in bench._actions if a.dest in OUTPUTS]
        if run is not None and outputs:
            bench.set_defaults(func=_claimed(run, outputs))
            bench.epilog = POLICY


#: The options by which a benchmark writes files.
OUTPUTS = ("out", "pictures")


def _claimed(run: Callable[[argparse.Namespace], int], outputs: list[str]
             ) -> Callable[[argparse.Namespace], int]:
    """``run`` with its ``outputs`` (destinations of :data:`OUTPUTS`) claimed; the inputs are
    every other argument that names a file or folder (benchmarks take many: videos, annotation
    files, tracked files, frame folders)."""

    @functools.wraps(run)
    def claimed(args: argparse.Namespace) -> int:
        values = [v for k, v in vars(args).items() if k not in outputs]
        given = [f for v in values for f in (v if isinstance(v, (list, tuple)) else [v])]
        inputs = [f for f in given if isinstance(f, str) and f and os.path.exists(f)]
        with claim_outputs({f"--{dest}": getattr(args, dest) for dest in outputs}, inputs,
                           folder_suffixes=(*IMAGE_SUFFIXES, ".json", ".mat", ".mp4", ".avi")):
            return run(args)

    return claimed
