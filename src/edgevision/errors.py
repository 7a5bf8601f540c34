"""The one error type a user can cause, printed by the CLI as one sentence; and how a stop signal ends a command."""

import signal


class EdgevisionError(Exception):
    """An error the user can fix: bad path, unknown model, corrupt file, hash mismatch.

    The message is one sentence that says what went wrong and what to do.
    """


class MissingExtraError(EdgevisionError):
    """An optional runtime or converter is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'edgevision[{extra}]'.")
        self.package = package
        self.extra = extra


class UnsupportedOpsError(EdgevisionError):
    """A runtime's converter has no rule for some ops of a model; ``ops`` names them."""

    def __init__(self, runtime: str, ops: list[str], message: str) -> None:
        super().__init__(message)
        self.runtime = runtime
        self.ops = ops


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) turned into the exception Ctrl-C raises.

    Code that finishes its outputs on Ctrl-C (``except KeyboardInterrupt``) does the same
    for the other signals. ``exit_code`` is the shell's convention, 128 + the signal number.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def cause(exc: BaseException) -> str:
    """The whole message of a third-party exception on one line, for the end of a sentence.

    Runtimes and converters write messages over several lines; they are joined, never cut,
    so the reason a library gave is kept word for word. An empty message gives the type.

    >>> cause(ValueError("bad file\\n  at line 3\\n"))
    'bad file at line 3'
    """
    text = " ".join(str(exc).split())
    return text.rstrip(".") if text else type(exc).__name__
