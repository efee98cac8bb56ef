"""The layout docs/layout.md describes: imports point one way, and its table lists every
folder and top-level script of the repository."""
import ast
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT_MODULES = {"main", "test", "predict", "opts", "model"}


def tracked_files():
    """The repository's files (git's list, so nothing ignored such as .venv or demo/)."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        out = None
    if out is None or out.returncode != 0:
        pytest.skip("not a git checkout")
    return out.stdout.splitlines()


def imported_packages(source):
    """The first component of every module ``source`` imports (at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


# the tests of tools/ (test_custom.py: tools/custom_dataset.py's made split)
TOOL_TESTS = {"test_tools.py", "test_custom.py"}

# what each part of the project may not import
FORBIDDEN = {
    "core": {"models", "datasets", "transforms", "tools"} | SCRIPT_MODULES,
    "models": {"datasets", "transforms", "tools"} | SCRIPT_MODULES,
    "datasets": {"models", "tools"} | SCRIPT_MODULES,
    "transforms": {"models", "datasets", "tools"} | SCRIPT_MODULES,
}


def violations(rel, source):
    """``["<file> imports <package>", ...]`` for the imports ``rel`` may not make."""
    part = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    forbidden = set(FORBIDDEN.get(part, ()))
    if part != "tools" and rel.name not in TOOL_TESTS:
        forbidden.add("tools")  # command-line jobs, not a library: only their tests use them
    return [f"{rel} imports {name}" for name in sorted(imported_packages(source) & forbidden)]


def test_imports_point_one_way():
    bad = []
    for rel in map(Path, tracked_files()):
        if rel.suffix == ".py":
            bad += violations(rel, (REPO / rel).read_text(encoding="utf-8"))
    assert not bad, bad
    # and the check sees a wrong import, also one inside a function
    assert violations(Path("core/report.py"), "def f():\n    from datasets.catalog import X\n") \
        == ["core/report.py imports datasets"]
    assert violations(Path("predict.py"), "import tools.jobs") == ["predict.py imports tools"]


def test_layout_doc_lists_every_folder_and_script():
    text = (REPO / "docs" / "layout.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([^`]+?)/?` \|", text, re.M))
    files = tracked_files()
    folders = {f.split("/")[0] for f in files if "/" in f and not f.startswith(".")}
    scripts = {f for f in files if "/" not in f and f.endswith(".py")} | {"Makefile"}
    assert listed == folders | scripts, (listed ^ (folders | scripts))


def pytest_selection(command):
    """The options of a ``python -m pytest ...`` command line that leave tests out."""
    args = shlex.split(command)
    args = args[args.index("pytest") + 1:]
    return [a for a in args if a in ("-m", "-k") or a.startswith(("-m=", "-k="))]


def make_pytest_command(target):
    out = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return next(line for line in out.stdout.splitlines() if "-m pytest" in line)


def test_ci_runs_the_slow_checks_that_make_test_leaves_out():
    """`make test` leaves the `slow` checks out; CI runs `make check-all`, which leaves out
    nothing."""
    assert (REPO / ".ci" / "run").read_text().split()[-2:] == ["make", "check-all"]
    assert pytest_selection(make_pytest_command("test")) == ["-m"]
    assert pytest_selection(make_pytest_command("check-all")) == []
    assert pytest_selection("python -m pytest -k mpi tests") == ["-k"]  # the check sees one
