"""`completiond status` for people: the status (the daemon's `StatusResponse` as JSON field
names, or what the store says when no daemon runs) as aligned `name value` rows."""

from __future__ import annotations

import time
from typing import Any

Row = tuple[str, str]


def print_status(status: dict[str, Any]) -> None:
    for key, value in status_rows(status):
        print(f"{key:<11} {value}")


def status_rows(status: dict[str, Any]) -> list[Row]:
    """Where things are, the model, then (with a daemon) what the daemon is doing."""
    rows = [("repository", status["repo"]), ("store", status["store"])]
    daemon = status.get("listenAddress")
    up = f"{daemon} (pid {status.get('pid')}, up {status.get('uptimeSeconds', 0):.0f} s)"
    rows.append(("daemon", up if daemon else "not running"))
    rows += _model_rows(status.get("model"))
    rows += _base_rows(status)
    if status.get("versions"):
        rows.append(("bundles", ", ".join(status["versions"])))
    if daemon:
        rows += _daemon_rows(status)
    return rows


def _model_rows(model: dict[str, Any] | None) -> list[Row]:
    if not model:
        return [("model", "none yet")]
    commit = f", commit {model['commit'][:12]}" if model.get("commit") else ""
    return [
        (
            "model",
            f"{model['version']} ({_age(model['createdUnix'])} old), "
            f"{int(model['parameters']):,} parameters, "
            f"validation {model['valBpc']:.3f} bits/char",
        ),
        (
            "corpus",
            f"{model['trainFiles']} training files ({int(model['trainChars']):,} chars), "
            f"{model['valFiles']} validation files{commit}",
        ),
    ]


def _base_rows(status: dict[str, Any]) -> list[Row]:
    """The bases in the user's cache, then the one the model started from."""
    bases = status.get("bases") or {}
    rows = [
        (
            "base",
            f"{language}: {b['files']} files, {b['minutes']:.0f} min, "
            f"validation {b['valBpc']:.3f} bits/char, manifest {b['manifestSha256'][:12]} "
            f"({_age(b['createdUnix'])} old)",
        )
        for language, b in sorted(bases.items())
    ]
    if not bases and "bases" in status:
        rows.append(("base", f"none (`completiond pretrain` builds one in {status['basesDir']})"))
    origin = status.get("modelBase")
    if status.get("model"):
        # Not "started": that row says who started the daemon.
        start = (
            f"the {origin['language']} base, manifest {origin['manifest_sha256'][:12]}"
            if origin
            else "none: trained from scratch"
        )
        rows.append(("model base", start))
        rows.append(("file cache", _file_cache_line(status.get("modelFileCache"))))
    return rows


def _file_cache_line(fit: dict[str, Any] | None) -> str:
    """Whether the model writes with the current file as its cache, and why (the training
    run's choice, training/file_cache_fit.py)."""
    if not fit:
        return "on (the default: this model was trained before the choice was made)"
    exact = fit["exact"]
    scores = f"{100 * exact.get('0', 0):.1f}% of {fit['lines']} held-out lines right without it"
    weights = (f"{100 * v:.1f}% with it at weight {k}" for k, v in exact.items() if k != "0")
    others = ", ".join(weights)
    state = f"on (weight {fit['kappa']:g})" if fit["kappa"] > 0 else "off"
    return f"{state}: chosen by the training run, {scores}, {others}"


def _age(created_unix: float) -> str:
    minutes = max(0, int((time.time() - created_unix) / 60))
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"


def _daemon_rows(status: dict[str, Any]) -> list[Row]:
    watching = "on" if status.get("watching") else "off"
    last = status.get("lastTrainingResult") or "none in this session"
    rows = [
        ("started", _lifetime_line(status)),
        ("watching", f"{watching} ({status.get('fileEvents', 0)} file events)"),
        ("training", f"{status['trainingState']}{_progress(status)}; last run: {last}"),
        ("requests", f"{status['requestsTotal']} ({status['requestsFailed']} failed)"),
    ]
    if "baseBuild" in status:
        rows.append(("base build", _base_build_line(status["baseBuild"])))
    rows += [("feedback", _feedback_line(entry)) for entry in status.get("feedback", [])]
    if status.get("executionProvider"):
        rows.append(("provider", status["executionProvider"]))
    if "retrieval" in status:
        rows.append(("retrieval", _retrieval_line(status["retrieval"])))
        if status["retrieval"].get("enabled"):
            rows.append(("index", _index_line(status["retrieval"])))
    return rows


def _lifetime_line(status: dict[str, Any]) -> str:
    """Who started the daemon, and when it stops by itself (an idle exit), if ever."""
    by = status.get("startedBy", "")
    who = {"": "by hand", "lsp": "by the editor bridge (completiond lsp)"}.get(by, f"by {by}")
    if not status.get("idleExitMinutes"):
        return f"{who}; keeps running"
    stops = time.strftime("%H:%M:%S", time.localtime(status.get("stopsUnix", 0)))
    return (
        f"{who}; stops at {stops} unless a client calls before "
        f"(after {status['idleExitMinutes']:g} min without one)"
    )


def _base_build_line(build: dict[str, Any]) -> str:
    """The base the daemon builds when idle (`serve --pretrain-when-idle`)."""
    state, message = build.get("state", ""), build.get("message", "")
    percent = f"{100 * float(build.get('fraction', 0)):.0f}%"
    base = f"the {build['language']} base" if build.get("language") else "the base"
    failures = int(build.get("failures", 0))
    failed = f" ({failures} failed builds)" if failures else ""
    if state == "off":
        return "off (`serve --pretrain-when-idle` builds the base of the repository's language)"
    if state == "running":
        eta = f", about {float(build.get('etaSeconds', 0)) / 60:.0f} min left"
        return f"running: {base}, {percent}{eta}{failed}; paused by completion requests"
    if state == "waiting":
        done = f", {percent} built" if float(build.get("fraction", 0)) else ""
        return f"waiting: {base}{done}{failed}; {message}"
    if state == "failed":
        return (
            f"failed {failures} times, stopped trying: {message}"
            if failures
            else f"failed: {message}"
        )
    return f"{state}: {base}; {message}" if message else state


def _progress(status: dict[str, Any]) -> str:
    """The run in progress: phase, percent, time left."""
    run = status.get("training")
    if not run:
        return ""
    eta = f", about {run.get('etaSeconds', 0):.0f} s left" if run.get("etaSeconds") else ""
    return f" ({run.get('phase', '')} {100 * run.get('fraction', 0):.0f}%{eta})"


def _feedback_line(entry: dict[str, Any]) -> str:
    """One editor's counts of what became of the suggestions it showed."""
    shown = int(entry["shown"])
    taken = int(entry["accepted"]) + int(entry["partiallyAccepted"])
    rate = f"{100 * taken / shown:.0f}% accepted" if shown else "none shown"
    return (
        f"{entry['client']}: {shown} shown, {entry['accepted']} accepted, "
        f"{entry['partiallyAccepted']} partly, {entry['dismissed']} dismissed ({rate})"
    )


def _retrieval_line(info: dict[str, Any]) -> str:
    declined = float(info.get("declinedBelow", 0))
    typed_through = (
        f"; a suggestion typed through below confidence {declined:g} comes back as its first word"
        if declined > 0
        else "; a suggestion typed through is offered whole again"
    )
    if not info.get("enabled"):
        return "off (the model alone)" + typed_through
    chars = int(info.get("indexedChars", 0))
    index = (
        f"index of {chars:,} chars ({int(info['indexedPlaces']):,} places)"
        if chars
        else "no repository index yet (the current file only)"
    )
    below = float(info.get("modelBelow", 0))
    model = f"below confidence {below:g}" if below > 0 else "when nothing is found"
    fitted = "fitted to this repository" if info.get("calibrated") else "the defaults"
    start = float(info.get("startBelow", 0))
    starts = f", and for a start below confidence {start:g}" if start > 0 else ""
    return f"{index}; confidences: {fitted}; the model runs {model}{starts}{typed_through}"


def _index_line(info: dict[str, Any]) -> str:
    """The index's freshness: what `serve` applied of the files saved."""
    updated = float(info.get("indexUpdatedUnix", 0))
    seconds = max(0, int(time.time() - updated))
    when = f"updated {seconds} s ago" if seconds < 120 else f"updated {_age(updated)} ago"
    rebuilds = int(info.get("indexRebuilds", 0))
    rebuilding = ", one running" if info.get("indexRebuilding") else ""
    error = f"; {info['indexError']}" if info.get("indexError") else ""
    return (
        f"{when if updated else 'not built yet'}; "
        f"{int(info.get('indexPendingFiles', 0))} changed files pending; "
        f"{int(info.get('indexUpdatedFiles', 0))} files updated since its last full build "
        f"({rebuilds} full builds since start{rebuilding}){error}"
    )
