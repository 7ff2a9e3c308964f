"""docs/cli.md is generated from the click commands and cannot drift from them."""

from __future__ import annotations

from conftest import ROOT, _load_script


def test_committed_cli_reference_matches_the_commands() -> None:
    docs = _load_script("cli_docs")
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == docs.render(), (
        "docs/cli.md is out of date with the commands; run `python scripts/cli_docs.py` "
        "and commit docs/cli.md")


def test_reference_lists_every_command_and_option() -> None:
    import click

    from imgsim_index.cli import cli

    text = _load_script("cli_docs").render()
    for name, cmd in cli.commands.items():
        if cmd.hidden:
            continue
        assert f"\n## {name}\n" in text
        section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.hidden:
                assert f"`{p.opts[0]}" in section, (name, p.opts[0])


def test_readme_links_the_cli_reference() -> None:
    assert "(docs/cli.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
