"""Where a kernel's local-memory accesses (register spills: STL / LDL) sit in its SASS, next to the
landmarks of the Hopper conv kernel (register reallocation, TMA loads, wgmma, barriers), so a spill
can be told apart as hot (mainloop) or cold. Needs cuobjdump (the GPU machine's toolkit).

    python3 benchmarks/sass_spills.py path/to/_C.abi3.so hopper_conv_kernel [more name parts...]
"""
import re
import subprocess
import sys

LANDMARKS = ("USETMAXREG", "UTMALDG", "HGMMA", "WARPGROUP.ARRIVE", "BAR.SYNC", "SYNCS", "EXIT", "NANOSLEEP", "ATOMG",
             "RED.E")


def main():
    so, parts = sys.argv[1], sys.argv[2:]
    sass = subprocess.run(["cuobjdump", "-sass", "-arch", "sm_90a", so], capture_output=True, text=True).stdout
    functions = re.split(r"\n\s+Function : ", sass)
    for f in functions[1:]:
        name = f.split("\n", 1)[0]
        if not all(p in name for p in parts):
            continue
        lines = [l.strip() for l in f.split("\n") if re.match(r"\s+/\*[0-9a-f]{4,}\*/", l)]
        spills = [i for i, l in enumerate(lines) if re.search(r"\b(STL|LDL)\b", l)]
        print(f"== {name[:160]}\n   {len(lines)} instructions, {len(spills)} local accesses")
        # landmarks compressed to the first and last of each kind; the spills by position after them
        seen = {}
        for i, l in enumerate(lines):
            kind = next((m for m in LANDMARKS if m in l), None)
            if kind is not None:
                seen.setdefault(kind, []).append(i)
        for kind, idx in seen.items():
            print(f"   {kind:18s} n={len(idx):4d} first {idx[0]:6d} last {idx[-1]:6d}")
        for i in spills:
            text = " ".join(lines[i].split())
            print(f"   spill @{i:6d}: {text[:90]}")


if __name__ == "__main__":
    main()
