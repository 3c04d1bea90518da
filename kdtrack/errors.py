"""The one exception type that the CLI turns into a single line on stderr and exit code 2."""


class InputError(Exception):
    """A problem with what the user gave us (a file, an option), stated in one line.

    Raise it before any MLflow run is started where possible; the CLI prints
    ``kdtrack: error: <message>`` and exits 2 without a traceback.
    """


class StoreError(Exception):
    """The tracking store cannot be used: unreachable, or refusing kdtrack's credentials. The CLI prints
    ``kdtrack: error: <message>`` and exits 1 without a traceback."""
