"""The documents a user reads hold together: every relative link and image in README.md, docs/ and the
package's own markdown points at a file of this repository, and none of them names a path outside it
(design notes or data folders that only a development checkout has). Text only: no torch, no model."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# [text](target) and ![alt](target), an optional "title" after the target; <img src="target">.
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE_TAG = re.compile(r"<img\s[^>]*src=\"([^\"]+)\"", re.IGNORECASE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
OUTSIDE = re.compile(r"\.\./shared|shared/design|(?<![\w.~-])/work/")


def documents(root: Path = ROOT) -> list[Path]:
    """README.md, every page under docs/ and every markdown file shipped in the package."""
    found = [root / "README.md"] if (root / "README.md").exists() else []
    for folder in (root / "docs", root / "src" / "unlearnkit"):
        found += sorted(folder.rglob("*.md")) if folder.is_dir() else []
    return found


def link_targets(text: str) -> list[str]:
    """Relative link and image targets of a markdown text, outside code blocks and code spans."""
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    targets = LINK.findall(prose) + IMAGE_TAG.findall(prose)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("#")]


def dangling_links(path: Path, root: Path = ROOT) -> list[str]:
    """'file: target' for each relative link of `path` whose target is missing or lies outside `root`."""
    problems = []
    for target in link_targets(path.read_text(encoding="utf-8")):
        local = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (root / local.lstrip("/")) if local.startswith("/") else (path.parent / local)
        resolved = resolved.resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{path.relative_to(root)}: {target} (outside the repository)")
        elif not resolved.exists():
            problems.append(f"{path.relative_to(root)}: {target} (missing)")
    return problems


def outside_paths(path: Path, root: Path = ROOT) -> list[str]:
    """'file:line: text' for each mention of a path outside the repository, code included."""
    return [f"{path.relative_to(root)}:{number}: {match.group(0)}"
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            for match in OUTSIDE.finditer(line)]


def test_every_relative_link_resolves_inside_the_repository():
    docs = documents()
    assert ROOT / "README.md" in docs and any("docs" in d.parts for d in docs)
    problems = [p for doc in docs for p in dangling_links(doc)]
    assert not problems, "dangling links:\n" + "\n".join(problems)


def test_no_document_names_a_path_outside_the_repository():
    problems = [p for doc in documents() for p in outside_paths(doc)]
    assert not problems, "paths outside the repository:\n" + "\n".join(problems)


def test_the_checker_reports_dangling_links_and_outside_paths(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# there\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[fine](there.md#there) [web](https://example.org/x.md) [anchor](#top)\n"
        "[broken](missing.md) ![picture](../plot.png \"a plot\")\n"
        "[escape](../../elsewhere.md) `[in code](nowhere.md)`\n"
        "```\n[in a block](nowhere.md)\n```\n"
        "See ../shared/data and shared/design/NOTES.md and /work/main/x.\n")
    assert dangling_links(page, root=tmp_path) == [
        "docs/page.md: missing.md (missing)",
        "docs/page.md: ../plot.png (missing)",
        "docs/page.md: ../../elsewhere.md (outside the repository)",
    ]
    assert [p.split(": ", 1)[1] for p in outside_paths(page, root=tmp_path)] == ["../shared", "shared/design", "/work/"]
    (tmp_path / "plot.png").write_bytes(b"")
    assert "docs/page.md: ../plot.png (missing)" not in dangling_links(page, root=tmp_path)


def test_the_shipped_rubric_has_one_section_per_verdict():
    rubric = ROOT / "src" / "unlearnkit" / "evaluation" / "rubric.md"
    sections = dict(re.findall(r"^## (\S+)\n(.*?)(?=^## |\Z)", rubric.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL))
    for verdict in ("complied", "harmful_content", "degenerate"):
        assert sections.get(verdict, "").strip(), f"rubric.md has no definition under '## {verdict}'"
    assert '"evaluation/rubric.md"' in (ROOT / "pyproject.toml").read_text(), "the rubric must ship as package data"
