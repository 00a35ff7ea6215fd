"""A real daemon on a real Unix socket, called through the real client library."""

from __future__ import annotations

import io
import os
import shutil
import stat
import threading
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from completiond.clients.client import Client
from completiond.completion.calibration import CALIBRATION_FILE, load_calibration
from completiond.completion.declined import DECLINED_BELOW
from completiond.completion.file_cache import FileCacheConfig
from completiond.completion.retrieval import RetrievalConfig, Retriever
from completiond.core.bundle import ModelStore
from completiond.core.errors import AlreadyRunning, InvalidRequest
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.server import ServerConfig, parse_listen
from completiond.daemon.service import DecodeSlots
from completiond.daemon.watcher import WatchConfig
from completiond.v1 import completion_pb2 as pb

# A handler the fixture repository does not contain, up to the cursor in its last line.
NEW_HANDLER = (
    'def handler_999(request):\n    value = request.get("key_999")\n'
    "    if value is None:\n        return respond(None)\n    return re"
)


def client_for(daemon: Daemon) -> Client:
    return Client(daemon.server.address, timeout_s=30)


def test_completes_a_held_out_style_line(running_daemon: Daemon) -> None:
    with client_for(running_daemon) as client:
        response = client.complete(NEW_HANDLER, path="new.py")
    assert response.candidates[0].text == "spond(value)"
    assert 0 < response.candidates[0].confidence <= 1
    assert response.model_version == running_daemon.slot.get().version


def test_several_candidates_are_distinct_single_lines_best_first(running_daemon: Daemon) -> None:
    with client_for(running_daemon) as client:
        response = client.complete("    value = request.get(", n=4, max_chars=30)
    texts = [c.text for c in response.candidates]
    confidences = [c.confidence for c in response.candidates]
    assert 1 <= len(texts) <= 4 and len(set(texts)) == len(texts)
    assert confidences == sorted(confidences, reverse=True)
    assert all("\n" not in t and len(t) <= 30 for t in texts)


def test_sampling_with_a_temperature_answers(running_daemon: Daemon) -> None:
    with client_for(running_daemon) as client:
        response = client.complete("    if value is ", n=3, temperature=0.8)
    assert response.candidates and all("\n" not in c.text for c in response.candidates)


BAD_REQUESTS = [
    ({"n": -1}, "n must be between 0 and 16"),
    ({"n": 17}, "n must be between 0 and 16"),
    ({"max_chars": -5}, "max_chars must be between 0 and 400"),
    ({"max_chars": 100_000}, "max_chars must be between 0 and 400"),
    ({"temperature": -0.5}, "temperature must be between 0 and 5"),
    ({"temperature": float("nan")}, "temperature must be between 0 and 5"),
    ({"temperature": float("inf")}, "temperature must be between 0 and 5"),
    ({"min_confidence": 1.5}, "min_confidence must be between 0 and 1"),
    ({"prefix": "x" * 1_000_001}, "prefix has 1,000,001 characters"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_REQUESTS)
def test_bad_requests_get_invalid_argument_and_the_daemon_keeps_serving(
    running_daemon: Daemon, fields: dict[str, object], message: str
) -> None:
    with client_for(running_daemon) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.complete(**{"prefix": "x = ", **fields})  # type: ignore[arg-type]
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()
        assert client.complete(NEW_HANDLER).candidates


def test_a_message_above_the_transport_limit_is_refused_cleanly(running_daemon: Daemon) -> None:
    with client_for(running_daemon) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.complete("y" * 5_000_000)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.complete(NEW_HANDLER).candidates


def test_status_health_and_reflection(running_daemon: Daemon) -> None:
    with client_for(running_daemon) as client:
        client.complete(NEW_HANDLER)
        status = client.status()
        health = health_pb2_grpc.HealthStub(client.channel).Check(
            health_pb2.HealthCheckRequest(service="completiond.v1.CompletionService")
        )
        reflect = reflection_pb2_grpc.ServerReflectionStub(client.channel)
        answer = next(
            reflect.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
    assert status.model.version == running_daemon.slot.get().version
    assert status.model.val_bpc > 0 and status.model.train_files >= 1
    assert status.training_state == "idle" and status.requests_total >= 1
    assert status.execution_provider == "CPUExecutionProvider"
    assert status.retrieval.enabled and status.retrieval.model_below == 0
    assert status.retrieval.start_below == pytest.approx(0.02)
    assert status.retrieval.declined_below == pytest.approx(DECLINED_BELOW)
    calibration = load_calibration(running_daemon.slot.store.root / CALIBRATION_FILE)
    assert calibration is not None and status.retrieval.calibrated == calibration.fitted
    index = running_daemon.slot.get().decoder.retriever.index
    assert index is running_daemon.index
    assert status.retrieval.indexed_chars == index.indexed_chars > 1000
    assert status.retrieval.index_updated_unix > 0 and status.retrieval.index_pending_files == 0
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    names = {s.name for s in answer.list_services_response.service}
    assert {"completiond.v1.CompletionService", "completiond.v1.ModelService"} <= names


def test_socket_is_private_to_the_user(running_daemon: Daemon) -> None:
    path = running_daemon.server.config.socket_path
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_second_daemon_on_the_same_socket_refuses(running_daemon: Daemon) -> None:
    config = running_daemon.config
    with pytest.raises(AlreadyRunning, match="already serving"):
        Daemon(
            DaemonConfig(
                repo=config.repo,
                store=config.store,
                server=ServerConfig(socket_path=config.server.socket_path),
            )
        )
    with client_for(running_daemon) as client:  # and the first one still answers
        assert client.complete(NEW_HANDLER).candidates


def test_retrain_streams_progress_and_serves_the_new_model(running_daemon: Daemon) -> None:
    before = running_daemon.slot.get().version
    with client_for(running_daemon) as client:
        events = list(client.retrain(minutes=0.05))
        phases = [e.phase for e in events]
        assert phases[0] == "starting" and phases[-1] == "done", events[-1].message
        assert "training" in phases
        assert events[-1].model_version != before
        assert client.complete(NEW_HANDLER).model_version == events[-1].model_version
        assert client.status().last_training_result.startswith("ok:")


def test_a_second_retrain_while_one_runs_is_refused(running_daemon: Daemon) -> None:
    with client_for(running_daemon) as client:
        first = client.retrain(minutes=0.05)
        assert next(first).phase == "starting"
        with pytest.raises(grpc.RpcError) as err:
            list(client.retrain(minutes=0.05))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert list(first)[-1].phase == "done"


def _daemon_on(store: Path, repo: Path, tmp_path: Path) -> Daemon:
    daemon = Daemon(
        DaemonConfig(
            repo=repo,
            store=store,
            server=ServerConfig(socket_path=tmp_path / "x.sock"),
            watch=WatchConfig(enabled=False),
        )
    )
    daemon.start(io.StringIO())
    return daemon


def test_without_a_model_completions_are_unavailable_not_errors(
    fixture_repo: Path, tmp_path: Path
) -> None:
    daemon = _daemon_on(tmp_path / "empty-store", fixture_repo, tmp_path)
    try:
        with client_for(daemon) as client:
            with pytest.raises(grpc.RpcError) as err:
                client.complete("x")
            health = health_pb2_grpc.HealthStub(client.channel).Check(
                health_pb2.HealthCheckRequest(service="")
            )
            assert client.status().training_state == "idle"
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no model" in err.value.details()
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        daemon.close()


def test_a_corrupt_stored_model_is_reported_and_not_served(
    fixture_repo: Path, trained_store: ModelStore, tmp_path: Path
) -> None:
    shutil.copytree(trained_store.root, tmp_path / "s")
    model = ModelStore(tmp_path / "s").current().model_path
    model.write_bytes(b"garbage")
    out = io.StringIO()
    daemon = Daemon(
        DaemonConfig(
            repo=fixture_repo,
            store=tmp_path / "s",
            server=ServerConfig(socket_path=tmp_path / "x.sock"),
        )
    )
    daemon.start(out)
    try:
        assert "stored model is unusable" in out.getvalue()
        assert "does not match its hash" in out.getvalue()
        assert daemon.slot.loaded is None
    finally:
        daemon.close()


def test_loopback_tcp_on_port_zero(fixture_repo: Path, trained_store: ModelStore) -> None:
    daemon = Daemon(
        DaemonConfig(
            repo=fixture_repo,
            store=trained_store.root,
            server=ServerConfig(listen="127.0.0.1:0", token="loopback-token-0123456789"),
        )
    )
    daemon.start(io.StringIO())
    try:
        assert not daemon.server.address.endswith(":0")
        with Client(daemon.server.address, token="loopback-token-0123456789") as client:
            assert client.complete(NEW_HANDLER).candidates[0].text == "spond(value)"
    finally:
        daemon.close()


@pytest.mark.parametrize("listen", ["0.0.0.0:5000", "192.168.1.2:80", "example.com:80", "x"])
def test_non_loopback_or_malformed_listen_addresses_are_refused(listen: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_listen(listen)


def test_listen_accepts_loopback_forms() -> None:
    assert parse_listen("localhost:0") == ("localhost", 0)
    assert parse_listen("[::1]:7000") == ("::1", 7000)
    assert parse_listen("127.0.0.2:1") == ("127.0.0.2", 1)


def test_serving_code_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, completiond.daemon.daemon, completiond.clients.cli;"
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], env=os.environ).returncode == 0


def test_warm_then_complete_answers_from_the_cached_state(running_daemon: Daemon) -> None:
    decoder = running_daemon.slot.get().decoder
    # Retrieval alone would answer from the file's own `return respond(None)`, and so would the
    # model's file cache: this is about the model's state, so the model runs on its own.
    decoder.retriever = Retriever(None, RetrievalConfig(enabled=False))
    decoder.config = replace(decoder.config, file_cache=FileCacheConfig(0.0, from_model=False))
    states = decoder.states
    with client_for(running_daemon) as client:
        reply = client.warm(NEW_HANDLER + "spond(value)\n", document_id="file:///new.py")
        hits = states.hits
        warm = client.complete(NEW_HANDLER, document_id="file:///new.py")
        cold = client.complete(NEW_HANDLER)
    assert reply.chars_read == len(NEW_HANDLER) + len("spond(value)\n")
    assert states.hits == hits + 1
    assert warm.candidates[0].text == cold.candidates[0].text == "spond(value)"


def test_a_line_the_file_repeats_is_answered_from_the_file(running_daemon: Daemon) -> None:
    """The current file is searched even for names the model never saw."""
    prefix = (
        "def zq_handler(zq_request):\n    zq_value = zq_request.get_zq_key(7, 'zq')\n\n"
        "def zq_other(zq_request):\n    zq_value = zq_re"
    )
    with client_for(running_daemon) as client:
        reply = client.complete(prefix, n=3)
    assert reply.candidates[0].text == "quest.get_zq_key(7, 'zq')"
    assert 0 < reply.candidates[0].confidence <= 1


def test_warm_needs_a_document_key(running_daemon: Daemon) -> None:
    with client_for(running_daemon) as client, pytest.raises(grpc.RpcError) as err:
        client.warm("x = 1")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_deadline_already_passed_is_reported_and_serving_goes_on(running_daemon: Daemon) -> None:
    with client_for(running_daemon) as client:
        # gRPC's timers count whole milliseconds, so a 1 us deadline lasts up to ~2 ms, and a
        # line copied from the repository is ready sooner. Sixteen lines sampled at a high
        # temperature run the model for hundreds of steps (tens of ms): always late.
        slow = pb.CompleteRequest(prefix=NEW_HANDLER, max_chars=400, n=16, temperature=3.0)
        with pytest.raises(grpc.RpcError) as err:
            client.completion.Complete(slow, timeout=1e-6)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert client.complete(NEW_HANDLER).candidates


def test_feedback_is_counted_per_client_and_kept_across_restarts(running_daemon: Daemon) -> None:
    with client_for(running_daemon) as client:
        client.feedback("vscode", "shown", 4)
        client.feedback("vscode", "accepted")
        client.feedback("vscode", "partially_accepted")
        client.feedback("zsh", "dismissed", 2)
        for bad in [
            pb.FeedbackRequest(client="", event=pb.FeedbackRequest.SHOWN),
            pb.FeedbackRequest(client="x" * 33, event=pb.FeedbackRequest.SHOWN),
            pb.FeedbackRequest(client="nvim"),  # no event
            pb.FeedbackRequest(client="nvim", event=pb.FeedbackRequest.SHOWN, count=-3),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                client.completion.Feedback(bad, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = client.status()
    counts = {
        f.client: (f.shown, f.accepted, f.partially_accepted, f.dismissed) for f in status.feedback
    }
    assert counts == {"vscode": (4, 1, 1, 0), "zsh": (0, 0, 0, 2)}
    running_daemon.close()
    saved = (running_daemon.slot.store.root / "feedback.json").read_text()
    assert '"dismissed": 2' in saved and "return" not in saved


def test_a_decode_while_other_requests_are_in_flight_is_light() -> None:
    slots = DecodeSlots(1)
    with slots.request() as first, slots.decode(first) as alone:
        pass
    with slots.request() as first, slots.request() as second:  # two arrive together
        with slots.decode(first) as crowded:
            pass
        with slots.decode(second) as after:  # the first one is done: no longer counted
            pass
    with slots.request() as again, slots.decode(again) as quiet:
        pass
    assert (alone, crowded, after, quiet) == (False, True, False, False)


def test_a_superseded_request_stops_counting_before_its_slot_passes_on() -> None:
    slots = DecodeSlots(1)
    seen: list[bool] = []

    def newer() -> None:
        with slots.request() as ticket, slots.decode(ticket) as busy:
            seen.append(busy)

    with slots.request() as older, slots.decode(older):
        thread = threading.Thread(target=newer)
        thread.start()
        thread.join(0.2)
        assert thread.is_alive() and not seen  # one decode at a time: the newer one waits
        # the older request ends here (answered or cancelled), before its slot is released
    thread.join(5)
    assert seen == [False]  # a single user typing on is never busy


def test_a_suggestion_typed_through_comes_back_as_its_first_word(running_daemon: Daemon) -> None:
    prefix = (
        "def zq_handler(zq_request):\n    zq_value = zq_request.get_zq_key(7, 'zq')\n\n"
        "def zq_other(zq_request):\n    zq_value = zq_re"
    )
    running_daemon.slot.declined.declined_below = 2.0  # above 1: any (the fixture is sure)
    with client_for(running_daemon) as client:
        shown = client.complete(prefix, document_id="file:///zq.py")
        typed_on = client.complete(prefix + "q", document_id="file:///zq.py")
        one_off = client.complete(prefix + "q")
        # A path alone is a language hint (the shells send one for every terminal): no history.
        client.complete(prefix, path="zq.py")
        by_path = client.complete(prefix + "q", path="zq.py")
    assert shown.candidates[0].text == "quest.get_zq_key(7, 'zq')"
    assert typed_on.candidates[0].text == "uest"
    assert one_off.candidates[0].text == by_path.candidates[0].text == "uest.get_zq_key(7, 'zq')"
