"""The README stays a front page, and what README.md and docs/*.md show holds:
every relative link resolves and every ``overheard ...`` command parses against the CLI.

Commands are read from fenced code blocks (complete commands, checked as typed) and from
inline code spans that start with ``overheard `` (fragments that name a command and some
of its flags: only missing required arguments are forgiven there). Usage notation in the
docs (``[--opt X]``, ``a|b``, ``...``) and placeholders (``<dataset>``, ``DIR``) are read
as plain values, which argparse accepts.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from core.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
SHELL_OPERATORS = {"&&", "||", "|", ";", "&", ">", ">>", "<", "(", ")", "2>", "2>&1"}
FENCE = re.compile(r"^\s*(```|~~~)")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def split_markdown(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(fenced code lines, prose lines), each as (line number, text)."""
    code: list[tuple[int, str]] = []
    prose: list[tuple[int, str]] = []
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        (code if inside else prose).append((number, line))
    return code, prose


def code_commands(code: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Logical shell lines of the fenced blocks, with ``\\`` continuations joined."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in code:
        if not pending:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append((start, pending + stripped))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def inline_spans(prose: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Inline code spans of the prose (a span may run over a line break, not a blank line)."""
    spans: list[tuple[int, str]] = []
    paragraph: list[tuple[int, str]] = []
    for number, line in [*prose, (0, "")]:
        if line.strip():
            paragraph.append((number, line))
            continue
        if paragraph:
            text = "\n".join(part for _, part in paragraph)
            for match in re.finditer(r"(`+)(.+?)\1", text, flags=re.DOTALL):
                first = paragraph[0][0] + text.count("\n", 0, match.start())
                spans.append((first, " ".join(match.group(2).split())))
        paragraph = []
    return spans


def usage_to_words(text: str) -> str:
    """Read usage notation as one concrete command: ``a|b`` → ``a``, brackets and ellipses dropped."""
    text = text.replace("\\|", "|")
    text = re.sub(r"(?<=[^\s|])\|[^\s\]]*", "", text)  # alternatives glued to a word
    text = text.replace("[", " ").replace("]", " ")
    return re.sub(r"(?<!\S)(\.\.\.|…)(?!\S)", " ", text)


def overheard_invocations(line: str) -> list[list[str]]:
    """The argument lists of every ``overheard`` command on one shell line (pipes, ``&&``,
    redirections, environment assignments and comments around it are left out)."""
    line = re.sub(r"<([^<>\s'\"]+)>", r"'<\1>'", line)  # <placeholder> is a word, not a redirection
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: read it as words
        tokens = line.split()
    segments: list[list[str]] = [[]]
    for token in tokens:
        if token in SHELL_OPERATORS or set(token) <= set("&|;<>()"):
            segments.append([])
        else:
            segments[-1].append(token)
    found = []
    for words in segments:
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]  # VAR=value before the command
        if words and words[0] in {"$", "%"}:
            words = words[1:]
        if words and words[0] == "overheard":
            found.append(words[1:])
    return found


def lenient(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The same parser with every argument optional (for fragments such as `overheard mia --unsigned`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                lenient(sub)
        elif action.option_strings:
            action.required = False
        elif action.nargs is None:
            action.nargs = "?"
    return parser


PLACEHOLDER = re.compile(r"<[^<>]+>|[A-Z][A-Z0-9_]*")


def fill_placeholders(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """A placeholder given to a typed option (``--infill M``, ``--port <port>``) stands for a
    valid value: it becomes the option's default (or 1) so that only the flag is checked."""
    sub = next((a.choices.get(args[0]) for a in parser._actions
                if isinstance(a, argparse._SubParsersAction) and args), None)
    if sub is None:
        return args
    out = list(args)
    for i in range(1, len(out) - 1):
        action = sub._option_string_actions.get(out[i])
        if action is not None and action.type is not None and PLACEHOLDER.fullmatch(out[i + 1]):
            out[i + 1] = str(action.default if action.default not in (None, argparse.SUPPRESS) else 1)
    return out


def parse_error(parser: argparse.ArgumentParser, args: list[str]) -> str | None:
    args = fill_placeholders(parser, args)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            if exc.code not in (0, None):  # --help exits 0
                return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"
    return None


def documented_commands() -> list[tuple[str, bool, list[str]]]:
    """(where, complete, args) for every overheard command the docs show."""
    found = []
    for path in doc_files():
        code, prose = split_markdown(path.read_text(encoding="utf-8"))
        rel = path.relative_to(ROOT)
        for number, line in code_commands(code):
            for args in overheard_invocations(line):
                found.append((f"{rel}:{number}: overheard {' '.join(args)}", True, args))
        for number, span in inline_spans(prose):
            if span.startswith("overheard "):
                for args in overheard_invocations(usage_to_words(span)):
                    found.append((f"{rel}:{number}: `{span}`", False, args))
    return found


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail to docs/"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    _, prose = split_markdown(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose:
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    _, prose = split_markdown(path.read_text(encoding="utf-8"))
    links = []
    for number, line in prose:
        line = re.sub(r"(`+).+?\1", "", line)  # code spans are not links
        for match in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
            links.append((number, match.group(1)))
        ref = re.match(r"\s*\[[^\]]+\]:\s*<?(\S+?)>?(\s|$)", line)
        if ref:
            links.append((number, ref.group(1)))
    return [(n, t) for n, t in links if not re.match(r"[a-z][a-z0-9+.-]*:", t, flags=re.IGNORECASE)]


def test_relative_links_resolve() -> None:
    broken = []
    for path in doc_files():
        for number, target in relative_links(path):
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}:{number}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where} (no heading #{anchor} in {dest.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_docs_exist() -> None:
    assert (ROOT / "docs").is_dir() and list((ROOT / "docs").glob("*.md"))


def test_documented_commands_parse() -> None:
    strict = build_parser()
    loose = lenient(build_parser())
    commands = documented_commands()
    assert len(commands) >= 20, "too few documented commands found: the extraction is broken"
    failures = []
    for where, complete, args in commands:
        error = parse_error(strict if complete else loose, args)
        if error:
            failures.append(f"{where}\n    {error}")
    assert not failures, "documented commands the CLI refuses:\n" + "\n".join(failures)


@pytest.mark.parametrize(("line", "expected"), [
    ("overheard mia --dataset d --target t --json > mia.json  # later", [["mia", "--dataset", "d", "--target", "t", "--json"]]),
    ("OVERHEARD_EXECUTOR=ray overheard serve", [["serve"]]),
    ("overheard demo load && overheard datasets | head", [["demo", "load"], ["datasets"]]),
    ("ray start --head  # overheard serve", []),
    ("overheard mia --dataset <dataset> --target zoo:<name> --json", [["mia", "--dataset", "<dataset>", "--target", "zoo:<name>", "--json"]]),
])
def test_invocations_are_read_from_shell_lines(line: str, expected: list[list[str]]) -> None:
    assert overheard_invocations(line) == expected


def test_usage_notation_reads_as_one_command() -> None:
    words = usage_to_words("overheard mia --dataset D [--mode generated|given] [--reference R ...]")
    assert overheard_invocations(words) == [["mia", "--dataset", "D", "--mode", "generated", "--reference", "R"]]
    assert parse_error(build_parser(), ["mia", "--dataset", "D", "--target", "T", "--no-such-flag"])
    assert parse_error(build_parser(), ["mia", "--dataset", "D", "--target", "T", "--infill", "M"]) is None
    assert parse_error(build_parser(), ["mia", "--dataset", "D", "--target", "T", "--infill", "many"])
    assert parse_error(lenient(build_parser()), ["mia", "--no-such-flag"])
    assert parse_error(lenient(build_parser()), ["mia", "--unsigned"]) is None
