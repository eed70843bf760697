"""``python -m scrub``: the same as the ``scrub`` console script."""

from scrub.cli.main import main

main()
