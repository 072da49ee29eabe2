"""`python -m fdrd.cli ...` runs the command line, as the `fdrd` script does."""

from fdrd.cli import main

main()
