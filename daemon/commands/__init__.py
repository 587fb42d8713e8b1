"""One module per `jamd` subcommand (see jamd.cli)."""
