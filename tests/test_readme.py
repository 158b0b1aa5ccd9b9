"""The README is the front door: its examples run as written, and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
# The server example needs a running server and a real password: test_remote_client covers it.
LOCAL_BLOCKS = [block for block in PYTHON_BLOCKS if "url=" not in block]


def test_readme_has_local_examples():
    assert len(LOCAL_BLOCKS) >= 3


@pytest.mark.parametrize("block", LOCAL_BLOCKS, ids=lambda b: b.strip().splitlines()[-1][:40])
def test_readme_python_example_runs_as_written(block):
    exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})


def _bash_commands() -> list[str]:
    return [line for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S)
            for line in block.splitlines() if line.startswith("python3 -m venv")]


def test_ci_runs_the_readme_test_command_verbatim():
    commands = _bash_commands()
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_main_command_runs_the_example_pipeline():
    main = next(c for c in _bash_commands() if "examples/" in c)
    script = re.search(r"(examples/\S+\.py)", main).group(1)
    assert (ROOT / script).is_file()
