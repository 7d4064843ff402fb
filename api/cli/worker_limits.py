"""The ``worker`` options of resources and security: ``--cpus``, ``--memory`` (what the
worker offers to attempts' requests: workers/capacity.py) and ``--run-as`` (the user of
``HIGH`` attempts: workers/sandbox.py)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from api.settings import Settings
from api.settings_worker import parse_worker_cpus, parse_worker_memory

if TYPE_CHECKING:  # loaded by the worker only: serve never loads the worker's modules
    from workers.capacity import Capacity
    from workers.sandbox import Sandbox


def add_arguments(worker: Any) -> None:
    """Add the options to the ``worker`` parser."""
    worker.add_argument(
        "--cpus",
        type=_form(parse_worker_cpus, "--cpus"),
        default=None,
        help="cpu the worker offers (2, 1.5, 500m): attempts start while their cpu requests "
        "fit (default: TASKEXEC_WORKER_CPUS; unset: not limited)",
    )
    worker.add_argument(
        "--memory",
        type=_form(parse_worker_memory, "--memory"),
        default=None,
        help="memory the worker offers (4Gi, 512Mi, 1G): attempts start while their memory "
        "requests fit (default: TASKEXEC_WORKER_MEMORY; unset: not limited)",
    )
    worker.add_argument(
        "--run-as",
        default=None,
        metavar="USER",
        help="the user HIGH attempts run as (a worker running as root needs it to run them)",
    )


def _form(parse: Any, option: str) -> Any:
    def parsed(text: str) -> int:
        try:
            value: int = parse(option, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return parsed


def capacity(settings: Settings, args: argparse.Namespace) -> Capacity:
    """What the worker offers: its options, else its settings."""
    from workers.capacity import Capacity

    cpus = args.cpus if args.cpus is not None else settings.worker_cpus
    memory = args.memory if args.memory is not None else settings.worker_memory
    return Capacity(millicpu=cpus, memory_bytes=memory)


def sandbox(settings: Settings, args: argparse.Namespace) -> Sandbox:
    """HIGH attempts' directories (under the var dir) and user; ValueError for a
    ``--run-as`` that cannot be (no such user, a worker that is not root)."""
    from workers.sandbox import RunAs, Sandbox

    run_as = RunAs.named(args.run_as) if args.run_as else None
    return Sandbox(settings.var_dir / "attempts", run_as)
