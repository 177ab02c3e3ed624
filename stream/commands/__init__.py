"""`mindstream` subcommands run against a cluster; each module has `configure(parser)` and `run(args)`."""
