#!/usr/bin/env python3
"""The built library holds, for every kernel family, code for every target the
build claims (the generated vflash_kernels.inc, which the registry also reads):
machine code (`cuobjdump --list-elf`) for each sm_* target and PTX
(`--list-ptx`) for each compute_* target.

    binary_targets_test.py <libvflash.so> <vflash_kernels.inc> <src/kernels dir>

cuobjdump comes from PATH, the CUDA toolkit, or the project's pinned
nvidia-cuda-cuobjdump wheel in .venv (scripts/install_deps.sh).
"""
import glob, os, re, shutil, subprocess, sys


def find_cuobjdump(root):
    for cand in [shutil.which("cuobjdump"), "/usr/local/cuda/bin/cuobjdump",
                 *glob.glob(os.path.join(root, ".venv/lib/python*/site-packages/nvidia/cu*/bin/cuobjdump"))]:
        if cand and os.access(cand, os.X_OK):
            return cand
    sys.exit("binary_targets_test: no cuobjdump found (run scripts/install_deps.sh)")


def listed(tool, flag, lib):
    run = subprocess.run([tool, flag, lib], capture_output=True, text=True)
    # "ELF file    3: instances_bf16_d80.sm_90.cubin" / "PTX file    1: simt_attention.compute_75.ptx"
    return set(re.findall(r"file\s+\d+:\s+(\S+)", run.stdout))


def main(lib, kernels_inc, kernels_dir):
    root = os.path.abspath(os.path.join(kernels_dir, "..", ".."))
    tool = find_cuobjdump(root)
    elf, ptx = listed(tool, "--list-elf", lib), listed(tool, "--list-ptx", lib)
    families = re.findall(r'VFLASH_KERNEL\((\w+),\s*"([^"]*)"\)', open(kernels_inc).read())
    assert families, f"no kernel family in {kernels_inc}"
    failures = []
    for family, targets in families:
        sources = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(kernels_dir, family, "*.cu"))}
        for target in filter(None, targets.split(";")):
            if target.startswith("sm_"):
                kind, names, suffixes = "cubin", elf, [f".{target}.cubin"]
            else:  # cuobjdump names the PTX of compute_XY "<source>.sm_XY.ptx"
                arch = target.removeprefix("compute_")
                kind, names, suffixes = "ptx", ptx, [f".sm_{arch}.ptx", f".compute_{arch}.ptx"]
            found = [n for n in names if n.rsplit(".", 2)[0] in sources and n.endswith(tuple(suffixes))]
            print(f"{family:8s} {target:14s} {len(found):3d} {kind} file(s)")
            if not found:
                failures.append(f"{family}: no {kind} for {target}")
    if failures:
        sys.exit("binary_targets_test: " + "; ".join(failures))
    print(f"binary_targets_test: {len(families)} families, every claimed target present")


if __name__ == "__main__":
    main(*sys.argv[1:4])
