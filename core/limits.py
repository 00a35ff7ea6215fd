"""Request limits that the daemon enforces and its clients check before they ask.

One definition, so that a client never offers what the daemon refuses; the editor plugins
(clients/nvim, clients/vscode) repeat it in their own languages, and tests/test_limits.py checks
that they agree with it.
"""

from __future__ import annotations

# The longest completion a request may ask for (`max_chars`): each character is a decoding step,
# so this bounds the work one request can cost.
MAX_COMPLETION_CHARS = 400
# The longest completion when a request does not say: a single line's rest, shown as ghost text.
DEFAULT_COMPLETION_CHARS = 80
