"""README.md's curl examples, copied as a reader copies them, against the whole stack under supervisord.

The README says they "work as they are against `make run`": the only edits made here are the
ones it tells the reader to make (the tokens printed by `tradestream-admin demo`) and the ports
(a test never takes 8080/8081). A README whose examples drift from the product fails here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.deploy.stack import PROJECT, Stack

README = PROJECT / "README.md"


def readme_curls() -> list[str]:
    """The curl commands of the README's "Running one process by hand" block, each with all its lines."""
    text = README.read_text()
    section = text[text.index("## Running one process by hand"):]
    block = section[section.index("```sh") + len("```sh"):]
    commands: list[str] = []
    inside = False  # a curl command goes on over its `\` lines and a quoted body's lines
    for line in block[:block.index("```")].splitlines():
        if line.startswith("curl "):
            commands.append(line)
            inside = True
        elif inside and line.strip() and not line.startswith(("#", ".venv/")):
            commands[-1] += "\n" + line
        else:
            inside = False
    return commands


def as_reader_runs(command: str, stack: Stack) -> str:
    """The command with the reader's substitutions (tokens) and this stack's ports."""
    alice = stack.user("alice")["api_token"]
    webhook = stack.strategy("btc-trend")["webhook_token"]
    return (command.replace("<api_token>", alice).replace("<webhook_token>", webhook)
            .replace("http://127.0.0.1:8080", stack.base_url).replace("http://127.0.0.1:8081", stack.webhook_url))


def run(command: str, cwd: Path, *, stream: bool = False) -> str:
    """Runs a README command in bash; a stream is read for 3 s (curl exits 28 at --max-time)."""
    if stream:
        command = command.replace("curl -N", "curl -N --max-time 3", 1)
    result = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert result.returncode == (28 if stream else 0), (command, result.returncode, result.stderr)
    return result.stdout


def test_every_curl_example_of_the_readme_works_as_written(stack: Stack, tmp_path: Path) -> None:
    commands = readme_curls()
    kinds = [("login" if "/api/login" in c else "stream" if "/api/events/stream" in c else
              "webhook" if "/api/webhook" in c else c) for c in commands]
    assert kinds == ["login", "stream", "stream", "webhook"], commands
    login, cookie_stream, token_stream, webhook = (as_reader_runs(c, stack) for c in commands)

    assert json.loads(run(login, tmp_path))["username"] == "alice"  # and the cookie is in ./jar
    for stream in (cookie_stream, token_stream):
        frames = run(stream, tmp_path, stream=True)
        assert frames.startswith("retry: 3000\n") and "event: connection\n" in frames, frames
        assert '"status":"connected"' in frames and '"strategy_id":1' in frames

    # The webhook example, and what the README says it answers: accepted, then a duplicate of the same id.
    first = json.loads(run(webhook, tmp_path))
    again = json.loads(run(webhook, tmp_path))
    assert first == {"status": "accepted", "signals": 1}
    assert again == {"status": "accepted", "signals": 1, "duplicate": True}
    said = README.read_text()
    assert '# → {"status":"accepted","signals":1}; the same "id" again → {..., "duplicate":true}' in said
