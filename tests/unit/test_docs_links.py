"""Every relative link in the README, docs/ and benchmarks/README.md leads somewhere: the file exists,
and a `#fragment` names a heading of that file (as GitHub makes heading anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.readme import crd_upgrade_command

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def prose(path: Path) -> list[str]:
    """The file's lines outside fenced code blocks, where a `[x](y)` is text, not a link."""
    kept, fenced = [], False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return kept


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    for line in prose(path):
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = anchor(match[1])
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            if count:
                seen[f"{slug}-{count}"] = 1
    return set(seen)


def relative_links(path: Path) -> list[str]:
    return [
        target for line in prose(path) for target in LINK.findall(line) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)
    ]


def broken(path: Path) -> list[str]:
    problems = []
    for target in relative_links(path):
        file_part, _, fragment = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            problems.append(f"{target}: no such file")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            problems.append(f"{target}: no heading #{fragment} in {destination.name}")
    return problems


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path):
    assert path.exists()
    assert broken(path) == []


def test_the_readme_links_to_every_doc():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in relative_links(ROOT / "README.md")}
    assert [doc.name for doc in documents()[1:] if doc.resolve() not in linked] == []


def test_a_broken_link_is_found(tmp_path: Path):
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-section) [gone](missing.md) [bad](other.md#nowhere) [web](https://x.io/y)\n"
        "```\n[in code](ignored.md)\n```\n"
    )
    assert broken(page) == ["missing.md: no such file", "other.md#nowhere: no heading #nowhere in other.md"]


def test_anchors_follow_github():
    assert (
        anchor("Security: what one tenant cannot do to the others")
        == "security-what-one-tenant-cannot-do-to-the-others"
    )
    assert anchor("`kubectl rbg` and revisions") == "kubectl-rbg-and-revisions"


def test_the_readme_upgrading_section_gives_the_crd_command():
    # Cluster tests run this command as users would; a README edit that loses it fails here first.
    assert crd_upgrade_command() == [
        "kubectl",
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "charts/ack-rbgs/crds/",
    ]
