"""The built-in generators: Python models written by datamodel-code-generator.

Uploads are untrusted, so every call refuses remote and dangling ``$ref`` (``allow_remote_refs=
False``, ``strict_refs=True``; ``parse_document`` already refused external refs) and writes one
module (``treat_dot_as_module=False``). The library reports problems through ``warnings`` (and
may log); both are routed into the run while it generates, so the user sees them. Python's
warning filters are process-wide, so generation is serialised by a lock and warnings raised by
other threads meanwhile go where they would have gone.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..documents import ParsedUpload
from ..logger import RunLogger, RunLogHandler
from .generators import GeneratedCode, Generator, GeneratorError

__all__ = ["BUILTINS", "DatamodelGenerator", "builtin_generators", "library_output_into"]

LIBRARY_LOGGERS = ("datamodel_code_generator",)
_GENERATION_LOCK = threading.Lock()

BUILTINS: tuple[tuple[str, str, str], ...] = (
    ("pydantic", "PydanticV2BaseModel", "Pydantic v2 BaseModel classes, validated at runtime"),
    ("dataclasses", "DataclassesDataclass", "Standard-library dataclasses, no dependencies"),
    ("typeddict", "TypingTypedDict", "TypedDict types for plain dicts, checked statically"),
    ("msgspec", "MsgspecStruct", "msgspec Structs for fast JSON encoding and decoding"),
)
"""(service name, datamodel-code-generator DataModelType member, description)"""


@contextmanager
def library_output_into(
    log: RunLogger, logger_names: tuple[str, ...] = LIBRARY_LOGGERS
) -> Iterator[None]:
    """Route this thread's warnings and the library's log records into the run."""
    owner = threading.get_ident()
    handler = RunLogHandler(log, logging.INFO)
    handler.addFilter(lambda record: record.thread == owner)
    loggers = [logging.getLogger(name) for name in logger_names]
    with _GENERATION_LOCK, warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        original = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: Any = None,
            line: str | None = None,
        ) -> None:
            if threading.get_ident() != owner:
                original(message, category, filename, lineno, file, line)
                return
            log.warning(str(message), source="datamodel-code-generator", category=category.__name__)

        warnings.showwarning = show
        for logger in loggers:
            logger.addHandler(handler)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeHandler(handler)


def datamodel_input(upload: ParsedUpload) -> tuple[dict[str, Any], str]:
    """The document and input type to hand over; Swagger 2 goes in as its JSON Schemas."""
    if upload.kind == "openapi" and upload.version == "2.0":
        return {"definitions": copy.deepcopy(upload.schemas)}, "JsonSchema"
    return copy.deepcopy(upload.document), "OpenAPI" if upload.kind == "openapi" else "JsonSchema"


def module_name(title: str) -> str:
    """A Python module name from a document title: 'Pet Store API' -> 'pet_store_api'."""
    name = re.sub(r"\W+", "_", title.lower(), flags=re.ASCII).strip("_")[:60] or "models"
    return f"m_{name}" if name[0].isdigit() else name


class DatamodelGenerator(Generator):
    """One datamodel-code-generator output model type as a jobtail service."""

    import_check = True

    def __init__(self, name: str, model_type: str, description: str, **options: Any) -> None:
        self.name = name
        self.model_type = model_type
        self.description = description
        self.options = options

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        import datamodel_code_generator as dcg
        from datamodel_code_generator.enums import DataModelType
        from datamodel_code_generator.format import Formatter

        if upload.kind == "openapi" and not upload.schemas:
            where = "definitions" if upload.version == "2.0" else "components.schemas"
            raise GeneratorError(f"the document defines no schemas under {where}: no models")
        source, input_name = datamodel_input(upload)
        model_type = DataModelType[self.model_type]
        log.info(
            f"datamodel-code-generator {dcg.get_version()}: {model_type.value} from "
            f"{input_name} input, Python 3.11 target",
            model_type=model_type.value,
        )
        options: dict[str, Any] = {
            "input_file_type": dcg.InputFileType[input_name],
            "output_model_type": model_type,
            "target_python_version": dcg.PythonVersion.PY_311,
            "formatters": [Formatter.BUILTIN],
            "custom_file_header": f"# generated by jobtail ({self.name}) from {upload.title!r}",
            "disable_timestamp": True,
            "allow_remote_refs": False,
            "strict_refs": True,
            "treat_dot_as_module": False,
            "use_annotated": True,
            "field_constraints": True,
            "use_schema_description": True,
            "use_field_description": True,
        } | self.options
        try:
            with library_output_into(log):
                code = dcg.generate(source, **options)
        except dcg.Error as exc:
            raise GeneratorError(str(exc).strip()) from exc
        if not isinstance(code, str):
            raise GeneratorError("datamodel-code-generator produced several modules, not one")
        return GeneratedCode(code=code, filename=f"{module_name(upload.title)}_{self.name}.py")


def builtin_generators() -> list[Generator]:
    """A fresh instance of every built-in generator."""
    return [DatamodelGenerator(name, kind, text) for name, kind, text in BUILTINS]
