"""The command line: help everywhere, one-line errors, no tracebacks, no import circle,
each command with exactly the options it uses."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from imgsim_index.cli import cli, main

CLI_DIR = Path(__file__).resolve().parents[1] / "imgsim_index" / "cli"
SHARED = {"options", "progress"}  # what command modules may import from the cli package
COMMAND_MODULES = sorted(p.stem for p in CLI_DIR.glob("*.py")
                         if p.stem not in SHARED and p.stem != "__init__")


def run(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgsim_index", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """main() in this process: (exit status, stderr lines)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err.strip().splitlines()


def test_every_command_and_option_has_help() -> None:
    runner = CliRunner()
    assert sorted(cli.commands) == ["add", "apply", "build", "check", "dedupe", "export",
                                    "import-vectors", "query", "serve", "undo", "verify",
                                    "watch"]
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts[0]} has no help text"
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"Usage: cli {name} [OPTIONS]")


def _parameter_names_used(callback: object) -> tuple[list[str], set[str]]:
    """(the callback's parameters, the names its body reads)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(callback)))  # type: ignore[arg-type]
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    params = [a.arg for a in func.args.args + func.args.kwonlyargs]
    assert func.args.vararg is None and func.args.kwarg is None, "no *args/**kwargs"
    read = {n.id for stmt in func.body for n in ast.walk(stmt)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return params, read


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_each_command_takes_exactly_its_options_and_uses_every_one(name: str) -> None:
    command = cli.commands[name]
    params, read = _parameter_names_used(command.callback)
    assert sorted(params) == sorted(p.name for p in command.params if p.name)
    assert [p for p in params if p not in read] == [], f"{name} declares options it ignores"


def test_options_that_do_not_apply_are_refused() -> None:
    """query embeds but never writes or reports progress; verify and export embed nothing."""
    options = {name: {o for p in cmd.params for o in p.opts} for name, cmd in cli.commands.items()}
    assert not {"--wait", "--quiet", "--video-fps", "--checkpoint-every"} & options["query"]
    assert "--model" in options["query"] and "--backend" in options["query"]
    assert options["verify"] == {"--index", "--repair", "--wait"}
    assert not {"--model", "--quiet", "--engine"} & options["export"]
    assert not {"--prune", "--engine", "--keep"} & options["watch"]


def test_add_is_build_under_another_name() -> None:
    build, add = cli.commands["build"], cli.commands["add"]
    assert [p.opts for p in build.params] == [p.opts for p in add.params]
    assert build.help != add.help
    assert inspect.getsource(build.callback) == inspect.getsource(add.callback)  # type: ignore[arg-type]


def test_keep_default_is_the_library_default() -> None:
    from imgsim_index.groups.keep import DEFAULT_KEEP, KEEP_POLICIES

    keep = next(p for p in cli.commands["dedupe"].params if p.name == "keep")
    assert keep.default == DEFAULT_KEEP
    assert tuple(keep.type.choices) == KEEP_POLICIES  # type: ignore[attr-defined]


def test_command_modules_import_only_the_shared_modules() -> None:
    """The group imports the command modules; they import options/progress, never each other
    nor the group."""
    assert COMMAND_MODULES == ["apply_cmds", "dedupe_cmd", "index_cmds", "query_cmds",
                               "serve_cmd"]
    for path in CLI_DIR.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "imgsim_index.cli":
                    imported |= {a.name for a in node.names}
                elif node.module.startswith("imgsim_index.cli."):
                    imported.add(node.module.rsplit(".", 1)[1])
            elif isinstance(node, ast.Import):
                imported |= {a.name.rsplit(".", 1)[1] for a in node.names
                             if a.name.startswith("imgsim_index.cli.")}
        if path.stem == "__init__":
            assert imported == set(COMMAND_MODULES), imported
        elif path.stem in SHARED:
            assert imported == set(), f"{path.name} imports {imported}"
        else:
            assert imported <= SHARED, f"{path.name} imports {imported - SHARED}"


def _package_imports() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports, at the top or inside
    a function (a lazy import still ties the two together)."""
    root = CLI_DIR.parent
    names = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in names:
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names
                          else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in names}
        graph[name] = found - {name}
    return graph


def test_no_module_of_the_package_imports_its_importers() -> None:
    """Imports go one way (actions/plan -> actions/index_sync -> actions/journal, never back):
    no module reaches itself through the modules it imports, lazily or not."""
    graph = _package_imports()

    def reaches(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += graph[m]
        return seen

    circles = sorted(m for m in graph if m in reaches(m))
    assert circles == [], circles


@pytest.mark.parametrize("module", sorted(SHARED) + COMMAND_MODULES)
def test_each_cli_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    r = subprocess.run([sys.executable, "-c", f"import imgsim_index.cli.{module}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


HEAVY = {"torch", "torchvision", "timm", "faiss", "cv2", "onnxruntime", "ray", "tqdm", "numpy",
         "PIL"}


def _packages_loaded_by_help() -> set[str]:
    """Top-level packages imported by `imgsim-index --help` in a fresh interpreter."""
    code = textwrap.dedent("""
        import sys
        from imgsim_index.cli import main
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        print(" ".join(sorted(sys.modules)))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "dedupe" in r.stdout, r.stderr
    return {m.split(".")[0] for m in r.stdout.split("\n")[-2].split()}


def test_help_imports_no_heavy_library() -> None:
    assert HEAVY & _packages_loaded_by_help() == set()


def test_module_entry_point_answers_help() -> None:
    r = run("--help")
    assert r.returncode == 0 and "dedupe" in r.stdout and "build" in r.stdout


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_unknown_option_is_a_one_line_usage_error(name: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main([name, "--no-such-option"], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("Error: No such option '--no-such-option'.")  # + "Did you mean"


def test_query_refuses_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(["query", "x.jpg", "-q"], capsys)
    assert (code, err) == (2, ["Error: No such option '-q'."])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["dedupe", "--threshold", "2"], "--threshold"),
        (["dedupe", "--compare-mode", "half"], "--compare-mode"),
        (["dedupe", "--sample-ratio", "0"], "--sample-ratio"),
        (["dedupe", "--compare-scope", "folders"], "--compare-scope"),
        (["dedupe", "--keep", "prettiest"], "--keep"),
        (["build"], "FOLDERS"),
        (["add"], "PATHS"),
        (["build", "/no/such/folder"], "no such folder or file: /no/such/folder"),
        (["build", ".", "--batch-size", "0"], "--batch-size"),
        (["build", ".", "--model", "vgg"], "--model"),
    ],
)
def test_bad_values_get_one_line_errors(args: list[str], expected: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run(*args, cwd=str(tmp_path))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("Error:") and expected in lines[0]
    assert "Traceback" not in r.stderr


def test_dedupe_without_an_index_says_how_to_build_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run("dedupe", "--index", str(tmp_path / "none"), cwd=str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"Error: no index at {tmp_path / 'none'} (missing manifest.json); build one with "
        "`imgsim-index build FOLDER --index DIR`"
    ]


def test_locked_index_error_names_the_wait_flag(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from imgsim_index.errors import IndexLockedError
    from imgsim_index.index.store import IndexStore

    vectors, paths, idx = tmp_path / "v.npy", tmp_path / "paths.txt", tmp_path / "idx"
    np.save(vectors, np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))
    paths.write_text("".join(f"/photos/{k}.jpg\n" for k in range(3)), encoding="utf-8")
    import_args = ["import-vectors", str(vectors), str(paths), "--index", str(idx), "-q"]
    assert run_main(import_args, capsys)[0] == 0
    holder = IndexStore.open_writer(str(idx), IndexStore.read_manifest(str(idx)))
    try:
        with pytest.raises(IndexLockedError) as info:  # the library speaks of no flag
            IndexStore.open_writer(str(idx), IndexStore.read_manifest(str(idx)))
        assert "--" not in str(info.value)
        code, err = run_main(import_args, capsys)
    finally:
        holder.close()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("Error: the index is being written by pid ")
    assert err[0].endswith("; wait for it to finish or pass --wait to queue behind it")


def _scene(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((96, 96), Image.Resampling.BILINEAR)


def test_build_and_add_give_the_same_index(tmp_path: Path) -> None:
    from imgsim_index.index.store import IndexStore

    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(3):
        _scene(k).save(folder / f"{k}.png")
    _scene(0).save(folder / "copy.png")
    runner = CliRunner()
    out = {}
    for name in ("build", "add"):
        result = runner.invoke(cli, [name, str(folder), "--index", str(tmp_path / name),
                                     "--model", "efficientnet-lite0", "--workers", "0", "-q"],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        out[name] = result.stdout.replace(str(tmp_path / name), "IDX")
        with IndexStore.open_reader(str(tmp_path / name)) as store:
            loaded = store.load()
            out[name + " rows"] = [r.path for r in loaded.rows]  # type: ignore[assignment]
            out[name + " vectors"] = loaded.vectors  # type: ignore[assignment]
    assert out["build"] == out["add"] == (
        "Scanned 4 files: embedded 4, unchanged 0, unreadable 0.\n"
        "Index IDX (efficientnet-lite0): 4 images, 0 unreadable files.\n")
    assert out["build rows"] == out["add rows"] == sorted(str(p) for p in folder.iterdir())
    np.testing.assert_array_equal(out["build vectors"], out["add vectors"])


def test_check_is_the_verify_command_under_the_apis_name(tmp_path: Path) -> None:
    """`check` (Index.check) and `verify` are one command: same function, same options, both
    listed; their help says it checks the index, apart from the pair --verify option."""
    check, verify = cli.commands["check"], cli.commands["verify"]
    assert check.callback is verify.callback and check.params == verify.params
    listing = CliRunner().invoke(cli, ["--help"]).output
    assert "check " in listing and "verify " in listing
    for name in ("check", "verify"):
        text = " ".join(CliRunner().invoke(cli, [name, "--help"]).output.split())
        assert "Check the index's integrity" in text and "pair verification" in text
    dedupe_help = " ".join(CliRunner().invoke(cli, ["dedupe", "--help"]).output.split())
    assert "Pair verification." in dedupe_help and "verify command checks the index" in dedupe_help

    vectors = np.eye(3, 8, dtype=np.float32)
    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "paths.txt").write_text("".join(f"/x/{k}.jpg\n" for k in range(3)))
    idx = str(tmp_path / "idx")
    runner = CliRunner()
    made = runner.invoke(cli, ["import-vectors", str(tmp_path / "v.npy"),
                               str(tmp_path / "paths.txt"), "--index", idx])
    assert made.exit_code == 0, made.output
    by_check = runner.invoke(cli, ["check", "--index", idx])
    by_verify = runner.invoke(cli, ["verify", "--index", idx])
    assert by_check.exit_code == by_verify.exit_code == 0, by_check.output
    assert by_check.output == by_verify.output
    assert "OK: the index is consistent." in by_check.output


def test_no_private_name_crosses_a_module() -> None:
    """A name with a leading underscore is its module's own: no other module of the package
    imports it (`from imgsim_index.x import _name`) or reaches it through the module
    (`x._name`). What two modules share is public."""
    root = CLI_DIR.parent
    crossing = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        modules = set()  # local names bound to a module of the package
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("imgsim_index"):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        crossing.append(f"{path.name}: from {node.module} import {a.name}")
                    elif (root.parent / (node.module or "").replace(".", "/") / a.name).with_suffix(
                            ".py").exists():
                        modules.add(a.asname or a.name)
            elif isinstance(node, ast.Import):
                modules |= {a.asname for a in node.names
                            if a.asname and a.name.startswith("imgsim_index")}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                crossing.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert crossing == [], crossing


def test_serve_errors_carry_the_flag_hints_of_every_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """serve is a command like the others: its library errors get the same way out, and its
    embedding options are the shared ones (a model name is checked as it is for query)."""
    code, err = run_main(["serve", "--index", str(tmp_path / "none")], capsys)
    assert code == 1
    assert err[-1].endswith("; build one with `imgsim-index build FOLDER --index DIR`"), err
    code, err = run_main(["serve", "--index", str(tmp_path / "none"), "--model", "nope"],
                         capsys)
    assert code == 2 and "'nope' is not one of" in err[-1], err
