"""Ports are narrow and hold no code; services see only the narrow ones.

A wide port invites every feature to reach into it, and code in a port is a
rule with a second home: issue 15 set at most 8 methods a port.
"""

from __future__ import annotations

import abc
import ast
import importlib
import inspect
import pkgutil

import app.ports
from app.config import PROJECT_ROOT

METHODS_PER_PORT_AT_MOST = 8
# What one adapter implements, bundling the narrow ports: only the
# composition root and the contract suites name them.
COMPOSITES = {"TransferStore", "Ledger"}


def _ports() -> list[type]:
    found = []
    for module_info in pkgutil.iter_modules(app.ports.__path__):
        module = importlib.import_module(f"app.ports.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, abc.ABC) and cls.__name__ not in COMPOSITES:
                found.append(cls)
    return found


def _own_methods(port: type) -> dict[str, object]:
    return {name: value for name, value in vars(port).items() if inspect.isfunction(value)}


def test_there_are_ports_to_check() -> None:
    names = {port.__name__ for port in _ports()}
    assert {"TransferRecords", "IdempotencyKeys", "LedgerMoves", "LedgerQuotas", "ServiceBus"} <= names


def test_no_port_has_more_than_eight_methods() -> None:
    wide = {p.__name__: len(_own_methods(p)) for p in _ports() if len(_own_methods(p)) > METHODS_PER_PORT_AT_MOST}
    assert wide == {}


def test_every_port_method_is_abstract() -> None:
    concrete = [
        f"{port.__name__}.{name}"
        for port in _ports()
        for name, method in _own_methods(port).items()
        if not getattr(method, "__isabstractmethod__", False)
    ]
    assert concrete == []


def test_composites_declare_nothing_of_their_own() -> None:
    for module_name in ("app.ports.store", "app.ports.ledger"):
        module = importlib.import_module(module_name)
        for name in COMPOSITES & set(vars(module)):
            assert _own_methods(getattr(module, name)) == {}, name


def test_services_take_the_narrow_ports() -> None:
    offenders = []
    for path in sorted((PROJECT_ROOT / "app" / "services").glob("*.py")):
        if path.name == "dependencies.py":
            continue  # where one adapter's ports are bundled
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in ("app.ports.store", "app.ports.ledger"):
                offenders += [f"{path.name}: {alias.name}" for alias in node.names if alias.name in COMPOSITES]
    assert offenders == []


def test_ports_define_no_functions() -> None:
    functions = []
    for path in sorted((PROJECT_ROOT / "app" / "ports").glob("*.py")):
        tree = ast.parse(path.read_text())
        functions += [f"{path.name}: {node.name}" for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions == []
