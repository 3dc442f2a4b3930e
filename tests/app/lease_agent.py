"""A measurement agent without the measuring, as a separate process for the concurrency tests.

It speaks to the server exactly as ``devices/agent.py`` does (register the device, then lease
one task, post its result, until the queue is empty), but posts a made-up latency at once
instead of downloading and timing the model, so twenty of them hammer the server together.
It imports only httpx, so it starts in a fraction of a second.

Run as ``python -m tests.app.lease_agent SERVER DEVICE API_KEY NAME``. It prints ``ready``
once registered, waits for a line on stdin (the starting gun, so every agent leases at the
same moment), and ends by printing one JSON line: what it leased, what the server answered.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

import httpx


def main(server: str, device: str, api_key: str, name: str) -> None:
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    http = httpx.Client(base_url=server, headers={"X-API-Key": api_key}, timeout=60)

    def call(method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        for _ in range(20):  # like the agent: a 5xx is retried (and counted here)
            response = http.request(method, path, json=body)
            statuses[response.status_code] += 1
            if response.status_code < 500:
                return response
            errors.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
            time.sleep(0.1)
        return response

    registered = call("PUT", f"/agents/{device}", {"kind": "cpu", "runtime": "onnxruntime"})
    if registered.status_code != 200:
        errors.append(f"PUT /agents/{device}: {registered.status_code} {registered.text[:200]}")
    device_id = registered.json().get("id")
    print("ready", flush=True)
    sys.stdin.readline()

    leased: list[int] = []
    stored: dict[int, int] = {}  # task -> measurement, as the server acknowledged it
    duplicates: list[int] = []
    refused: list[int] = []
    while device_id is not None:
        lease = call(
            "POST",
            f"/devices/{device_id}/tasks/lease",
            {"agent": name, "max_tasks": 1, "lease_s": 600},
        )
        if lease.status_code != 200:
            errors.append(f"lease: {lease.status_code} {lease.text[:200]}")
            break
        if not lease.json():
            break
        task = lease.json()[0]["id"]
        leased.append(task)
        body = {"agent": name, "median_ms": 1.0 + task / 1000, "protocol": {"agent": name}}
        result = call("POST", f"/tasks/{task}/result", body)
        if result.status_code == 200:
            ack = result.json()
            if ack["duplicate"]:
                duplicates.append(task)
            else:
                stored[task] = ack["measurement_id"]
        else:
            refused.append(task)
            errors.append(f"result {task}: {result.status_code} {result.text[:200]}")
    print(
        json.dumps(
            {
                "name": name,
                "leased": leased,
                "stored": stored,
                "duplicates": duplicates,
                "refused": refused,
                "statuses": dict(statuses),
                "errors": errors[:10],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
