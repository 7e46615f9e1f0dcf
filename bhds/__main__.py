"""`python -m bhds`: the same CLI as `python bhds.py` and the `bhds` console script."""

if __name__ == "__main__":  # see bhds.py: pool workers import this module as `__mp_main__`
    from bhds.cli import main

    main()
