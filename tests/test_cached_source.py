"""The normalised source digest: formatting never changes it, a change to what the code does always does."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairio.memo.source import normalised_tokens, source_digest


def digest(source: str) -> str:
    return source_digest(textwrap.dedent(source))


BASE = '''
def smooth(values, width=3, *, mode="same"):
    """Moving average of ``values``."""
    total = 0.0
    out = []
    for i, v in enumerate(values):
        total += v * 1.5
        if i >= width:
            total -= values[i - width]
        out.append(total / width)
    return scale(out, factor=2, name='smoothed')
'''

# Each variant is BASE written differently: the compiler sees the same program.
SAME_PROGRAM = {
    "comments": '''
        # Smoothing.
        def smooth(values, width=3, *, mode="same"):  # the signature
            """Moving average of ``values``."""
            total = 0.0  # running sum
            out = []
            # walk the values
            for i, v in enumerate(values):
                total += v * 1.5
                if i >= width:
                    total -= values[i - width]  # drop the oldest
                out.append(total / width)
            return scale(out, factor=2, name='smoothed')
        ''',
    "blank lines": '''

        def smooth(values, width=3, *, mode="same"):

            """Moving average of ``values``."""

            total = 0.0
            out = []

            for i, v in enumerate(values):
                total += v * 1.5

                if i >= width:
                    total -= values[i - width]
                out.append(total / width)


            return scale(out, factor=2, name='smoothed')

        ''',
    "docstring edited": '''
        def smooth(values, width=3, *, mode="same"):
            """A moving average.

            Longer explanation, over several lines.
            """
            total = 0.0
            out = []
            for i, v in enumerate(values):
                total += v * 1.5
                if i >= width:
                    total -= values[i - width]
                out.append(total / width)
            return scale(out, factor=2, name='smoothed')
        ''',
    "docstring removed": '''
        def smooth(values, width=3, *, mode="same"):
            total = 0.0
            out = []
            for i, v in enumerate(values):
                total += v * 1.5
                if i >= width:
                    total -= values[i - width]
                out.append(total / width)
            return scale(out, factor=2, name='smoothed')
        ''',
    "docstring of implicitly joined strings": '''
        def smooth(values, width=3, *, mode="same"):
            "Moving " 'average.'
            total = 0.0
            out = []
            for i, v in enumerate(values):
                total += v * 1.5
                if i >= width:
                    total -= values[i - width]
                out.append(total / width)
            return scale(out, factor=2, name='smoothed')
        ''',
    "two-space indentation": '''
        def smooth(values, width=3, *, mode="same"):
          """Moving average of ``values``."""
          total = 0.0
          out = []
          for i, v in enumerate(values):
            total += v * 1.5
            if i >= width:
              total -= values[i - width]
            out.append(total / width)
          return scale(out, factor=2, name='smoothed')
        ''',
    "tab indentation": (
        'def smooth(values, width=3, *, mode="same"):\n'
        '\t"""Moving average of ``values``."""\n'
        '\ttotal = 0.0\n'
        '\tout = []\n'
        '\tfor i, v in enumerate(values):\n'
        '\t\ttotal += v * 1.5\n'
        '\t\tif i >= width:\n'
        '\t\t\ttotal -= values[i - width]\n'
        '\t\tout.append(total / width)\n'
        "\treturn scale(out, factor=2, name='smoothed')\n"
    ),
    "spacing": '''
        def smooth( values,width = 3,* ,mode = "same" ) :
            """Moving average of ``values``."""
            total=0.0
            out=[ ]
            for i,v in enumerate( values ):
                total+=v*1.5
                if i>=width :
                    total-=values[ i-width ]
                out.append( total/width )
            return scale( out,factor=2,name='smoothed' )
        ''',
    "quote style": """
        def smooth(values, width=3, *, mode='same'):
            '''Moving average of ``values``.'''
            total = 0.0
            out = []
            for i, v in enumerate(values):
                total += v * 1.5
                if i >= width:
                    total -= values[i - width]
                out.append(total / width)
            return scale(out, factor=2, name=\"\"\"smoothed\"\"\")
        """,
    "string escapes": '''
        def smooth(values, width=3, *, mode="\\x73ame"):
            """Moving average of ``values``."""
            total = 0.0
            out = []
            for i, v in enumerate(values):
                total += v * 1.5
                if i >= width:
                    total -= values[i - width]
                out.append(total / width)
            return scale(out, factor=2, name=r'smoothed')
        ''',
    "numeric spelling": '''
        def smooth(values, width=0b11, *, mode="same"):
            """Moving average of ``values``."""
            total = 0.
            out = []
            for i, v in enumerate(values):
                total += v * 15e-1
                if i >= width:
                    total -= values[i - width]
                out.append(total / width)
            return scale(out, factor=0x2, name='smoothed')
        ''',
    "lines wrapped with trailing commas": '''
        def smooth(
            values,
            width=3,
            *,
            mode="same",
        ):
            """Moving average of ``values``."""
            total = 0.0
            out = [
            ]
            for i, v in enumerate(
                values,
            ):
                total += v * 1.5
                if i >= width:
                    total -= values[
                        i - width
                    ]
                out.append(
                    total / width,
                )
            return scale(
                out,
                factor=2,
                name='smoothed',
            )
        ''',
    "backslash continuation": '''
        def smooth(values, width=3, *, mode="same"):
            """Moving average of ``values``."""
            total = \\
                0.0
            out = []
            for i, v in enumerate(values):
                total += v * \\
                    1.5
                if i >= width:
                    total -= values[i - width]
                out.append(total / width)
            return scale(out, factor=2, name='smoothed')
        ''',
    "decorated": '''
        @pairio.cached(version="2")
        @functools.wraps(
            other,
        )
        def smooth(values, width=3, *, mode="same"):
            """Moving average of ``values``."""
            total = 0.0
            out = []
            for i, v in enumerate(values):
                total += v * 1.5
                if i >= width:
                    total -= values[i - width]
                out.append(total / width)
            return scale(out, factor=2, name='smoothed')
        ''',
    "indented as a method": '''
            def smooth(values, width=3, *, mode="same"):
                """Moving average of ``values``."""
                total = 0.0
                out = []
                for i, v in enumerate(values):
                    total += v * 1.5
                    if i >= width:
                        total -= values[i - width]
                    out.append(total / width)
                return scale(out, factor=2, name='smoothed')
        ''',
}

# Each variant changes what BASE does, however slightly.
DIFFERENT_PROGRAM = {
    "an operator": ("total / width", "total // width"),
    "a number": ("v * 1.5", "v * 1.25"),
    "an int for a float": ("total = 0.0", "total = 0"),
    "a string": ("name='smoothed'", "name='smoothed2'"),
    "bytes for str": ("name='smoothed'", "name=b'smoothed'"),
    "a name": ("out.append(total / width)", "out.append(total / i)"),
    "a default": ("width=3", "width=4"),
    "a keyword-only parameter made positional": ("*, mode", "mode"),
    "a keyword argument": ("factor=2", "factor=2, clip=True"),
    "a comparison": ("i >= width", "i > width"),
    "a statement moved out of the loop": (
        "        out.append(total / width)\n    return",
        "    out.append(total / width)\n    return",
    ),
    "a statement added": ("    out = []\n", "    out = []\n    values = list(values)\n"),
    "a one-element tuple for a parenthesised value": ("factor=2,", "factor=(2,),"),
    "a comment-like string in code": ("name='smoothed'", "name='# smoothed'"),
}


@pytest.mark.parametrize("variant", sorted(SAME_PROGRAM))
def test_formatting_does_not_change_the_digest(variant):
    assert digest(SAME_PROGRAM[variant]) == digest(BASE)


@pytest.mark.parametrize("change", sorted(DIFFERENT_PROGRAM))
def test_any_change_to_the_code_changes_the_digest(change):
    old, new = DIFFERENT_PROGRAM[change]
    assert old in BASE
    assert digest(BASE.replace(old, new, 1)) != digest(BASE)


def test_windows_line_endings_give_the_same_digest():
    assert source_digest(textwrap.dedent(BASE).replace("\n", "\r\n")) == digest(BASE)


def test_docstrings_of_nested_functions_and_classes_and_methods_are_ignored():
    documented = '''
        def outer(x):
            """Outer."""
            class Point:
                """A point."""

                def norm(self):
                    """Its norm."""
                    return abs(self.x)

            def inner(y):
                """Inner."""
                return y + 1
            return inner(x), Point
        '''
    bare = '''
        def outer(x):
            class Point:
                def norm(self):
                    return abs(self.x)

            def inner(y):
                return y + 1
            return inner(x), Point
        '''
    assert digest(documented) == digest(bare)


def test_a_string_statement_after_the_first_is_code():
    assert digest('def f():\n    x = 1\n    "note"\n') != digest("def f():\n    x = 1\n")


def test_a_docstring_only_body_differs_from_pass():
    assert digest('def f():\n    """Nothing."""\n') != digest("def f():\n    pass\n")


def test_decorators_of_nested_definitions_count():
    inner = "def f():\n    {}def g():\n        return 1\n    return g\n"
    assert digest(inner.format("")) != digest(inner.format("@staticmethod\n    "))


@pytest.mark.parametrize("spelling", ["1000", "1_000", "0x3E8", "0o1750", "0b1111101000"])
def test_every_spelling_of_an_int_is_one_token(spelling):
    assert digest(f"def f():\n    return {spelling}\n") == digest("def f():\n    return 1000\n")


@pytest.mark.parametrize("spelling", ["2.5", "2.50", "25e-1", "0.25E1", "2_5e-1"])
def test_every_spelling_of_a_float_is_one_token(spelling):
    assert digest(f"def f():\n    return {spelling}\n") == digest("def f():\n    return 2.5\n")


@pytest.mark.parametrize("a,b", [("1", "1.0"), ("1", "1j"), ("1.0", "1j"), ("'1'", "1"), ("True", "1")])
def test_literals_of_different_types_differ(a, b):
    assert digest(f"def f():\n    return {a}\n") != digest(f"def f():\n    return {b}\n")


@pytest.mark.parametrize("spelling", ['"é"', "'é'", "'\\xe9'", "'\\u00e9'", '"""é"""', "'\\N{LATIN SMALL LETTER E WITH ACUTE}'"])
def test_every_spelling_of_a_string_is_one_token(spelling):
    assert digest(f"def f():\n    return {spelling}\n") == digest("def f():\n    return 'é'\n")


@pytest.mark.parametrize("bracketed", [
    "g(x{})", "[x{}]", "{{x{}}}", "{{x: 1{}}}", "(x, y{})", "g(x, y{})", "x[a, b{}]",
])
def test_a_trailing_comma_that_changes_nothing_is_ignored(bracketed):
    with_comma = bracketed.format(",")
    without = bracketed.format("")
    assert digest(f"def f(x, y):\n    return {with_comma}\n") == digest(f"def f(x, y):\n    return {without}\n")


def test_a_trailing_comma_after_a_single_parameter_is_ignored():
    # What black writes when a long signature no longer fits on one line.
    assert digest("def f(\n    values,\n):\n    return values\n") == digest("def f(values):\n    return values\n")


@pytest.mark.parametrize("bracketed", ["(x{})", "x[a{}]", "return (x{})", "y = (x{})"])
def test_a_trailing_comma_that_makes_a_tuple_counts(bracketed):
    source = "def f(x, a):\n    {}\n"
    assert digest(source.format(bracketed.format(","))) != digest(source.format(bracketed.format("")))


# --- f-strings: taken whole, so that Python 3.12's split tokens give the same digest ---


def test_an_f_string_is_one_token_of_its_source_text():
    tokens = normalised_tokens('def f(x, w):\n    return f"{x!r:>{w}} and {x + 1}"\n')
    assert 'F:f"{x!r:>{w}} and {x + 1}"' in tokens


@pytest.mark.parametrize("old,new", [
    ('f"{x}"', 'f"{y}"'),
    ('f"{x}"', 'f"{x!r}"'),
    ('f"{x:>4}"', 'f"{x:>5}"'),
    ('f"a{x}"', 'f"b{x}"'),
    ('f"{x}"', '"{x}"'),
    ('f"{x}"', 'rf"{x}"'),
])
def test_any_change_inside_an_f_string_changes_the_digest(old, new):
    source = "def f(x, y):\n    return {}\n"
    assert digest(source.format(old)) != digest(source.format(new))


def test_comments_around_an_f_string_do_not_change_the_digest():
    plain = 'def f(x):\n    return f"{x:>4} {x!r}"\n'
    commented = 'def f(x):\n    # format it\n\n    return f"{x:>4} {x!r}"  # done\n'
    assert digest(plain) == digest(commented)


def test_nested_f_strings_are_taken_whole():
    tokens = normalised_tokens("def f(x):\n    return f'{x:{f\"{x}\"}}' + 'tail'\n")
    assert tokens[-6:] == ["N:return", "F:f'{x:{f\"{x}\"}}'", "O:+", "S:'tail'", "L", "<"]


# --- the token stream itself ----------------------------------------------------------


def test_the_token_stream_of_a_small_function():
    # Pinned: this is the form that enters the key (TOKEN_FORMAT in pairio.memo.source).
    source = 'def f(x, y=1):\n    """Doc."""\n    z = 0x10  # c\n    return (x, "y", z,)\n'
    assert normalised_tokens(source) == [
        "N:def", "N:f", "O:(", "N:x", "O:,", "N:y", "O:=", "U:1", "O:)", "O::", "L",
        ">", "N:z", "O:=", "U:16", "L",
        "N:return", "O:(", "N:x", "O:,", "S:'y'", "O:,", "N:z", "O:)", "L", "<",
    ]


def test_source_that_does_not_tokenize_falls_back_to_its_stripped_lines():
    # inspect.getsource of a lambda is the lines around it, which may not be whole statements.
    fragment = "result = run(lambda x: (x +\n"
    assert normalised_tokens(fragment) == ["raw:result = run(lambda x: (x +"]
    assert source_digest(fragment) != source_digest("result = run(lambda x: (x -\n")


# --- property: comments and blank lines inserted anywhere change nothing ------------

_BASE_LINES = textwrap.dedent(BASE).strip("\n").splitlines()


@settings(deadline=None)  # no timed assertions: the machine may be busy
@given(st.lists(st.tuples(st.integers(0, len(_BASE_LINES)), st.sampled_from(["", "# note", "   ", "#"])),
                max_size=8),
       st.lists(st.integers(0, len(_BASE_LINES) - 1), max_size=5, unique=True))
def test_comments_and_blank_lines_anywhere_do_not_change_the_digest(insertions, commented_lines):
    lines = list(_BASE_LINES)
    for i in commented_lines:
        lines[i] += "  # trailing comment"
    for position, text in sorted(insertions, reverse=True):
        indent = "    " if 0 < position < len(lines) else ""
        lines.insert(position, indent + text if text.strip() else text)
    assert source_digest("\n".join(lines) + "\n") == digest(BASE)


def test_a_trailing_comma_in_a_match_subject_counts():
    match = "def f(a):\n    match (a{}):\n        case _:\n            return 1\n"
    assert digest(match.format(",")) != digest(match.format(""))
