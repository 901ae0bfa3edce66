"""Operator and environment errors, each carrying its documented exit code.

Network misbehaviour (reset, alert, timeout) is evidence, never an exception: it lives
in the Transcript/Observation. These exceptions are for problems the operator must fix.
"""

from __future__ import annotations

# Documented exit codes (README, `mtlsprobe --help`). Bands: 0 ok, 1-4 tool, 10-12 findings.
EXIT_PASS = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_ENVIRONMENT = 4
EXIT_BREAKS = 10
EXIT_BLOCKED = 11
EXIT_UNKNOWN = 12


class MtlsprobeError(Exception):
    """Base class: the message is one line for the operator."""

    exit_code = EXIT_BUG


class UsageError(MtlsprobeError):
    """The request does not make sense as given (options that exclude each other, nothing to do)."""

    exit_code = EXIT_USAGE


class InputError(MtlsprobeError):
    """Unreadable or malformed input: certificate, key, password, capture, report, target."""

    exit_code = EXIT_INPUT


class Unreachable(MtlsprobeError):
    """The network did not let a one-off request through (a command that is no probe)."""

    exit_code = EXIT_BLOCKED


class EnvironmentProblem(MtlsprobeError):
    """The machine cannot do what was asked (missing privilege, port in use, missing tool)."""

    exit_code = EXIT_ENVIRONMENT
