"""The rules of the house that import-linter cannot state (see docs/architecture.md):
``domain`` imports only the standard library and ``eventsourcing.domain``, and every
third-party package the service imports is declared in pyproject.toml."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "commands", "projections", "api", "workers")


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in ``path``, lazy ones included."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def sources(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def domain_violations(paths: list[Path]) -> list[str]:
    allowed = set(sys.stdlib_module_names) | {"domain", "__future__"}
    return [
        f"{path.name}:{line} imports {module}"
        for path in paths
        for line, module in imports(path)
        if module.split(".")[0] not in allowed
        and not (module == "eventsourcing.domain" or module.startswith("eventsourcing.domain."))
    ]


def test_domain_imports_only_the_standard_library_and_eventsourcing_domain() -> None:
    assert domain_violations(list(sources("domain"))) == []


def test_a_database_import_in_domain_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "import json\nfrom eventsourcing.domain import Aggregate\n"
        "def load():\n    from eventsourcing.persistence import Tracking\n    import psycopg\n"
    )
    assert domain_violations([module]) == [
        "bad.py:4 imports eventsourcing.persistence",
        "bad.py:5 imports psycopg",
    ]


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = re.compile(r"^[A-Za-z0-9._-]+")
    found = set()
    for requirement in project["dependencies"]:
        match = names.match(requirement)
        assert match is not None, requirement
        found.add(match.group(0).lower().replace("_", "-"))
    return found


def test_every_imported_package_is_declared() -> None:
    declared = _declared()
    distributions = packages_distributions()
    ours = set(PACKAGES) | set(sys.stdlib_module_names) | {"__future__"}
    missing: dict[str, str] = {}
    for path in sources(*PACKAGES):
        for _, module in imports(path):
            top = module.split(".")[0]
            if top in ours:
                continue
            owners = {name.lower().replace("_", "-") for name in distributions.get(top, [top])}
            if not owners & declared:
                missing.setdefault(top, str(path.relative_to(ROOT)))
    assert missing == {}


MAX_MODULE_LINES = 300  # a module a newcomer reads in one sitting


def test_no_production_module_is_over_300_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sources(*PACKAGES)
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
