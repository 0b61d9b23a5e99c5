"""CLI subcommands, one module each; every module exposes ``register(subparsers)``.

The tuple below is the CLI's command list, in the order ``--help`` shows them.
"""

from posetracker.app.commands import bench_cmd, convert_cmd, eval_cmd, track_cmd
from posetracker.app.commands import estimate_cmd, fit_nms_cmd
from posetracker.app.commands import models_cmd

COMMAND_MODULES = (track_cmd, eval_cmd, convert_cmd, bench_cmd, estimate_cmd, fit_nms_cmd,
                   models_cmd)
