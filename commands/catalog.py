"""The definitions catalog: built-in definition files plus ``TASKEXEC_DEFINITIONS_DIR``.

Files are JSON or YAML in the shape of the spec's definition body. Every schema is
checked against its JSON Schema meta-schema when loaded, so a bad file fails at start,
not at the first submit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from commands.schema_check import compile_check
from domain.definition import TaskDefinition
from domain.errors import InvalidValue

BUILTIN_DIR = Path(__file__).parent / "definitions"
_SUFFIXES = {".json", ".yaml", ".yml"}


class DefinitionFileError(ValueError):
    """A definition file cannot be loaded; the message names the file."""


@dataclass(frozen=True)
class Violation:
    """One way in which a document breaks a schema: where (JSON path) and what."""

    path: str
    message: str


class SchemaValidator:
    """A schema's validator: the fast check of :mod:`commands.schema_check` when the schema
    is in its subset, jsonschema otherwise and for the error list of an invalid document.

    ``violations`` returns exactly what ``schema_violations`` returns for
    ``Draft202012Validator(schema)``; a valid document (the common case) costs a few
    microseconds instead of a walk through jsonschema's validator objects.
    """

    __slots__ = ("_check", "schema", "validator")

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.validator = Draft202012Validator(schema)
        self._check = compile_check(schema)

    @property
    def fast(self) -> bool:
        """Whether the schema is in the fast path's subset."""
        return self._check is not None

    def is_valid(self, document: Any) -> bool:
        # The fast check's False is exact for JSON values, but it also means "ask
        # jsonschema" (other Python types), and invalid documents are rare.
        check = self._check
        return (check is not None and check(document)) or self.validator.is_valid(document)

    def violations(self, document: Any) -> list[Violation]:
        check = self._check
        if check is not None and check(document):
            return []
        return schema_violations(self.validator, document)


class DefinitionCatalog:
    """The known task definitions, with compiled validators for their schemas."""

    def __init__(self, definitions: Iterable[TaskDefinition]) -> None:
        self._definitions: dict[str, TaskDefinition] = {}
        self._revisions: dict[str, int] = {}
        self._input_validators: dict[str, SchemaValidator] = {}
        self._output_validators: dict[str, SchemaValidator] = {}
        for definition in definitions:
            self._definitions[definition.id] = definition
            self._input_validators[definition.id] = SchemaValidator(definition.input_schema)
            self._output_validators[definition.id] = SchemaValidator(definition.output_schema)

    @classmethod
    def load(cls, extra_dir: Path | None = None) -> DefinitionCatalog:
        """Built-ins first; files in ``extra_dir`` add to them or replace them by id."""
        definitions = {d.id: d for d in load_dir(BUILTIN_DIR)}
        if extra_dir is not None:
            if not extra_dir.is_dir():
                raise DefinitionFileError(f"definitions directory {extra_dir} does not exist")
            definitions.update({d.id: d for d in load_dir(extra_dir)})
        return cls(definitions.values())

    def set_revisions(self, revisions: dict[str, int]) -> None:
        """The store's revision of each definition, once they have been recorded."""
        self._revisions = dict(revisions)

    def revision(self, definition_id: str) -> int:
        """The recorded revision of a definition (0 until definitions are recorded)."""
        return self._revisions.get(definition_id, 0)

    def get(self, definition_id: str) -> TaskDefinition | None:
        return self._definitions.get(definition_id)

    def all(self) -> list[TaskDefinition]:
        return sorted(self._definitions.values(), key=lambda d: d.id)

    def input_violations(self, definition_id: str, document: Any) -> list[Violation]:
        return self._input_validators[definition_id].violations(document)

    def output_violations(self, definition_id: str, document: Any) -> list[Violation]:
        return self._output_validators[definition_id].violations(document)


def load_dir(directory: Path) -> list[TaskDefinition]:
    """Every definition file directly in ``directory``, sorted by file name."""
    return [
        load_file(path)
        for path in sorted(directory.iterdir())
        if path.suffix in _SUFFIXES and path.is_file()
    ]


def load_file(path: Path) -> TaskDefinition:
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise DefinitionFileError(f"{path}: cannot read: {exc}") from exc
    try:
        definition = TaskDefinition.from_document(doc)
        Draft202012Validator.check_schema(definition.input_schema)
        Draft202012Validator.check_schema(definition.output_schema)
    except InvalidValue as exc:
        raise DefinitionFileError(f"{path}: {exc}") from exc
    except SchemaError as exc:
        raise DefinitionFileError(f"{path}: invalid JSON Schema: {exc.message}") from exc
    return definition


def as_details(violations: list[Violation]) -> list[dict[str, str]]:
    """Violations as the error envelope's ``details.violations``."""
    return [{"path": v.path, "message": v.message} for v in violations]


def schema_violations(validator: Draft202012Validator, document: Any) -> list[Violation]:
    errors = sorted(
        validator.iter_errors(document), key=lambda e: (list(e.absolute_path), e.message)
    )
    return [Violation(path=error.json_path, message=error.message) for error in errors]
