"""docs/tutorial.md quotes this package's files: each fenced block under a line ending in
"from `plugins/streambp-lion/PATH`:" must be a run of lines of that file, word for word, and together the
blocks must show every line of streambp_lion/__init__.py. Skipped outside a streambp checkout."""
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent
REPO = PACKAGE.parent.parent
TUTORIAL = REPO / "docs" / "tutorial.md"
QUOTE = re.compile(r"^[^\n]*[Ff]rom `(plugins/streambp-lion/[^`]+)`:\n\n```[a-z]+\n(.*?)\n```$", re.M | re.S)


@pytest.fixture(scope="module")
def quotes():
    assert TUTORIAL.is_file(), "these tests run from a streambp checkout, beside docs/tutorial.md"
    return QUOTE.findall(TUTORIAL.read_text(encoding="utf-8"))


def test_quotes_are_the_files(quotes):
    assert len(quotes) >= 10
    for path, block in quotes:
        text = (REPO / path).read_text(encoding="utf-8")
        assert f"\n{block}\n" in f"\n{text}", \
            f"docs/tutorial.md quotes {path} with lines it does not have:\n{block}"


def test_the_whole_module_is_shown(quotes):
    shown = {line for path, block in quotes if path.endswith("streambp_lion/__init__.py")
             for line in block.splitlines()}
    module = (PACKAGE / "streambp_lion" / "__init__.py").read_text(encoding="utf-8")
    missing = [line for line in module.splitlines() if line.strip() and line not in shown]
    assert not missing, f"lines of streambp_lion/__init__.py that docs/tutorial.md does not show: {missing}"
