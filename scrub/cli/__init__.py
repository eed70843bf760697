"""The ``scrub`` command line (typer): one module per command group, one error handler."""
