"""`python -m cli`: the `nbo` command (what the `nbo` script runs)."""

from cli import main

main()
