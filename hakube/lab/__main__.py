"""`python -m hakube.lab ...`: the lab commands without the main CLI (CI, debugging)."""

from .cli import main

main()
