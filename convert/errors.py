"""The converter's error types (library code raises these; the CLIs turn them into ``error: …`` lines)."""
from __future__ import annotations


class UserError(Exception):
    """An error caused by bad input; printed as one clear line, exit code 2."""


class ConversionError(ValueError):
    """Base class of the converter's input errors; the message is one clear paragraph."""
