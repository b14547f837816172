"""The README's configuration table names every variable a service reads, and no other."""

import importlib
import re
from pathlib import Path

from pydantic_settings import BaseSettings

from callstream.devstack import SERVICES
from callstream.runtime import ServiceSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def _variables(cls: type[BaseSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else (prefix + name).upper())
    return names


def _settings_classes() -> list[type[BaseSettings]]:
    classes: list[type[BaseSettings]] = [ServiceSettings]
    for service in SERVICES:
        module = importlib.import_module(f"{service.package}._settings")
        classes.append(module.Settings)
    return classes


def test_every_variable_is_documented_in_the_readme() -> None:
    documented = set(re.findall(r"^\| `(CALLSTREAM_[A-Z0-9_]+)` \|", README.read_text(), re.MULTILINE))
    read = set().union(*(_variables(cls) for cls in _settings_classes()))
    assert read - documented == set(), "add these to the README's configuration table"
    assert documented - read == set(), "the README documents variables no service reads"
