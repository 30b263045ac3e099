"""The `alocc` command line root; the packages it dispatches to own their subcommands."""
