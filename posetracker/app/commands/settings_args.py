"""The settings options every command shares: ``--config``, ``--set``, ``--dump-config``, and the
flags that stand for one setting each (:data:`posetracker.app.flags.FLAGS`).

One grammar for every command: ``--set`` keys are paths rooted at the whole
:class:`~posetracker.app.settings.AppConfig` (``tracker.poseflow.link_len=20``,
``estimate.estimator.nms.mode=alphapose``). A flag maps onto its field with
:func:`dataclasses.replace` (:func:`posetracker.core.config.replace_path`), its value as argparse
parsed it; its ``--help`` default is read from the dataclasses (:func:`default`).
Layers, later ones win: ``AppConfig()`` < ``--config FILE`` < the flags < ``--set``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from posetracker.app.flags import FLAGS, Scope


def default(path: str) -> Any:
    """The default of the setting at ``path``, from the dataclasses (for ``--help`` texts)."""
    from posetracker.app.settings import AppConfig
    from posetracker.core.config import get_path

    value = get_path(AppConfig(), path)
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


def add_config_options(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                       set_dest: str = "set") -> None:
    """``--config``, ``--set`` (repeatable) and ``--dump-config``."""
    p.add_argument("--config", metavar="YAML", help="settings file (any of the sections "
                   "estimator, association, tracker, pipeline, estimate; see --dump-config) "
                   "over the built-in defaults")
    p.add_argument("--set", dest=set_dest, metavar="KEY=VALUE", action="append", default=[],
                   help="override one setting, its key a path in the settings as --dump-config "
                   "prints them, e.g. --set tracker.poseflow.link_len=20 or --set "
                   "estimate.estimator.nms.mode=alphapose (repeatable)")
    p.add_argument("--dump-config", action="store_true", help="print every setting as YAML "
                   "(after --config, the flags and --set) and exit")


def config_files(args: argparse.Namespace) -> list[str]:
    """The settings files a command reads (``--config``, ``--tracker-config``): inputs that no
    output may overwrite (:mod:`posetracker.core.outputs`)."""
    return [f for f in (getattr(args, "config", None), getattr(args, "tracker_config", None)) if f]


def settings(args: argparse.Namespace, scope: Scope, set_dest: str = "set",
             extra: dict | None = None):
    """The run's :class:`~posetracker.app.settings.AppConfig` from ``--config``, ``extra`` (a
    nested mapping, e.g. ``--tracker-config`` as ``{"tracker": ...}``), the flags of
    :data:`posetracker.app.flags.FLAGS` given (their paths in ``scope``: a tracking run or
    per-image estimation), and ``--set``."""
    from posetracker.app.settings import load_app_config
    from posetracker.core.config import replace_path

    config = load_app_config(getattr(args, "config", None), extra=extra)
    for flag in FLAGS:
        given = getattr(args, flag.name, None)
        if given is None:  # not on the command line (store_true flags default to None)
            continue
        for path in flag.paths(scope):
            config = replace_path(config, path, given if flag.switch is None else flag.switch)
    return load_app_config(None, getattr(args, set_dest, None) or [], base=config)


def dump(config) -> int:
    """Print ``config`` as YAML (``--dump-config``)."""
    from posetracker.app.settings import dump_app_config

    sys.stdout.write(dump_app_config(config))
    return 0
