"""Tests for training.files: which repository files the model trains on, and the split."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from completiond.core.files import (
    FileSelectionConfig,
    candidate_paths,
    content_exclusion,
    path_exclusion,
    select_files,
    split_files,
)


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def test_git_lists_tracked_and_untracked_but_not_ignored_or_deleted(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            ".gitignore": "out/\nignored_*.py\n",
            "a.py": "a = 1\n",
            "gone.py": "gone = 1\n",
            "sub/e.py": "e = 1\n",
        },
    )
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    (tmp_path / "gone.py").unlink()  # tracked, deleted from disk
    _write(
        tmp_path,
        {"b.py": "b = 1\n", "ignored_x.py": "x = 1\n", "out/c.py": "c = 1\n", "sub/f.py": "f\n"},
    )

    assert candidate_paths(tmp_path) == [".gitignore", "a.py", "b.py", "sub/e.py", "sub/f.py"]
    selection = select_files(tmp_path)
    assert selection.files == ["a.py", "b.py", "sub/e.py", "sub/f.py"]
    assert selection.skipped == {"extension": 1}
    # A subdirectory of the work tree as root: only its files, relative to it.
    assert candidate_paths(tmp_path / "sub") == ["e.py", "f.py"]


_NESTED_TREE: dict[str, str | bytes] = {
    ".gitignore": "private/\n*.gen.py\n",
    "pkg/.gitignore": "local.py\n!keep.gen.py\n",
    "a.py": "a = 1\n",
    "local.py": "# only pkg/local.py is ignored\n",
    "x.gen.py": "x = 1\n",
    "private/z.py": "z = 1\n",
    "pkg/b.py": "b = 1\n",
    "pkg/local.py": "local = 1\n",
    "pkg/keep.gen.py": "keep = 1\n",
    "pkg/deep/c.py": "c = 1\n",
}
_NESTED_EXPECTED = [
    ".gitignore",
    "a.py",
    "local.py",
    "pkg/.gitignore",
    "pkg/b.py",
    "pkg/deep/c.py",
    "pkg/keep.gen.py",
]


@pytest.mark.parametrize("mode", ["git", "walk", "walk_without_git_binary"])
def test_nested_gitignore_files_agree_with_and_without_git(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, _NESTED_TREE)
    (tmp_path / "pkg_link").symlink_to("pkg", target_is_directory=True)  # never followed
    if mode == "git":
        _git(tmp_path, "init", "-q")
    elif mode == "walk_without_git_binary":
        _git(tmp_path, "init", "-q")
        monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))
    assert candidate_paths(tmp_path) == _NESTED_EXPECTED


def test_walk_never_descends_into_vcs_directories(tmp_path: Path) -> None:
    _write(tmp_path, {"a.py": "a\n", ".hg/x.py": "x\n", ".svn/y.py": "y\n", ".git/z.py": "z\n"})
    assert candidate_paths(tmp_path) == ["a.py"]


@pytest.mark.parametrize(
    ("rel_path", "reason"),
    [
        ("src/app.py", None),
        ("Makefile", None),
        ("docker/Dockerfile", None),
        ("CMakeLists.txt", None),
        ("web/Main.TSX", None),
        (".env", "secret"),
        ("config/.env.example", "secret"),
        ("certs/server.key", "secret"),
        ("certs/ca.PEM", "secret"),
        ("home/.ssh/id_ed25519.pub", "secret"),
        (".npmrc", "secret"),
        ("credentials-prod.json", "secret"),
        ("k8s/db-secrets.yaml", "secret"),
        ("service-account-ci.json", "secret"),
        ("poetry.lock", "lock_file"),
        ("web/package-lock.json", "lock_file"),
        ("pnpm-lock.yaml", "lock_file"),
        ("go.sum", "lock_file"),
        ("web/node_modules/react/index.js", "vendored"),
        ("vendor/lib.go", "vendored"),
        ("pip/_vendor/rich/bar.py", "vendored"),
        ("rust/target/debug/build.rs", "vendored"),
        ("pkg/__pycache__/m.py", "vendored"),
        ("protos/api_pb2.py", "generated"),
        ("protos/api_pb2_grpc.py", "generated"),
        ("api/api.pb.go", "generated"),
        ("static/app.min.js", "generated"),
        ("static/app.js.map", "generated"),
        ("ui/Form.Designer.cs", "generated"),
        ("lib/model.g.dart", "generated"),
        ("photo.png", "extension"),
        ("README", "extension"),
        ("notes.docx", "extension"),
    ],
)
def test_path_exclusion(rel_path: str, reason: str | None) -> None:
    assert path_exclusion(rel_path) == reason


def test_path_exclusion_uses_the_configured_allowlists() -> None:
    config = FileSelectionConfig(extensions=frozenset({"foo"}), names=frozenset({"README"}))
    assert path_exclusion("a.foo", config) is None
    assert path_exclusion("README", config) is None
    assert path_exclusion("a.py", config) == "extension"


_SMALL = FileSelectionConfig(max_file_bytes=100, max_line_chars=40, max_mean_line_chars=10.0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"def f():\n    return 1\n", None),
        (b"\n\n\n", None),
        (b"", "empty"),
        (b"x = 1\n" * 20, "too_large"),
        (b"ab\x00cd\n", "binary"),
        (b"caf\xe9\n", "binary"),  # Latin-1, not UTF-8
        ("# café ✓\n".encode(), None),
        (b"x" * 41 + b"\n", "minified"),
        (b"x" * 15 + b"\n" + b"y" * 15, "minified"),  # mean 15 > 10
        (b"// Code generated by protoc-gen-go. DO NOT EDIT.\npackage api\n", "generated"),
        (b"# This file is @Generated\n", "generated"),
        (b"\n\n\n\n# auto-generated\n", "generated"),
        (b"\n\n\n\n\n# auto-generated\n", None),  # sixth line: only the header counts
    ],
)
def test_content_exclusion(data: bytes, reason: str | None) -> None:
    assert content_exclusion(data, _SMALL) == reason


def test_content_exclusion_defaults_flag_minified_javascript() -> None:
    bundle = b"var a=1;" * 200  # one 1600-character line
    assert content_exclusion(bundle) == "minified"
    assert content_exclusion(b"const a = 1;\n" * 100) is None


def test_select_files_counts_every_reason(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "app.py": "def main():\n    return 0\n",
            "pkg/__init__.py": "",
            ".env": "TOKEN=abc\n",
            "deploy/server.key": "-----BEGIN PRIVATE KEY-----\n",
            "uv.lock": "version = 1\n",
            "node_modules/left-pad/index.js": "module.exports = 1;\n",
            "api_pb2.py": "x = 1\n",
            "bundle.js": "var a=1;" * 200,
            "native.c": b"int main\x00\x01\x02",
            "big.py": "x = 1\n" * 50_000,  # 300 kB
            "gen.py": "# Code generated by tool. DO NOT EDIT.\nx = 1\n",
            "photo.png": b"\x89PNG\r\n",
        },
    )
    os.mkfifo(tmp_path / "pipe.py")  # not a regular file: must be skipped, not opened
    (tmp_path / "alias.py").symlink_to("app.py")
    (tmp_path / "dangling.py").symlink_to("missing.py")

    selection = select_files(tmp_path)

    assert selection.files == ["app.py"]
    assert selection.skipped == {
        "empty": 1,
        "secret": 2,
        "lock_file": 1,
        "vendored": 1,
        "generated": 2,
        "minified": 1,
        "binary": 1,
        "too_large": 1,
        "extension": 1,
        "unreadable": 1,
        "symlink": 2,
    }


def test_select_files_rejects_a_missing_or_non_directory_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        select_files(tmp_path / "missing")
    (tmp_path / "file.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="not a directory"):
        select_files(tmp_path / "file.py")


def test_split_is_deterministic_and_independent_of_input_order() -> None:
    files = [f"src/m{i}.py" for i in range(50)]
    train, val = split_files(files)
    assert split_files(list(reversed(files))) == (train, val)
    assert train == sorted(train) and val == sorted(val)
    assert sorted(train + val) == sorted(files)
    assert not set(train) & set(val)


def test_split_is_stable_when_files_are_added() -> None:
    files = [f"src/m{i}.py" for i in range(200)]
    train, val = split_files(files)
    assert 5 <= len(val) <= 40  # about 10 %
    train2, val2 = split_files([*files, "src/new.py", "tests/test_new.py"])
    assert set(train) <= set(train2)
    assert set(val) <= set(val2)


def test_split_honours_the_minimum_validation_count() -> None:
    files = ["a.py", "b.py", "c.py", "d.py"]
    train, val = split_files(files, val_fraction=0.0, min_val_files=2)
    assert len(val) == 2 and len(train) == 2
    assert split_files(files, val_fraction=0.0, min_val_files=2) == (train, val)


@pytest.mark.parametrize(
    ("files", "val_fraction", "min_val_files", "sizes"),
    [
        ([], 0.1, 1, (0, 0)),
        (["only.py"], 0.9, 1, (1, 0)),
        (["a.py", "b.py"], 0.1, 1, (1, 1)),
        (["a.py", "b.py", "c.py"], 1.0, 1, (1, 2)),
        (["a.py", "b.py", "c.py"], 0.0, 5, (1, 2)),
    ],
)
def test_split_never_leaves_training_empty(
    files: list[str], val_fraction: float, min_val_files: int, sizes: tuple[int, int]
) -> None:
    train, val = split_files(files, val_fraction, min_val_files)
    assert (len(train), len(val)) == sizes


@pytest.mark.parametrize(("val_fraction", "min_val_files"), [(-0.1, 1), (1.5, 1), (0.1, -1)])
def test_split_rejects_invalid_arguments(val_fraction: float, min_val_files: int) -> None:
    with pytest.raises(ValueError):
        split_files(["a.py", "b.py"], val_fraction, min_val_files)
