"""The one error type of fusion: an invalid architecture description.

fusion sits below autors and cannot import it, so it defines its own `ArchError` (a
`ValueError`); autors maps it onto its user-facing error types.
"""

from __future__ import annotations


class ArchError(ValueError):
    """An architecture description is invalid: the message names the key and the valid values."""
