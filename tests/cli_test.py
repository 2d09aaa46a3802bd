"""Checks of the `vflash` CLI: doctor (text and JSON), the environment
overrides read at start-up, demo, help and usage errors.

usage: python3 tests/cli_test.py <path to the vflash executable>
"""
import json
import os
import re
import subprocess
import sys


def run_both(cli, *args, env_extra=None, expect_rc=0):
    """(stdout, stderr) of the CLI, asserting its exit code."""
    env = dict(os.environ)
    env.pop("VFLASH_FORCE_KERNEL", None)
    env.pop("VFLASH_PRETEND_CC", None)
    env.update(env_extra or {})
    p = subprocess.run([cli, *args], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == expect_rc, f"{args} {env_extra}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout, p.stderr


def run(cli, *args, env_extra=None, expect_rc=0):
    return run_both(cli, *args, env_extra=env_extra, expect_rc=expect_rc)[0]


def project_version():
    """The version in the top-level CMakeLists.txt's project() call."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "CMakeLists.txt")) as f:
        return re.search(r"project\(vflash VERSION ([0-9.]+)", f.read()).group(1)


def usage_errors_name_the_culprit(cli):
    for args, named in [
        (("no-such-command",), "unknown command 'no-such-command'"),
        (("--bogus",), "unknown option '--bogus'"),
        (("doctor", "--bogus"), "doctor: unknown option '--bogus'"),
        (("doctor", "extra"), "doctor: unexpected argument 'extra'"),
        (("doctor", "--json", "--json"), "option '--json' given twice"),
        (("demo", "--fast"), "demo: unknown option '--fast'"),
        ((), "no command given"),
    ]:
        out, err = run_both(cli, *args, expect_rc=2)
        assert named in err, (args, err)
        assert "usage: vflash" in err, (args, err)
    out, err = run_both(cli, "--version")
    assert out == f"vflash {project_version()}\n", out


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
    assert report["version"] == project_version(), report["version"]
    if not report["device"]["present"]:
        reason = report["device"]["absent_reason"]
        assert reason, report["device"]
        assert all(c["kernel"] is None for c in report["calls"])
        # The reason is given once, not once per call and kernel.
        text = run(cli, "doctor")
        assert text.count(reason) == 1, text
        assert json.dumps(report).count(json.dumps(reason)[1:-1]) == 1, report

    # VFLASH_PRETEND_CC is read at start-up.
    pretended = doctor_json(cli, VFLASH_PRETEND_CC="10.3")
    assert pretended["device"]["pretended"] and pretended["device"]["capability"] == "10.3", pretended["device"]
    assert "Blackwell" in pretended["device"]["family"]
    # The decisions under the pretence match the doctor's own portability row for 10.3.
    row = next(r for r in pretended["portability"] if r["capability"] == "10.3")
    for call in pretended["calls"]:
        assert row["kernels"][call["name"]] == call["kernel"], (call["name"], row, call["kernel"])

    # VFLASH_FORCE_KERNEL: an unknown kernel leaves every call without one, saying why.
    # It is reported: on stderr at start-up, and in the report.
    unknown = dict(VFLASH_FORCE_KERNEL="no_such_kernel", VFLASH_PRETEND_CC="9.0")
    out, err = run_both(cli, "doctor", "--json", env_extra=unknown)
    assert "VFLASH_FORCE_KERNEL='no_such_kernel' names no kernel" in err, err
    forced = json.loads(out)
    assert forced["forced_kernel"] == "no_such_kernel"
    assert "no kernel named 'no_such_kernel'" in forced["forced_kernel_error"], forced["forced_kernel_error"]
    for call in forced["calls"]:
        assert call["kernel"] is None
        assert all("forced" in v["reason"] for v in call["verdicts"]), call
    assert "no kernel named 'no_such_kernel'" in run(cli, "doctor", env_extra=unknown)
    if kernels:
        known = doctor_json(cli, VFLASH_FORCE_KERNEL=kernels[0])
        assert known["forced_kernel"] == kernels[0] and known["forced_kernel_error"] is None, known

    text = run(cli, "doctor")
    assert "This binary holds" in text and "Representative calls" in text, text
    assert "vflash" in run(cli, "--help")
    usage_errors_name_the_culprit(cli)

    demo = run(cli, "demo")
    assert "PASS" in demo and "kernel:" in demo, demo
    print(demo, end="")
    print(f"cli_test: ok ({len(kernels)} kernels, device present: {report['device']['present']})")


if __name__ == "__main__":
    main(sys.argv[1])
