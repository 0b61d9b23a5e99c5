"""CLI subcommands, one module each; every module exposes ``register(subparsers)``.

The tuple below is the CLI's command list, in the order ``--help`` shows them.
"""

from posetracker.commands import bench_cmd, eval_cmd

COMMAND_MODULES = (eval_cmd, bench_cmd)
