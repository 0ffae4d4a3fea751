"""Keep the docs' links to code honest: every link names a function and a line range.

A link to code in docs/*.md and README.md looks like

    [`sequence_backward`](../src/bptt/cells/rnn.py#L187-L196 "for k in range(T … dot(dJ_dz")

* the first name in backticks is the function (or ``Class.method``) the lines belong to;
* the title is what those lines say: one snippet of code, or "start … end" for a range
  from the line holding ``start`` to the next line holding ``end``.

``python docs/refresh_links.py`` rewrites every #L range from its snippet after the code
moved; ``check()`` (run by tests/test_docs.py) reports every link whose function is gone,
whose snippet is gone, or whose range no longer matches.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(
    r"\[(?P<text>[^\]]*?)\]\((?P<path>(?:\.\./|\./)?src/bptt/[\w/]+\.py)"
    r"(?:#L(?P<a>\d+)(?:-L(?P<b>\d+))?)?(?: \"(?P<title>[^\"]+)\")?\)"
)
NAME = re.compile(r"`([A-Za-z_][\w.]*)`")


def function_span(source: str, name: str) -> tuple[int, int] | None:
    """First and last line of function ``name`` (``Class.method`` allowed), or None."""
    tree = ast.parse(source)
    parts = name.split(".")
    nodes: list[ast.AST] = [tree]
    for part in parts:
        found = None
        for node in nodes:
            for child in ast.iter_child_nodes(node):
                is_def = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                if is_def and child.name == part:
                    found = child
                    break
            if found:
                break
        if found is None:
            return None
        nodes = [found]
    node = nodes[0]
    return node.lineno, node.end_lineno


def locate(lines: list[str], span: tuple[int, int], title: str) -> tuple[int, int] | None:
    """Lines (1-based, inclusive) inside ``span`` that the title's snippet(s) point at."""
    start_text, _, end_text = title.partition(" … ")
    first, last = span
    for i in range(first, last + 1):
        if start_text in lines[i - 1]:
            if not end_text:
                return i, i
            for j in range(i, last + 1):
                if end_text in lines[j - 1]:
                    return i, j
            return None
    return None


def links(doc: Path):
    """Every code link of one document: (match, file, function name, title)."""
    for match in LINK.finditer(doc.read_text(encoding="utf-8")):
        target = (doc.parent / match["path"]).resolve()
        names = NAME.findall(match["text"])
        yield match, target, (names[0] if names else None), match["title"]


def resolve(target: Path, name: str | None, title: str | None) -> tuple[int, int] | str:
    """The line range a link should have, or a sentence saying what is wrong."""
    if not target.is_file():
        return f"{target} does not exist"
    if name is None:
        return "the link text names no `function`"
    source = target.read_text(encoding="utf-8")
    span = function_span(source, name.split(".")[-1] if "." in name and
                         function_span(source, name) is None else name)
    if span is None:
        return f"{target.name} has no function {name}"
    if title is None:
        return span
    found = locate(source.splitlines(), span, title)
    return found if found else f"{name} in {target.name} no longer contains {title!r}"


def check() -> list[str]:
    """Every problem with the docs' code links (an empty list when all are right)."""
    problems = []
    for doc in DOCS:
        for match, target, name, title in links(doc):
            want = resolve(target, name, title)
            where = f"{doc.name}: {match[0][:90]}"
            if isinstance(want, str):
                problems.append(f"{where}: {want}")
            elif match["a"] and (int(match["a"]), int(match["b"] or match["a"])) != want:
                problems.append(f"{where}: lines moved to L{want[0]}-L{want[1]} "
                                "(run python docs/refresh_links.py)")
    return problems


def refresh() -> int:
    """Rewrite every link's #L range from its function and snippet; return links changed."""
    changed = 0
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        new_text = LINK.sub(lambda match, doc=doc: _refreshed(doc, match), text)
        changed += sum(a != b for a, b in zip(LINK.findall(text), LINK.findall(new_text),
                                              strict=True))
        if new_text != text:
            doc.write_text(new_text, encoding="utf-8")
    return changed


def _refreshed(doc: Path, match: re.Match) -> str:
    """One link with its #L range recomputed (unchanged when it cannot be resolved)."""
    target = (doc.parent / match["path"]).resolve()
    names = NAME.findall(match["text"])
    want = resolve(target, names[0] if names else None, match["title"])
    if isinstance(want, str):
        return match[0]
    anchor = f"#L{want[0]}" if want[0] == want[1] else f"#L{want[0]}-L{want[1]}"
    title = f' "{match["title"]}"' if match["title"] else ""
    return f"[{match['text']}]({match['path']}{anchor}{title})"


if __name__ == "__main__":
    print(f"{refresh()} link(s) updated")
    remaining = check()
    print("\n".join(remaining) or "all code links are right")
    sys.exit(1 if remaining else 0)
