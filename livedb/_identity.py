"""Who calls a function: `UserIdentity`, as `ctx.auth.get_user_identity()` returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UserIdentity:
    """Who calls a function: what `ctx.auth.get_user_identity()` returns.

    Pass one as `identity=` to `db.query`, `db.mutation`, `db.action`, `db.subscribe`,
    `db.watch` or `db.client`; `livedb.auth.PasswordAuth` makes them from session tokens
    (`subject` is then the user's id in `auth_users`). The fields are those of an OpenID
    Connect identity, as in Convex. It is immutable and compares by value.

    Attributes:
        subject: Who the user is, unique for the issuer (a user id): a non-empty str.
        issuer: Who vouches for the identity (default `"livedb"`).
        token_identifier: Unique across issuers; defaults to `"issuer|subject"`.
        name: The user's full name, if known.
        given_name: Given name, if known.
        family_name: Family name, if known.
        nickname: Nickname, if known.
        preferred_username: Preferred user name, if known.
        profile_url: Profile page URL, if known.
        picture_url: Picture URL, if known.
        email: Email address, if known.
        email_verified: Whether the email address was verified, if known.
        gender: Gender, if known.
        birthday: Birthday, if known.
        timezone: Time zone, if known.
        language: Language, if known.
        phone_number: Phone number, if known.
        phone_number_verified: Whether the phone number was verified, if known.
        address: Postal address, if known.
        updated_at: When the identity was last updated, if known.
        custom_claims: Any other claims, as a tuple of `(name, value)` pairs.

    Raises:
        TypeError: `subject` or `issuer` is not a non-empty str, or `token_identifier`
            is not a str.

    Examples:
        >>> import livedb
        >>> ada = livedb.UserIdentity("ada", email="ada@example.com")
        >>> ada.token_identifier
        'livedb|ada'
        >>> db = livedb.Database()
        >>> db.query(lambda ctx: ctx.auth.get_user_identity().email, identity=ada)
        'ada@example.com'
        >>> db.close()
    """

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
