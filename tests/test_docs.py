"""The docs follow the tree: docs/ARCHITECTURE.md's file tree names every module of src/score_lit and nothing that
is not on disk, README's Layout names every package folder, and every .PHONY target of the Makefile has a `## ` line
for `make help` (and every `## ` line belongs to a .PHONY target)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "score_lit"


def file_tree() -> list[str]:
    """The lines of ARCHITECTURE.md's "File tree" code block."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("\n## File tree\n", 1)[1]
    return section.split("```\n", 2)[1].splitlines()


def tree_paths() -> tuple[list[str], list[str]]:
    """(package paths relative to src/score_lit, repository paths) named first on a line of the tree."""
    pkg, repo, inside = [], [], False
    for line in file_tree():
        if not line.strip():
            continue
        first = line.split()[0]
        if line.startswith("src/score_lit/"):
            inside = True
        elif line.startswith("  ") and inside:
            pkg.append(first)
        elif not line.startswith(" "):
            inside = False
            repo.append(first)
    return pkg, repo


def disk_modules() -> set[str]:
    return {p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")}


def test_the_file_tree_names_every_module_and_only_modules_on_disk():
    pkg, repo = tree_paths()
    named = [p for p in pkg if p.endswith(".py")]
    assert len(named) == len(set(named)), f"named twice: {sorted({p for p in named if named.count(p) > 1})}"
    on_disk = disk_modules()
    problems = {
        "modules without a line in docs/ARCHITECTURE.md's file tree": sorted(on_disk - set(named)),
        "modules docs/ARCHITECTURE.md names that are not in src/score_lit": sorted(set(named) - on_disk),
        "package folders docs/ARCHITECTURE.md names that do not exist": sorted(
            p for p in pkg if p.endswith("/") and not (PKG / p).is_dir()
        ),
        "repository paths docs/ARCHITECTURE.md names that do not exist": sorted(
            p for p in repo if not (ROOT / p).exists()
        ),
    }
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())


def test_every_package_folder_has_a_line_in_the_tree_and_in_the_readme_layout():
    pkg, _ = tree_paths()
    folders = sorted(
        p.relative_to(PKG).as_posix() + "/" for p in PKG.rglob("*") if p.is_dir() and (p / "__init__.py").exists()
    )
    top = sorted(f for f in folders if f.count("/") == 1)
    assert top and "rl/" in top
    assert sorted(set(top) - set(pkg)) == [], "package folders without a line in docs/ARCHITECTURE.md's file tree"
    layout = (ROOT / "README.md").read_text().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = {m.group(1) for m in re.finditer(r"`([\w./-]+/)`", layout)}
    assert sorted(set(top) - named) == [], "package folders missing from README's Layout"
    assert sorted(n for n in named if not ((PKG / n).is_dir() or (ROOT / n).is_dir())) == [], (
        "README's Layout names folders that do not exist"
    )


def makefile_targets() -> tuple[set[str], set[str], set[str]]:
    """(.PHONY names, plain-named rules, rules with a `## ` help text) of the Makefile."""
    text = (ROOT / "Makefile").read_text()
    phony = set()
    for m in re.finditer(r"^\.PHONY:(.*)$", text, re.M):
        phony |= set(m.group(1).split())
    rules, helped = set(), set()
    for m in re.finditer(r"^([A-Za-z0-9_-]+):(?!=)(.*)$", text, re.M):  # no $(VAR), path or pattern targets, no :=
        rules.add(m.group(1))
        if "## " in m.group(2):
            helped.add(m.group(1))
    return phony, rules, helped


def test_makefile_phony_targets_and_help_lines_agree():
    phony, rules, helped = makefile_targets()
    assert {"help", "test", "venv"} <= phony
    assert sorted(phony - rules) == [], ".PHONY names without a rule"
    assert sorted(rules - phony) == [], "plain-named rules missing from .PHONY"
    assert sorted(phony - helped) == [], ".PHONY targets without a `## ` help text (make help would not list them)"
    assert sorted(helped - phony) == [], "`## ` help targets missing from .PHONY"
