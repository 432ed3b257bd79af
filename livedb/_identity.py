"""Who calls a function: `UserIdentity`, as `ctx.auth.get_user_identity()` returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UserIdentity:
    """An authenticated caller. `token_identifier` defaults to ``"issuer|subject"``."""

    subject: str
    issuer: str = "livedb"
    token_identifier: str = ""
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    nickname: str | None = None
    preferred_username: str | None = None
    profile_url: str | None = None
    picture_url: str | None = None
    email: str | None = None
    email_verified: bool | None = None
    gender: str | None = None
    birthday: str | None = None
    timezone: str | None = None
    language: str | None = None
    phone_number: str | None = None
    phone_number_verified: bool | None = None
    address: str | None = None
    updated_at: str | None = None
    custom_claims: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject:
            raise TypeError(f"UserIdentity.subject must be a non-empty str, got "
                            f"{self.subject!r}")
        if not isinstance(self.issuer, str) or not self.issuer:
            raise TypeError(f"UserIdentity.issuer must be a non-empty str, got {self.issuer!r}")
        if not self.token_identifier:
            object.__setattr__(self, "token_identifier", f"{self.issuer}|{self.subject}")
        elif not isinstance(self.token_identifier, str):
            raise TypeError("UserIdentity.token_identifier must be a str")
