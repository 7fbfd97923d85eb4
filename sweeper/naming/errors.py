"""The codec's bad-input errors: each is one line naming the problem and the fix (exit code 2)."""

from __future__ import annotations

from sweeper.errors import UserError


class BadNameError(UserError, ValueError):
    """A name, a name value or a config that cannot be written as (or read from) a run name."""


class UnknownTokenError(BadNameError):
    """A name holds a token that the codec does not know."""


class ConflictingTokensError(BadNameError):
    """Two tokens of one name set the same config value."""
