"""`python -m tasks.cli`: the `tunerflow` command."""

from tasks.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
