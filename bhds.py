#!/usr/bin/env python3
"""`python bhds.py <group> <command> ...`: the legacy entry point, now a thin wrapper."""

# The import is under the guard: pool workers (forkserver) import this file as `__mp_main__`, and
# must not load the whole CLI for nothing before they start.
if __name__ == "__main__":
    from bhds.cli import main

    main()
