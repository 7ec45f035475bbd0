"""A JSON Schema ``pattern`` as a GBNF expression for the text between a JSON string's quotes.

llama-cpp-python's converter copies a pattern into the grammar nearly as written, which goes wrong three ways: a
top-level alternation loses its parentheses (``^a|b$`` lets ``"a`` out, an unterminated string), escapes like
``\\d`` and ``[\\w]`` are not GBNF (llama.cpp refuses the grammar), and ``.`` or a negated class may put a raw ``"``,
``\\`` or control character into the JSON text. This module parses the regular expression itself (the subset of
ECMA-262 below) and writes an expression whose every sentence is the JSON text of a string that matches the
pattern: characters that JSON must escape are written as their escapes (``\\"``, ``\\\\``, ``\\u00XX``) where the
pattern requires them, and left out where it only allows them (``.``, ``[^a]``, ``\\S``): a subset of what the
pattern matches, never more. What the subset does not cover is refused by name (``PatternUnsupported``).

Supported: literals and escaped punctuation, ``.``, ``\\d \\D \\w \\W \\s \\S``, ``\\t \\n \\r \\f \\v``,
``\\xHH``, ``\\uHHHH``, classes with ranges and negation, groups ``(...)`` and ``(?:...)``, alternation, ``* + ?
{n} {n,} {n,m}`` (a lazy ``?`` after them changes nothing for a whole string), ``^`` at the start and ``$`` at the
end. A pattern without ``^`` (or ``$``) may have anything before (after) what it matches, as JSON Schema says.
Refused: lookaround, backreferences, ``\\b``, named groups, Unicode property escapes, anchors elsewhere.
"""

from __future__ import annotations

MAX_PATTERN = 1000  # characters
MAX_REPEAT = 1024
MAX_CP = 0x10FFFF
# what JSON text cannot hold unescaped inside a string: controls, '"', '\', and DEL (allowed, but kept out);
# surrogates are not characters
FORBIDDEN = ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F), (0xD800, 0xDFFF))
DIGIT = ((0x30, 0x39),)
WORD = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
SPACE = ((0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x2028, 0x2029), (0xFEFF, 0xFEFF))
LINE_ENDS = ((0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029))
CONTROL_ESCAPES = {"t": 0x09, "n": 0x0A, "r": 0x0D, "f": 0x0C, "v": 0x0B}
CLASS_ESCAPES = {"d": DIGIT, "w": WORD, "s": SPACE}

Ranges = tuple[tuple[int, int], ...]


class PatternUnsupported(ValueError):
    """The pattern uses what the grammar cannot express (or is not a regular expression)."""


def pattern_gbnf(pattern: str) -> str:
    """The GBNF expression for the JSON text (without the quotes) of the strings ``pattern`` accepts."""
    if len(pattern) > MAX_PATTERN:
        raise PatternUnsupported(f"the pattern is over {MAX_PATTERN} characters")
    body, start, end = pattern, pattern.startswith("^"), _ends_with_anchor(pattern)
    body = body[1 if start else 0 : len(body) - 1 if end else len(body)]
    parser = _Parser(body, offset=1 if start else 0)
    expr = parser.alternation()
    if parser.i != len(body):
        raise parser.fail("unbalanced ')'")
    anything = f"{_class(_complement(LINE_ENDS))}*"
    return " ".join(part for part in ("" if start else anything, f"({expr})", "" if end else anything) if part)


def _ends_with_anchor(pattern: str) -> bool:
    if not pattern.endswith("$") or len(pattern) < 1:
        return False
    backslashes = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
    return backslashes % 2 == 0  # "\$" is a literal dollar


class _Parser:
    def __init__(self, text: str, offset: int) -> None:
        self.text, self.i, self.offset = text, 0, offset  # offset: where ``text`` starts in the pattern

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def fail(self, why: str) -> PatternUnsupported:
        return PatternUnsupported(f"{why} at character {self.i + self.offset}")

    def alternation(self) -> str:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        return " | ".join(branches)

    def sequence(self) -> str:
        items: list[str] = []
        while self.peek() not in ("", "|", ")"):
            atom = self.atom()
            items.append(self.quantified(atom))
        return " ".join(items) if items else '""'

    def quantified(self, atom: str) -> str:
        c = self.peek()
        if c in ("*", "+", "?"):
            self.i += 1
            out = f"({atom}){c}"
        elif c == "{" and (bounds := self.bounds()) is not None:
            low, high = bounds
            out = f"({atom}){{{low},{'' if high is None else high}}}"
        else:
            return atom
        if self.peek() == "?":
            self.i += 1  # lazy: the same set of whole strings
        if self.peek() in ("*", "+", "?") or (self.peek() == "{" and self.bounds(look=True) is not None):
            raise self.fail("a quantifier after a quantifier")
        return out

    def bounds(self, look: bool = False) -> tuple[int, int | None] | None:
        close = self.text.find("}", self.i)
        if close < 0:
            return None
        inner = self.text[self.i + 1 : close]
        low_text, comma, high_text = inner.partition(",")
        if not low_text.isdigit() or (high_text and not high_text.isdigit()) or (not comma and high_text):
            return None  # not a quantifier: '{' is then a literal, as ECMA-262 reads it
        low = int(low_text)
        high: int | None = low if not comma else (int(high_text) if high_text else None)
        if look:
            return low, high
        if low > MAX_REPEAT or (high is not None and high > MAX_REPEAT):
            raise self.fail(f"a repetition over {MAX_REPEAT}")
        if high is not None and high < low:
            raise self.fail(f"{{{inner}}} has its bounds the wrong way round")
        self.i = close + 1
        return low, high

    def atom(self) -> str:
        c = self.peek()
        if c == "(":
            self.i += 1
            if self.text.startswith("?:", self.i):
                self.i += 2
            elif self.peek() == "?":
                raise self.fail("lookaround and named groups are not supported")
            inner = self.alternation()
            if self.peek() != ")":
                raise self.fail("unbalanced '('")
            self.i += 1
            return f"({inner})"
        if c == "[":
            return _class(self.char_class())
        if c == ".":
            self.i += 1
            return _class(_complement(LINE_ENDS))
        if c == "\\":
            ranges = self.escape(in_class=False)
            return _class(ranges) if len(ranges) != 1 or ranges[0][0] != ranges[0][1] else _literal(ranges[0][0])
        if c in ("*", "+", "?"):
            raise self.fail(f"nothing to repeat before '{c}'")
        if c in ("^", "$"):
            raise self.fail(f"'{c}' is supported only at the pattern's start ('^') or end ('$')")
        if c == "{" and self.bounds(look=True) is not None:
            raise self.fail("nothing to repeat before '{'")
        self.i += 1
        return _literal(ord(c))

    def escape(self, in_class: bool) -> Ranges:
        self.i += 1  # the backslash
        c = self.peek()
        if not c:
            raise self.fail("a pattern cannot end with '\\'")
        self.i += 1
        if c.lower() in CLASS_ESCAPES:
            ranges = CLASS_ESCAPES[c.lower()]
            return _complement(ranges) if c.isupper() else ranges
        if c in CONTROL_ESCAPES:
            return ((CONTROL_ESCAPES[c],) * 2,)
        if c in ("x", "u"):
            digits = 2 if c == "x" else 4
            hex_ = self.text[self.i : self.i + digits]
            if len(hex_) != digits or any(h not in "0123456789abcdefABCDEF" for h in hex_):
                raise self.fail(f"'\\{c}' needs {digits} hex digits")
            self.i += digits
            cp = int(hex_, 16)
            return ((cp, cp),)
        if c == "b" and in_class:
            return ((0x08, 0x08),)
        if c.isdigit():
            if c == "0" and not self.peek().isdigit():
                return ((0, 0),)
            raise self.fail("backreferences are not supported")
        if c.isalnum() or c == "_":
            raise self.fail(f"'\\{c}' is not supported")
        return ((ord(c), ord(c)),)  # escaped punctuation: itself

    def char_class(self) -> Ranges:
        self.i += 1  # '['
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            c = self.peek()
            if not c:
                raise self.fail("unbalanced '['")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            low = self.class_atom()
            if self.peek() == "-" and self.text[self.i + 1 : self.i + 2] not in ("", "]"):
                self.i += 1
                high = self.class_atom()
                if len(low) != 1 or len(high) != 1 or low[0][0] != low[0][1] or high[0][0] != high[0][1]:
                    raise self.fail("a range in a class must be between two characters")
                if high[0][0] < low[0][0]:
                    raise self.fail("a range in a class is the wrong way round")
                ranges.append((low[0][0], high[0][0]))
            else:
                ranges.extend(low)
        merged = _merge(ranges)
        return _complement(merged) if negated else merged

    def class_atom(self) -> Ranges:
        c = self.peek()
        if c == "\\":
            return self.escape(in_class=True)
        self.i += 1
        return ((ord(c), ord(c)),)


def _merge(ranges: list[tuple[int, int]] | Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return tuple(out)


def _complement(ranges: Ranges) -> Ranges:
    out, at = [], 0
    for low, high in _merge(ranges):
        if low > at:
            out.append((at, low - 1))
        at = max(at, high + 1)
    if at <= MAX_CP:
        out.append((at, MAX_CP))
    return tuple(out)


def _subtract(ranges: Ranges, minus: Ranges) -> Ranges:
    keep = _complement(minus)
    out = []
    for low, high in ranges:
        for k_low, k_high in keep:
            a, b = max(low, k_low), min(high, k_high)
            if a <= b:
                out.append((a, b))
    return _merge(out)


def _class(ranges: Ranges) -> str:
    """A GBNF alternation for one character in ``ranges``: those JSON may hold as they are in a class; the others
    as their JSON escapes, only if the class is small (a class of everything-but leaves them out)."""
    plain = _subtract(ranges, FORBIDDEN)
    needs_escape = _subtract(ranges, _complement(FORBIDDEN))
    special = [cp for low, high in needs_escape for cp in range(low, min(high, low + 64) + 1)]
    covers_most = sum(high - low + 1 for low, high in ranges) > 0x10000
    options = [f"[{''.join(_class_item(low, high) for low, high in plain)}]"] if plain else []
    if not covers_most:
        options += [_literal(cp) for cp in special if not 0xD800 <= cp <= 0xDFFF]
    if not options:
        raise PatternUnsupported("a class that matches no character a JSON string can hold")
    return options[0] if len(options) == 1 else f"({' | '.join(options)})"


def _class_item(low: int, high: int) -> str:
    return _char(low) if low == high else f"{_char(low)}-{_char(high)}"


def _char(cp: int) -> str:
    """One code point as GBNF writes it in a class or literal (alphanumerics as they are, the rest by number)."""
    if cp < 0x80 and chr(cp).isalnum():
        return chr(cp)
    if cp <= 0xFF:
        return f"\\x{cp:02X}"
    if cp <= 0xFFFF:
        return f"\\u{cp:04X}"
    return f"\\U{cp:08X}"


def _literal(cp: int) -> str:
    """A GBNF literal for the JSON text of the character ``cp`` inside a string."""
    if cp == 0x22:
        text = '\\"'
    elif cp == 0x5C:
        text = "\\\\"
    elif cp < 0x20 or cp == 0x7F:
        text = f"\\u{cp:04x}"
    elif 0xD800 <= cp <= 0xDFFF:
        raise PatternUnsupported(f"U+{cp:04X} is a surrogate, not a character")
    else:
        return f'"{_char(cp)}"'
    return '"' + "".join(_char(ord(ch)) for ch in text) + '"'
