"""Write docs/cli.md from the click commands themselves: every command, its help, and every
option with its type and default. Run it after changing a command or option:

    python scripts/cli_docs.py            # rewrites docs/cli.md
    python scripts/cli_docs.py --check    # exit 1 if docs/cli.md is out of date

tests/test_cli_docs.py fails when the committed file differs from what this writes.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
PROG = "imgsim-index"


def _cell(text: str) -> str:
    """Text inside a markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _type(param: click.Parameter) -> str:
    if isinstance(param, click.Option) and param.is_flag and not param.secondary_opts:
        return "flag"
    if isinstance(param.type, click.Choice):
        return " | ".join(str(c) for c in param.type.choices)
    if isinstance(param.type, click.Path):
        return "folder" if not param.type.file_okay else "file" if not param.type.dir_okay \
            else "path"
    if isinstance(param.type, click.types._NumberRangeBase):
        base = "integer" if isinstance(param.type, click.IntRange) else "number"
        return f"{base}, {param.type._describe_range()}"
    return str(param.type.name)


def _help(text: str | None) -> str:
    """A command's help as click shows it: indentation gone, no-rewrap markers dropped."""
    lines = inspect.cleandoc(click.unstyle(text or "")).splitlines()
    return "\n".join(line for line in lines if line.strip() != "\b").strip()


def _default(param: click.Parameter, ctx: click.Context) -> str:
    value = param.get_default(ctx, call=False)
    if isinstance(param, click.Option) and param.is_flag and not param.secondary_opts:
        return "on" if value is True else "off"
    if not isinstance(value, (str, int, float, tuple, list)) or value in ((), [], ""):
        return ""  # none, computed at run time (the help says how), or click's "unset"
    if isinstance(param, click.Option) and param.secondary_opts and isinstance(value, bool):
        return "`" + (param.opts[0] if value else param.secondary_opts[0]) + "`"
    if isinstance(value, (list, tuple)):
        return "`" + " ".join(str(v) for v in value) + "`"
    return f"`{value}`"


def _names(param: click.Parameter) -> str:
    names = [*param.opts, *param.secondary_opts]
    if isinstance(param, click.Option) and param.metavar and not param.is_flag:
        return ", ".join(f"`{n} {param.metavar}`" for n in names)
    return ", ".join(f"`{n}`" for n in names)


def _command(name: str, cmd: click.Command, parent: click.Context) -> list[str]:
    ctx = click.Context(cmd, info_name=name, parent=parent)
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    out = [f"## {name}", "", "```", f"{PROG} {name} {usage}".rstrip(), "```", ""]
    if cmd.help:
        out += [_help(cmd.help), ""]
    args = [p for p in cmd.params if isinstance(p, click.Argument)]
    if args:
        out += ["Arguments: " + ", ".join(
            f"`{p.human_readable_name}` ({_type(p)}"
            f"{', repeatable' if p.nargs == -1 else ''}{', required' if p.required else ''})"
            for p in args), ""]
    options = [p for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden]
    if options:
        out += ["| option | type | default | what it does |", "|---|---|---|---|"]
        for p in options:
            help_text = _cell(p.help or "")
            if p.multiple and "repeatable" not in help_text:
                help_text += " (repeatable)"
            if p.required:
                help_text = "Required. " + help_text
            out.append(f"| {_names(p)} | {_cell(_type(p))} | {_cell(_default(p, ctx))} | "
                       f"{help_text} |")
        out.append("")
    return out


def render() -> str:
    """docs/cli.md's text, from the click group."""
    from imgsim_index.cli import cli

    root = click.Context(cli, info_name=PROG)
    names = [n for n in sorted(cli.commands) if not cli.commands[n].hidden]
    lines = [
        "# Command reference",
        "",
        "Generated from the commands by `python scripts/cli_docs.py`; do not edit by hand.",
        "`imgsim-index COMMAND --help` prints the same.",
        "",
        _help(cli.help),
        "",
        "| command | what it does |",
        "|---|---|",
        *(f"| [{n}](#{n}) | {_cell(cli.commands[n].get_short_help_str(limit=200))} |"
          for n in names),
        "",
    ]
    for name in names:
        lines += _command(name, cli.commands[name], root)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/cli.md differs from what would be written")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is out of date; run python scripts/cli_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
