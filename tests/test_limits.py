"""One request limit: the daemon, the CLI and the LSP bridge read `MAX_COMPLETION_CHARS` from
`completiond.core.limits`; the editor plugins, in Lua and TypeScript, state it again (a settings
range, a clamp, their documentation), and this checks that every one of them says the same."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from completiond.core.limits import MAX_COMPLETION_CHARS

CLIENTS = Path(__file__).resolve().parent.parent / "clients"

# Where a plugin states the longest completion a request may ask for: (file, the pattern that
# captures the number there).
PLUGIN_STATEMENTS = [
    ("vscode/src/logic.ts", r"MAX_CHARS_LIMIT = (\d+);"),
    ("vscode/package.json", r"Longest completion, in characters \(1 to (\d+)\)"),
    ("vscode/README.md", r"`completiond\.maxChars` \| `\d+` \| longest completion \(1 to (\d+)\)"),
    ("nvim/lua/completiond/init.lua", r"max_chars = nil, -- 1\.\.(\d+):"),
    ("nvim/README.md", r"max_chars = nil, +-- 1\.\.(\d+),"),
]


@pytest.mark.parametrize(("path", "pattern"), PLUGIN_STATEMENTS)
def test_the_editor_plugins_state_the_daemons_limit(path: str, pattern: str) -> None:
    found = re.findall(pattern, (CLIENTS / path).read_text())
    assert found, f"clients/{path} no longer says /{pattern}/: update this test"
    assert [int(limit) for limit in found] == [MAX_COMPLETION_CHARS] * len(found)


def test_the_vscode_setting_allows_up_to_the_daemons_limit() -> None:
    manifest = json.loads((CLIENTS / "vscode" / "package.json").read_text())
    setting = manifest["contributes"]["configuration"]["properties"]["completiond.maxChars"]
    assert setting["maximum"] == MAX_COMPLETION_CHARS
