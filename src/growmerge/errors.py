"""The exceptions a user ever sees: the CLI prints the message on one line and exits with its code.

Exit codes of the CLI:

* 2 -- a user mistake or an unusable input (a bad config, a corrupt model file, an output that would
  overwrite an input, a directory that cannot be written): fix the command or the input.
* 3 -- a fault of the machine rather than of the input (:class:`EnvironmentFault`): a full disk or
  quota, a file-size limit (``ulimit -f``), an I/O error, memory exhausted. The same command may
  succeed elsewhere or once the resource is freed.
* 130 / 143 -- interrupted by SIGINT / SIGTERM (temporary outputs removed first).

Whatever the code, nothing that looks finished is left behind (outputs appear in one rename).
"""

from __future__ import annotations

import errno

# errno values that say "this machine ran out of something", not "this input is wrong".
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.ENOMEM, errno.EMFILE,
                                errno.ENFILE})


class GrowmergeError(Exception):
    """A user mistake or an unusable input. The message must say what is wrong and how to fix it."""

    exit_code = 2

    def __init__(self, message: str):
        # One line only: the CLI prints it verbatim to stderr.
        super().__init__(" ".join(str(message).split()))


class EnvironmentFault(GrowmergeError):
    """The machine failed the command (disk full, file-size or memory limit, I/O error): exit 3."""

    exit_code = 3


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived: raised in the main thread so every ``finally`` and temporary-directory
    cleanup runs before the process exits (a BaseException, so no ``except Exception`` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def from_os_error(exc: OSError) -> GrowmergeError:
    """One line naming the file(s) and the cause; EnvironmentFault for resource exhaustion."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    cause = exc.strerror or str(exc) or type(exc).__name__
    where = " -> ".join(names) + ": " if names else ""
    if exc.errno in ENVIRONMENT_ERRNOS:
        return EnvironmentFault(f"{where}{cause} (the machine, not the input: free the resource or write elsewhere)")
    return GrowmergeError(f"{where}{cause}")
