"""The DSL's errors, one root for all of them.

Errors::

    DslError                 anything the DSL refuses
    ├── DslSyntaxError       the text is not a safe, well-formed YAML bundle (E100, E101)
    ├── DslValidationError   the bundle has errors; `.diagnostics` lists every one
    ├── CompileError         compilation was asked of a journey that did not validate
    └── TemplateRenderError  a template failed to compile or render; `.message`, `.line`

`validate` never raises for bad input: it returns diagnostics. `compile_bundle` raises
`DslSyntaxError` or `DslValidationError`, each with the diagnostics.
"""

from __future__ import annotations

from cjo.dsl._diagnostics import Diagnostic, Severity


class DslError(Exception):
    """Root of the DSL's errors."""


class _Diagnosed(DslError):
    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        errors = [d for d in diagnostics if d.severity is Severity.ERROR]
        super().__init__(
            f"{len(errors)} error(s); first: {errors[0].format_text() if errors else '-'}"
        )
        self.diagnostics = diagnostics


class DslSyntaxError(_Diagnosed):
    """The text could not be read as a safe YAML bundle at all."""


class DslValidationError(_Diagnosed):
    """The bundle was read but has errors."""


class CompileError(DslError):
    """Compilation was asked of a journey that did not validate."""


class TemplateRenderError(DslError):
    """A template failed to compile or render; `message` is fit to show an operator."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
