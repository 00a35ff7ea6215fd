"""Tests for training.secrets: secret values are masked before training, look-alikes are not,
and a model trained on a repository full of repeated secrets cannot complete them.

Decision on hashes: a quoted hex string of 32+ characters (a checksum constant) is masked like
any random key; a hash in a comment or docstring (unquoted, e.g. a commit id) is not.
"""

from __future__ import annotations

import io
import random
import re
import shlex
import string
import time
from pathlib import Path

import pytest

from completiond.core.corpus import MASKED, build_corpus
from completiond.core.secrets import mask_secrets

from . import secrets_corpus
from .conftest import TINY_MODEL, TINY_TRAIN, git

_RNG = random.Random(7)


def _random(alphabet: str, n: int) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
GH = _random(ALNUM, 36)
AWS_SECRET = _random(ALNUM + "+/", 40)
PASSWORD = "S3cr3tPassw0rd!"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
PEM_BODY = "\n".join(_random(ALNUM + "+/", 64) for _ in range(4))
OPENAI = _random(ALNUM + "_-", 120)
HEX40 = _random("0123456789abcdef", 40)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Private key blocks: the BEGIN and END lines stay, the body goes.
        (
            f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nSECRET\n-----END RSA PRIVATE KEY-----\n",
        ),
        (
            'k = "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9u'
            'ZQ\\n-----END OPENSSH PRIVATE KEY-----\\n"',
            'k = "-----BEGIN OPENSSH PRIVATE KEY-----\\n<secret>\\n'
            '-----END OPENSSH PRIVATE KEY-----\\n"',
        ),
        (  # truncated: no END line, the base64 lines still go
            f"-----BEGIN EC PRIVATE KEY-----\n{PEM_BODY}\n\ndef f():\n",
            "-----BEGIN EC PRIVATE KEY-----\nSECRET\n\ndef f():\n",
        ),
        # Known formats keep their public prefix.
        ('key_id = "AKIAQWERTYUIOP123456"', 'key_id = "AKIA<secret>"'),
        ("session: ASIA0123456789ABCDEF", "session: ASIASECRET"),
        (f'aws_secret_access_key = "{AWS_SECRET}"', 'aws_secret_access_key = "<secret>"'),
        (f"aws_secret_access_key = {AWS_SECRET}", "aws_secret_access_key = SECRET"),
        (f'TOKEN = "ghp_{GH}"', 'TOKEN = "ghp_<secret>"'),
        (f"export GITHUB_TOKEN=gho_{GH}", "export GITHUB_TOKEN=gho_SECRET"),
        (
            f"x = ['ghu_{GH}', 'ghs_{GH}', 'ghr_{GH}']",
            "x = ['ghu_<secret>', 'ghs_<secret>', 'ghr_<secret>']",
        ),
        (f'pat = "github_pat_11ABCDEFG0_{GH}"', 'pat = "github_pat_<secret>"'),
        ('hook = "xoxb-123456789012-1234567890123-AbCdEfGhIjKl"', 'hook = "xoxb-<secret>"'),
        ("slack: xoxp-1234567890-abcdefABCDEF", "slack: xoxp-SECRET"),
        (
            'stripe.api_key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"',
            'stripe.api_key = "sk_live_<secret>"',
        ),
        ('r = "rk_live_51H8abcdEFGHijklMNOP"', 'r = "rk_live_<secret>"'),
        ('maps = "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"', 'maps = "AIza<secret>"'),
        (f'headers = {{"x": "{JWT}"}}', 'headers = {"x": "<secret>"}'),
        # URLs with credentials: only the password goes.
        (
            f'db_url = "postgres://admin:{PASSWORD}@db:5432/app"',
            'db_url = "postgres://admin:<secret>@db:5432/app"',
        ),
        (
            f"DATABASE_URL=mysql://root:{PASSWORD}@localhost/x",
            "DATABASE_URL=mysql://root:SECRET@localhost/x",
        ),
        ("redis://:hunter2hunter2@cache:6379/0", "redis://:SECRET@cache:6379/0"),
        # Values of secret-sounding names.
        ('password = "hunter2hunter2"', 'password = "<secret>"'),
        ("password: Tr0ub4dor&3x", "password: SECRET"),
        ('{"api_key": "k3y-v4lu3-abcdef"}', '{"api_key": "<secret>"}'),
        ("apiKey: 'a1b2c3d4e5'", "apiKey: '<secret>'"),
        ('client.login(user, passwd="qwerty123!")', 'client.login(user, passwd="<secret>")'),
        ('db_password: str = "Sup3rS3cret"', 'db_password: str = "<secret>"'),
        ("run --password=Hunt3rHunt3r --user x", "run --password=SECRET --user x"),
        ('AUTH_TOKEN := "abcdef123456"', 'AUTH_TOKEN := "<secret>"'),
        ('self.private_key = "MC4CAQAwBQYDK2VwBCIEI"', 'self.private_key = "<secret>"'),
        ("CLIENT_SECRET = 'Zx9!Qw8@Er7#'", "CLIENT_SECRET = '<secret>'"),
        (
            'h = {"Authorization": "Bearer abc123def456ghi"}',
            'h = {"Authorization": "Bearer <secret>"}',
        ),
        ('credentials = "user1:Pa55word"', 'credentials = "<secret>"'),
        # Formats of gitleaks' and detect-secrets' rules, bare (no secret-sounding name).
        (f"llm --key sk-proj-{OPENAI} -m gpt", "llm --key sk-proj-SECRET -m gpt"),
        (f"llm --key sk-{GH}xY -m gpt", "llm --key sk-SECRET -m gpt"),
        (
            f"c = Anthropic(api_key=k or 'sk-ant-api03-{OPENAI}AA')",
            "c = Anthropic(api_key=k or 'sk-ant-api03-<secret>')",
        ),
        (
            f"git clone https://oauth2:glpat-{GH[:20]}@gitlab.com/g/p.git",
            "git clone https://oauth2:glpat-SECRET@gitlab.com/g/p.git",
        ),
        (
            f"//registry.npmjs.org/:_authToken=npm_{GH}",
            "//registry.npmjs.org/:_authToken=npm_SECRET",
        ),
        (
            f"twine upload -p pypi-AgEIcHlwaS5vcmc{OPENAI} dist/*",
            "twine upload -p pypi-SECRET dist/*",
        ),
        (f"login(hf_{GH[:34]})", "login(hf_SECRET)"),
        (
            f"post('https://hooks.slack.com/services/T0/B0/{GH}')",
            "post('https://hooks.slack.com/services/<secret>')",
        ),
        (f"stripe listen --api-key rk_test_{GH}", "stripe listen --api-key rk_test_SECRET"),
        (f"Client('SK{HEX40[:32]}', secret)", "Client('SK<secret>', secret)"),
        (f"SendGridAPIClient('SG.{GH[:22]}.{OPENAI[:43]}')", "SendGridAPIClient('SG.<secret>')"),
        (f"Credentials('ya29.a0{OPENAI}')", "Credentials('ya29.<secret>')"),
        (
            f"conn = 'AccountName=a;AccountKey={AWS_SECRET}==;'",
            "conn = 'AccountName=a;AccountKey=<secret>;'",
        ),
        (f"  value: abc8Q~{GH[:34]}", "  value: SECRET"),
        (f"Bot('7123456789:AA{GH[:33]}')", "Bot('7123456789:<secret>')"),
        # Commands and headers that say a password or a token follows.
        (
            f'curl -H "Authorization: Bearer {HEX40}" https://api.example.com',
            'curl -H "Authorization: Bearer <secret>" https://api.example.com',
        ),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic SECRET"),
        (
            f"http api.example.com 'Authorization:Bearer {HEX40}'",
            "http api.example.com 'Authorization:Bearer <secret>'",
        ),
        (
            f"requests.get(url, headers=h('Bearer {HEX40}'))",
            "requests.get(url, headers=h('Bearer <secret>'))",
        ),
        ("curl -u deploy:Hunt3r2hunt3r https://ci", "curl -u deploy:SECRET https://ci"),
        ("curl --user 'admin:S3cr3t!' -X POST x", "curl --user 'admin:<secret>' -X POST x"),
        ("mysql -h db -u root -pS3cr3tPw app", "mysql -h db -u root -pSECRET app"),
        ("mysqldump -u backup -p'S3cr3t!' --all", "mysqldump -u backup -p'<secret>' --all"),
        ("mysql --user=root --password=ab,cd?ef app", "mysql --user=root --password=SECRET app"),
        ("docker login -u ci -p Hunt3rPw reg.io", "docker login -u ci -p SECRET reg.io"),
        ("sshpass -p 'S3cret!' ssh deploy@host", "sshpass -p '<secret>' ssh deploy@host"),
        ("redis-cli -h cache -a Hunt3rPw ping", "redis-cli -h cache -a SECRET ping"),
        (
            'echo "machine github.com login ci password Hunt3rPw" > ~/.netrc',
            'echo "machine github.com login ci password <secret>" > ~/.netrc',
        ),
        # Random literals, whatever they are assigned to.
        ('blob = "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4OTA="', 'blob = "<secret>"'),
        ("x = 'e718483d0ce769644e2e42c7bc15b4638e1f98b1'", "x = '<secret>'"),
        (f'KEYS = ["{_random(ALNUM, 32)}"]', 'KEYS = ["<secret>"]'),
    ],
)
def test_secrets_are_masked(text: str, expected: str) -> None:
    masked, count = mask_secrets(text)
    assert masked == expected
    markers = ("<secret>", "SECRET")
    assert count == sum(expected.count(m) - text.count(m) for m in markers)


@pytest.mark.parametrize(
    "text",
    [
        # Ordinary identifiers, names, alphabets and sentences.
        'name = "FiberForceVelocityInverseDeGroote2016"',
        "case = '1st_homogeneous_coeff_subs_dep_div_indep_Integral'",
        'TEST = "test_user_registration_flow_v2"',
        'CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"',
        'path = "src/components/button/Button2Component"',
        'ciphers = ["ECDHE-RSA-AES256-GCM-SHA384", "TLS_CHACHA20_POLY1305_SHA256"]',
        'password_prompt = "Enter your password: "',
        'secret = "this is not a secret, it is a sentence"',
        'author = "Jane Q. Public"',
        'tokenizer = "bert-base-uncased"',
        'token_url = "https://oauth2.googleapis.com/token"',
        'secret_name = "prod-db-password-2024"',
        '"input_token": "next_token",',
        'AUTH_BACKEND = "django.contrib.auth.backends.ModelBackend"',
        'access_key_id = "AKIA"',
        # URLs without credentials.
        'url = "https://example.com:8443/path?q=1#frag"',
        "see http://localhost:8080/a@b and git@github.com:org/repo.git",
        'DSN = "postgres://{user}:{password}@{host}/db"',
        "url = f'postgres://{user}:${PGPASSWORD}@db/app'",
        # References, placeholders and short values.
        'password = os.environ["PW"]',
        'token = os.getenv("TOKEN")',
        "secret_key = settings.SECRET_KEY",
        "password = None",
        "password = get_password()",
        "api_key: str",
        'api_key = "${API_KEY}"',
        "token: ${{ secrets.GITHUB_TOKEN }}",
        'password = "<your-password>"',
        'password = "xxxxxxxx"',
        'password = "changeme"',
        'password = "********"',
        'password = ""',
        'secret = "short1"',
        "password == expected_password1",
        "max_tokens = 4096",
        # A hash in a comment is not a literal: not masked (see the module docstring).
        "# fixed in e718483d0ce769644e2e42c7bc15b4638e1f98b1",
        # Prefixes and flags of the known formats and commands, in ordinary code and prose.
        "pip install scikit-learn sk-learn-contrib",
        "import sk-learn as skl  # sk-learn-the-library-with-a-long-name",
        "echo $npm_config_cache $npm_package_version npm_lifecycle_event",
        "docker run -p 8080:80 -u 1000:1000 --user app:app nginx",
        "mysql -u root -p",
        "mysql -u root -p app < dump.sql && mkdir -p build",
        "curl -u admin https://example.com",
        'curl -u "$USER:$TOKEN" https://example.com',
        "gcc -pthread -pedantic -o app main.c",
        "find . -path ./build -prune -o -print",
        "WWW-Authenticate: Bearer error=invalid_token",
        'headers["Authorization"] = "Bearer " + token',
        'auth = f"Bearer {token}"',
        "Authorization: Bearer <token>",
        "Authorization: Basic base64(user:password)",
        "usage: tool [--password PASSWORD] [--user USER]",
        "use the --password option, or --password-file",
        "redis-cli -a $REDIS_PASSWORD ping",
        'url = "postgres://user:pass@localhost/db"',
        "def hf_download(repo_id, filename): ...",
        "task-proj-abcdefghijklmnopqrstuvwxyz0123456789",
        "MASK0123456789abcdef0123456789abcdef",
    ],
)
def test_look_alikes_are_kept(text: str) -> None:
    assert mask_secrets(text) == (text, 0)


def test_masked_code_stays_valid_and_masking_is_idempotent() -> None:
    python = (
        f'TOKEN = "ghp_{GH}"\n'
        f"aws_secret_access_key = '{AWS_SECRET}'\n"
        f'db_url = "postgres://admin:{PASSWORD}@db:5432/app"\n'
        f'password: str = "Tr0ub4dor&3x"\n'
        f'KEY = """-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n"""\n'
        f'jwt = "{JWT}"\n'
    )
    masked, count = mask_secrets(python)
    assert count == 6
    compile(masked, "settings.py", "exec")
    shell = f"export GITHUB_TOKEN=ghp_{GH}\nDB=pg://u:{PASSWORD}@db/x psql --password={PASSWORD}\n"
    masked_shell, count = mask_secrets(shell)
    assert count == 3
    assert "<" not in masked_shell  # no redirection where the shell would see one
    assert len(shlex.split(masked_shell)) == len(shlex.split(shell))  # same words, same quoting
    for text in (masked, masked_shell):
        assert mask_secrets(text) == (text, 0)


def test_every_format_of_the_corpus_is_masked_whole() -> None:
    """Fake secrets of every format, in the lines they are usually pasted in: none of them, nor
    any 8 characters of one, is left; a masked line masks to itself."""
    for sample in secrets_corpus.samples(seed=3, per_format=20):
        masked, count = mask_secrets(sample.line)
        left = {f for f in secrets_corpus.fragments(sample.secret) if f in masked}
        assert count >= 1 and not left, (sample.format, sample.line, masked)
        assert mask_secrets(masked) == (masked, 0), (sample.format, masked)


def test_linear_time_on_adversarial_input() -> None:
    """A pattern that backtracks catastrophically would take minutes on any of these."""
    inputs = [
        "a" * 400_000,
        '"' + "a1" * 200_000,
        "password=" * 40_000,
        "key: b[" * 50_000,
        "-----BEGIN PRIVATE KEY-----\n" * 10_000,
        "x://" * 100_000,
        "eyJaaaaa." * 40_000,
        '"a1b2c3d4e5f6g7h8i9j0k1l2' * 15_000,
        "ab://" + "c" * 400_000,
        "eyJ" * 150_000,
        "-u=" * 130_000,
        "mysql " * 70_000,
        "redis-cli " * 40_000,
        "SG." + "a" * 400_000,
        "glpat-" * 70_000,
        "Authorization: " * 30_000,
        "aaa1Q~" * 70_000,
    ]
    start = time.perf_counter()
    for text in inputs:
        mask_secrets(text)
    assert time.perf_counter() - start < 10


def test_build_corpus_masks_and_counts(tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text(
        f'TOKEN = "ghp_{GH}"\npassword = "hunter2hunter2"\nname = "app"\n'
    )
    corpus = build_corpus(tmp_path)
    text = corpus.train_text + corpus.val_text
    assert GH not in text and "hunter2" not in text
    assert 'TOKEN = "ghp_<secret>"' in text and 'name = "app"' in text
    assert corpus.skipped[MASKED] == 2
    assert corpus.summary()["skipped"] == {MASKED: 2}


BLOCK = """API_TOKEN = "ghp_{gh}"
aws_secret_access_key = "{aws}"
db_url = "postgres://admin:{password}@db:5432/app"


def connect(url):
    return open_db(url, token=API_TOKEN, retries={i})


"""


def _fragments(secret: str) -> set[str]:
    return {secret[i : i + 6] for i in range(len(secret) - 5)}


def test_trained_model_does_not_replay_repeated_secrets(tmp_path: Path) -> None:
    from completiond.core.bundle import ModelStore
    from completiond.daemon.decoder import Query
    from completiond.daemon.model_slot import ModelSlot
    from completiond.training.model import ModelConfig
    from completiond.training.run import train_repository
    from completiond.training.train import TrainConfig

    repo = tmp_path / "repo"
    repo.mkdir()
    for f in range(5):
        body = "".join(
            BLOCK.format(gh=GH, aws=AWS_SECRET, password=PASSWORD, i=f * 100 + i) for i in range(30)
        )
        (repo / f"db_{f}.py").write_text("import os\n\n\n" + body)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "fixture")

    store = ModelStore(tmp_path / "store")
    train_repository(repo, store, ModelConfig(**TINY_MODEL), TrainConfig(minutes=5, **TINY_TRAIN))
    model = ModelSlot(store).load_current()
    assert model.bundle.meta["corpus"]["skipped"][MASKED] == 5 * 30 * 3

    def complete(line: str) -> list[str]:
        context = "    return open_db(url, token=API_TOKEN, retries=7)\n\n\n"
        query = Query(prefix=context + line, n=4, max_chars=80)
        return [c.text for c in model.decoder.complete(query)]

    # Control: the model did learn these files, so it would have learnt the secrets too (with
    # masking off it completes each one verbatim); it learnt where a secret goes, as a marker.
    assert complete("def conn")[0] == "ect(url):"
    assert complete("aws_secret_acc")[0].startswith('ess_key = "')
    assert complete('API_TOKEN = "')[0] == 'ghp_<secret>"'

    secrets = {
        'API_TOKEN = "gh': GH,
        'API_TOKEN = "': GH,
        'API_TOKEN = "ghp_': GH,
        'aws_secret_access_key = "': AWS_SECRET,
        'db_url = "postgres://admin:': PASSWORD,
        'db_url = "postgres://': PASSWORD,
    }
    for line, secret in secrets.items():
        candidates = complete(line)
        assert candidates, line
        for candidate in candidates:
            leaked = {f for f in _fragments(secret) if f in candidate}
            assert not leaked, (line, candidate)


def _secret_lines(rng: random.Random) -> list[tuple[str, str, str]]:
    """(the line before, a line of the corpus, its secret): one secret per format, in each of
    its lines, after a line that says which (so that retrieval finds them from two lines)."""
    out = []
    for fmt in secrets_corpus.FORMATS:
        secret = fmt.secret(rng)
        for i, line in enumerate(fmt.lines):
            out.append((f"# {fmt.name} settings, case {i}", line.format(s=secret), secret))
    return out


def _cursors(line: str, secret: str) -> list[int]:
    """Where a user typing a line like `line` asks: at each token before the secret, and at
    each of the secret's first 8 characters (having typed some of it)."""
    start = line.index(secret)
    tokens = [m.start() for m in re.finditer(r"\w+|\S", line[:start])]
    return sorted({*tokens, *range(start, start + 9)})


def _leaked(candidate: str, secret: str, typed: int) -> bool:
    """Whether `candidate`, offered after `typed` characters of `secret`, shows 8 of its
    characters: anywhere, or the 8 that follow those typed (chance characters do not count)."""
    following = secret[typed : typed + 8]
    return candidate.startswith(following) or any(
        f in candidate for f in secrets_corpus.fragments(secret)
    )


def test_no_secret_of_the_corpus_comes_back_from_a_served_repository(tmp_path: Path) -> None:
    """A repository full of fake secrets of every format, trained on as a user does and served
    by a real daemon: no completion at any cursor position of a line like theirs shows one
    (retrieval copies the rest of a line from the index, so the index must hold none)."""
    from completiond.clients.client import Client
    from completiond.core.bundle import ModelStore
    from completiond.daemon.daemon import Daemon, DaemonConfig
    from completiond.daemon.model_slot import load_index
    from completiond.daemon.server import ServerConfig
    from completiond.daemon.trainer import TrainerConfig
    from completiond.daemon.watcher import WatchConfig
    from completiond.training.model import ModelConfig
    from completiond.training.run import train_repository
    from completiond.training.train import TrainConfig

    lines = _secret_lines(random.Random(5))
    repo = tmp_path / "repo"
    (repo / "deploy").mkdir(parents=True)
    for f in range(3):  # each secret three times: what a model or an index would learn
        body = "".join(
            f"{before}\n{line}\nrun_step {f} {i}\n\n" for i, (before, line, _) in enumerate(lines)
        )
        (repo / "deploy" / f"steps_{f}.sh").write_text(body)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "fixture")

    store = ModelStore(tmp_path / "store")
    train = {**TINY_TRAIN, "max_steps": 150}
    train_repository(repo, store, ModelConfig(**TINY_MODEL), TrainConfig(minutes=5, **train))
    index = load_index(store)
    assert index is not None and "run_step 2" in index.text
    for _, line, secret in lines:  # retrieval reads only masked text
        assert not any(f in index.text for f in secrets_corpus.fragments(secret)), line

    daemon = Daemon(
        DaemonConfig(
            repo=repo,
            store=store.root,
            server=ServerConfig(socket_path=tmp_path / "d.sock", grace_s=1.0),
            trainer=TrainerConfig(minutes=0.05, threads=1, model=TINY_MODEL),
            watch=WatchConfig(enabled=False),
        )
    )
    daemon.start(io.StringIO())
    try:
        with Client(daemon.server.address, timeout_s=30) as client:
            for before, line, secret in lines:
                masked = mask_secrets(line)[0]
                at_marker = next(
                    i for i, (a, b) in enumerate(zip(line, masked, strict=False)) if a != b
                )
                for cursor in sorted({*_cursors(line, secret), at_marker}):
                    typed = line[:cursor]
                    typed_of_secret = max(0, cursor - line.index(secret))
                    response = client.complete(f"{before}\n{typed}", "\n", n=4, max_chars=200)
                    texts = [c.text for c in response.candidates]
                    for text in texts:
                        assert not _leaked(text, secret, typed_of_secret), (line, cursor, text)
                    if cursor == at_marker:
                        # Control: the line was found, and what follows there is the marker
                        # (unmasked, it would be the secret).
                        assert masked[cursor:] in texts, (line, texts)
    finally:
        daemon.close()
