"""Bad input never crashes: the battery of robustness_cases.py runs in a child process (a
segfault or abort there fails the case that was running instead of killing pytest); each
case must raise the expected tfcore exception with a message naming the problem."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from robustness_cases import CASES
from tiny_models import save_tiny

import tfcore

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_tiny("bert", root / "bert", vocab_size=50)
    save_tiny("gpt2", root / "gpt2", vocab_size=50)
    save_tiny("siglip", root / "siglip")
    save_tiny("swinv2", root / "swinv2")
    save_tiny("pvt_v2", root / "pvt_v2")
    save_tiny("segformer", root / "segformer")
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "robustness_cases.py")]
        + [str(root / n) for n in ("bert", "gpt2", "siglip", "swinv2", "pvt_v2", "segformer")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(tfcore.__file__)),  # the tfcore under test
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = {e["id"]: e for e in events if "id" in e}
    started = [e["start"] for e in events if "start" in e]
    crashed = started[-1] if started and started[-1] not in results else None
    return {
        "results": results,
        "crashed": crashed,
        "returncode": proc.returncode,
        "stderr": proc.stderr[-3000:],
    }


def test_the_battery_ran_to_the_end_without_crashing(battery):
    assert battery["crashed"] is None, f"the child died in case {battery['crashed']!r}:\n{battery['stderr']}"
    assert battery["returncode"] == 0, battery["stderr"]
    assert len(battery["results"]) == len(CASES)


@pytest.mark.parametrize("case_id,code,expected,pattern", CASES, ids=[c[0] for c in CASES])
def test_case(battery, case_id, code, expected, pattern):
    if battery["crashed"] == case_id:
        pytest.fail(f"crashed the process:\n{battery['stderr']}")
    res = battery["results"].get(case_id)
    assert res is not None, "not reached (an earlier case crashed the child)"
    if expected is None:
        assert res["raised"] is None, f"raised {res['raised'][0]}: {res['message']}"
        return
    assert res["raised"] is not None, "no exception"
    assert expected in res["raised"], f"raised {res['raised'][0]}: {res['message']}"
    assert "TfcoreError" in res["raised"] or expected in ("MemoryError",), res["raised"]
    assert re.search(pattern, res["message"], re.IGNORECASE), res["message"]
