"""The few Airflow REST API v2 calls the demo, the tests and the benchmarks need (SimpleAuthManager
bearer token). Standard library only.

A busy machine answers slowly, not never: a call that times out, finds the API not listening (a
restarting api-server) or gets 502/503/504 is tried again with a backoff (1, 2, 4 ... 15 s) and
without a deadline unless the caller gives one (``patience``); ``on_retry`` hears about each
retry (the demo prints it); a GET answered 500 (the API while its database restarts) is tried
again a few times. Only a real answer (4xx, a 500 that persists) raises. A POST that may have reached
the server is not sent again, except the trigger, which names its run so that a second try
finds the first one instead of starting another.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

REQUEST_TIMEOUT = 60.0  # seconds for one HTTP exchange before it counts as a timeout and is retried
RETRY_STATUSES = (502, 503, 504)
# A GET answered 500 is tried again this many times: the API answers 500 while its database
# restarts (PostgreSQL supervised like the rest); a 500 that persists is a real error.
SERVER_ERROR_RETRIES = 8
BACKOFF_MAX = 15.0


class AirflowError(RuntimeError):
    def __init__(self, status: int, body: str, url: str):
        super().__init__(f"HTTP {status} from {url}: {body[:2000]}")
        self.status, self.body = status, body


class ApiUnreachable(TimeoutError):
    """The API did not answer within the caller's ``patience``."""


def _not_delivered(exc: BaseException) -> bool:
    """Connection refused or reset before a request was read: safe to send again, even a POST."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, ConnectionRefusedError | ConnectionResetError | FileNotFoundError)


class AirflowClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        patience: float | None = None,
        on_retry: Callable[[str], None] | None = None,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None
        self.patience = patience
        self.on_retry = on_retry
        self._clock, self._sleep = clock, sleep

    def _send(self, method: str, url: str, data: bytes | None, headers: dict) -> bytes:
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise AirflowError(exc.code, exc.read().decode(errors="replace"), url) from None

    def _request(
        self, method: str, path: str, payload: object = None, auth: bool = True, resend: bool = False
    ) -> dict:
        """``resend``: the call may be sent again after a timeout (it changes nothing twice)."""
        url = f"{self.base_url}{path}"
        data = None if payload is None else json.dumps(payload).encode()
        started, attempt, server_errors = self._clock(), 0, 0
        safe = method == "GET" or resend
        while True:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if auth:
                headers["Authorization"] = f"Bearer {self.token()}"
            try:
                body = self._send(method, url, data, headers)
                return json.loads(body) if body else {}
            except AirflowError as exc:
                if exc.status == 401 and auth and attempt == 0:
                    self._token = None  # expired: a new token, once
                    attempt += 1
                    continue
                server_errors += exc.status == 500
                transient = exc.status == 500 and method == "GET" and server_errors <= SERVER_ERROR_RETRIES
                if exc.status not in RETRY_STATUSES and not transient:
                    raise
                problem = f"HTTP {exc.status}"
            except (TimeoutError, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                if not (safe or _not_delivered(exc)):
                    raise
                problem = str(getattr(exc, "reason", exc)) or type(exc).__name__
            attempt += 1
            waited = self._clock() - started
            if self.patience is not None and waited > self.patience:
                raise ApiUnreachable(
                    f"{method} {url}: no answer for {waited:.0f} s (last: {problem})"
                ) from None
            delay = min(BACKOFF_MAX, 2.0 ** (attempt - 1))
            if self.on_retry is not None and attempt & (attempt - 1) == 0:  # tries 2, 3, 5, 9, 17 ...
                self.on_retry(
                    f"the Airflow API did not answer {method} {path.split('?')[0]} ({problem}); "
                    f"no answer for {waited:.0f} s; trying again (attempt {attempt + 1})"
                )
            self._sleep(delay)

    def token(self) -> str:
        if self._token is None:
            self._token = self._request("POST", "/auth/token", self._credentials, auth=False, resend=True)[
                "access_token"
            ]
        return self._token

    def get(self, path: str) -> dict:
        return self._request("GET", path)

    def post(self, path: str, payload: object, resend: bool = False) -> dict:
        return self._request("POST", path, payload, resend=resend)

    def patch(self, path: str, payload: object) -> dict:
        return self._request("PATCH", path, payload, resend=True)

    def wait_for_dag(self, dag_id: str, timeout: float | None = None) -> dict:
        """The DAG once the dag-processor has parsed it; no deadline unless ``timeout``."""
        started = self._clock()
        while True:
            try:
                return self.get(f"/api/v2/dags/{dag_id}")
            except AirflowError as exc:
                if exc.status != 404 or (timeout is not None and self._clock() - started > timeout):
                    raise
            self._sleep(1)

    def trigger(self, dag_id: str, conf: dict | None = None) -> dict:
        """A manual run, named here (manual__<now>_<random>) so a retried POST cannot start two."""
        now = dt.datetime.now(dt.UTC).isoformat()
        run_id = f"manual__{now}_{secrets.token_hex(3)}"
        payload = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        try:
            return self.post(f"/api/v2/dags/{dag_id}/dagRuns", payload, resend=True)
        except AirflowError as exc:
            if exc.status != 409:  # 409: the first try did start it
                raise
            return self.dag_run(dag_id, run_id)

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def dag_runs(self, dag_id: str, state: str | None = None) -> list[dict]:
        query = "&order_by=run_after" + (f"&state={state}" if state else "")
        return self._all_pages(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs", query)

    def task_instances(
        self, dag_id: str, run_id: str, task_id: str | None = None, state: str | None = None
    ) -> list[dict]:
        quoted = urllib.parse.quote(run_id, safe="")
        query = (f"&task_id={task_id}" if task_id else "") + (f"&state={state}" if state else "")
        return self._all_pages(
            f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances", "task_instances", query
        )

    def _all_pages(self, path: str, key: str, query: str) -> list[dict]:
        """Every item of a paginated list endpoint, 100 a page (``query``: "&name=value..." or "")."""
        items: list[dict] = []
        while True:
            page = self.get(f"{path}?limit=100&offset={len(items)}{query}")
            items.extend(page[key])
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    def clear_mapped_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict:
        return self.post(
            f"/api/v2/dags/{dag_id}/clearTaskInstances",
            {
                "dry_run": False,
                "only_failed": False,
                "dag_run_id": run_id,
                "task_ids": [[task_id, map_index]],
                "include_downstream": False,
                "include_upstream": False,
                "reset_dag_runs": True,
            },
        )

    def count_task_instances(
        self, dag_id: str, task_id: str, run_id_prefix: str, state: str | None = None
    ) -> int:
        """How many task instances of ``task_id`` (each mapped one counts) in runs whose id has the prefix."""
        query = (
            f"task_id={task_id}&run_id_prefix_pattern={urllib.parse.quote(run_id_prefix, safe='')}&limit=1"
        )
        if state:
            query += f"&state={state}"
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances?{query}")["total_entries"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 1.0) -> dict:
        deadline = self._clock() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in ("success", "failed"):
                return run
            if self._clock() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f} s")
            self._sleep(poll)
