"""``taskexec projections rebuild``: the read models rebuilt beside the live ones."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from api.settings import Settings


def add_commands(commands: Any) -> None:
    """Register ``projections rebuild`` on the ``taskexec`` parser."""
    projections = commands.add_parser("projections", help="read models")
    projections_commands = projections.add_subparsers(dest="projections_command", required=True)
    rebuild = projections_commands.add_parser(
        "rebuild", help="rebuild every read model from the event store, then switch to it"
    )
    rebuild.set_defaults(func=cmd_projections_rebuild)


def cmd_projections_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    """Build the read models aside from the event store; the API keeps serving the old
    tables until the new ones have caught up, then switches."""
    from api.bootstrap import command_stores, read_models
    from api.cli.progress import ProgressBar
    from projections.rebuild import Rebuilder

    # A command line holds at most CLI_TOTAL (2) connections: one per pool.
    with command_stores(settings) as (service, db):
        rebuilder = Rebuilder(
            service.read_log,
            lambda: service.recorder.max_notification_id() or 0,
            read_models(),
            db,
        )
        result = rebuilder.rebuild(progress=ProgressBar("rebuild"))
    print(
        f"rebuilt generation {result.new_generation} (was {result.old_generation}): "
        f"{result.events:,} events to position {result.position} in {result.seconds:.1f}s "
        f"({result.events / max(result.seconds, 1e-9):,.0f} events/s); old tables dropped "
        f"{result.cleanup_seconds:.1f}s later",
        file=sys.stderr,
    )
    return 0
