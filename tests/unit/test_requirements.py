"""requirements.txt pins what the service imports and what those packages need: nothing more, nothing less.

A package was once pinned for production only because a package whose data
files the service serves declared it; nothing imported it. These tests read
the service's own imports, follow each imported distribution's declared
requirements (with the extras requirements.txt names) through the installed
metadata, and compare the result with the pins.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from app.config import PROJECT_ROOT

# Everything that runs in production: the packages and the two entry files.
SERVICE_SOURCES = ("app", "consumers", "scheduler", "wsgi.py", "gunicorn.conf.py")
FIRST_PARTY = {"app", "consumers", "scheduler", "wsgi", "tests"}


def pinned_requirements() -> dict[str, Requirement]:
    """requirements.txt's pins by canonical name."""
    pins: dict[str, Requirement] = {}
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        assert len(requirement.specifier) == 1 and next(iter(requirement.specifier)).operator == "==", line
        pins[canonicalize_name(requirement.name)] = requirement
    return pins


def imported_modules() -> dict[str, str]:
    """Top-level module name -> a place the service imports it."""
    found: dict[str, str] = {}
    for source in SERVICE_SOURCES:
        root = PROJECT_ROOT / source
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                where = f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}"
                for name in names:
                    found.setdefault(name.split(".")[0], where)
    return found


def imported_distributions() -> dict[str, str]:
    """Canonical distribution name -> a place the service imports it (the standard library is no distribution)."""
    providers = metadata.packages_distributions()
    found: dict[str, str] = {}
    for module, where in imported_modules().items():
        if module in FIRST_PARTY:
            continue
        for distribution in providers.get(module, []):
            found.setdefault(canonicalize_name(distribution), where)
    return found


Declared = Callable[[str], list[Requirement]]


def _declared(name: str) -> list[Requirement]:
    """What the installed distribution `name` declares it requires."""
    return [Requirement(text) for text in metadata.requires(name) or []]


def closure(roots: Mapping[str, Iterable[str]], declared: Declared = _declared) -> set[str]:
    """The roots (name -> extras wanted) and everything they require, transitively, in this environment."""
    wanted: dict[str, set[str]] = {}
    queue = [(canonicalize_name(name), set(extras)) for name, extras in roots.items()]
    while queue:
        name, extras = queue.pop()
        known = wanted.setdefault(name, set())
        if known and extras <= known:
            continue
        known |= extras
        for requirement in declared(name):
            markers = [{"extra": extra} for extra in ("", *sorted(known))]
            if requirement.marker is None or any(requirement.marker.evaluate(m) for m in markers):
                queue.append((canonicalize_name(requirement.name), set(requirement.extras)))
    return set(wanted)


def unexplained_pins(
    pins: Mapping[str, Requirement], imported: Iterable[str], declared: Declared = _declared
) -> set[str]:
    """Pins that are neither imported by the service nor required, transitively, by a package it imports."""
    roots = {name: pins[name].extras if name in pins else set() for name in imported}
    return set(pins) - closure(roots, declared)


def test_every_pin_is_imported_or_needed_by_an_imported_package() -> None:
    assert unexplained_pins(pinned_requirements(), imported_distributions()) == set()


def test_every_imported_package_and_what_it_needs_is_pinned() -> None:
    pins = pinned_requirements()
    imported = imported_distributions()
    assert {name: where for name, where in imported.items() if name not in pins} == {}
    roots = {name: pins[name].extras for name in imported}
    assert closure(roots) - set(pins) == set()


def test_the_scan_sees_the_service_s_imports() -> None:
    # Guards the scan itself, by the three kinds of import it must see: `import flask_swagger_ui`,
    # `import openapi_ui_bundles.redoc` and `from flask import ...` (and modules named unlike their package).
    imported = imported_distributions()
    assert {"flask", "openapi-ui-bundles", "flask-swagger-ui", "kafka-python", "pyjwt"} <= set(imported)


def test_a_pin_nothing_needs_is_reported() -> None:
    # What a package declares, as metadata.requires would answer: "viewer" has
    # a "ui" extra, and needs "core" unconditionally.
    graph = {
        "app-lib": ["viewer[ui]"],
        "viewer": ["core", 'fast-crc; extra == "speed"', 'widgets; extra == "ui"'],
        "core": ['legacy; python_version < "3"'],
    }

    def declared(name: str) -> list[Requirement]:
        return [Requirement(text) for text in graph.get(name, [])]

    pins = {
        name: Requirement(f"{name}==1")
        for name in ("app-lib", "viewer", "core", "widgets", "fast-crc", "legacy", "pydantic")
    }
    # fast-crc only comes with an extra nobody asked for; legacy only on Python 2; pydantic with nothing.
    assert unexplained_pins(pins, ["app-lib"], declared) == {"fast-crc", "legacy", "pydantic"}
    # Asking for the extra in requirements.txt is what explains it.
    pins["app-lib"] = Requirement("app-lib==1")
    pins["viewer"] = Requirement("viewer[speed]==1")
    assert unexplained_pins(pins, ["app-lib", "viewer"], declared) == {"legacy", "pydantic"}
