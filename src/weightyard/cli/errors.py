"""Client errors as one line: what went wrong and why, never a traceback.

Every command runs under `run_cli`, which turns the errors a client meets (the hub refused, the hub cannot be
reached or went away mid-transfer, a local file cannot be read or written) into `error: CAUSE` on stderr and
exit code 1. Usage and input errors are reported where they are found (`fail(..., 2)`).
"""

from __future__ import annotations

import sys

import typer

EXIT_FAILED = 1
EXIT_USAGE = 2


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) folded into one space."""
    return " ".join(text.split())


def print_error(message: str) -> None:
    typer.echo(f"error: {one_line(message)}", err=True)


def client_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a client command may meet: the hub's answers, transport failures, local I/O."""
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError, transport_error(), OSError, ValueError)


def transport_error() -> type[BaseException]:
    # huggingface_hub raises its HTTP library's transport errors (connection refused, reset, read timeout)
    # as they are; that library is httpx in 1.x and httpx2 in 2.x, and its base class is the one
    # HfHubHTTPError derives from.
    from huggingface_hub.errors import HfHubHTTPError

    return HfHubHTTPError.__mro__[1]


def describe(error: BaseException) -> str:
    """One line naming the cause of a client error."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        response = error.response
        cause = error.server_message or response.reason_phrase
        return refusal_line(response.status_code, response.request.method, response.url.path, cause)
    if isinstance(error, transport_error()):
        return unreachable_line(_where(error), error)
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return str(error) or type(error).__name__


def refusal_line(status: int, method: str, path: str, cause: str | None) -> str:
    """The line for an answer the hub refused a request with."""
    return f"the hub answered {status} to {method} {path}: {cause or 'no reason given'}"


def unreachable_line(where: str, error: BaseException) -> str:
    """The line for a request that never got its answer; `where` is ` at SCHEME://HOST` or empty."""
    return f"cannot talk to the hub{where}: {str(error) or type(error).__name__}"


def _where(error: BaseException) -> str:
    try:
        url = error.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # a transport error raised before its request was attached
        return ""
    return f" at {url.scheme}://{url.netloc.decode()}"


def run_cli(app: typer.Typer) -> None:
    """Run the Typer app, turning a client error that escapes a command into one line and exit 1."""
    try:
        app()
    except Exception as error:
        cause = _client_cause(error)
        if cause is None:
            raise
        # The client wraps some failures (an upload cut off mid-way: "Error while uploading 'x' to the Hub.")
        # around the transport error that caused them; both halves say something.
        context = "" if cause is error else f"{one_line(str(error)).rstrip('.')}: "
        print_error(context + describe(cause))
        sys.exit(EXIT_FAILED)


def _client_cause(error: BaseException) -> BaseException | None:
    """`error` itself if it is a client error, else the first client error it was raised from."""
    seen: BaseException | None = error
    for _ in range(16):  # exception chains are short; the bound only guards against a cycle
        if seen is None:
            return None
        if isinstance(seen, client_errors()):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
