"""Errors a handler raises to answer a request with `ok: false`.

`OpError(code, message, details)` becomes the response's `error` verbatim;
any other exception becomes `E_RUNTIME` with the exception's message.
`Cancelled` is raised inside a handler's own calls (`events.send`,
`ctx.check()`) once the host stopped waiting, so a handler unwinds without
writing anything more.
"""

# The error codes of protocol v2 (docs/protocol.md, "Error codes").
E_UNSUPPORTED = "E_UNSUPPORTED"
E_TIMEOUT = "E_TIMEOUT"
E_CANCELED = "E_CANCELED"
E_RUNTIME = "E_RUNTIME"
E_PROTOCOL_UNEXPECTED_FRAME = "E_PROTOCOL_UNEXPECTED_FRAME"


class OpError(Exception):
    """Answer the request with `{ok: false, error: {code, message, details}}`."""

    def __init__(self, code, message, details=None):
        super().__init__(message)
        if not isinstance(code, str) or not code:
            raise ValueError("OpError code must be a non-empty string such as 'E_RUNTIME'")
        self.code = code
        self.message = str(message)
        self.details = details

    def body(self):
        body = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class Cancelled(Exception):
    """The request was answered without this handler (deadline passed or the
    plugin is shutting down); nothing it sends any more reaches the host."""
