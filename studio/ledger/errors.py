"""What the ledger raises: one base class, so callers can catch every refusal at once."""

from __future__ import annotations


class LedgerError(Exception):
    """The ledger could not do what was asked; the message says why."""


class UnknownJobError(LedgerError):
    """No job has this id."""


class InvalidTransitionError(LedgerError):
    """The requested change breaks the job's state rules (see `studio.lifecycle`)."""
