"""The error hierarchy, ordered by what the caller should do, and the CLI exit codes."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from etl.secrets import scrub


class ExitCode(IntEnum):
    """Documented process exit codes (README: "Exit codes")."""

    OK = 0
    FAILURE = 1  # an unexpected bug: report it
    CONFIG = 2  # bad configuration or command line: fix it and run again
    AUTH = 3  # the API refused our credentials: fix the token/scope/allowlist
    UPSTREAM = 4  # the API or the network kept failing after all retries: run again later
    DATA = 5  # the export sent data we cannot load: report it to the vendor / inspect the window
    LOCKED = 6  # another run holds the lock for this warehouse and state key
    DATABASE = 7  # the warehouse refused or went away: check the database
    INTERRUPTED = 130  # SIGINT/SIGTERM: the current window was rolled back


class EtlError(Exception):
    """Base of every error this project raises on purpose; `str()` is safe to print."""

    exit_code: ExitCode = ExitCode.FAILURE
    retryable: bool = False

    def __str__(self) -> str:
        # Messages quote what servers said, and a server may echo the token it refused: the
        # text is stored (etl_runs, etl_windows) and shown (etl status) as well as logged.
        return scrub(super().__str__())

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross from the extract worker to the loading process pickled. The default
        # pickling calls `cls(*args)`, which subclasses whose __init__ builds the message from
        # other arguments cannot take: rebuild from the message and the attributes instead.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[EtlError], args: tuple[Any, ...], state: dict[str, Any]) -> EtlError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigError(EtlError):
    """Bad configuration or command line: the user must fix it."""

    exit_code = ExitCode.CONFIG


class DataError(EtlError):
    """Valid transport, wrong content: retrying will not help."""

    exit_code = ExitCode.DATA


class LockedError(EtlError):
    """Another run holds the lock for this warehouse and state key."""

    exit_code = ExitCode.LOCKED


class DatabaseError(EtlError):
    """The warehouse failed; retryable when the connection was lost. `waited`: it gave up
    waiting for rows another transaction holds (PostgreSQL's lock_timeout)."""

    exit_code = ExitCode.DATABASE
    waited = False


class Interrupted(EtlError):
    """The run was asked to stop (SIGINT/SIGTERM)."""

    exit_code = ExitCode.INTERRUPTED
