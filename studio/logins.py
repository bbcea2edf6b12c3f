"""Who may open the app at all: APP_PASSWORD (one shared password) or APP_USERS (accounts).

Both go to Gradio's own login (`launch(auth=...)`), which guards the page and the API alike;
gradio_client logs in with `Client(url, auth=(name, password))`. With APP_PASSWORD any name
is accepted (the name only labels the session); with APP_USERS="name:password,..." each name
has its own password, and the name is then the visitor the quotas count (studio.visitors).
Both may be set: a listed name must use its own password, any other name the shared one.
Passwords are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_LOGIN_CHARS = 256


@dataclass(frozen=True)
class Logins:
    password: str | None = field(default=None, repr=False)
    users: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def named(self) -> bool:
        """Whether logins are accounts (APP_USERS), so a name is a person."""
        return bool(self.users)

    def check(self, name: str, password: str) -> bool:
        """Gradio's auth callable: whether `name` may log in with `password`."""
        name, password = (name or "")[:MAX_LOGIN_CHARS], (password or "")[:MAX_LOGIN_CHARS]
        wanted = self.users.get(name, self.password)
        if wanted is None:
            hmac.compare_digest(password.encode(), password.encode())  # as long, unknown name
            return False
        return hmac.compare_digest(password.encode(), wanted.encode())


def logins_from_env(env: Mapping[str, str]) -> Logins | None:
    """None when neither APP_PASSWORD nor APP_USERS is set. Raises ValueError (a sentence,
    never a password) on a value it cannot read."""
    password = env.get("APP_PASSWORD") or None
    users: dict[str, str] = {}
    for entry in (env.get("APP_USERS") or "").split(","):
        if not entry.strip():
            continue
        name, sep, secret = entry.partition(":")
        name = name.strip()
        if not sep or not name or not secret:
            raise ValueError(
                "APP_USERS must be name:password pairs separated by commas "
                f"(entry {len(users) + 1} is not)."
            )
        if name in users:
            raise ValueError(f"APP_USERS names {name[:40]!r} twice.")
        users[name] = secret
    too_long = [s for s in (password or "", *users.values()) if len(s) > MAX_LOGIN_CHARS]
    if too_long or any(len(name) > MAX_LOGIN_CHARS for name in users):
        raise ValueError(f"APP_PASSWORD and APP_USERS take at most {MAX_LOGIN_CHARS} characters.")
    if password is None and not users:
        return None
    return Logins(password, users)
