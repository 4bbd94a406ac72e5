"""The one exception a user ever sees: the CLI prints its message on one line and exits 2."""


class GrowmergeError(Exception):
    """A user mistake or an unusable input. The message must say what is wrong and how to fix it."""

    exit_code = 2

    def __init__(self, message: str):
        # One line only: the CLI prints it verbatim to stderr.
        super().__init__(" ".join(str(message).split()))
