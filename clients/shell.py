"""Shell integration: the text a user sources to complete command lines from the repository's model.

`eval "$(completiond shell-init zsh)"` (or bash; `completiond shell-init fish | source`) binds a
key that inserts the model's completion of the current line at the cursor. The snippets run
`completiond complete` with a short timeout, send the line through standard input (any quotes or
newlines are safe) and swallow every error: with no daemon, or no suggestion, the key does
nothing and the prompt stays clean.

Environment variables:

- `COMPLETIOND_KEY`, read when the snippet is sourced: the key sequence in caret notation
  (`^X^L`, the default, like Vim's whole-line completion; `^[l` is Alt-L).
- `COMPLETIOND_SOCKET`, read at each completion: the daemon's socket (default: the daemon of the
  repository of the current directory).
"""

from __future__ import annotations

SHELLS = ("zsh", "bash", "fish")

_HEADER = """\
# completiond {shell} integration: complete the command line from this repository's model.
#   {source}
# COMPLETIOND_KEY     key that inserts the completion at the cursor, caret notation, read now
#                     (default ^X^L; ^[l is Alt-L)
# COMPLETIOND_SOCKET  daemon socket, read at each completion (default: the daemon of the
#                     repository of the current directory)
"""

_ZSH = r"""# With zsh-autosuggestions, suggestions as you type (async keeps typing fast):
#   ZSH_AUTOSUGGEST_STRATEGY=(completiond history) ZSH_AUTOSUGGEST_USE_ASYNC=1

_completiond_complete_line() {
  # The completion of the line ending at $1 (text after the cursor: $2), or nothing and status 1:
  # errors stay out of the prompt and a slow daemon costs at most the timeout.
  emulate -L zsh
  local -a args=(complete --path shell.zsh --timeout 0.5 --suffix="$2")
  [[ -n $COMPLETIOND_SOCKET ]] && args+=(--socket "$COMPLETIOND_SOCKET")
  print -rn -- "$1" | command completiond "${args[@]}" -- - 2>/dev/null
}

_zsh_autosuggest_strategy_completiond() {
  # zsh-autosuggestions passes the buffer and shows $suggestion, which must extend it.
  emulate -L zsh
  typeset -g suggestion
  local completion
  completion=$(_completiond_complete_line "$1") && [[ -n $completion ]] &&
    suggestion=$1$completion
}

completiond-complete() {
  # Inserts at the cursor; the daemon drops what already follows it, so nothing is doubled.
  emulate -L zsh
  local completion
  completion=$(_completiond_complete_line "$LBUFFER" "$RBUFFER") && LBUFFER+=$completion
  return 0
}

zle -N completiond-complete
bindkey -M emacs "${COMPLETIOND_KEY:-^X^L}" completiond-complete
bindkey -M viins "${COMPLETIOND_KEY:-^X^L}" completiond-complete
"""

_BASH = r"""# Needs bash >= 4 (bind -x with READLINE_LINE).

_completiond_complete_line() {
  # The completion of the line ending at $1 (text after the cursor: $2), or nothing and status 1:
  # errors stay out of the prompt and a slow daemon costs at most the timeout.
  local -a args=(complete --path shell.bash --timeout 0.5 --suffix="$2")
  [[ -n ${COMPLETIOND_SOCKET-} ]] && args+=(--socket "$COMPLETIOND_SOCKET")
  printf '%s' "$1" | command completiond "${args[@]}" -- - 2>/dev/null
}

_completiond_complete() {
  # Inserts at the cursor; the daemon drops what already follows it, so nothing is doubled.
  local before=${READLINE_LINE:0:READLINE_POINT} after=${READLINE_LINE:READLINE_POINT} completion
  completion=$(_completiond_complete_line "$before" "$after") || return 0
  READLINE_LINE=$before$completion$after
  READLINE_POINT=$((READLINE_POINT + ${#completion}))
}

if [[ $- == *i* ]]; then
  _completiond_key=${COMPLETIOND_KEY:-^X^L}
  _completiond_key=${_completiond_key//^/\\C-}
  bind -m emacs -x "\"$_completiond_key\": _completiond_complete"
  bind -m vi-insert -x "\"$_completiond_key\": _completiond_complete"
  unset _completiond_key
fi
"""

_FISH = r"""function __completiond_complete_line --argument-names before after
    # The completion of the line ending at $before, or nothing and status 1: errors stay out of
    # the prompt and a slow daemon costs at most the timeout.
    command -q completiond; or return 1 # fish reports a missing command despite 2>/dev/null
    set -l args complete --path shell.fish --timeout 0.5 --suffix="$after"
    test -n "$COMPLETIOND_SOCKET"; and set -a args --socket $COMPLETIOND_SOCKET
    printf %s "$before" | command completiond $args -- - 2>/dev/null
end

function completiond-complete --description 'Insert the completiond completion at the cursor'
    # Inserts at the cursor; the daemon drops what already follows it, so nothing is doubled.
    set -l before (commandline -c | string collect)
    set -l line (commandline | string collect)
    set -l after (string sub -s (math (commandline -C) + 1) -- "$line" | string collect)
    set -l completion (__completiond_complete_line "$before" "$after")
    and test -n "$completion"
    and commandline -i -- $completion
end

set -l key '^X^L'
test -n "$COMPLETIOND_KEY"; and set key $COMPLETIOND_KEY
set key (string replace -a '^' '\c' -- $key | string unescape)
bind $key completiond-complete
bind -M insert $key completiond-complete
"""

_SNIPPETS = {
    "zsh": ('eval "$(completiond shell-init zsh)"   # in ~/.zshrc', _ZSH),
    "bash": ('eval "$(completiond shell-init bash)"  # in ~/.bashrc', _BASH),
    "fish": ("completiond shell-init fish | source  # in ~/.config/fish/config.fish", _FISH),
}


def snippet(shell: str) -> str:
    """The integration script for `shell`, to be sourced by that shell's rc file."""
    if shell not in _SNIPPETS:
        raise ValueError(f"unknown shell {shell!r}; choose one of {', '.join(SHELLS)}")
    source, body = _SNIPPETS[shell]
    return _HEADER.format(shell=shell, source=source) + "\n" + body
