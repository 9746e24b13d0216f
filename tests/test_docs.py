"""The docs a user finds: a short README, links that lead somewhere, and every environment
variable the server reads documented exactly once, in docs/configuration.md.

No server, no MinIO: these read the repository's files (and the package's source, for the
names it reads from the environment).
"""
from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
PACKAGE = ROOT / "tus_server"
MAX_README_LINES = 220

# Names every version of the server reads (the design's contract): if the scan below stops
# finding them, the way settings are read has changed and the scan must follow.
CONTRACT_NAMES = {"HOST", "PORT", "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY",
                  "MINIO_SECURE", "TUS_CHUNK_SIZE", "TUS_MAX_SIZE", "TUS_EXPIRATION",
                  "TUS_CORS_ORIGINS"}
ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
CONFIG_CONSTANT = re.compile(r"(?:TUS|MINIO)_[A-Z0-9_]+")


# ------------------------------------------------------------------ what the code reads
def _is_os_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os")


def _is_env_mapping(node: ast.AST) -> bool:
    """`os.environ`, or the `env` mapping the Settings loader reads (os.environ or a test's)."""
    return _is_os_environ(node) or (isinstance(node, ast.Name) and node.id == "env")


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) \
            and ENV_NAME.fullmatch(node.value):
        return node.value
    return None


def names_read(tree: ast.AST) -> set[str]:
    """Environment names a module reads: `os.environ.get("X")`, `os.environ["X"]`,
    `os.getenv("X")`, `"X" in os.environ`, `env.get("X")`, and the loader's helpers called as
    `_int(env, "X", ...)`. WSGI environ keys (`request.environ`, a handler's `environ`) are
    not the process environment and are not matched."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault") \
                    and _is_env_mapping(func.value) and node.args:
                found.add(_name(node.args[0]))
            elif isinstance(func, ast.Attribute) and func.attr == "getenv" \
                    and isinstance(func.value, ast.Name) and func.value.id == "os" and node.args:
                found.add(_name(node.args[0]))
            for first, second in zip(node.args, node.args[1:]):
                if _is_env_mapping(first):
                    found.add(_name(second))
        elif isinstance(node, ast.Subscript) and _is_env_mapping(node.value):
            found.add(_name(node.slice))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 \
                and isinstance(node.ops[0], (ast.In, ast.NotIn)) \
                and _is_env_mapping(node.comparators[0]):
            found.add(_name(node.left))
    return found - {None}


def server_environment_names() -> set[str]:
    names: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        names |= names_read(tree)
        if path.name == "config.py":  # a table-driven loader would name them as constants
            names |= {node.value for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str)
                      and CONFIG_CONSTANT.fullmatch(node.value)}
    return names


# ------------------------------------------------------------------ what the docs say
def _without_code(text: str) -> str:
    """The Markdown with fenced blocks and inline code spans blanked out."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "``", text)


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table outside fenced code, as body rows of cells (header dropped)."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)
    found, block = [], []
    for line in text.splitlines() + [""]:
        if line.lstrip().startswith("|"):
            block.append(line.strip())
            continue
        if len(block) >= 2 and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", block[1].replace(" ", "")):
            found.append([_cells(row) for row in block[2:]])
        block = []
    return found


def _cells(row: str) -> list[str]:
    row = row.strip().strip("|")
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)]


def documented_names(cell: str) -> list[str]:
    """Environment names a table row documents: those in backticks in its first cell."""
    return [name for name in re.findall(r"`([^`]+)`", cell)
            if ENV_NAME.fullmatch(name) and ("_" in name or name in ("HOST", "PORT", "WORKERS",
                                                                     "THREADS"))]


def doc_files() -> list[Path]:
    return [README] + sorted(DOCS.glob("*.md"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Counter = Counter()
    result = set()
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE):
        base = slug(heading)
        result.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return result


def local_links(path: Path) -> list[str]:
    targets = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)",
                         _without_code(path.read_text()))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


# ------------------------------------------------------------------ the tests
def test_the_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines (at most {MAX_README_LINES}): move the detail to docs/")


def test_every_local_link_leads_somewhere():
    broken = []
    for path in doc_files():
        for target in local_links(path):
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no heading #{anchor})")
    assert not broken, "\n".join(broken)


def test_the_readme_shows_the_page_and_indexes_the_docs():
    links = local_links(README)
    assert "docs/page-after-upload.png" in links
    assert "docs/README.md" in links
    index = local_links(DOCS / "README.md")
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "README.md"
               and p.name not in index]
    assert not missing, f"docs/README.md does not link {missing}"


def test_the_scan_finds_the_settings_the_design_names():
    missing = CONTRACT_NAMES - server_environment_names()
    assert not missing, (f"no read of {sorted(missing)} found in tus_server/: the way settings "
                         "are read changed; teach names_read() the new way")


def test_every_variable_the_server_reads_is_in_the_configuration_table():
    config_tables = tables(CONFIGURATION.read_text())
    assert len(config_tables) == 1, "docs/configuration.md keeps every variable in ONE table"
    documented = {name for row in config_tables[0] for name in documented_names(row[0])}
    missing = sorted(server_environment_names() - documented)
    assert not missing, f"read in tus_server/ but not in docs/configuration.md: {missing}"


def test_each_variable_has_one_row_in_all_the_docs():
    counts: Counter = Counter()
    crowded = []
    for path in sorted(DOCS.glob("*.md")) + [README]:
        for table in tables(path.read_text()):
            for row in table:
                names = documented_names(row[0])
                if len(names) > 1:
                    crowded.append(f"{path.name}: {row[0]}")
                counts.update((name, path.name) for name in names)
    per_name = Counter(name for name, _ in counts.elements())
    twice = sorted(f"{name} ({', '.join(sorted(p for n, p in counts if n == name))})"
                   for name, count in per_name.items() if count > 1)
    assert not crowded, f"one variable per row: {crowded}"
    assert not twice, f"documented in more than one table row: {twice}"


def test_every_documented_variable_exists():
    """A row for a name nothing reads is a typo or a leftover."""
    sources = "\n".join(path.read_text() for pattern in
                        ("tus_server/**/*.py", "scripts/*", "bench/*.py", "tests/**/*.py",
                         "Makefile", ".ci/*")
                        for path in ROOT.glob(pattern) if path.is_file()
                        and path.name != "test_docs.py")
    unknown = []
    for path in sorted(DOCS.glob("*.md")):
        for table in tables(path.read_text()):
            for row in table:
                unknown += [f"{path.name}: {name}" for name in documented_names(row[0])
                            if not re.search(rf"\b{name}\b", sources)]
    assert not unknown, f"documented but read nowhere: {unknown}"


def test_the_readme_names_every_room_of_the_package():
    readme = README.read_text()
    block = readme.split("## What is where", 1)[1].split("\n## ", 1)[0]
    rooms = [p.name + "/" for p in sorted(PACKAGE.iterdir())
             if p.is_dir() and not p.name.startswith(("_", "."))
             and (any(p.glob("*.py")) or any(p.iterdir()))]
    modules = [p.name for p in sorted(PACKAGE.glob("*.py")) if p.name != "__init__.py"]
    missing = [name for name in rooms + modules if not re.search(rf"(?<![\w/]){re.escape(name)}", block)]
    assert not missing, f"README's 'What is where' does not name {missing}"


def test_the_scan_ignores_wsgi_environ_and_reads_the_loader():
    tree = ast.parse(
        "import os\n"
        "def f(environ, request, env):\n"
        "    environ.get('PATH_INFO'); request.environ.get('REMOTE_PORT')\n"
        "    os.environ.get('A_ONE'); os.environ['A_TWO']; os.getenv('A_THREE')\n"
        "    'A_FOUR' in os.environ; env.get('A_FIVE', ''); _int(env, 'A_SIX', 1)\n")
    assert names_read(tree) == {"A_ONE", "A_TWO", "A_THREE", "A_FOUR", "A_FIVE", "A_SIX"}
