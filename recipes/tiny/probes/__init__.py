"""Research probes of the tiny recipe, each a module with `main(argv)`: `python -m recipes.tiny.probes.NAME --help`."""
