"""The exceptions that the CLI turns into a single line on stderr (`one_line`): a bad input (exit 2), a store
or a cluster that cannot be used, or a training that diverged (exit 1)."""

MAX_MESSAGE = 1000
"""The longest error line: a message may quote a file, and a crafted file can make it megabytes long."""


def one_line(message: str) -> str:
    """`message` as one line of at most MAX_MESSAGE characters."""
    text = " ".join(message.split())
    return text if len(text) <= MAX_MESSAGE else f"{text[:MAX_MESSAGE]}... ({len(text) - MAX_MESSAGE:,} more characters)"


class InputError(Exception):
    """A problem with what the user gave us (a file, an option), stated in one line.

    Raise it before any MLflow run is started where possible; the CLI prints
    ``kdtrack: error: <message>`` and exits 2 without a traceback.
    """


class StoreError(Exception):
    """The tracking store cannot be used: unreachable, or refusing kdtrack's credentials. The CLI prints
    ``kdtrack: error: <message>`` and exits 1 without a traceback."""


class ClusterError(Exception):
    """A cluster lost a cell's task more often than it retries it (its worker or node died twice). The CLI
    prints ``kdtrack: error: <message>`` and exits 1 without a traceback."""


class TrainingDiverged(Exception):
    """Training made a loss or a weight NaN or infinite. The engine stops there, so the run ends FAILED with no
    model logged; the CLI prints ``kdtrack: error: <message>`` and exits 1."""
