"""The devhost drives a function app the way the Functions host does: HTTP, queues, timers, shutdown.

Every test runs the toy app in `tests/fixtures/devhost_app` against a real Azurite and real HTTP
on loopback, with its own queue and a fresh `FunctionApp`.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devhost.children import spawn_tied
from devhost.defaults import azurite_connection_string
from devhost.host import FunctionHost, StartupError
from devhost.queues import connection_string
from devhost.routes import RouteError, RouteTemplate
from devhost.worker_pool import THREAD_COUNT_SETTING as THREADS
from devhost.worker_pool import thread_count
from tests.fixtures.devhost_app.function_app import Recorder, build_app
from tests.support.devhost_process import DevhostProcess
from tests.support.waiting import free_port, port_open, wait_until

REPO = Path(__file__).resolve().parents[2]
TOY_ROOT = REPO / "tests" / "fixtures" / "devhost_app"
TOY_HOST_JSON: dict[str, Any] = json.loads((TOY_ROOT / "host.json").read_text())


def toy_host_json(**queues: Any) -> dict[str, Any]:
    """The toy host.json with some `extensions.queues` values replaced."""
    document: dict[str, Any] = json.loads(json.dumps(TOY_HOST_JSON))
    document["extensions"]["queues"].update(queues)
    return document


@dataclass
class Toy:
    """A running toy app: the host, what its functions saw, and its queue (base64, raw, poison)."""

    host: FunctionHost
    recorder: Recorder
    queue: QueueClient
    raw: QueueClient
    poison: QueueClient

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.host.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def poisoned(self) -> list[Any]:
        """Messages on `<queue>-poison` (none while it doesn't exist)."""
        try:
            return list(self.poison.peek_messages(max_messages=32))
        except ResourceNotFoundError:
            return []

    def message_count(self) -> int:
        return int(self.raw.get_queue_properties().approximate_message_count or 0)


@pytest.fixture
def queue_name(unique_suffix: str) -> str:
    return f"toy-{unique_suffix}"


@pytest.fixture
def start_toy(azurite, queue_name: str) -> Iterator[Callable[..., Toy]]:
    """Start the toy app (options: host_json, extra settings); everything is stopped afterwards."""
    started: list[Toy] = []

    def start(host_json: dict[str, Any] | None = None, settings: dict[str, str] | None = None) -> Toy:
        conn = azurite.connection_string
        environ = {"AzureWebJobsStorage": conn, "TOY_QUEUE_NAME": queue_name, **(settings or {})}
        recorder = Recorder()
        host = FunctionHost(build_app(recorder), host_json or TOY_HOST_JSON, environ, port=0, script_root=TOY_ROOT)
        queue = QueueClient.from_connection_string(conn, queue_name, message_encode_policy=TextBase64EncodePolicy())
        raw = QueueClient.from_connection_string(conn, queue_name)
        poison = QueueClient.from_connection_string(conn, f"{queue_name}-poison")
        toy = Toy(host, recorder, queue, raw, poison)
        started.append(toy)
        host.start()
        return toy

    yield start
    for toy in started:
        toy.recorder.gate.set()
        toy.host.stop(timeout=20)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- HTTP ---------------------------------------------------------------------------------------


def test_route_parameter_and_query_params_reach_the_function(start_toy):
    toy = start_toy()
    status, headers, body = toy.request("GET", "/api/items/42?colour=red&size=")
    assert status == 200
    assert headers["content-type"] == "application/json"
    seen = json.loads(body)
    assert seen["method"] == "GET"
    assert seen["id"] == "42"
    assert seen["params"] == {"colour": "red", "size": ""}
    assert seen["url"] == f"http://127.0.0.1:{toy.host.port}/api/items/42?colour=red&size="


def test_literal_route_segments_and_the_prefix_match_case_insensitively(start_toy):
    toy = start_toy()
    status, _, body = toy.request("GET", "/API/Items/7")
    assert status == 200
    assert json.loads(body)["id"] == "7"


def test_post_body_bytes_round_trip_unchanged(start_toy):
    toy = start_toy()
    payload = "héllo wörld ✓ — 日本".encode() + bytes(range(256))
    status, headers, body = toy.request("POST", "/api/items/9", payload, {"Content-Type": "application/octet-stream"})
    assert status == 201
    assert body == payload
    assert headers["x-item-id"] == "9"
    assert headers["content-type"] == "application/octet-stream"


def test_text_mimetype_gets_a_charset(start_toy):
    toy = start_toy()
    status, headers, body = toy.request("POST", "/api/items/1", "ünïcode".encode(), {"Content-Type": "text/plain"})
    assert (status, body) == (201, "ünïcode".encode())
    assert headers["content-type"] == "text/plain; charset=utf-8"


def test_unknown_paths_are_404(start_toy):
    toy = start_toy()
    assert toy.request("GET", "/api/nothing-here")[0] == 404
    assert toy.request("GET", "/items/42")[0] == 404  # no route prefix
    assert toy.request("GET", "/api/items/42/extra")[0] == 404


def test_a_known_route_with_another_method_is_405(start_toy):
    toy = start_toy()
    status, headers, _ = toy.request("DELETE", "/api/items/42")
    assert status == 405
    assert headers["allow"] == "GET, POST"


def test_an_optional_parameter_may_be_absent(start_toy):
    toy = start_toy()
    status, _, body = toy.request("GET", "/api/hello")
    assert (status, body) == (200, b"hello, world (from hello)")
    status, _, body = toy.request("GET", "/api/hello/Ann")
    assert (status, body) == (200, b"hello, Ann (from hello)")


def test_a_type_constraint_decides_whether_a_route_matches(start_toy):
    toy = start_toy()
    status, headers, body = toy.request("GET", "/api/orders/12")
    assert (status, body) == (200, b"order 12")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert toy.request("GET", "/api/orders/twelve")[0] == 404


def test_client_ip_is_set_by_the_host_not_by_the_caller(start_toy):
    toy = start_toy()
    _, _, body = toy.request("GET", "/api/items/1", headers={"client-ip": "6.6.6.6:1", "X-Custom-Thing": "yes"})
    headers = json.loads(body)["headers"]
    ip, _, port = headers["client-ip"].partition(":")
    assert ip == "127.0.0.1"
    assert port.isdigit()
    assert headers["x-custom-thing"] == "yes"


def test_an_exception_becomes_a_plain_500(start_toy):
    toy = start_toy()
    status, headers, body = toy.request("GET", "/api/boom")
    assert status == 500
    assert headers["content-type"].startswith("text/plain")
    assert b"boom on purpose" not in body


def test_an_empty_route_prefix_serves_routes_at_the_root(start_toy):
    document = toy_host_json()
    document["extensions"]["http"]["routePrefix"] = ""
    toy = start_toy(host_json=document)
    status, _, body = toy.request("GET", "/items/5")
    assert status == 200
    assert json.loads(body)["id"] == "5"


def test_the_listing_names_every_function_like_func_start(start_toy, queue_name):
    toy = start_toy()
    lines = toy.host.describe()
    port = toy.host.port
    assert f"items: [GET,POST] http://127.0.0.1:{port}/api/items/{{id}}" in lines
    assert f"toy_queue: queue trigger on {queue_name}" in lines
    assert "heartbeat: timer on * * * * * *" in lines


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("files/{*rest}", "files/a/b/c.txt", {"rest": "a/b/c.txt"}),
        ("files/{*rest}", "files", {}),
        ("page/{n=1}", "page", {"n": "1"}),
        ("page/{n:int=1}", "page/7", {"n": "7"}),
        ("report.{format}", "report.csv", {"format": "csv"}),
        ("codes/{code:regex(^[a-z]{{3}}$)}", "codes/abc", {"code": "abc"}),
        ("codes/{code:regex(^[a-z]{{3}}$)}", "codes/abcd", None),
        ("ids/{id:guid}", "ids/0f8fad5b-d9cb-469f-a165-70867728950e", {"id": "0f8fad5b-d9cb-469f-a165-70867728950e"}),
        ("ids/{id:guid}", "ids/nope", None),
        ("n/{n:int:min(10)}", "n/9", None),
        ("n/{n:int:range(1,10)}", "n/10", {"n": "10"}),
    ],
)
def test_route_templates_follow_aspnet_routing(template: str, path: str, expected: dict[str, str] | None):
    assert RouteTemplate(template).match(path) == expected


@pytest.mark.parametrize("template", ["items/{id", "items/id}", "items/{}", "{*rest}/more"])
def test_malformed_route_templates_are_rejected(template: str):
    with pytest.raises(RouteError):
        RouteTemplate(template)


# -- queues -------------------------------------------------------------------------------------


def test_a_base64_message_invokes_the_function_once_and_is_deleted(start_toy):
    toy = start_toy()
    sent = toy.queue.send_message("hello, queue")
    wait_until(lambda: toy.recorder.finished, what="the message to be processed")
    wait_until(lambda: toy.message_count() == 0, what="the message to be deleted")
    assert toy.recorder.messages == [{"id": sent.id, "body": b"hello, queue", "dequeue_count": 1}]


def test_a_failing_message_is_retried_then_moved_to_poison_with_the_same_text(start_toy):
    toy = start_toy()
    toy.queue.send_message("fail")
    poisoned = wait_until(toy.poisoned, timeout=30, what="a poison message")
    assert [m.content for m in poisoned] == [b64("fail")]
    assert [m["dequeue_count"] for m in toy.recorder.messages] == [1, 2, 3]
    wait_until(lambda: toy.message_count() == 0, what="the original to be deleted")


def test_a_message_that_is_not_base64_fails_without_invoking_and_is_poisoned(start_toy):
    toy = start_toy()
    toy.raw.send_message("this is not base64!")
    poisoned = wait_until(toy.poisoned, timeout=30, what="a poison message")
    assert [m.content for m in poisoned] == ["this is not base64!"]
    assert toy.recorder.messages == []


def test_a_message_already_past_max_dequeue_count_is_poisoned_before_invoking(start_toy, azurite, queue_name):
    raw = QueueClient.from_connection_string(azurite.connection_string, queue_name)
    raw.create_queue()
    raw.send_message(b64("seen too often"))
    for _ in range(3):  # maxDequeueCount is 3; the host's receive makes it 4
        (message,) = raw.receive_messages(visibility_timeout=30, max_messages=1)
        raw.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=0)
    toy = start_toy()
    poisoned = wait_until(toy.poisoned, timeout=30, what="a poison message")
    assert [m.content for m in poisoned] == [b64("seen too often")]
    assert toy.recorder.messages == []


def test_message_encoding_none_passes_the_raw_text(start_toy):
    toy = start_toy(host_json=toy_host_json(messageEncoding="none"))
    toy.raw.send_message("plain text, not base64")
    wait_until(lambda: toy.recorder.finished, what="the message to be processed")
    assert toy.recorder.bodies() == [b"plain text, not base64"]


def test_a_batch_runs_in_parallel_but_never_more_than_batch_size_plus_threshold(start_toy):
    toy = start_toy(host_json=toy_host_json(batchSize=3, newBatchThreshold=1))
    toy.recorder.gate.clear()
    for _ in range(7):
        toy.queue.send_message("wait")
    wait_until(lambda: toy.recorder.running == 3, what="a whole batch running at once")
    toy.recorder.gate.set()
    wait_until(lambda: len(toy.recorder.finished) == 7, what="all messages processed")
    assert toy.recorder.max_running <= 4
    wait_until(lambda: toy.message_count() == 0, what="all messages deleted")


# -- timers -------------------------------------------------------------------------------------


def test_a_timer_fires_on_its_schedule(start_toy):
    toy = start_toy()
    wait_until(lambda: len(toy.recorder.timer_calls("heartbeat")) >= 3, timeout=10, what="three heartbeats")
    calls = toy.recorder.timer_calls("heartbeat")[:3]
    gaps = [later[2] - earlier[2] for earlier, later in itertools.pairwise(calls)]
    assert all(0.5 < gap < 1.9 for gap in gaps), gaps
    assert not any(past_due for _, past_due, _ in calls)


def test_run_on_startup_fires_once_when_the_host_starts(start_toy):
    toy = start_toy()
    wait_until(lambda: toy.recorder.timer_calls("new_year"), what="the startup run")
    wait_until(lambda: len(toy.recorder.timer_calls("heartbeat")) >= 2, what="two heartbeats")
    assert [past_due for _, past_due, _ in toy.recorder.timer_calls("new_year")] == [False]


# -- disabled functions -------------------------------------------------------------------------


def test_disabled_functions_are_never_invoked(start_toy):
    toy = start_toy(
        settings={
            "AzureWebJobs.toy_queue.Disabled": "true",
            "AzureWebJobs.new_year.Disabled": "1",
            "AzureWebJobs.items.Disabled": "True",
        }
    )
    toy.raw.create_queue()
    toy.queue.send_message("nobody reads me")
    assert toy.request("GET", "/api/items/1")[0] == 404
    wait_until(lambda: len(toy.recorder.timer_calls("heartbeat")) >= 2, what="the host to run for a while")
    assert toy.recorder.messages == []
    assert toy.recorder.timer_calls("new_year") == []
    assert [m.content for m in toy.raw.peek_messages()] == [b64("nobody reads me")]
    assert "toy_queue: (disabled)" in toy.host.describe()


# -- shutdown -----------------------------------------------------------------------------------


def test_stop_refuses_new_work_and_waits_for_the_message_in_flight(start_toy):
    toy = start_toy()
    toy.recorder.gate.clear()
    toy.queue.send_message("wait")
    wait_until(lambda: toy.recorder.running == 1, what="the invocation to start")
    outcome: dict[str, bool] = {}
    stopper = threading.Thread(target=lambda: outcome.update(finished=toy.host.stop(timeout=30)))
    stopper.start()
    wait_until(lambda: not port_open(toy.host.port), what="the HTTP listener to close")
    assert stopper.is_alive()
    toy.recorder.gate.set()
    stopper.join(30)
    assert outcome == {"finished": True}
    assert toy.recorder.finished == [b"wait"]
    assert toy.message_count() == 0


def test_a_message_still_running_at_the_stop_deadline_reappears_on_the_queue(start_toy):
    toy = start_toy(settings={"DEVHOST_QUEUE_LEASE_SECONDS": "2"})
    toy.recorder.gate.clear()
    toy.queue.send_message("wait")
    wait_until(lambda: toy.recorder.running == 1, what="the invocation to start")
    assert toy.host.stop(timeout=0.2) is False
    visible = wait_until(lambda: list(toy.raw.peek_messages()), timeout=10, what="the message to reappear")
    assert [m.content for m in visible] == [b64("wait")]


# -- what the host refuses at startup -------------------------------------------------------------


def host_for(app: func.FunctionApp, **settings: str) -> FunctionHost:
    return FunctionHost(app, TOY_HOST_JSON, {"AzureWebJobsStorage": "UseDevelopmentStorage=true", **settings}, port=0)


def test_an_output_binding_other_than_the_http_return_fails_startup_naming_the_function():
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="in", connection="AzureWebJobsStorage")
    @app.queue_output(arg_name="out", queue_name="out", connection="AzureWebJobsStorage")
    def forwarder(msg: func.QueueMessage, out: func.Out[str]) -> None:
        out.set(msg.get_body().decode())

    with pytest.raises(StartupError, match=r"function forwarder: binding 'out' of type 'queue' is not supported"):
        host_for(app)


def test_a_route_under_admin_fails_startup():
    app = func.FunctionApp()

    @app.route(route="admin/replay")
    def replay(req: func.HttpRequest) -> str:
        return "no"

    with pytest.raises(StartupError, match="function replay: route 'admin/replay' conflicts"):
        host_for(app)


def test_a_five_field_schedule_fails_startup():
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule="*/5 * * * *")
    def poll(timer: func.TimerRequest) -> None:
        pass

    with pytest.raises(StartupError, match=r"function poll: .*needs 6"):
        host_for(app)


def test_a_missing_queue_connection_setting_fails_startup():
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="work", connection="OtherStorage")
    def worker(msg: func.QueueMessage) -> None:
        pass

    with pytest.raises(StartupError, match="function worker: connection setting OtherStorage is not set"):
        host_for(app)


def test_a_queue_name_setting_must_be_set():
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
    def worker(msg: func.QueueMessage) -> None:
        pass

    with pytest.raises(StartupError, match="WORK_QUEUE"):
        host_for(app)


def test_a_disabled_function_needs_no_connection_setting():
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="work", connection="OtherStorage")
    def worker(msg: func.QueueMessage) -> None:
        pass

    assert host_for(app, **{"AzureWebJobs.worker.Disabled": "true"}).describe() == ["worker: (disabled)"]


def test_use_development_storage_means_the_azurite_defaults():
    environ = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    assert connection_string("AzureWebJobsStorage", environ, "f") == azurite_connection_string()


# -- python -m devhost ----------------------------------------------------------------------------


def run_devhost(port: int, settings: dict[str, str]) -> subprocess.Popen[str]:
    environ = {**os.environ, **settings}
    return spawn_tied(
        [sys.executable, "-m", "devhost", "--script-root", str(TOY_ROOT), "--port", str(port)],
        cwd=REPO,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_python_m_devhost_lists_serves_and_exits_0_on_sigterm(azurite, queue_name):
    port = free_port()
    process = run_devhost(port, {"AzureWebJobsStorage": azurite.connection_string, "TOY_QUEUE_NAME": queue_name})
    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, timeout=30, what="the devhost to listen")
        assert process.poll() is None, process.communicate()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/api/orders/3")
        assert connection.getresponse().read() == b"order 3"
        connection.close()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"items: [GET,POST] http://127.0.0.1:{port}/api/items/{{id}}" in stdout
    assert f"toy_queue: queue trigger on {queue_name}" in stdout
    assert "Host stopped" in stderr


def test_python_m_devhost_exits_3_at_its_stop_timeout_when_an_invocation_still_runs(azurite, queue_name, tmp_path):
    # a "wait" message blocks its invocation for 60 s; the drain must end at --stop-timeout, not then
    port, log_path = free_port(), tmp_path / "devhost.log"
    environ = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "TOY_QUEUE_NAME": queue_name}
    environ["TOY_HOLD_WAIT"] = "1"
    command = [sys.executable, "-m", "devhost", "--script-root", str(TOY_ROOT), "--port", str(port)]
    with log_path.open("wb") as log:
        process = spawn_tied([*command, "--stop-timeout", "2"], cwd=REPO, env=environ, stdout=log, stderr=log)
    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, timeout=30, what="the devhost to listen")
        queue = QueueClient.from_connection_string(
            azurite.connection_string, queue_name, message_encode_policy=TextBase64EncodePolicy()
        )
        queue.send_message("wait")
        wait_until(lambda: "Executing 'Functions.toy_queue'" in log_path.read_text(), what="the invocation")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 3, log_path.read_text()
    assert "invocations still running" in log_path.read_text()


def test_python_m_devhost_exits_2_with_one_line_on_a_bad_setting(queue_name):
    process = run_devhost(free_port(), {"FACEBOOK_GRAPH_VERSION": "latest", "TOY_QUEUE_NAME": queue_name})
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert "FACEBOOK_GRAPH_VERSION" in stderr


# -- one worker process per group, as Flex Consumption scales the app ------------------------------


def http_get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().read()
    finally:
        connection.close()


def test_each_group_runs_in_its_own_worker_process_and_a_killed_worker_is_replaced(azurite, queue_name, tmp_path):
    port, log_path = free_port(), tmp_path / "devhost.log"
    env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "TOY_QUEUE_NAME": queue_name}
    command = [sys.executable, "-m", "devhost", "--script-root", str(TOY_ROOT), "--port", str(port)]
    with log_path.open("wb") as log:
        process = spawn_tied(command, cwd=REPO, env=env, stdout=log, stderr=log)
    running = DevhostProcess(process, port, env, log_path)
    queue = QueueClient.from_connection_string(
        azurite.connection_string, queue_name, message_encode_policy=TextBase64EncodePolicy()
    )

    def executed() -> int:
        return log_path.read_text().count("[queue:toy_queue] Executing 'Functions.toy_queue'")

    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, timeout=60, what="the devhost to listen")
        workers = {group: running.worker_pid(group) for group in ("http", "queue:toy_queue", "timers")}
        assert None not in workers.values() and len(set(workers.values())) == 3, log_path.read_text()
        assert int(http_get(port, "/api/pid")) == workers["http"] != process.pid

        queue.send_message("first")
        wait_until(lambda: executed() == 1, what="the queue worker to process a message")
        replacement = running.kill_worker("queue:toy_queue")
        assert replacement != workers["queue:toy_queue"]
        queue.send_message("second")
        wait_until(lambda: executed() == 2, what="the replacement worker to process the next message")
        assert int(http_get(port, "/api/pid")) == workers["http"]  # the other workers were left alone
    finally:
        code = running.stop()
    assert code == 0, log_path.read_text()
    assert "exited with -9; starting it again" in log_path.read_text()


def test_single_process_mode_runs_every_function_in_one_process(azurite, queue_name):
    port = free_port()
    environ = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "TOY_QUEUE_NAME": queue_name}
    command = [sys.executable, "-m", "devhost", "--script-root", str(TOY_ROOT), "--port", str(port)]
    process = spawn_tied([*command, "--single-process"], cwd=REPO, env=environ, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, timeout=60, what="the devhost to listen")
        assert int(http_get(port, "/api/pid")) == process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_a_worker_runs_at_most_its_thread_pool_of_invocations_at_once(start_toy):
    toy = start_toy(host_json=toy_host_json(batchSize=8, newBatchThreshold=4), settings={THREADS: "2"})
    toy.recorder.gate.clear()
    for _ in range(6):
        toy.queue.send_message("wait")
    wait_until(lambda: toy.recorder.running == 2, what="the pool's two threads busy")
    assert toy.host.pool.size == 2
    toy.recorder.gate.set()
    wait_until(lambda: len(toy.recorder.finished) == 6, what="all messages processed")
    assert toy.recorder.max_running == 2  # 12 were allowed in flight by host.json; the worker ran 2 at a time


def test_the_pool_size_follows_the_python_worker_rule():
    assert thread_count({}, cpus=2) == 6
    assert thread_count({}, cpus=64) == 32
    assert thread_count({THREADS: "24"}, cpus=2) == 24
    with pytest.raises(ValueError, match=THREADS):
        thread_count({THREADS: "0"})


def test_the_app_cpu_is_counted_apart_from_the_host(start_toy, tmp_path):
    toy = start_toy(settings={"DEVHOST_STATS_DIR": str(tmp_path)})
    for index in range(3):
        toy.queue.send_message(f"spin-{index}")
    wait_until(lambda: len(toy.recorder.finished) == 3, what="three messages processed")
    toy.host.stop(timeout=10)
    figures = json.loads((tmp_path / "all.json").read_text())
    toy_queue = figures["functions"]["toy_queue"]
    assert toy_queue["invocations"] == 3
    assert 0 < toy_queue["cpu_seconds"] <= figures["app_cpu_seconds"]  # the timers count too
    assert figures["host_cpu_seconds"] > 0  # receiving and deleting the messages is the host's work


def test_an_unknown_group_fails_startup_naming_the_groups():
    with pytest.raises(StartupError, match="queue:toy_queue"):
        FunctionHost(build_app(Recorder(), "toy"), TOY_HOST_JSON, {"AzureWebJobsStorage": "x"}, group="queue:other")
