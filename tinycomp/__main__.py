"""Entry point for `python -m tinycomp`."""

from tinycomp.cli import main

main()
