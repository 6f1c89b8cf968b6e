"""``backbone submit`` in a fresh process: refusals (exit 1, the problem on stderr), retries
after 503, a service that cannot be reached (exit 3) and usage errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_partner_system import BACKBONE, DATASET, PARTNER, CuttingProxy, service

pytestmark = [pytest.mark.process, pytest.mark.slow]
__all__ = ["service"]  # the server fixture, shared with the end-to-end test
HEADER = "student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"


def body(n: int, prefix: str = "CL", neighborhood: str = "Ashland") -> str:
    return HEADER + "".join(
        f"{prefix}{i:08d},2025-26,{neighborhood},Asian,true,{i % 100}\n" for i in range(n)
    )


def submit(
    service: dict[str, Any], *args: str, url: str | None = None, status: int = 0
) -> subprocess.CompletedProcess[str]:
    creds = {c["client_id"]: c for c in json.loads(service["creds"].read_text())["clients"]}
    env = {
        **service["env"],
        "BACKBONE_URL": url or f"http://127.0.0.1:{service['port']}",
        "BACKBONE_CLIENT_ID": PARTNER,
        "BACKBONE_CLIENT_SECRET": creds[PARTNER]["client_secret"],
    }
    done = subprocess.run(
        [str(BACKBONE), "submit", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.parametrize("resumable_above", ["0", "8388608"])
def test_a_refusal_exits_1_with_the_problem_and_its_report(
    service: dict[str, Any], tmp_path: Path, resumable_above: str
):
    bad = tmp_path / "bad.csv"
    bad.write_text(body(5, neighborhood="Nowhere"))
    done = submit(
        service, str(bad), "--dataset", DATASET, "--period", "2025-26",
        "--resumable-above", resumable_above, status=1,
    )  # fmt: skip
    assert done.stdout == ""
    assert "refused: The submission does not satisfy the dataset's schema" in done.stderr
    assert "neighborhood" in done.stderr  # the row report names the field
    assert "/problems/submission-rejected" in done.stderr


def test_503_is_retried_and_the_rerun_stores_nothing_twice(service: dict[str, Any], tmp_path: Path):
    good = tmp_path / "good.csv"
    good.write_text(body(12, prefix="RT"))
    proxy = CuttingProxy(service["port"], unavailable=2)
    try:
        done = submit(
            service, str(good), "--dataset", DATASET, "--period", "2025-26",
            "--retry-delay", "0", url=f"http://127.0.0.1:{proxy.port}",
        )  # fmt: skip
    finally:
        proxy.close()
    assert proxy.unavailable == 0
    assert done.stderr.count("service unavailable (503); retrying") == 2
    receipt = json.loads(done.stdout)
    assert receipt["row_count"] == 12
    again = submit(service, str(good), "--dataset", DATASET, "--period", "2025-26")
    assert json.loads(again.stdout)["id"] == receipt["id"]
    # The same file as a resumable upload is still the same submission.
    resumable = submit(
        service, str(good), "--dataset", DATASET, "--period", "2025-26", "--resumable-above", "0"
    )
    assert json.loads(resumable.stdout)["id"] == receipt["id"]


def test_a_gzipped_stream_is_stored_once_whole_or_resumable(
    service: dict[str, Any], tmp_path: Path
):
    good = tmp_path / "gz.csv"
    good.write_text(body(2000, prefix="GZ"))
    args = (str(good), "--dataset", DATASET, "--period", "2025-26", "--compress", "always")
    receipt = json.loads(submit(service, *args).stdout)
    assert receipt["row_count"] == 2000
    # The gzip is the same bytes whichever way it goes: the resumable rerun is the same one.
    again = submit(service, *args, "--resumable-above", "0")
    assert json.loads(again.stdout)["id"] == receipt["id"]
    # Sent uncompressed, the same file is a different body under the same key: refused, never
    # stored a second time.
    changed = submit(service, *args[:-1], "never", status=1)
    assert "/problems/idempotency-key-reused" in changed.stderr


@pytest.mark.parametrize(
    ("url", "mode", "expected"),
    [
        ("http://127.0.0.1:8000", "auto", False),
        ("http://localhost:8000", "auto", False),
        ("http://[::1]:8000", "auto", False),
        ("https://backbone.example.org", "auto", True),
        ("http://10.1.2.3", "auto", True),
        ("http://127.0.0.1:8000", "always", True),
        ("https://backbone.example.org", "never", False),
    ],
)
def test_compression_is_for_a_service_across_a_network(
    tmp_path: Path, url: str, mode: str, expected: bool
):
    from cli.submit import compresses

    records = tmp_path / "r.csv"
    records.write_text(HEADER)
    assert compresses(records, mode, url) is expected
    already = tmp_path / "r.csv.gz"
    already.write_bytes(b"")
    assert compresses(already, "always", url) is False


def test_an_unreachable_service_exits_3(service: dict[str, Any], tmp_path: Path):
    from tests.e2e.test_partner_system import free_port

    good = tmp_path / "good.csv"
    good.write_text(body(2))
    done = submit(
        service, str(good), "--dataset", DATASET, "--retries", "1", "--retry-delay", "0",
        url=f"http://127.0.0.1:{free_port()}", status=3,
    )  # fmt: skip
    assert "cannot reach the service" in done.stderr
    assert "retrying" in done.stderr


def test_usage_errors_exit_2(service: dict[str, Any], tmp_path: Path):
    odd = tmp_path / "records.pdf"
    odd.write_text("x")
    done = submit(service, str(odd), "--dataset", DATASET, status=2)
    assert "extension" in done.stderr
    submit(service, str(tmp_path / "missing.csv"), "--dataset", DATASET, status=2)
