"""Keys and credentials out of every text we keep or show, and error texts bounded in size.

Why one module: an error can come from anywhere (an API's error body that echoes the request's headers,
a proxy's error page, a connection error naming a base URL with `user:password@` in it, a tool's
exception), and it is written to the journal, run.json, the progress views and the terminal. So the rules
live here, once, and the chokepoints call `safe_text`: every event the engine records (`events`), every
error of ours as it is made (`errors`), and anything that shows a provider or a URL.

What is redacted (replaced by `[redacted]`):
- Anthropic keys (`sk-ant-…`) wherever they appear, and any `Bearer`/`Basic` credential;
- the value of a header, field or parameter named like a credential: `x-api-key`, `authorization`
  (any scheme: an AWS SigV4 `AWS4-HMAC-SHA256 Credential=…, Signature=…` is taken whole),
  `proxy-authorization`, `x-amz-security-token`, `x-goog-api-key`, `api_key`, `token`, `access_token`,
  `secret`, `password`, `cookie`, `signature`, `credential`, … — as `name: value`, `"name": "value"`,
  `name=value` (query strings included; AWS pre-signed URLs' `X-Amz-Signature`, `X-Amz-Credential`,
  `X-Amz-Security-Token` are such parameters);
- a URL's user information (`https://user:password@host` becomes `https://[redacted]@host`);
- token shapes that need no name: Google OAuth access tokens (`ya29.…`), Google API keys (`AIza…`), AWS
  access key ids (`AKIA…`, `ASIA…`).
Variables a user puts in a spec are the user's data, not secrets: they are not touched here.
"""

from __future__ import annotations

import re

MAX_ERROR_CHARS = 2_000  # an error text kept or shown is at most this long, with a marker saying what was cut
REDACTED = "[redacted]"
_SLACK = 4_096  # redact this far past the cut, so a credential that straddles it cannot leave a piece behind

_NAMES = (r"(?:x-)?api[_-]?key|x-goog-api-key|(?:proxy-)?authorization|x-amz-security-token|x-amz-signature|"
          r"x-amz-credential|(?:access|refresh|id|session|auth|bearer|security)?[_-]?token|client[_-]secret|"
          r"secret(?:[_-]access)?(?:[_-]key)?|password|passwd|pwd|set-cookie|cookie|signature|credential")
_VALUE = r"""(?:"[^"\r\n]*"|'[^'\r\n]*'|(?:(?:Bearer|Basic|AWS4-HMAC-SHA256)\s+)?[^\s"'&,;}\]]+)"""
_NAMED = re.compile(rf"""(?i)(?<![\w-])(?P<name>{_NAMES})(?P<sep>["']?\s*[:=]\s*)(?!\[redacted\])(?P<value>{_VALUE})""")
# Query parameters too generic to redact as names elsewhere: Google's `?key=`, Azure SAS `sig=`, OAuth `code=`.
_QUERY = re.compile(r"(?i)([?&](?:key|sig|code)=)(?!\[redacted\])[^&\s\"'#]+")
_SCHEMES = re.compile(r"(?i)\b(Bearer|Basic)\s+[\w\-.~+/]+=*")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@\"'<>]+@")
_SHAPES = re.compile(r"sk-ant-[\w\-]+|\bya29\.[\w\-.]+|\bAIza[\w\-]{35}|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def redact(text: str) -> str:
    """`text` with every key and credential it holds replaced by `[redacted]` (see the module's list)."""
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _NAMED.sub(_named, text)
    text = _QUERY.sub(rf"\1{REDACTED}", text)
    text = _SCHEMES.sub(rf"\1 {REDACTED}", text)
    return _SHAPES.sub(REDACTED, text)


def _named(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['name']}{match['sep']}{quote}{REDACTED}{quote}"


def bounded(text: str, limit: int = MAX_ERROR_CHARS, total: int | None = None) -> str:
    """`text`, or its first part and a marker saying how much was cut, at most `limit` characters.
    `total`: the length of the text `text` was taken from, when it is a part."""
    total = len(text) if total is None else total
    if total <= limit:
        return text
    marker = f" … [cut: {total:,} characters in all, the first {limit:,} kept]"
    return text[: limit - len(marker)] + marker


def safe_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """An error text as it may be stored or shown: redacted, and bounded. Only the part that is kept is
    searched (plus some slack), so a 5 MB error costs what a 6 KB one does. Applying it again changes nothing."""
    if len(text) <= limit:
        return redact(text)
    return bounded(redact(text[: limit + _SLACK]), limit, total=len(text))
