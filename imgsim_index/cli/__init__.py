"""cli: the command line, a thin layer over the library (parse, call, print, map errors)."""

from imgsim_index.cli.commands import cli, main

__all__ = ["cli", "main"]
