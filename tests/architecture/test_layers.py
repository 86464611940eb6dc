"""The architecture, checked: imports point one way, and no module, class or function grows past
the sizes a reader can hold.

Layers, top to bottom: api -> service -> engine -> roles -> (roles.)models, with store,
governor, config and home below all of them. The CLI talks to the daemon only over HTTP, and
tools (simulator, bench, soak, demo) use the product: nothing in the product imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from support import ROOT

PACKAGES = ("daemon", "roles")
#: Each layer and the layers it must never import (directly or by a function-local import).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "daemon.store": (
        "daemon.api",
        "daemon.service",
        "daemon.engine",
        "daemon.cli",
        "daemon.tools",
        "daemon.governor",
        "roles",
    ),
    "daemon.governor": (
        "daemon.api",
        "daemon.service",
        "daemon.engine",
        "daemon.cli",
        "daemon.tools",
        "daemon.store",
        "roles",
    ),
    "daemon.config": (
        "daemon.api",
        "daemon.service",
        "daemon.engine",
        "daemon.cli",
        "daemon.tools",
        "daemon.store",
        "daemon.governor",
        "roles",
    ),
    "daemon.home": (
        "daemon.api",
        "daemon.service",
        "daemon.engine",
        "daemon.cli",
        "daemon.tools",
        "daemon.store",
        "daemon.governor",
        "roles",
    ),
    "roles": ("daemon",),
    "roles.models": (
        "roles.planner",
        "roles.executor",
        "roles.orchestrator",
        "roles.plan",
        "roles.prompts",
        "roles.report",
    ),
    "daemon.engine": ("daemon.api", "daemon.service", "daemon.cli", "daemon.tools"),
    "daemon.service": ("daemon.api", "daemon.cli", "daemon.tools"),
    "daemon.api": ("daemon.cli", "daemon.tools"),
    "daemon.cli": ("daemon.engine", "daemon.store", "daemon.service.service", "roles"),
}
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 80
#: The simulator's scenario data is data, not logic.
SIZE_EXEMPT = ("daemon/tools/simulator/scenarios",)


def _modules() -> list[tuple[str, Path]]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found.append((".".join(parts), path))
    return found


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level or None]
                if path.name == "__init__.py":
                    base = module.split(".")[: len(module.split(".")) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{a.name}" for a in node.names)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_imports_point_one_way() -> None:
    wrong = []
    for module, path in _modules():
        # The most specific rule applies (roles.models before roles).
        rules = [p for p in FORBIDDEN if _within(module, p)]
        if not rules:
            continue
        layer = max(rules, key=len)
        for name in _imports(module, path):
            for banned in FORBIDDEN[layer]:
                if _within(name, banned) and not _within(name, layer):
                    wrong.append(f"{module} imports {name} ({layer} must not use {banned})")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_the_product_never_imports_its_tooling() -> None:
    wrong = [
        f"{module} imports {name}"
        for module, path in _modules()
        if not _within(module, "daemon.tools")
        for name in _imports(module, path)
        if _within(name, "daemon.tools")
    ]
    # `tierd demo`, `bench` and `simulate` are commands: the CLI starts them, lazily.
    wrong = [w for w in wrong if not w.startswith("daemon.cli.")]
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_modules_classes_and_functions_stay_small() -> None:
    big = []
    for module, path in _modules():
        if any(str(path.relative_to(ROOT)).startswith(e) for e in SIZE_EXEMPT):
            continue
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > MAX_MODULE_LINES:
            big.append(f"{module}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if isinstance(node, ast.ClassDef) and size > MAX_CLASS_LINES:
                big.append(f"{module}.{node.name}: class of {size} lines")
            elif (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and size > MAX_FUNCTION_LINES
            ):
                big.append(f"{module}.{node.name}(): {size} lines")
    assert not big, "\n".join(big)
