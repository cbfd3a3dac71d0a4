"""Domain errors with stable codes, mapped to RFC 9457 problem details at the HTTP edge."""

from typing import Any, ClassVar


class DomainError(Exception):
    """A rule of the domain refused a request. `code` is stable and documented."""

    code: ClassVar[str] = "domain_error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "The request was refused"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFoundError(DomainError):
    """The thing asked for does not exist for this tenant."""

    code = "not_found"
    status = 404
    title = "Not found"


class ConflictError(DomainError):
    """The request conflicts with the current state."""

    code = "conflict"
    status = 409
    title = "Conflict"


class ConcurrencyError(ConflictError):
    """Another writer appended to the stream first (optimistic concurrency)."""

    code = "concurrency_conflict"
    title = "Concurrent modification"


class ValidationError(DomainError):
    """The input is malformed or breaks a rule of shape."""

    code = "validation_error"
    status = 422
    title = "Invalid input"


class AuthenticationError(DomainError):
    """No valid credentials were presented."""

    code = "unauthenticated"
    status = 401
    title = "Authentication required"


class PermissionDeniedError(DomainError):
    """The credentials are valid but lack the scope for this action."""

    code = "forbidden"
    status = 403
    title = "Forbidden"
