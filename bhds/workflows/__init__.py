"""One module per pipeline stage (archive, parse, api_data, generate, quality); plain functions per command, returning a RunSummary.

Workflows orchestrate: list, diff against what is on disk, do the work through the domain
packages (archive, api, parse, generate, storage), and report. They never print or exit.
"""

from __future__ import annotations
