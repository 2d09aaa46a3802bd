"""Checks of `vflash bench`: the workload parser (through --list, which needs no
GPU), its errors, and the run itself: exit code 2 with a clear message without a
GPU, a timed table with one row per workload with one.

usage: python3 tools/bench_test.py <path to the vflash executable> [workloads.json]
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cli, *args, expect_rc):
    p = subprocess.run([cli, "bench", *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == expect_rc, f"bench {args}: exit {p.returncode}, wanted {expect_rc}\n{p.stdout}\n{p.stderr}"
    return p.stdout, p.stderr


def expected_gflop(case, dense):
    """FLOPs as the workload file defines them: 4 * Sq * Sk * H * D per sequence, s(s+1)/2 pairs when causal."""
    if dense:
        seqlens, heads = [case["seqlen"]] * case["batch"], case["heads"]
    else:
        s = case["seqlens"]
        seqlens = [int(s.split("x")[1])] * int(s.split("x")[0]) if isinstance(s, str) else s
        heads = case["heads_q"]
    pairs = sum(n * (n + 1) / 2 if case.get("causal") else n * n for n in seqlens)
    return 4 * pairs * heads * case["head_dim"] / 1e9


def check_list(cli, path):
    with open(path) as f:
        workloads = json.load(f)
    out, _ = run(cli, path, "--list", expect_rc=0)
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for section in ("dense", "varlen"):
        for case in workloads.get(section, []):
            line = lines.pop(case["name"], None)
            assert line is not None, f"--list lacks {case['name']}:\n{out}"
            got = float(line.split()[-2])
            want = expected_gflop(case, section == "dense")
            assert abs(got - want) <= 0.05 + 1e-3 * want, f"{case['name']}: {got} GFLOP, expected {want:.1f}"
    assert not lines, f"--list shows workloads not in the file: {sorted(lines)}"


BAD_FILES = {
    # file text: words the error must hold
    '{"dense": [{"name": "a", "batch": 1,}]}': "JSON line 1",
    '{"dense": [{"name": "a", "batch": 0, "seqlen": 8, "heads": 1, "head_dim": 64}]}': "dense[0].batch",
    '{"dense": [{"name": "a", "batch": 1, "seqlen": 8, "heads": 1}]}': "dense[0].head_dim: is required",
    '{"varlen": [{"name": "v", "seqlens": "3y4", "heads_q": 1, "heads_k": 1, "head_dim": 64}]}': "varlen[0].seqlens",
    '{"varlen": [{"name": "v", "seqlens": [], "heads_q": 1, "heads_k": 1, "head_dim": 64}]}': "varlen[0].seqlens",
    '{"varlen": [{"name": "v", "seqlens": [8], "heads_q": 1, "heads_k": 1, "head_dim": 64, "causal": 1}]}':
        "varlen[0].causal",
    '{"varlen": "x"}': "varlen: must be an array",
    '[]': "must be an object",
    '{"_doc": "nothing"}': "holds no workload",
}


def check_errors(cli, folder):
    for i, (text, words) in enumerate(BAD_FILES.items()):
        path = os.path.join(folder, f"bad{i}.json")
        with open(path, "w") as f:
            f.write(text)
        _, err = run(cli, path, "--list", expect_rc=1)
        assert words in err, f"{text!r}: error {err!r} does not say {words!r}"
    run(cli, os.path.join(folder, "missing.json"), expect_rc=1)
    run(cli, expect_rc=1)  # no file
    run(cli, "a.json", "--frobnicate", expect_rc=1)
    run(cli, "a.json", "--kernel", "x", "--all-kernels", expect_rc=1)
    out, _ = run(cli, "--help", expect_rc=0)
    assert "usage: vflash bench" in out


def check_run(cli, folder):
    path = os.path.join(folder, "tiny.json")
    with open(path, "w") as f:
        json.dump({"dense": [{"name": "tiny-dense", "batch": 2, "seqlen": 256, "heads": 2, "head_dim": 64}],
                   "varlen": [{"name": "tiny-varlen", "seqlens": [0, 1, 100, 300], "heads_q": 4, "heads_k": 2,
                               "head_dim": 128, "causal": True}]}, f)
    p = subprocess.run([cli, "bench", path, "--budget-ms", "20", "--json", os.path.join(folder, "out.json")],
                       capture_output=True, text=True, timeout=600)
    if p.returncode == 2:  # no GPU: the one thing it must do is say so
        assert "no usable CUDA GPU" in p.stderr, p.stderr
        print("bench_test: no GPU here: checked the exit code and message only")
        return
    assert p.returncode == 0, f"bench exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    with open(os.path.join(folder, "out.json")) as f:
        result = json.load(f)
    assert result["matmul_tflops"] > 0
    assert [r["case"] for r in result["rows"]] == ["tiny-dense", "tiny-varlen"], result
    for r in result["rows"]:
        assert r["ms"] > 0 and r["tflops"] > 0 and r["kernel"], r


def main(cli, workloads):
    check_list(cli, workloads)
    with tempfile.TemporaryDirectory() as folder:
        check_errors(cli, folder)
        check_run(cli, folder)
    print("bench_test: passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "bench", "workloads.json"))
