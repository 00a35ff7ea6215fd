"""Fake secrets in many formats, and lines of code, configuration and shell that hold them.

The secrets are generated from a seed, never stored: a committed token of a real format would
trip secret scanners, and generating them lets the benchmark draw as many as it likes. Each
format's lines are where such a secret is usually pasted; `{s}` is the secret part, the part
that must never come back (a format's public prefix is in the line itself).
`tests/test_secrets.py` trains on them and `bench/secrets_corpus.py` counts what masking misses.
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
B64 = ALNUM + "+/"
HEX = "0123456789abcdef"
UPPER = string.ascii_uppercase + string.digits
# Passwords: printable, no shell metacharacters (a real one there would be quoted), and
# starting with a letter or digit (`$x`, `%x`, `{x}` read as templates).
PUNCT = "!#*+,.=?^_~-"


def chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def password(rng: random.Random) -> str:
    return chars(rng, ALNUM, 2) + chars(rng, ALNUM + PUNCT, 14)


Generate = Callable[[random.Random], str]


def _run(alphabet: str, n: int) -> Generate:
    return lambda rng: chars(rng, alphabet, n)


@dataclass(frozen=True)
class SecretFormat:
    name: str
    secret: Generate
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Sample:
    format: str
    line: str
    secret: str


FORMATS = (
    SecretFormat(
        "openai-project",
        lambda r: chars(r, URLSAFE, 74) + "T3BlbkFJ" + chars(r, URLSAFE, 74),
        (
            "OPENAI_API_KEY=sk-proj-{s}",
            'client = OpenAI(api_key="sk-proj-{s}")',
            "llm --model gpt-4o --key sk-proj-{s} --temperature 0",
        ),
    ),
    SecretFormat(
        "openai-legacy",
        lambda r: chars(r, ALNUM, 20) + "T3BlbkFJ" + chars(r, ALNUM, 20),
        ("openai.api_key = 'sk-{s}'", "llm keys set openai --value sk-{s}"),
    ),
    SecretFormat(
        "anthropic",
        lambda r: chars(r, URLSAFE, 93) + "AA",
        ("ANTHROPIC_API_KEY=sk-ant-api03-{s}", "client = Anthropic(api_key='sk-ant-api03-{s}')"),
    ),
    SecretFormat(
        "gitlab-pat",
        _run(URLSAFE, 20),
        (
            "GITLAB_TOKEN: glpat-{s}",
            "git clone https://oauth2:glpat-{s}@gitlab.com/group/project.git",
            'curl --header "PRIVATE-TOKEN: glpat-{s}" https://gitlab.com/api/v4/projects',
        ),
    ),
    SecretFormat("gitlab-runner", _run(URLSAFE, 20), ("  token: glrt-{s}",)),
    SecretFormat(
        "npm",
        _run(ALNUM, 36),
        (
            "//registry.npmjs.org/:_authToken=npm_{s}",
            "NODE_AUTH=npm_{s} npm publish --access public",
        ),
    ),
    SecretFormat(
        "pypi",
        _run(URLSAFE, 120),
        (
            "password = pypi-AgEIcHlwaS5vcmc{s}",
            "twine upload -u __token__ -p pypi-AgEIcHlwaS5vcmc{s} dist/*",
        ),
    ),
    SecretFormat(
        "huggingface",
        _run(string.ascii_letters, 34),
        ("HF_TOKEN=hf_{s}", 'model = AutoModel.from_pretrained(name, use_auth_token="hf_{s}")'),
    ),
    SecretFormat(
        "github-classic",
        _run(ALNUM, 36),
        ("GITHUB_TOKEN=ghp_{s}", "git remote add origin https://ghp_{s}@github.com/org/repo.git"),
    ),
    SecretFormat(
        "github-fine-grained",
        lambda r: "11" + chars(r, UPPER, 20) + "_" + chars(r, ALNUM, 59),
        ("echo github_pat_{s} | gh auth login --with-token",),
    ),
    SecretFormat(
        "slack-bot",
        lambda r: (
            chars(r, "0123456789", 12)
            + "-"
            + chars(r, "0123456789", 13)
            + "-"
            + chars(r, ALNUM, 24)
        ),
        ("SLACK_BOT_TOKEN=xoxb-{s}", 'app = App(signing=signing, bot="xoxb-{s}")'),
    ),
    SecretFormat(
        "slack-webhook",
        lambda r: (
            "T" + chars(r, UPPER, 10) + "/B" + chars(r, UPPER, 10) + "/" + chars(r, ALNUM, 24)
        ),
        (
            'requests.post("https://hooks.slack.com/services/{s}", json=payload)',
            "notify_url: https://hooks.slack.com/services/{s}",
        ),
    ),
    SecretFormat(
        "discord-webhook",
        lambda r: chars(r, "0123456789", 18) + "/" + chars(r, URLSAFE, 68),
        ("WEBHOOK = 'https://discord.com/api/webhooks/{s}'",),
    ),
    SecretFormat(
        "stripe-secret",
        _run(ALNUM, 99),
        ("stripe.api_key = 'sk_live_{s}'", "stripe listen --api-key sk_test_{s}"),
    ),
    SecretFormat(
        "stripe-restricted",
        _run(ALNUM, 99),
        ("STRIPE_KEY=rk_live_{s}", 'stripe.Charge.list(api_key="rk_live_{s}")'),
    ),
    SecretFormat(
        "twilio-api-key",
        _run(HEX, 32),
        ("TWILIO_API_KEY=SK{s}", "client = Client('SK{s}', api_secret, account_sid)"),
    ),
    SecretFormat(
        "sendgrid",
        lambda r: chars(r, URLSAFE, 22) + "." + chars(r, URLSAFE, 43),
        ("SENDGRID_API_KEY=SG.{s}", "sg = SendGridAPIClient('SG.{s}')"),
    ),
    SecretFormat(
        "google-oauth-access",
        lambda r: "a0" + chars(r, URLSAFE, 150),
        ("access_token: ya29.{s}", 'creds = Credentials("ya29.{s}")'),
    ),
    SecretFormat("google-api-key", _run(URLSAFE, 35), ("maps_url = base + '&key=AIza{s}'",)),
    SecretFormat("google-client-secret", _run(URLSAFE, 28), ('  "client_secret": "GOCSPX-{s}",',)),
    SecretFormat(
        "aws-access-key-id",
        _run(UPPER, 16),
        ("aws_access_key_id = AKIA{s}", "export AWS_ACCESS_KEY_ID=AKIA{s}"),
    ),
    SecretFormat(
        "aws-secret-access-key",
        _run(B64, 40),
        ("aws_secret_access_key = {s}", "export AWS_SECRET_ACCESS_KEY={s}"),
    ),
    SecretFormat(
        "azure-storage",
        lambda r: chars(r, B64, 86) + "==",
        (
            'conn = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={s};'
            'EndpointSuffix=core.windows.net"',
        ),
    ),
    SecretFormat(
        "azure-client-secret",
        lambda r: (
            chars(r, ALNUM, 3) + chars(r, "0123456789", 1) + "Q~" + chars(r, ALNUM + "_~.-", 34)
        ),
        (
            "AZURE_CLIENT_SECRET={s}",
            'credential = ClientSecretCredential(tenant, app, "{s}")',
            "  value: {s}",
        ),
    ),
    SecretFormat("heroku", lambda r: "AA" + chars(r, URLSAFE, 58), ("HEROKU_API_KEY=HRKU-{s}",)),
    SecretFormat(
        "telegram-bot",
        lambda r: "AA" + chars(r, URLSAFE, 33),
        ("bot = Bot('7123456789:{s}')", "curl https://api.telegram.org/bot7123456789:{s}/getMe"),
    ),
    SecretFormat("digitalocean", _run(HEX, 64), ("DIGITALOCEAN_ACCESS=dop_v1_{s}",)),
    SecretFormat("shopify", _run(HEX, 32), ("session = Session(url, version, 'shpat_{s}')",)),
    SecretFormat("databricks", _run(HEX, 32), ("databricks configure --host $HOST --pat dapi{s}",)),
    SecretFormat("vault", _run(URLSAFE, 95), ("VAULT_TOKEN=hvs.{s}",)),
    SecretFormat(
        "docker-hub",
        _run(URLSAFE, 27),
        ("echo dckr_pat_{s} | docker login -u me --password-stdin",),
    ),
    SecretFormat("linear", _run(ALNUM, 40), ("client = LinearClient(api_key='lin_api_{s}')",)),
    SecretFormat("groq", _run(ALNUM, 52), ("GROQ_API_KEY=gsk_{s}",)),
    SecretFormat("age", _run(UPPER, 58), ("AGE-SECRET-KEY-1{s}",)),
    SecretFormat(
        "jwt",
        lambda r: "eyJhbGciOiJIUzI1NiJ9.eyJ" + chars(r, URLSAFE, 40) + "." + chars(r, URLSAFE, 43),
        ("session_cookie = {s}", "curl -b 'session={s}' https://app.example.com/"),
    ),
    SecretFormat(
        "bearer-header",
        _run(HEX, 40),
        (
            'curl -H "Authorization: Bearer {s}" https://api.example.com/v1/items',
            "Authorization: Bearer {s}",
            "http GET api.example.com/me 'Authorization:Bearer {s}'",
        ),
    ),
    SecretFormat(
        "basic-header",
        lambda r: base64.b64encode(f"deploy:{password(r)}".encode()).decode(),
        ("curl -H 'Authorization: Basic {s}' https://ci.example.com/api/json",),
    ),
    SecretFormat(
        "curl-user",
        password,
        (
            "curl -u deploy:{s} https://ci.example.com/api/json",
            "curl --user admin:{s} -X POST https://x.io",
        ),
    ),
    SecretFormat(
        "mysql-p",
        password,
        (
            "mysql -h db.internal -u root -p{s} app",
            "mysqldump -u backup -p'{s}' --all-databases > all.sql",
        ),
    ),
    SecretFormat("mysql-password", password, ("mysql --user=root --password={s} app",)),
    SecretFormat(
        "url-password",
        password,
        ("DATABASE_URL=postgres://app:{s}@db.internal:5432/app", "amqp://guest:{s}@rabbit:5672/"),
    ),
    SecretFormat("sshpass", password, ("sshpass -p '{s}' ssh deploy@host uptime",)),
    SecretFormat("docker-login", password, ("docker login -u ci -p {s} registry.example.com",)),
    SecretFormat("redis-cli", password, ("redis-cli -h cache -a {s} ping",)),
    SecretFormat(
        "netrc", password, ('echo "machine github.com login ci password {s}" > ~/.netrc',)
    ),
)


def samples(seed: int, per_format: int) -> list[Sample]:
    """`per_format` secrets of each format, each in one of its lines (in turn)."""
    rng = random.Random(seed)
    out = []
    for fmt in FORMATS:
        for i in range(per_format):
            secret = fmt.secret(rng)
            out.append(Sample(fmt.name, fmt.lines[i % len(fmt.lines)].format(s=secret), secret))
    return out


def fragments(secret: str, width: int = 8) -> set[str]:
    """The pieces of `secret` whose appearance counts as a leak."""
    return {secret[i : i + width] for i in range(len(secret) - width + 1)}
