"""What can stop a catalogue job before or between parts, each with a message that says what to do."""


class CatalogueError(ValueError):
    """The catalogue cannot be read at all (missing file or column, unreadable table)."""


class OutputMismatch(ValueError):
    """The output (or its parts) was written by another run or from another input."""


class OutputBusy(ValueError):
    """Another job is writing the same output now (its lock is held)."""


class OutputIncomplete(ValueError):
    """Parts the output needs are missing or short, so it is not assembled (nothing is reported complete)."""


class EngineError(RuntimeError):
    """Ray is missing, cannot start or join a cluster, or a worker failed."""
