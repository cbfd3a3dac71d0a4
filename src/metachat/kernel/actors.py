"""Who caused a change: recorded in every event's metadata."""

from typing import Literal

import msgspec

ActorKind = Literal["api_key", "user", "system", "operator"]


class Actor(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The principal behind a command: an API key, a tenant user, the system or an operator."""

    kind: ActorKind
    id: str

    @classmethod
    def system(cls, name: str = "metachat") -> "Actor":
        """An actor for changes the platform makes on its own."""
        return cls(kind="system", id=name)

    @classmethod
    def operator(cls, name: str = "cli") -> "Actor":
        """An actor for changes an operator makes from the command line."""
        return cls(kind="operator", id=name)
