"""Every Python code block of README.md and docs/ runs, and the docstring examples too.

The ```` ```python ```` blocks of one page run in order, in one namespace (a module
registered in `sys.modules`, so functions defined there can be scheduled by name), in a
fresh temporary directory that is also `XDG_DATA_HOME`. A failure points at the page
and line of the block.

A block that needs a UI toolkit says so in an HTML comment on the line before its fence
(invisible on GitHub and in the site):

    <!-- test: tk -->        runs on the private Xvfb display (the `xvfb_display` fixture)
    <!-- test: textual -->   runs headless (Textual's `App.run_test()`)
    <!-- test: qt -->        runs with QT_QPA_PLATFORM=offscreen; skipped, with the reason,
                             only when neither PySide6 nor PyQt6 is installed
    <!-- test: postgres -->  runs with DATABASE_URL naming a fresh PostgreSQL database (the
                             `postgres_url` fixture)

A block whose first line is a comment naming a Python file (`# app/messages.py`) is also
written to that file, so that later blocks may import it (as `livedb.serve` imports a
package).

Each such block is a test of its own: it runs after the page's untagged blocks that come
before it, so it may build on them, and no other block may build on it. Every other
```` ```python ```` block runs in its page's test; nothing is skipped silently. A block
that is not Python (a shell command, TypeScript) uses another language tag.

Docstring examples are `>>>` doctests (what `help()` and the reference show). Every
module of livedb that has some is listed in `DOCUMENTED_MODULES`, and each docstring's
examples run in a module of their own (registered in `sys.modules`, like a page's), in
a temporary directory.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.metadata
import pkgutil
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import livedb
from livedb import Database
from livedb._client import Client

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TOOLKITS = ("tk", "textual", "qt", "postgres")

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*test:\s*(?P<what>[\w-]+)\s*-->\s*$")
_NOT_PYTHON_TAGS = {"py", "python3", "pycon", "ipython", "py3"}
"""Tags that look like Python but would not be run: refused, so nothing slips through."""


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its code and its toolkit."""

    page: Path
    line: int
    """The line number (1-based) of the block's first code line."""
    language: str
    code: str
    toolkit: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """Every fenced block of a Markdown page, with the toolkit its directive names."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        language = match["info"].split()[0] if match["info"].split() else ""
        toolkit = None
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        directive = _DIRECTIVE.match(lines[before]) if before >= 0 else None
        if directive is not None:
            toolkit = directive["what"]
        start = i + 1
        end = start
        while end < len(lines) and not (lines[end].strip().startswith(fence[0] * len(fence))
                                        and lines[end].strip().strip(fence[0]) == ""):
            end += 1
        code = "\n".join(line[indent:] if line[:indent].strip() == "" else line
                         for line in lines[start:end])
        found.append(Block(page, start + 1, language, code + "\n", toolkit))
        i = end + 1
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks_of(page)]
PYTHON = [block for block in ALL_BLOCKS if block.language == "python"]
PAGES_WITH_CODE = sorted({block.page for block in PYTHON if block.toolkit is None})


def _slug(page: Path) -> str:
    return re.sub(r"\W", "_", str(page.relative_to(ROOT).with_suffix("")))


@pytest.fixture
def page_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A fresh module to run a page's blocks in, in a temporary working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    name = f"livedb_docs_{tmp_path.name}"
    module = types.ModuleType(name)
    module.__file__ = str(tmp_path / "page.py")
    sys.modules[name] = module
    try:
        yield module
    finally:
        for value in list(vars(module).values()):
            if isinstance(value, (Database, Client)):
                value.close()
        del sys.modules[name]
        for other, loaded in list(sys.modules.items()):
            where = getattr(loaded, "__file__", None) or str(getattr(loaded, "__path__", ""))
            if str(tmp_path) in where:
                del sys.modules[other]


_FILE_LINE = re.compile(r"# (?P<path>[\w./-]+\.py)$")
"""A block whose first line names a file (`# app/messages.py`) shows that file: it is
written there (in the page's temporary directory) before it runs, so later blocks can
import it."""


def run(blocks: list[Block], module: types.ModuleType) -> None:
    """Run `blocks` in order in `module`; a failure names the block's page and line."""
    for block in blocks:
        named = _FILE_LINE.match(block.code.split("\n", 1)[0])
        if named is not None:
            target = Path(named["path"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
            importlib.invalidate_caches()
        code = compile("\n" * (block.line - 1) + block.code, str(block.page), "exec")
        try:
            exec(code, vars(module))
        except BaseException as e:
            e.add_note(f"in the code block at {block.where}")
            raise


def _before(block: Block) -> list[Block]:
    """The untagged Python blocks of `block`'s page that come before it, and it."""
    earlier = [b for b in PYTHON if b.page == block.page and b.line < block.line
               and b.toolkit is None]
    return [*earlier, block]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_page(page: Path, page_module: types.ModuleType) -> None:
    run([b for b in PYTHON if b.page == page and b.toolkit is None], page_module)


def _tagged(toolkit: str) -> list[Block]:
    return [block for block in PYTHON if block.toolkit == toolkit]


@pytest.mark.parametrize("block", _tagged("tk"), ids=lambda b: b.where)
def test_tk_block(block: Block, xvfb_display: str, page_module: types.ModuleType) -> None:
    try:
        importlib.import_module("tkinter")
    except ImportError:
        pytest.skip("this Python has no tkinter (Debian: apt-get install python3-tk)")
    run(_before(block), page_module)


@pytest.mark.parametrize("block", _tagged("textual"), ids=lambda b: b.where)
def test_textual_block(block: Block, page_module: types.ModuleType) -> None:
    try:
        importlib.import_module("textual")
    except ImportError:
        pytest.skip('Textual is not installed (pip install ".[textual]")')
    run(_before(block), page_module)


def _qt_binding() -> str | None:
    for name in ("PySide6", "PyQt6"):
        try:
            importlib.import_module(f"{name}.QtWidgets")
        except ImportError:
            continue
        return name
    return None


@pytest.mark.parametrize("block", _tagged("qt"), ids=lambda b: b.where)
def test_qt_block(block: Block, page_module: types.ModuleType,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    if _qt_binding() is None:
        pytest.skip('neither PySide6 nor PyQt6 is installed (pip install ".[qt]")')
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    run(_before(block), page_module)


@pytest.mark.parametrize("block", _tagged("postgres"), ids=lambda b: b.where)
def test_postgres_block(block: Block, page_module: types.ModuleType, postgres_url: str,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    run(_before(block), page_module)


def test_every_python_block_is_run_by_some_test() -> None:
    """No block escapes: no Python under another tag, no unknown or misplaced directive."""
    problems = []
    for block in ALL_BLOCKS:
        if block.language in _NOT_PYTHON_TAGS:
            problems.append(f"{block.where}: tag the block `python` (or a non-Python "
                            f"language), not `{block.language}`")
        if block.toolkit is not None and block.toolkit not in TOOLKITS:
            problems.append(f"{block.where}: unknown directive 'test: {block.toolkit}'")
        if block.toolkit is not None and block.language != "python":
            problems.append(f"{block.where}: a 'test:' directive before a non-Python block")
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        directives = len(re.findall(r"<!--\s*test:", text))
        tagged = sum(1 for b in ALL_BLOCKS if b.page == page and b.toolkit is not None)
        if directives != tagged:
            problems.append(f"{page.relative_to(ROOT)}: {directives} 'test:' directives but "
                            f"{tagged} blocks follow one directly")
    assert not problems, "\n".join(problems)
    assert len(PYTHON) >= 50, f"only {len(PYTHON)} Python blocks found: is the parser broken?"


def test_fences_are_parsed_with_their_lines_and_directives(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n<!-- test: tk -->\n"
                    "```python\nimport tkinter\n```\n\n- item\n\n    ```bash\n    ls\n    ```\n",
                    encoding="utf-8")
    found = [(b.line, b.language, b.code, b.toolkit) for b in blocks_of(page)]
    assert found == [(4, "python", "x = 1\n", None), (9, "python", "import tkinter\n", "tk"),
                     (15, "bash", "ls\n", None)]


DOCUMENTED_MODULES = [
    "livedb._client",
    "livedb._crons",
    "livedb._database",
    "livedb._errors",
    "livedb._functions",
    "livedb._identity",
    "livedb._ids",
    "livedb._query",
    "livedb._reactive",
    "livedb._results",
    "livedb._scheduler",
    "livedb._schema",
    "livedb._search",
    "livedb._serve",
    "livedb._storage",
    "livedb._transaction",
    "livedb._validators",
    "livedb.auth",
    "livedb.export",
    "livedb.ui",
]


def _doctests(name: str) -> list[doctest.DocTest]:
    return [test for test in doctest.DocTestFinder().find(importlib.import_module(name))
            if test.examples]


@pytest.mark.parametrize("name", DOCUMENTED_MODULES)
def test_docstring_examples(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each docstring's examples run in a module of their own, registered in
    `sys.modules`, so that the functions an example defines can be scheduled by name."""
    monkeypatch.chdir(tmp_path)
    tests = _doctests(name)
    assert tests, f"{name} has no docstring examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for number, test in enumerate(tests):
        module_name = f"livedb_doctest_{tmp_path.name}_{number}"
        namespace = types.ModuleType(module_name)
        vars(namespace).update({**test.globs, "__name__": module_name})
        test.globs = vars(namespace)
        sys.modules[module_name] = namespace
        try:
            runner.run(test, clear_globs=False)
        finally:
            for value in list(test.globs.values()):
                if isinstance(value, (Database, Client)):
                    value.close()
            del sys.modules[module_name]
            test.globs.clear()
    for other, loaded in list(sys.modules.items()):
        where = getattr(loaded, "__file__", None) or str(getattr(loaded, "__path__", ""))
        if str(tmp_path) in where:
            del sys.modules[other]
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring examples of {name} failed"


def test_every_module_with_docstring_examples_is_tested() -> None:
    modules = {info.name for info in pkgutil.walk_packages(livedb.__path__, "livedb.")
               if info.name != "livedb.__main__"}
    untested = []
    for name in sorted(modules - set(DOCUMENTED_MODULES)):
        try:
            if _doctests(name):
                untested.append(name)
        except ImportError:
            continue
    assert not untested, f"add {untested} to DOCUMENTED_MODULES"


def test_version_comes_from_the_installed_distribution() -> None:
    assert livedb.__version__ == importlib.metadata.version("livedb")
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", livedb.__version__)


def test_readme_starts_with_the_two_commands() -> None:
    first = next(block for block in ALL_BLOCKS if block.page.name == "README.md")
    commands = [line.split("#")[0].strip() for line in first.code.splitlines()]
    assert commands == ['pip install . && python -m livedb',
                        'pip install ".[test]" && python -m pytest']


def test_readme_links_stay_inside_the_project() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links
    for link in links:
        assert not link.startswith(("/", "..", "http:", "https:", "file:")), link
        assert (ROOT / link.split("#")[0]).exists(), f"README links to a missing {link}"


def test_reference_documents_every_public_name() -> None:
    """Each name in `livedb.__all__` has a `::: livedb.NAME` entry in docs/reference/."""
    text = "\n".join(page.read_text(encoding="utf-8")
                     for page in (ROOT / "docs" / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: livedb\.(\w+)\s*$", text, re.MULTILINE))
    missing = sorted(set(livedb.__all__) - documented)
    assert not missing, (f"add `::: livedb.NAME` for {missing} to a page of docs/reference/ "
                         "(and a line to its table in docs/reference/index.md)")
