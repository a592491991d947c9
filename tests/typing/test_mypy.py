"""``mypy --strict`` accepts typed uses of the public API and rejects wrong ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
_EXPECTED = re.compile(r"#\s*E:\s*([a-z-]+)\s*$")
_REPORTED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[int, str]]]:
    """Run mypy once over both usage files; errors per file name as ``(line, code)``."""
    cache_dir = tmp_path_factory.mktemp("mypy-cache")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir",
         str(cache_dir), "--python-version", "3.10",
         str(HERE / "usage_ok.py"), str(HERE / "usage_wrong.py")],
        capture_output=True, text=True, cwd=HERE.parent.parent, timeout=600, check=False,
    )  # fmt: skip
    errors: dict[str, set[tuple[int, str]]] = {"usage_ok.py": set(), "usage_wrong.py": set()}
    for line in result.stdout.splitlines():
        match = _REPORTED.match(line)
        if match is not None:
            name = Path(match["file"]).name
            errors.setdefault(name, set()).add((int(match["line"]), match["code"]))
        elif ": error:" in line:
            raise AssertionError(f"unparsed mypy output: {line}")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return errors


def test_typed_uses_pass(reported: dict[str, set[tuple[int, str]]]) -> None:
    """Decorated sync/async functions, methods, cache.sync and stats() type-check cleanly."""
    assert reported["usage_ok.py"] == set()


def test_wrong_uses_fail_where_marked(reported: dict[str, set[tuple[int, str]]]) -> None:
    """Each line marked ``# E: code`` fails with that code, and nothing else fails."""
    lines = (HERE / "usage_wrong.py").read_text().splitlines()
    expected = {
        (number, match[1])
        for number, text in enumerate(lines, start=1)
        if (match := _EXPECTED.search(text)) is not None
    }
    assert len(expected) >= 10
    assert reported["usage_wrong.py"] == expected
