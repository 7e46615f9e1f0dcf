"""One module per CLI group; plain functions named after the commands, returning a RunSummary.

Workflows orchestrate: list, diff against what is on disk, do the work through the domain
packages (archive, api, parse, generate, storage), and report. They never print or exit.
"""

from __future__ import annotations

from bhds.errors import NotImplementedYet


def not_implemented(group: str, command: str) -> NotImplementedYet:
    """The error of a command whose stage has not landed yet."""
    return NotImplementedYet(f"{group} {command} is not implemented yet")
