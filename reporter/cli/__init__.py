"""The ``reporter`` command line (see ``app``); importing the command modules registers them."""

from reporter.cli import reports, tools
from reporter.cli.app import cli, main

__all__ = ["cli", "main", "reports", "tools"]
