"""Checks of the `vflash` CLI: doctor (text and JSON), the environment
overrides read at start-up, demo, help and usage errors.

usage: python3 tests/cli_test.py <path to the vflash executable>
"""
import json
import os
import subprocess
import sys


def run(cli, *args, env_extra=None, expect_rc=0):
    env = dict(os.environ)
    env.pop("VFLASH_FORCE_KERNEL", None)
    env.pop("VFLASH_PRETEND_CC", None)
    env.update(env_extra or {})
    p = subprocess.run([cli, *args], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == expect_rc, f"{args} {env_extra}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def doctor_json(cli, **env):
    return json.loads(run(cli, "doctor", "--json", env_extra=env))


def main(cli):
    report = doctor_json(cli)
    kernels = [k["name"] for fam in report["families"] for k in fam["kernels"]]
    for fam in report["families"]:
        assert fam["targets"], f"family {fam['name']} lists no targets"
    assert len(report["calls"]) >= 5
    for call in report["calls"]:
        assert len(call["verdicts"]) == len(kernels), call
        assert all(v["reason"] for v in call["verdicts"]), call
        assert sum(v["accepted"] for v in call["verdicts"]) == (call["kernel"] is not None), call
    if not report["device"]["present"]:
        assert report["device"]["absent_reason"], report["device"]
        assert all(c["kernel"] is None for c in report["calls"])

    # VFLASH_PRETEND_CC is read at start-up.
    pretended = doctor_json(cli, VFLASH_PRETEND_CC="10.3")
    assert pretended["device"]["pretended"] and pretended["device"]["capability"] == "10.3", pretended["device"]
    assert "Blackwell" in pretended["device"]["family"]
    # The decisions under the pretence match the doctor's own portability row for 10.3.
    row = next(r for r in pretended["portability"] if r["capability"] == "10.3")
    for call in pretended["calls"]:
        assert row["kernels"][call["name"]] == call["kernel"], (call["name"], row, call["kernel"])

    # VFLASH_FORCE_KERNEL: an unknown kernel leaves every call without one, saying why.
    forced = doctor_json(cli, VFLASH_FORCE_KERNEL="no_such_kernel", VFLASH_PRETEND_CC="9.0")
    assert forced["forced_kernel"] == "no_such_kernel"
    for call in forced["calls"]:
        assert call["kernel"] is None
        assert all("forced" in v["reason"] for v in call["verdicts"]), call

    text = run(cli, "doctor")
    assert "This binary holds" in text and "Representative calls" in text, text
    assert "vflash" in run(cli, "--help")
    run(cli, "no-such-command", expect_rc=2)
    run(cli, "doctor", "--bogus", expect_rc=2)

    demo = run(cli, "demo")
    assert "PASS" in demo and "kernel:" in demo, demo
    print(demo, end="")
    print(f"cli_test: ok ({len(kernels)} kernels, device present: {report['device']['present']})")


if __name__ == "__main__":
    main(sys.argv[1])
