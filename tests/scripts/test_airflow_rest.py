"""scripts/airflow_rest.py against a real HTTP server on loopback that misbehaves the way a busy or
restarting Airflow API does: 503s, a refused connection, a 409 for a trigger that already landed.
The backoff's sleeps are recorded, not slept."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from airflow_rest import AirflowClient, AirflowError, ApiUnreachable
from processes import free_ports


class Api:
    """Answers from a script: each request pops the next (status, body) for its path."""

    def __init__(self):
        self.script: dict[str, list[tuple[int, dict]]] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.on_request = None  # called with each request before it is answered
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                api.requests.append((self.command, self.path, body))
                if api.on_request is not None:
                    api.on_request(self.command, self.path, body)
                if self.path == "/auth/token":
                    status, payload = 201, {"access_token": "t"}
                else:
                    status, payload = api.script[self.path].pop(0)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def api():
    server = Api()
    yield server
    server.server.shutdown()


def _client(url: str, **options):
    slept, notices = [], []
    client = AirflowClient(url, "admin", "pw", sleep=slept.append, on_retry=notices.append, **options)
    return client, slept, notices


def test_a_busy_api_is_asked_again_with_backoff_and_a_notice(api):
    api.script["/api/v2/dags/d"] = [(503, {"detail": "busy"})] * 3 + [(200, {"dag_id": "d"})]
    client, slept, notices = _client(api.url)
    assert client.get("/api/v2/dags/d") == {"dag_id": "d"}
    assert slept == [1.0, 2.0, 4.0]
    assert len(notices) == 2 and "HTTP 503" in notices[0]  # tries 2 and 3 are announced, not 4


def test_a_real_error_is_raised_at_once(api):
    api.script["/api/v2/dags/d"] = [(404, {"detail": "no such DAG"})]
    client, slept, _ = _client(api.url)
    with pytest.raises(AirflowError) as excinfo:
        client.get("/api/v2/dags/d")
    assert excinfo.value.status == 404 and slept == []


def test_a_refused_connection_is_retried_until_the_patience_runs_out():
    (port,) = free_ports(1)  # nothing listens there
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    url = f"http://127.0.0.1:{port}"
    client = AirflowClient(url, "admin", "pw", patience=60, clock=lambda: now[0], sleep=sleep)
    with pytest.raises(ApiUnreachable, match="no answer for"):
        client.get("/api/v2/dags/d")
    assert slept[:5] == [1.0, 2.0, 4.0, 8.0, 15.0] and sum(slept) > 60


def test_a_trigger_whose_first_post_landed_returns_that_run_instead_of_a_second(api):
    client, _, _ = _client(api.url)
    # the first POST reached Airflow, then its answer got lost; the retried one gets 409
    api.script["/api/v2/dags/d/dagRuns"] = [(409, {"detail": "exists"})]

    def answer_the_run(method, path, body):
        if method == "POST" and path == "/api/v2/dags/d/dagRuns":
            run_id = body["dag_run_id"]
            api.script[f"/api/v2/dags/d/dagRuns/{quote(run_id, safe='')}"] = [
                (200, {"dag_run_id": run_id, "state": "queued"})
            ]

    api.on_request = answer_the_run
    run = client.trigger("d", {"num_contracts": 1})
    posted = [r for r in api.requests if r[0] == "POST" and r[1] == "/api/v2/dags/d/dagRuns"]
    assert len(posted) == 1 and posted[0][2]["conf"] == {"num_contracts": 1}
    assert run["dag_run_id"] == posted[0][2]["dag_run_id"] and run["dag_run_id"].startswith("manual__")


def test_list_endpoints_are_read_page_by_page_to_the_last_item(api):
    runs = [{"dag_run_id": f"r{i}"} for i in range(230)]
    pages = {
        o: f"/api/v2/dags/d/dagRuns?limit=100&offset={o}&order_by=run_after&state=success"
        for o in (0, 100, 200)
    }
    for offset, path in pages.items():
        api.script[path] = [(200, {"dag_runs": runs[offset : offset + 100], "total_entries": len(runs)})]
    instances = [{"map_index": i} for i in range(3)]
    quoted = quote("manual__1", safe="")
    path = f"/api/v2/dags/d/dagRuns/{quoted}/taskInstances?limit=100&offset=0&task_id=t"
    api.script[path] = [(200, {"task_instances": instances, "total_entries": 3})]
    client, _, _ = _client(api.url)
    assert client.dag_runs("d", state="success") == runs
    assert client.task_instances("d", "manual__1", "t") == instances
    asked = [p for _, p, _ in api.requests if p != "/auth/token"]
    assert asked == [*pages.values(), path]
