"""The normalised token stream of a function's or class's source, and its digest.

Comments, blank lines, docstrings, decorator lines of the outer definition,
indentation width, spacing, quote style, numeric-literal spelling and a
trailing comma that does not make a one-element tuple do not change the
digest; anything the compiler sees differently does. Only token kinds and
texts go in (no line numbers, no paths), and f-strings are taken whole as their
source text, since Python 3.12 tokenises them into parts: so the digest is
equal on every OS and on Python 3.10 to 3.13. (``ast.dump`` and bytecode
change form between versions.)
"""

from __future__ import annotations

import ast
import hashlib
import io
import keyword
import textwrap
import tokenize

_FSTRING_START = getattr(tokenize, "FSTRING_START", None)
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)
_TSTRING_START = getattr(tokenize, "TSTRING_START", None)
_TSTRING_END = getattr(tokenize, "TSTRING_END", None)
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER, tokenize.ENCODING}
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}
# Names before "(" or "[" that do not make it a call or a subscript ("match (a,):" matches a tuple).
_NOT_OPERANDS = frozenset(keyword.kwlist) | {"match", "case"}
TOKEN_FORMAT = 1


def source_digest(source: str) -> str:
    """The SHA-1 hex of the normalised tokens of ``source``, a def or class statement."""
    return hashlib.sha1("\x00".join(normalised_tokens(source)).encode("utf-8", "surrogatepass")).hexdigest()


def normalised_tokens(source: str) -> list[str]:
    """The tokens of ``source`` as ``kind:text`` strings, normalised as described in the module docstring.

    Source that does not tokenize (a lambda cut out of a larger expression) falls
    back to its lines with surrounding whitespace removed.
    """
    source = textwrap.dedent(source)
    if not source.endswith("\n"):
        source += "\n"
    try:
        return _tokens(source)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return ["raw:" + line.strip() for line in source.splitlines() if line.strip()]


def _docstring_starts(source: str) -> set[tuple[int, int]]:
    """(line, column) where each docstring statement in ``source`` begins."""
    offset = 0
    try:
        tree = ast.parse(source)
    except SyntaxError:
        # An indented method whose multi-line strings defeat dedent: parse it inside a block.
        tree = ast.parse("if 1:\n" + source)
        offset = 1
    starts = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                starts.add((first.lineno - offset, first.col_offset))
    return starts


def _tokens(source: str) -> list[str]:
    docstrings = _docstring_starts(source)
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))

    def text(start: tuple[int, int], end: tuple[int, int]) -> str:
        return source[line_starts[start[0] - 1] + start[1]:line_starts[end[0] - 1] + end[1]]

    out: list[str] = []
    brackets: list[list[int]] = []  # per open bracket: [number of commas at its level]
    lone_comma_free: list[bool] = []  # per open bracket: whether a one-element trailing comma is formatting
    toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    i = 0
    at_statement_start = True
    in_decorators = True
    dropping_doc = False
    while i < len(toks):
        tok = toks[i]
        kind = tok.type
        i += 1
        if kind in _SKIP:
            continue
        # Decorator lines before the outer def/class: the decorator's options enter the key apart.
        if in_decorators:
            if kind == tokenize.OP and tok.string == "@" and at_statement_start:
                while i < len(toks) and toks[i - 1].type != tokenize.NEWLINE:
                    i += 1
                continue
            in_decorators = False
        if kind == tokenize.STRING and (tok.start in docstrings or dropping_doc):
            dropping_doc = True  # a docstring may be several implicitly joined strings
            continue
        if dropping_doc:
            dropping_doc = False
            if kind == tokenize.NEWLINE:
                continue
        at_statement_start = kind in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        if kind in (_FSTRING_START, _TSTRING_START) and kind is not None:
            end_kind = _FSTRING_END if kind == _FSTRING_START else _TSTRING_END
            depth = 1
            start = tok.start
            while depth:
                t = toks[i]
                i += 1
                if t.type == kind:
                    depth += 1
                elif t.type == end_kind:
                    depth -= 1
            out.append("F:" + text(start, toks[i - 1].end))
        elif kind == tokenize.STRING:
            out.append(_string(tok.string))
        elif kind == tokenize.NUMBER:
            out.append("U:" + repr(ast.literal_eval(tok.string)))
        elif kind == tokenize.NAME:
            out.append("N:" + tok.string)
        elif kind == tokenize.NEWLINE:
            out.append("L")
        elif kind == tokenize.INDENT:
            out.append(">")
        elif kind == tokenize.DEDENT:
            out.append("<")
        elif kind == tokenize.OP:
            s = tok.string
            if s in _OPEN:
                brackets.append([0])
                lone_comma_free.append(_lone_comma_is_formatting(s, out))
            elif s in _CLOSE:
                commas = brackets.pop()[0] if brackets else 0
                free = lone_comma_free.pop() if lone_comma_free else False
                # Formatters add trailing commas freely. One changes nothing once there are two or
                # more elements, nor in a call, a definition or a display; it only makes a
                # one-element tuple: "(1,)" and "x[1,]" are tuples, "(1)" and "x[1]" are not.
                if out and out[-1] == "O:," and (commas >= 2 or free):
                    out.pop()
            elif s == "," and brackets:
                brackets[-1][0] += 1
            out.append("O:" + s)
        else:  # ERRORTOKEN and kinds of future Pythons: their text is all we know
            out.append(f"{tokenize.tok_name.get(kind, kind)}:{tok.string}")
    return out


def _lone_comma_is_formatting(bracket: str, out: list[str]) -> bool:
    """Whether a trailing comma after one element in ``bracket``, opened after ``out``, changes nothing."""
    prev = out[-1] if out else ""
    after_operand = (prev in ("O:)", "O:]", "O:}") or prev[:2] in ("S:", "F:")
                     or (prev[:2] == "N:" and prev[2:] not in _NOT_OPERANDS))
    if bracket == "(":
        return after_operand  # the parentheses of a call or a definition, not of a tuple
    if bracket == "[":
        return not after_operand  # a list display, not a subscript
    return True  # a set or dict display


def _string(token: str) -> str:
    prefix = token[: len(token) - len(token.lstrip("rRbBuUfFtT"))].lower()
    if "f" in prefix or "t" in prefix:
        return "F:" + token  # as a single token on Python < 3.12: the same text as the span above
    try:
        value = ast.literal_eval(token)
    except (ValueError, SyntaxError):
        return "S:" + token
    return "S:" + repr(value)
