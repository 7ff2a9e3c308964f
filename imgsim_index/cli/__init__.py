"""cli: the command line, a thin layer over the library (parse, call, print, map errors).

This module holds the one group and `main`; commands live one family per module
(index_cmds, dedupe_cmd, query_cmds, apply_cmds, serve_cmd), each exposing COMMANDS. Imports go one
way: this module imports the command modules, they import only `options` and `progress`.
"""

from __future__ import annotations

import sys

import click

from imgsim_index.cli import apply_cmds, dedupe_cmd, index_cmds, query_cmds, serve_cmd
from imgsim_index.errors import (
    FIX_CPU,
    FIX_INDEX_MODEL,
    FIX_OTHER_INDEX,
    FIX_TORCH_BACKEND,
    FIX_WEIGHTS,
    ImgsimError,
    IndexLockedError,
    IndexMissingError,
    ModelError,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imgsim-index")
def cli() -> None:
    """Find duplicate and near-duplicate images with CNN embeddings and a FAISS index."""


for _family in (index_cmds, dedupe_cmd, query_cmds, apply_cmds, serve_cmd):
    for _command in _family.COMMANDS:
        cli.add_command(_command)

# The library's messages speak of its own terms; these add the command-line way out.
FLAG_HINTS: dict[type[ImgsimError], str] = {
    IndexMissingError: "; build one with `imgsim-index build FOLDER --index DIR`",
    IndexLockedError: " or pass --wait to queue behind it",
}


# The library names a way out (ImgsimError.fix); this is how the command line spells it.
FIX_FLAGS: dict[str, str] = {
    FIX_WEIGHTS: " (--weights FILE, or --model efficientnet-lite0)",
    FIX_TORCH_BACKEND: " (use --backend torch)",
    FIX_CPU: " (use --device cpu)",
    FIX_OTHER_INDEX: " (--index DIR picks another folder)",
    FIX_INDEX_MODEL: " (--model {arg}, or --index DIR for another folder)",
}


def error_line(exc: ImgsimError) -> str:
    """The one line printed for a library error, with the flag hint for its type or fix."""
    hint = next((h for t, h in FLAG_HINTS.items() if isinstance(exc, t)), "")
    if exc.fix in FIX_FLAGS:
        hint += FIX_FLAGS[exc.fix].format(arg=exc.fix_arg)
    # a download attempt may have left a partial line on stderr
    text = str(exc).replace("run verify with repair", "run `imgsim-index verify --repair`")
    return f"{chr(10) if isinstance(exc, ModelError) else ''}Error: {text}{hint}"


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="imgsim-index", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `imgsim-index`: show help
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except ImgsimError as exc:
        click.echo(error_line(exc), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted: work committed so far is kept; run again to resume.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


__all__ = ["cli", "main"]
