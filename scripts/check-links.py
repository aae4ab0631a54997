#!/usr/bin/env python3
"""Fail when the repository points outside itself or at files it does not have.

Every file `git ls-files` lists (binary files and Cargo.lock skipped) is checked for:

- any reference to the parent directory's `shared` folder (`..` + `/shared`): a clone of
  this repository has no such folder;
- markdown links and images (bracketed text directly followed by the target in parentheses,
  with an optional title or angle brackets) and reference definitions (`[id]: target`)
  whose relative target is not a file or directory tracked by git. Targets are relative to
  the file (or to the repository root when they start with `/`); `path#anchor` checks the
  path; http(s) and mailto links and pure `#anchor`s are not checked. In markdown files,
  fenced code blocks are not prose and are skipped for links.

Prints `file:line: target` for each problem and exits 1; exits 0 when all is well.

    python3 scripts/check-links.py

Stdlib only.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

SKIPPED = {"Cargo.lock"}
# Written so that this file does not match itself.
OUTSIDE = re.compile(r"\.\./shared\b")
# A link or image: bracketed text (one level of nested brackets allowed; it may wrap within a
# paragraph), then the target in parentheses, bare or in angle brackets, with an optional
# title. Not after a word character or a closing bracket: indexing then calling in code is
# not a link.
INLINE_LINK = re.compile(
    r"(?<![\w\])])!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+[\"'(][^\n]*?)?\s*\)"
)
BLANK_LINE = re.compile(r"\n[ \t]*\n")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*(<[^>\n]*>|\S+)")
FENCE = re.compile(r"^ {0,3}(```|~~~)")
UNCHECKED = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)


def repository_root() -> Path:
    out = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
    )
    return [p for p in out.stdout.decode("utf-8").split("\0") if p]


def text_of(path: Path) -> str | None:
    """The file's text, or None for binary (NUL bytes or not UTF-8) and unreadable files."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def link_targets(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link in `text`."""
    found = []
    for m in INLINE_LINK.finditer(text):
        if not BLANK_LINE.search(m.group(1)):
            found.append((text.count("\n", 0, m.start(2)) + 1, m.group(2)))
    for number, line in enumerate(text.split("\n"), start=1):
        m = REFERENCE_DEFINITION.match(line)
        if m:
            found.append((number, m.group(1)))
    return [
        (n, t[1:-1] if t.startswith("<") and t.endswith(">") else t) for n, t in sorted(found)
    ]


def without_fenced_code(text: str) -> str:
    """Markdown text with the lines of fenced code blocks emptied (line numbers kept)."""
    lines = text.split("\n")
    in_fence = False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            in_fence = not in_fence
            lines[i] = ""
        elif in_fence:
            lines[i] = ""
    return "\n".join(lines)


def resolve(source: str, target: str) -> str | None:
    """The repository path a relative link names, or None if it leaves the repository."""
    path = unquote(target.split("#", 1)[0].split("?", 1)[0])
    if path.startswith("/"):
        joined = path.lstrip("/")
    else:
        joined = posixpath.join(posixpath.dirname(source), path)
    normal = posixpath.normpath(joined)
    if normal == ".." or normal.startswith("../"):
        return None
    return "" if normal == "." else normal


def main() -> int:
    root = repository_root()
    files = tracked_files(root)
    present = {f for f in files if (root / f).exists()}
    directories = {""}
    for f in present:
        parent = posixpath.dirname(f)
        while parent not in directories:
            directories.add(parent)
            parent = posixpath.dirname(parent)

    problems: list[str] = []
    checked = links = 0
    for name in files:
        if posixpath.basename(name) in SKIPPED:
            continue
        text = text_of(root / name)
        if text is None:
            continue
        checked += 1
        text = text.replace("\r\n", "\n")
        for number, line in enumerate(text.split("\n"), start=1):
            for m in OUTSIDE.finditer(line):
                problems.append(f"{name}:{number}: {m.group(0)} (outside the repository)")
        if name.lower().endswith((".md", ".markdown")):
            text = without_fenced_code(text)
        for number, target in link_targets(text):
            if not target or target.startswith("#") or UNCHECKED.match(target):
                continue
            links += 1
            path = resolve(name, target)
            if path is None:
                problems.append(f"{name}:{number}: {target} (outside the repository)")
            elif path not in present and path not in directories:
                why = "not tracked by git" if (root / path).exists() else "no such file"
                problems.append(f"{name}:{number}: {target} ({why})")

    for p in problems:
        print(p)
    if problems:
        print(f"check-links: {len(problems)} broken reference(s)", file=sys.stderr)
        return 1
    print(f"check-links: {checked} files, {links} relative links, all inside the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
