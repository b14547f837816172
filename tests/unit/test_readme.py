"""The README's configuration table names every variable any settings class reads, with its default
and its meaning, and no other.

The settings classes are found, not listed: every module of the runtime and of each service is
imported and every ``BaseSettings`` subclass defined in ``callstream`` is read (the gateway's pull
workers have their own ``PullSettings`` beside its ``Settings``; a new class anywhere is checked
without touching this test)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

import callstream.runtime
from callstream.devstack import CONSOLE, SERVICES

README = Path(__file__).resolve().parents[2] / "README.md"
# | `CALLSTREAM_NAME` | default | services | meaning |
ROW = re.compile(r"^\| `(CALLSTREAM_[A-Z0-9_]+)` \|(.*)$", re.MULTILINE)


def _import_all(package_name: str) -> None:
    package = importlib.import_module(package_name)
    for module in pkgutil.walk_packages(package.__path__, package_name + "."):
        if module.name.rsplit(".", 1)[-1] != "__main__":  # a command line, run rather than imported
            importlib.import_module(module.name)


def settings_classes() -> list[type[BaseSettings]]:
    _import_all(callstream.runtime.__name__)
    for service in (*SERVICES, CONSOLE):
        _import_all(service.package)
    found: list[type[BaseSettings]] = []
    pending = list(BaseSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("callstream.") and cls not in found:
            found.append(cls)
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


def variables(cls: type[BaseSettings]) -> dict[str, str]:
    """Each variable ``cls`` reads, with where it comes from (for the failure message)."""
    prefix = cls.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    own = inspect.get_annotations(cls)  # an inherited field is named by the class that declares it
    for name, field in cls.model_fields.items():
        if name not in own:
            continue
        alias = field.validation_alias
        if isinstance(alias, str):
            candidates = [alias]
        elif isinstance(alias, AliasChoices):
            candidates = [c for c in alias.choices if isinstance(c, str)]
        else:
            candidates = [(prefix + name).upper()]
        default = "(required)" if field.is_required() else repr(field.get_default(call_default_factory=True))
        for variable in candidates:
            names[variable] = f"{cls.__module__}.{cls.__qualname__}.{name} (default {default})"
    return names


def documented() -> dict[str, list[str]]:
    """The table's rows: variable -> its cells after the name (default, services, meaning)."""
    return {
        name: [cell.strip() for cell in rest.strip().strip("|").split("|")]
        for name, rest in ROW.findall(README.read_text())
    }


def test_the_settings_classes_are_found() -> None:
    names = {f"{c.__module__}.{c.__qualname__}" for c in settings_classes()}
    assert "callstream.runtime._settings.ServiceSettings" in names
    assert "callstream.gateway.pull._settings.PullSettings" in names
    assert {f"{s.package}._settings.Settings" for s in SERVICES} <= names


def test_every_variable_is_documented_in_the_readme() -> None:
    rows = documented()
    read: dict[str, str] = {}
    for cls in settings_classes():
        read.update(variables(cls))
    missing = [f"{name}  <- {origin}" for name, origin in sorted(read.items()) if name not in rows]
    assert not missing, (
        "README.md's configuration table has no row for these variables; add "
        "| `NAME` | default | services | meaning | for each:\n  " + "\n  ".join(missing)
    )
    unread = sorted(set(rows) - set(read))
    assert not unread, f"README.md documents variables no settings class reads: {', '.join(unread)}"


def test_every_row_gives_a_default_and_a_meaning() -> None:
    incomplete = [name for name, cells in documented().items() if len(cells) < 3 or not cells[0] or not cells[-1]]
    assert not incomplete, f"rows without a default or a meaning in README.md: {', '.join(incomplete)}"
