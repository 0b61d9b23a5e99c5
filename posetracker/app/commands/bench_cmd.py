"""``posetracker bench ...``: the project's speed, memory and accuracy benchmarks."""

from __future__ import annotations

import argparse

from posetracker.app.benchmarks import association, dataset, estimate, models_table, pipeline, sppe, tracking, train
from posetracker.core.outputs import POLICY, claiming

BENCH_MODULES: tuple = (tracking, estimate, models_table, pipeline, sppe, association, train,
                         dataset)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: speed, memory and accuracy figures",
                       description="Benchmarks that print the figures the issues ask for.")
    kinds = p.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    for module in BENCH_MODULES:
        module.register(kinds)
    # every benchmark's --out under the output policy (an input, unwritable, in use: refused)
    for bench in kinds.choices.values():
        run = bench.get_default("func")
        if run is not None and any(a.dest == "out" for a in bench._actions):
            bench.set_defaults(func=claiming({"--out": "out"}, ("config", "video", "videos"))(run))
            bench.epilog = POLICY
