"""Errors raised by Model methods that depend on a back end."""


class BackendUnavailableError(RuntimeError):
    """The requested back end (or the vendor tool it needs) is not available here."""
