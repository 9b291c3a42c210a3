"""The shell commands of README.md run as written (those under a minute; the others are listed in SKIP with why).

Every command of the README's shell code blocks (```bash, or ``` without a
language) is either run here, in a temporary folder with this package's
command line (``ml4ms.cli.main``, in this process), or skipped by name in :data:`SKIP`; a new command in the README
is run unless it is added there. Commands run in order, so a later one can read
what an earlier one wrote (``select`` writes ``picks.txt``, ``map`` reads it).
"""

import re
import shlex
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: a command's first words -> why it is not run here
SKIP = {
    "make demo": "sets up .venv and runs the 2-minute demo (CI runs make test and make docs itself)",
    "make test": "is the test suite itself",
    "make docs": "CI runs it after the tests (3 minutes)",
    "source .venv/bin/activate": "the tests run with the interpreter that runs them",
    "ml4ms cv": "95 s",
    "ml4ms fit": "23 s to 2.6 min; the headline recipes",
    "ml4ms predict": "needs a model from 'ml4ms fit'",
    "ml4ms evaluate": "needs a model and the reader's own labelled structures",
    "ml4ms learning-curve": "3.8 min",
    "ml4ms potential eval": "18 s; tests/test_cli_bad_input.py runs it on a small potential",
    "ml4ms potential fit": "10 minutes of training",
    "ml4ms potential fit grown.extxyz": "needs the reader's newly labelled structures and a potential to continue",
    "ml4ms potential fit-novelty": "needs the reader's own older potential",
    "ml4ms md": "needs a potential from 'ml4ms potential fit'",
    "ml4ms potential select": "needs a trajectory from 'ml4ms md'",
    "ml4ms potential check": "8 s; tests/test_cli_bad_input.py runs it on small data",
    "ml4ms active run": "15 s; tests/test_active.py runs the same loop on a smaller pool",
    "ml4ms active status": "needs the database of 'ml4ms active run'",
    "ml4ms active report": "needs the database of 'ml4ms active run'",
    "ml4ms duplicates nomad2018:train nomad2018:test": "the pairs across the sets take longer than the one-set run",
}


def shell_commands(text):
    """The commands of the shell code blocks of a Markdown ``text``: comments dropped, ``\\`` lines joined.

    Examples
    --------
    >>> shell_commands("```bash\\nls -l   # list\\n# only a comment\\nml4ms map a \\\\\\n  -o m.png\\n```\\n")
    ['ls -l', 'ml4ms map a -o m.png']
    >>> shell_commands("```python\\nprint(1)\\n```\\n")
    []
    """
    commands = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if lang not in ("", "bash", "sh", "shell"):
            continue
        joined = re.sub(r"\\\n", " ", body)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def skip_reason(command):
    """Why ``command`` is not run (the longest matching entry of :data:`SKIP`), or None."""
    words = shlex.split(command)
    for key in sorted(SKIP, key=len, reverse=True):
        if words[:len(key.split())] == key.split():
            return SKIP[key]
    return None


COMMANDS = shell_commands(README.read_text(encoding="utf-8"))


def test_readme_has_commands_and_every_skip_is_used():
    assert len(COMMANDS) > 20
    unused = [key for key in SKIP if not any(skip_reason(c) == SKIP[key] for c in COMMANDS)]
    assert not unused, f"SKIP lists commands the README no longer has: {unused}"


@pytest.mark.slow
def test_readme_commands_run(tmp_path, monkeypatch, capsys):
    from ml4ms.cli import main

    run = [c for c in COMMANDS if skip_reason(c) is None]
    assert run, "no README command left to run"
    monkeypatch.chdir(tmp_path)
    timings = []
    for command in run:
        words = shlex.split(command)
        assert words[0] == "ml4ms", f"not a command of ml4ms: add it to SKIP with a reason: {command}"
        words = [str(ROOT / w) if w.startswith("models/") else w for w in words]  # the shipped potential
        start = time.perf_counter()
        code = main(words[1:])  # in this process: no interpreter and torch to start for each command
        timings.append((time.perf_counter() - start, command))
        assert code == 0, f"{command}: exit code {code}\n{capsys.readouterr().err[-2000:]}"
    with capsys.disabled():
        print("\n" + "\n".join(f"{t:6.1f} s  {c}" for t, c in timings))
