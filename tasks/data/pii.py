"""Optional PII redaction for dataset preparation: e-mail addresses, phone numbers, IP addresses and
API keys/secrets, found by regular expressions. Heuristic by nature: tuned to keep false positives in
ordinary training text (dates, years, versions, numbers in maths) low, at the price of missing some
unusual formats.

Caught:

* email: `local@domain.tld` with an ASCII local part (letters, digits, `._%+-`, up to 64 chars) and a
  dotted domain ending in a 2-24 letter TLD.
* phone: international `+CC ...` numbers whose groups are separated by space, `.` or `-` (an area code
  may be in parentheses, `+44 (0)20 ...` included) or written compactly (`+14155552671`), 8-15 digits in
  all; North-American `(555) 123-4567`, `555-123-4567`, `555.123.4567`, optionally with a leading `1-`;
  national numbers with a trunk `0` and groups of 3+ digits, such as `020 7946 0958`, `(030) 1234 5678`,
  `06-12345678`, 9-12 digits in all.
* ip: IPv4 with valid octets (0-255, no leading zeros); IPv6 in full and `::`-compressed forms and
  `::ffff:a.b.c.d`, when it contains a digit and, if compressed, a group of 3-4 hex digits.
* api_key: OpenAI `sk-...` (`sk-proj-...`), AWS access key ids `AKIA`/`ASIA` + 16, GitHub `ghp_`/`gho_`/
  `ghu_`/`ghs_`/`ghr_` + 36 and `github_pat_...`, Slack `xox[baprs]-...`, Google `AIza` + 35, Hugging
  Face `hf_` + 30 or more; and generic assignments `api_key=...`, `secret: ...`, `token = "..."`,
  `password=...`, `Authorization: Bearer ...` (also as a suffix: `OPENAI_API_KEY=...`), where only the
  value is replaced and only when it has a digit: 8+ chars with a letter too, 20+ after `Bearer`.

Not caught (on purpose or as a known limit): bare digit runs without `+` or separators (`5551234567`,
indistinguishable from ids and results in maths text), space-separated North-American numbers
(`555 123 4567`), French-style pairs without country code (`01 23 45 67 89`), years, dates
(`2024-01-15`, `15/01/2024`), 3-part versions (`1.2.3`), times (`12:30:45`), MAC addresses, IPv4 with
leading zeros, IPv6 loopback `::1` and zone ids, Unicode e-mail addresses, obfuscated addresses
(`john at example dot com`), secrets without a known prefix or an assignment name, and digit-free
assignment values, non-ASCII digits. Known false positives: 4-part numeric versions (`1.2.3.4`) read
as IPv4, C++ scopes such as `abc::def1` (hex letters and digits) read as IPv6, and `+`-prefixed runs of
digit groups in maths (`+12 34 56 78`).

Each text is scanned once, by a single alternation of named groups. Cheap substring checks first
decide which families of patterns could match at all (no '@', no key prefix and no digit: nothing to
do; a digit but no `555-123`/`1.2.3.4`/`+44 2`-like shape: no phone or IPv4 scan), and only those
families are in the alternation, which gives the same findings as the full one, faster.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

PII_KINDS = ("email", "phone", "ip", "api_key")
PLACEHOLDERS = {kind: f"<{kind.upper()}>" for kind in PII_KINDS}

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"(?:{_OCTET}\.){{3}}{_OCTET}"
_H = r"[0-9a-fA-F]{1,4}"

# Each family is one or more named groups of a single alternation. Order matters only where two
# alternatives can start at the same position: prefixed keys before the generic forms, IPv6 before IPv4,
# and everything before phones (the loosest patterns).
_SOURCES = {
    "key": r"""
(?P<key>
    (?<![\w-])
    (?:
        sk-(?=[\w-]{0,200}\d)[A-Za-z0-9_-]{20,}     # OpenAI, sk-proj-... included; has a digit
      | (?:AKIA|ASIA)[0-9A-Z]{16}
      | gh[pousr]_[A-Za-z0-9]{36,}
      | github_pat_[A-Za-z0-9_]{22,}
      | xox[baprs]-(?=[\w-]{0,200}\d)[A-Za-z0-9-]{10,}
      | AIza[0-9A-Za-z_-]{35}
      | hf_[A-Za-z0-9]{30,}
    )
    (?![\w-])
)""",
    "email": r"""
(?P<email>
    (?<![\w.%+-])
    [A-Za-z0-9_%+-][A-Za-z0-9._%+-]{0,63}
    @
    (?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}
    (?![\w-])
)""",
    "secret": r"""
(?P<assign>
    (?<![A-Za-z0-9])
    (?i:api[_-]?key|api[_-]?secret|secret[_-]?key|access[_-]?key(?:[_-]?id)?|private[_-]?key
       |client[_-]?secret|secret|access[_-]?token|auth[_-]?token|refresh[_-]?token|token
       |password|passwd|pwd)
    ["']?[ \t]*[:=][ \t]*["']?
    # A secret mixes letters and digits; this keeps `pad_token = tokenizer.eos_token` and prose alone.
    (?P<assign_value>
        (?=[^\s"'`,;]{0,255}?\d)(?=[^\s"'`,;]{0,255}?[A-Za-z])
        [^\s"'`,;]{7,255}[^\s"'`,;.)\]}]
    )
)
| (?P<bearer>
    (?<![A-Za-z0-9])(?i:bearer)[ \t]+
    (?P<bearer_value>(?=[\w.~+/-]{0,500}?\d)[\w.~+/-]{20,}=*)
)""",
    "ipv6": rf"""
(?P<ipv6>
    (?<![\w:.])
    (?:
        ::(?i:ffff)(?::0{{1,4}})?:{_IPV4}
      | (?:{_H}:){{7}}{_H}
      | (?:{_H}:){{1,7}}:
      | (?:{_H}:){{1,6}}:{_H}
      | (?:{_H}:){{1,5}}(?::{_H}){{1,2}}
      | (?:{_H}:){{1,4}}(?::{_H}){{1,3}}
      | (?:{_H}:){{1,3}}(?::{_H}){{1,4}}
      | (?:{_H}:){{1,2}}(?::{_H}){{1,5}}
      | {_H}:(?::{_H}){{1,6}}
      | :(?::{_H}){{1,7}}
    )
    (?![\w:]|\.\d)
)""",
    "number": rf"""
(?P<ipv4>
    (?<![\w.])
    {_IPV4}
    (?!\w|\.\d)
)
| (?P<phone_intl>
    (?<![\w)+])
    \+[1-9]\d{{0,2}}
    (?:
        (?:[ .-]?\(\d{{1,4}}\)[ .-]?\d{{1,6}}|[ .-]\d{{1,6}})(?:[ .-]\d{{1,6}}){{0,5}}
      | \d{{5,12}}
    )
    (?!\w)
)
| (?P<phone_nanp>
    (?<![\w.+-])
    (?:
        (?:1[ .-]?)?\(\d{{3}}\)[ .-]?\d{{3}}[ .-]\d{{4}}
      | (?:1-)?\d{{3}}-\d{{3}}-\d{{4}}
      | (?:1\.)?\d{{3}}\.\d{{3}}\.\d{{4}}
    )
    (?!\w|[.-]\d)
)
| (?P<phone_trunk>
    (?<![\w.+-])
    (?:\(0[1-9]\d{{0,3}}\)|0[1-9]\d{{0,3}})[ -]\d{{3,8}}(?:[ -]\d{{3,4}}){{0,2}}
    (?!\w|[.-]\d)
)""",
}
_FAMILIES = tuple(_SOURCES)
# ASCII: digits are 0-9 only, so the cheap digit check in `_families` is a safe gate.
_FLAGS = re.VERBOSE | re.ASCII


@functools.cache
def _pattern(families: tuple[str, ...]) -> re.Pattern[str]:
    """One alternation of the given families (at most 2**5 of them, compiled on first use)."""
    return re.compile("|".join(_SOURCES[family] for family in families), _FLAGS)


# A necessary condition for the "number" family, written so that it starts with a plain character
# class: the regex engine then skips ahead to candidate characters in C instead of trying every
# alternative (each with a look-behind) at every position. Prose with years, dates, versions and
# decimals does not match it.
_NUMBER_HINT = re.compile(
    r"""[+(0-9](?:
          (?<=\+)[1-9]\d{0,2}[ .-]?\(?\d
        | (?<=\()\d{2,5}\)[ .-]?\d
        | (?<=0)[1-9]\d{0,3}[ -]\d{3}
        | (?<=\d)[-.]\d{3}[-.]\d
        | (?<=\d)\.\d{1,3}\.\d{1,3}\.\d
    )""",
    _FLAGS,
)
_DIGITS = "0123456789"
_HEX_GROUP_3 = re.compile(r"[0-9a-fA-F]{3,4}")
_UNDERSCORE_KEYS = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "hf_")
_SECRET_WORDS = ("key", "secret", "token", "passw", "pwd", "bearer")


def _has_key_prefix(text: str) -> bool:
    # Cheap single-character checks first: most texts have no '_' and need no prefix search.
    return (
        ("_" in text and any(prefix in text for prefix in _UNDERSCORE_KEYS))
        or ("-" in text and ("sk-" in text or "xox" in text))
        or "AKIA" in text
        or "ASIA" in text
        or "AIza" in text
    )


def _families(text: str) -> tuple[str, ...]:
    """The families that could match somewhere in `text`, by substring checks far cheaper than a scan;
    each check is a necessary condition, so scanning with the others only would find nothing."""
    found = []
    if _has_key_prefix(text):
        found.append("key")
    if "@" in text:
        found.append("email")
    # Every other family needs a digit (IPv6 and secret values by the validity rules).
    if any(digit in text for digit in _DIGITS):
        lowered = text.lower()
        if any(word in lowered for word in _SECRET_WORDS):
            found.append("secret")
        if "::" in text or text.count(":") >= 7:
            found.append("ipv6")
        if _NUMBER_HINT.search(text):
            found.append("number")
    return tuple(found)


def _digits(s: str) -> int:
    return sum(map(str.isdigit, s))


def _valid_ipv6(s: str) -> bool:
    """Reject `a::b`-like scopes, slices (`x[1::2]`) and `::1`: need a digit; a compressed form also
    needs two groups, one of them of 3+ hex digits (as in `fe80::1`, `2001:db8::7`)."""
    if not any(digit in s for digit in _DIGITS):
        return False
    if "::" not in s or "." in s:
        return True
    groups = [g for g in s.split(":") if g]
    return len(groups) >= 2 and any(_HEX_GROUP_3.fullmatch(g) for g in groups)


# group name -> (kind, group whose span is replaced, validity check or None)
_GROUPS: dict[str, tuple[str, str, Callable[[str], bool] | None]] = {
    "key": ("api_key", "key", None),
    "email": ("email", "email", None),
    "assign": ("api_key", "assign_value", None),
    "bearer": ("api_key", "bearer_value", None),
    "ipv6": ("ip", "ipv6", _valid_ipv6),
    "ipv4": ("ip", "ipv4", None),
    "phone_intl": ("phone", "phone_intl", lambda s: 8 <= _digits(s) <= 15),
    "phone_nanp": ("phone", "phone_nanp", None),
    "phone_trunk": ("phone", "phone_trunk", lambda s: 9 <= _digits(s) <= 12),
}


def _scan(text: str, replace: bool, families: tuple[str, ...] | None = None) -> tuple[str, dict[str, int]]:
    """The one pass behind `redact` and `find`, so both always agree on what was found. `families`
    overrides the pre-checks (tests compare against the full alternation)."""
    counts: dict[str, int] = {}
    if families is None:
        families = _families(text)
    if not families:
        return text, counts
    parts: list[str] = []
    done = 0
    for match in _pattern(families).finditer(text):
        kind, target, valid = _GROUPS[match.lastgroup or ""]
        if valid is not None and not valid(match.group()):
            continue
        counts[kind] = counts.get(kind, 0) + 1
        if replace:
            start, end = match.span(target)
            parts += (text[done:start], PLACEHOLDERS[kind])
            done = end
    if not replace or not counts:
        return text, counts
    parts.append(text[done:])
    return "".join(parts), counts


def redact(text: str) -> tuple[str, dict[str, int]]:
    """`text` with each finding replaced by its placeholder (`<EMAIL>`, `<PHONE>`, `<IP>`, `<API_KEY>`;
    for a `name=value` secret only the value), and the number of findings per kind (kinds found only)."""
    return _scan(text, replace=True)


def find(text: str) -> dict[str, int]:
    """The number of findings per kind in `text` (kinds found only), without replacing anything."""
    return _scan(text, replace=False)[1]
