"""The VS Code extension (clients/vscode): built with npm, and its provider logic tested under
Node (`node --test`, no VS Code) on its own and against the real `completiond lsp` bridge and a
real daemon. Skipped, with the reason, where Node.js is not installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from completiond.clients.client import Client
from completiond.daemon.daemon import Daemon

EXTENSION = Path(__file__).resolve().parent.parent / "clients" / "vscode"
NODE_MIN_MAJOR = 18  # `node --test`
NPM_CI_TIMEOUT_S = 600  # a cold npm cache downloads some 130 packages (vsce's included)
COMPILE_TIMEOUT_S = 300
PACKAGE_TIMEOUT_S = 300  # compiles again, then zips
TEST_TIMEOUT_S = 300  # the Node tests bound each wait themselves (30 s)
BRIDGE = [sys.executable, "-m", "completiond.clients.cli", "lsp"]


def npm(*args: str, timeout_s: float, env: dict[str, str] | None = None) -> str:
    """`npm ARGS` in the extension's folder: its output, or the test fails with it."""
    command = [shutil.which("npm") or "npm", *args]
    quiet = {"npm_config_update_notifier": "false", "npm_config_fund": "false"}
    try:
        done = subprocess.run(
            command,
            cwd=EXTENSION,
            env={**os.environ, **quiet, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"`npm {' '.join(args)}` did not finish within {timeout_s} s\n{error.stdout}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"`npm {' '.join(args)}` exited with {done.returncode}\n{output}"
    return output


@pytest.fixture(scope="module")
def extension() -> Path:
    """The extension installed (`npm ci`, only when node_modules is missing or older than the
    lock file) and compiled (`npm run compile`)."""
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.skip("Node.js (node and npm) is not installed: the VS Code extension is not built")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    major = re.match(r"v(\d+)", version)
    if major is None or int(major.group(1)) < NODE_MIN_MAJOR:
        pytest.skip(f"Node.js {version} is too old for `node --test` (needs {NODE_MIN_MAJOR}+)")
    installed = EXTENSION / "node_modules" / ".package-lock.json"  # written last by npm
    lock = EXTENSION / "package-lock.json"
    if not installed.is_file() or installed.stat().st_mtime < lock.stat().st_mtime:
        npm("ci", "--no-audit", timeout_s=NPM_CI_TIMEOUT_S)
    npm("run", "compile", timeout_s=COMPILE_TIMEOUT_S)
    return EXTENSION


def test_the_extension_declares_its_settings_and_ignores_its_build(extension: Path) -> None:
    manifest = json.loads((extension / "package.json").read_text())
    settings = manifest["contributes"]["configuration"]["properties"]
    assert {
        key: settings[key]["default"]
        for key in (
            "completiond.command",
            "completiond.args",
            "completiond.minConfidence",
            "completiond.maxChars",
            "completiond.enable",
        )
    } == {
        "completiond.command": "completiond",
        "completiond.args": ["lsp"],
        "completiond.minConfidence": 0.6,
        "completiond.maxChars": 80,
        "completiond.enable": True,
    }
    assert manifest["engines"]["vscode"] and manifest["activationEvents"]
    assert (extension / "out" / "extension.js").is_file()
    ignored = (extension / ".gitignore").read_text().split()
    assert {"node_modules/", "out/"} <= set(ignored)


def test_npm_run_package_builds_an_installable_vsix(extension: Path, tmp_path: Path) -> None:
    vsix = tmp_path / "completiond.vsix"
    npm("run", "package", "--", "--out", str(vsix), timeout_s=PACKAGE_TIMEOUT_S)
    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("extension/package.json"))
    # The compiled extension and its runtime dependency; no sources, tests or dev tools.
    wanted = {
        "extension.vsixmanifest",
        "extension/LICENSE.txt",
        "extension/out/extension.js",
        "extension/node_modules/vscode-languageclient/package.json",
    }
    assert wanted <= names, sorted(names)
    left_out = ("extension/src/", "extension/out/test/", "extension/node_modules/@vscode/")
    assert not any(name.startswith(left_out) for name in names), sorted(names)
    assert manifest["main"] == "./out/extension.js"


def test_provider_logic_without_a_daemon(extension: Path) -> None:
    npm("run", "test:logic", timeout_s=TEST_TIMEOUT_S)


def test_provider_logic_against_the_real_bridge_and_daemon(
    extension: Path, running_daemon: Daemon, fixture_repo: Path
) -> None:
    socket = running_daemon.server.config.socket_path
    output = npm(
        "test",
        timeout_s=TEST_TIMEOUT_S,
        env={
            "COMPLETIOND_TEST_LSP_CMD": json.dumps(BRIDGE),
            "COMPLETIOND_TEST_SOCKET": str(socket),
            "COMPLETIOND_TEST_REPO": str(fixture_repo),
        },
    )
    assert "# SKIP" not in output, output
    # The completions came from this daemon, through the bridge.
    with Client(f"unix://{socket}", timeout_s=30) as client:
        status = client.status()
    assert status.requests_total >= 3, output
    # The items carry no command: the bridge counted the edit that accepted one, once, and gave
    # every suggestion it showed one outcome (its reports all go out before it exits).
    feedback = {counts.client: counts for counts in status.feedback}
    counts = feedback["completiond-bridge-test"]
    assert counts.accepted == 1, counts
    assert counts.shown == counts.accepted + counts.partially_accepted + counts.dismissed, counts
