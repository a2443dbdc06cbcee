"""The one base class of every error this project raises on purpose.

Each message is one sentence a user can act on; front ends print it and exit with status 2 (or show
it on the page). A library user catches ``ExpressionDetectorError`` to handle them all.
"""


class ExpressionDetectorError(Exception):
    """Base of the project's own errors: a file, source, model, option or output that cannot be used."""
