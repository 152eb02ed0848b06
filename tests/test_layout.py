"""The suite's own layout: no module under tests/ imports a test module or a conftest.
What test modules share is in tests/support/ (helpers) or in the conftest.py of the
narrowest directory holding every module that uses it (fixtures), so that each test
module reads, and runs, on its own."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def module_name(path: Path) -> str:
    return ".".join(("tests", *path.relative_to(TESTS).with_suffix("").parts))


def imported(path: Path) -> set[str]:
    """The dotted names of the modules `path` imports, and of what it imports from
    them (a name may be a submodule: `from . import test_x`), relative ones resolved."""
    package = module_name(path).split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    modules = {module_name(path): path for path in TESTS.rglob("*.py")}
    forbidden = {
        name
        for name, path in modules.items()
        if path.name.startswith("test_") or path.name == "conftest.py"
    }
    offending = {
        f"{path.relative_to(TESTS)} imports {name}"
        for path in modules.values()
        for name in imported(path) & forbidden
    }
    assert not offending, sorted(offending)
