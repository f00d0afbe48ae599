"""Keep Graph credentials out of URLs, exception messages and logs.

`SECRET_PARAMS` are the Graph parameters that carry a credential. `GraphClient` never puts them in
a URL (see `split_secret_params`); `scrub` masks any that still appear in text (a URL inside a
`requests` error, a path a caller built by hand, an echoed header) before the text reaches an
exception message or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SECRET_PARAMS = frozenset({"access_token", "input_token", "appsecret_proof", "client_secret", "fb_exchange_token"})
MASK = "***"

_SECRET_QUERY = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_PARAMS)) + r")(=|%3D)[^&\s'\"<>()\]]*",
)
_BEARER = re.compile(r"(?i)\b(bearer|oauth)(\s+)[^\s'\"<>()\],]+")


def scrub(text: str) -> str:
    """`text` with the value of every credential parameter and bearer token replaced by `***`.

    Matches `name=value` and URL-encoded `name%3Dvalue`, any case; the names are kept so the text
    still says what was there.
    """
    text = _SECRET_QUERY.sub(lambda match: f"{match.group(1)}{match.group(2)}{MASK}", text)
    return _BEARER.sub(lambda match: f"{match.group(1)}{match.group(2)}{MASK}", text)


def split_secret_params(params: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """`(plain, secret)`: the parameters safe in a URL, and those that must travel in a body."""
    plain = {name: value for name, value in params.items() if name.lower() not in SECRET_PARAMS}
    secret = {name: value for name, value in params.items() if name.lower() in SECRET_PARAMS}
    return plain, secret
