"""`python -m bhds`: the same CLI as `python bhds.py` and the `bhds` console script."""

from bhds.cli import main

if __name__ == "__main__":
    main()
