#!/usr/bin/env python3
"""`python bhds.py <group> <command> ...`: the legacy entry point, now a thin wrapper."""

from bhds.cli import main

if __name__ == "__main__":
    main()
