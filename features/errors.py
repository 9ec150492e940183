"""Exceptions the core raises. The edges (CLI, HTTP) translate them once: to one readable line and an
exit code, or to a 4xx JSON body. Messages name the file, column or field and the problem."""

from __future__ import annotations


class ClaimScoreError(Exception):
    """A problem the user can fix; its message is shown as-is, without a traceback."""

    exit_code = 2


class ConfigError(ClaimScoreError):
    """The configuration file or an environment override is wrong."""


class DataFileError(ClaimScoreError):
    """A data file is missing, empty, unreadable, wrongly encoded or of the wrong format."""


class MappingError(ClaimScoreError):
    """A mapping file is wrong, or the table it maps lacks what the mapping needs."""


class SchemaError(ClaimScoreError):
    """A table does not have the shape of the canonical claims schema (e.g. missing columns)."""


class ValidationFailed(ClaimScoreError):
    """Data checks failed; `lines` has one readable line per failed check."""

    exit_code = 1

    def __init__(self, message: str, lines: list[str], report_path: str | None = None):
        super().__init__(message)
        self.lines = lines
        self.report_path = report_path


class HistoryError(ClaimScoreError):
    """The claim history store cannot be opened or written, or was asked something it cannot do."""


class UnknownClaimError(HistoryError):
    """An outcome was recorded for a claim the history store does not hold."""
