"""Commands that act on a report: apply (move, hard-link, trash, delete), undo, export."""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING, Any, Literal, overload

import click

from imgsim_index.cli.options import quiet_option
from imgsim_index.cli.progress import TqdmProgress

if TYPE_CHECKING:
    from imgsim_index.report.contract import Report


def _shown(path: str) -> str:
    """A path as one printable line: file names are untrusted and may hold control characters."""
    return path if path.isprintable() else ascii(path)


def _bytes(n: int) -> str:
    from imgsim_index.report.units import human_bytes

    return f"{human_bytes(n)} ({n} bytes)"


def _chosen_action(move_to: str | None, hardlink: bool, trash: bool, delete: bool
                   ) -> str | None:
    chosen = [name for name, on in (("move", move_to is not None), ("hardlink", hardlink),
                                    ("trash", trash), ("delete", delete)) if on]
    if len(chosen) > 1:
        raise click.UsageError("choose one of --move-to DIR, --hardlink, --trash, --delete")
    return chosen[0] if chosen else None


def _apply_summary(action: str, n: int, freed: int, held: int, dest: str | None,
                   done: bool = False) -> str:
    """What apply would do ("move 3 files into ...") or, `done`, did ("moved 3 files ...")."""
    verb = {"move": "moved", "delete": "deleted", "trash": "moved",
            "hardlink": "replaced"} if done else {"trash": "move", "hardlink": "replace"}
    say = verb.get(action, action)
    if action == "move":
        return f"{say} {n} files into {dest}, freeing {_bytes(freed)} in the input folders"
    if action == "delete":
        return f"{say} {n} files, freeing {_bytes(freed)}"
    if action == "trash":
        return (f"{say} {n} files to the trash, freeing {_bytes(freed)} once the trash "
                "is emptied")
    text = f"{say} {n} files with hard links to their keepers, freeing {_bytes(freed)}"
    if held:
        text += f" now and {_bytes(held)} once the originals kept for undo are deleted"
    return text


@click.command()
@click.argument("report", type=click.Path(exists=True, dir_okay=False))
@click.option("--move-to", type=click.Path(file_okay=False), default=None,
              help="Move removable files under DIR/<input folder name>/, keeping sub-folders.")
@click.option("--hardlink", is_flag=True,
              help="Replace each removable file with a hard link to its keeper (same filesystem).")
@click.option("--trash", is_flag=True,
              help="Send removable files to the system trash (undo restores them from there).")
@click.option("--delete", is_flag=True, help="Delete removable files (cannot be undone).")
@click.option("--yes", is_flag=True, help="Act. Without it, only show what would be done.")
@click.option("--journal", type=click.Path(dir_okay=False), default=None,
              help="Undo journal to write (default: apply-<action>-<time>.jsonl beside REPORT).")
@click.option("--resume", "resume_journal", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="Finish an apply that was interrupted, from its journal (needs --yes).")
@click.option("--plan", "choices", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Choices file from report.html's \"export my choices\" (keepers, unticked "
                   "files and groups): apply only those. It may narrow REPORT, never widen it.")
@click.option("--wait", is_flag=True,
              help="If another apply, a build or serve is writing the report's index, wait "
                   "for it to finish instead of refusing.")
@quiet_option
def apply(report: str, move_to: str | None, hardlink: bool, trash: bool, delete: bool, yes: bool,
          journal: str | None, resume_journal: str | None, choices: str | None,
          wait: bool, quiet: bool) -> None:
    """Move, hard-link, trash or delete the removable files of REPORT (dry run unless --yes).

    Keepers and protected files are never touched; a file that changed since the
    report, or that lies outside the report's input folders, is refused. With
    --yes, the report's index is locked from planning to the end, like a build.
    """
    from imgsim_index.actions.plan import apply_report, make_plan, resume_apply

    action = _chosen_action(move_to, hardlink, trash, delete)
    if choices and resume_journal:
        raise click.UsageError("--resume finishes the reviewed report the interrupted apply "
                               "printed; pass that report, without --plan")
    if resume_journal:
        if not yes:
            raise click.UsageError("--resume acts on files; add --yes")
        result = resume_apply(resume_journal, report, TqdmProgress(not quiet), wait=wait)
        _print_refusals(result.refused)
    else:
        if action is None:
            raise click.UsageError("choose what to do: --move-to DIR, --hardlink, --trash or "
                                   "--delete")
        if not yes:
            plan = make_plan(report, action, move_to,
                             report=_reviewed(report, choices, False) if choices else None)
            _print_refusals(plan.refused)
            _print_dry_run(plan)
            return
        planned: list[tuple[Any, str]] = []

        def show(plan: Any, journal_path: str) -> None:
            planned.append((plan, journal_path))
            _print_refusals(plan.refused)
            click.echo(f"Journal: {journal_path}", err=True)

        try:
            result = apply_report(
                report, action, move_to, journal_path=journal, wait=wait, on_plan=show,
                review=(lambda: _reviewed(report, choices, True)) if choices else None,
                progress=TqdmProgress(not quiet))
        except KeyboardInterrupt:
            if planned:
                plan, journal = planned[0]
                j = shlex.quote(journal)
                click.echo(f"Interrupted. Finish with: imgsim-index apply "
                           f"{shlex.quote(plan.context.report_path)} --resume {j} --yes   "
                           f"or take it back with: imgsim-index undo {j}", err=True)
            raise
        # refused at the last moment
        _print_refusals(result.refused[len(planned[0][0].refused):])
    _print_applied(result)
    for f in result.failed:
        click.echo(f"failed {_shown(f.path)}: {f.reason}")
    if result.failed:
        click.echo(f"{_files(len(result.failed))} failed and were left as they were; "
                   "see the journal", err=True)
        sys.exit(1)
    if result.refused and not result.done and not result.already_done:
        # a script that runs apply must not read "cleaned up" into a run that did nothing
        click.echo(f"Nothing was done: {'the' if len(result.refused) == 1 else 'all'} "
                   f"{_files(len(result.refused))} apply would act on "
                   f"{'was' if len(result.refused) == 1 else 'were'} refused (reasons above)",
                   err=True)
        sys.exit(1)


@overload
def _reviewed(report: str, choices: str, save: Literal[True]) -> str: ...
@overload
def _reviewed(report: str, choices: str, save: Literal[False]) -> Report: ...
def _reviewed(report: str, choices: str, save: bool) -> str | Report:
    """REPORT narrowed to the choices file: saved beside it when acting (the report the
    journal names), kept in memory for a dry run."""
    from imgsim_index.actions.choices import apply_choices_file, reviewed_from_file
    from imgsim_index.errors import InputError

    try:
        if not save:
            return reviewed_from_file(report, choices)
        reviewed = apply_choices_file(report, choices)
    except InputError as exc:
        raise click.ClickException(f"--plan {choices}: {exc}") from None
    click.echo(f"Reviewed report: {reviewed} (REPORT with the choices of {choices})", err=True)
    return reviewed


def _print_refusals(refused: list[Any]) -> None:
    for r in refused:
        click.echo(f"refused {_shown(r.path)}: {r.reason}")


def _print_dry_run(plan: Any) -> None:
    for op in plan.operations:
        target = f" -> {_shown(op.target)}" if op.target else f" (keeper {_shown(op.keeper)})"
        click.echo(f"would {plan.action} {_shown(op.path)}{target}")
    text = _apply_summary(plan.action, len(plan.operations), plan.bytes_freed, plan.bytes_held,
                          plan.move_to)
    click.echo(f"Dry run: would {text}; {len(plan.refused)} refused. "
               "Run again with --yes to do it.")


def _print_applied(result: Any) -> None:
    text = _apply_summary(result.action, len(result.done), result.bytes_freed, result.bytes_held,
                          result.move_to, done=True)
    click.echo(f"Done: {text}; {len(result.refused)} refused.")
    if result.already_done:
        click.echo(f"{result.already_done} files had been done before the interruption.")
    if result.bytes_held:
        click.echo(f"Originals kept for undo: {result.backup_dir} "
                   "(delete it to free their space once undo is no longer needed)")
    _print_index(result.index, f"apply REPORT --resume {shlex.quote(result.journal)} --yes")
    if result.action != "delete":  # deleted files cannot come back
        click.echo(f"Undo with: imgsim-index undo {shlex.quote(result.journal)}")


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _print_index(sync: Any, again: str) -> None:
    """How the report's index learnt what apply or undo did (or why it could not)."""
    if sync is None or not sync.index:
        return
    if sync.error:
        click.echo(f"The index {_shown(sync.index)} was not updated: {sync.error}. Run "
                   f"`imgsim-index {again}` when it is free; "
                   "until then a dedupe of the index lists these files' pairs as not "
                   "verified (never as removable)", err=True)
        return
    if again.startswith("undo"):  # the rows went back to where the files are again
        click.echo(f"Index updated: {sync.renamed} files back under their names, "
                   f"{sync.relinked} hard links undone ({_shown(sync.index)})")
        return
    click.echo(f"Index updated: {sync.renamed} files renamed, {sync.removed} removed, "
               f"{sync.relinked} hard-linked ({_shown(sync.index)})")


@click.command()
@click.argument("journal", type=click.Path(exists=True, dir_okay=False))
@click.option("--wait", is_flag=True,
              help="If another apply, a build or serve is writing the index, wait for it.")
@quiet_option
def undo(journal: str, wait: bool, quiet: bool) -> None:
    """Put back the files that an apply moved, hard-linked or trashed, from its JOURNAL."""
    from imgsim_index.actions.undo import undo as run_undo

    result = run_undo(journal, TqdmProgress(not quiet), wait=wait)
    for r in result.not_restored:
        click.echo(f"not restored {_shown(r.path)}: {r.reason}")
    if result.deleted:
        click.echo(f"{len(result.deleted)} deleted files cannot be restored.")
    click.echo(f"Restored {len(result.restored)} files; {len(result.not_restored)} not restored.")
    _print_index(result.index, f"undo {shlex.quote(journal)}")
    if result.not_restored:
        sys.exit(1)


@click.command()
@click.argument("report", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "jsonl"]), default="csv",
              show_default=True,
              help="csv: a table for spreadsheets; json: one array; jsonl: one object a line.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="File to write (default: REPORT with the format's extension; - for stdout).")
def export(report: str, fmt: str, output: str | None) -> None:
    """Write REPORT's groups as a table, one row (object) per file."""
    from imgsim_index.actions.safety import load_report
    from imgsim_index.errors import InputError
    from imgsim_index.report.export import write_export

    data = load_report(report)
    if output == "-":
        write_export(data, sys.stdout, fmt)
        return
    path = output or os.path.splitext(report)[0] + "." + fmt
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            rows = write_export(data, fh, fmt)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    click.echo(f"{fmt.upper()} saved: {path} ({rows} files)")


COMMANDS = (apply, undo, export)
