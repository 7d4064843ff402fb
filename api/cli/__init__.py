"""The ``taskexec`` command line: one module per command group."""

from api.cli.main import main

__all__ = ["main"]
