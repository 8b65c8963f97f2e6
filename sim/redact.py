"""Passwords never leave the process: database URLs and command lines are masked before they are printed,
stored (a batch's recorded command) or put in a report or an error message.

A password can sit in a URL's user part (`user:secret@host`), in its query (`?password=secret`), in a
libpq keyword string (`password=secret`), or in a URL too malformed to parse; each form is masked as ***.
"""

from __future__ import annotations

import re

MASK = "***"
_USERINFO = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^\s/@:]*:)(?P<secret>[^\s@]*)(?P<at>@)")
_KEYWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd|pass|sslpassword|secret)\s*=\s*)(?P<secret>[^&;\s'\"]+)",
                      re.IGNORECASE)


def mask(text: str) -> str:
    """`text` with every password in a URL or a password= parameter replaced by ***."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: m["head"] + MASK + m["at"], text)
    return _KEYWORD.sub(lambda m: m["head"] + MASK, text)


def secrets_in(text: str) -> list[str]:
    """The password strings a URL (or any text) holds, longest first (to scrub them from other text)."""
    if not text:
        return []
    found = [m["secret"] for m in _USERINFO.finditer(text)] + [m["secret"] for m in _KEYWORD.finditer(text)]
    found += [_unquote(s) for s in found]
    return sorted({s for s in found if s and s != MASK}, key=len, reverse=True)


def _unquote(s: str) -> str:
    from urllib.parse import unquote

    return unquote(s)


def scrub(text: str, *sources: str | None) -> str:
    """`text` masked (see `mask`), and with any password found in `sources` (the raw URLs given) replaced
    wherever it appears: a driver's error message may quote it in another form."""
    text = mask(text)
    for source in sources:
        for secret in secrets_in(source or ""):
            if len(secret) >= 3:  # a one- or two-letter password would mask ordinary words
                text = text.replace(secret, MASK)
    return text


def mask_url(url: str) -> str:
    """A database URL fit to show: SQLAlchemy's rendering with the password hidden when it parses, the regular
    expressions otherwise; query parameters holding a password are masked too."""
    try:
        import sqlalchemy as sa

        u = sa.engine.make_url(url)
        keys = [k for k in u.query if _KEYWORD.match(f"{k}=x")]
        if keys:
            u = u.update_query_dict({k: MASK for k in keys})
        return mask(u.render_as_string(hide_password=True))
    except Exception:  # noqa: BLE001 - a malformed URL: mask what the patterns find
        return mask(url)


def mask_argv(argv: list[str]) -> list[str]:
    """A command line with the value of every --db option (and any URL-like argument) masked."""
    out, after_db = [], False
    for arg in argv:
        if after_db:
            out.append(mask_url(arg))
        elif arg.startswith("--db="):
            out.append("--db=" + mask_url(arg[5:]))
        else:
            out.append(mask(arg))
        after_db = arg == "--db"
    return out
