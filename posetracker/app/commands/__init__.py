"""CLI subcommands, one module each; every module exposes ``register(subparsers)``.

The tuple below is the CLI's command list, in the order ``--help`` shows them.
"""

from posetracker.app.commands import (
    bench_cmd,
    convert_cmd,
    dataset_cmd,
    estimate_cmd,
    eval_cmd,
    fit_nms_cmd,
    models_cmd,
    track_cmd,
    train_cmd,
    view_cmd,
)

COMMAND_MODULES = (track_cmd, dataset_cmd, eval_cmd, convert_cmd, bench_cmd, estimate_cmd,
                   fit_nms_cmd, models_cmd, train_cmd, view_cmd)
