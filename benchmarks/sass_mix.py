"""What a kernel is made of, from the same ncu source export top_stalls.py reads (any kernel, also
one of cuDNN's, whose source we do not have):

    ncu -k regex:NAME -c 1 --section SourceCounters -o rep python3 ...
    ncu -i rep.ncu-rep --page source --csv --print-source sass > src.csv
    python3 sass_mix.py src.csv

Prints the executed instructions per opcode (warp-level counts, largest first), then every distinct
tensor-core, TMA, async-copy and barrier instruction form with its executed count: which MMA shape,
whether A comes from registers, how the operands are loaded.
"""
import collections
import csv
import re
import sys

FORMS = re.compile(r"^(HGMMA|HMMA|UTMALDG|UTMASTG|UTMAPF|UBLKCP|LDGSTS|LDSM|STSM|SYNCS|WARPGROUP|BAR|UCGABAR|"
                   r"ELECT|USETMAXREG|FENCE|MEMBAR)")


def main():
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.reader(f))
    header_at = next(i for i, r in enumerate(rows) if "Source" in r)
    header, body = rows[header_at], rows[header_at + 1:]
    source_col = header.index("Source")
    exec_col = next(i for i, h in enumerate(header) if h.startswith("Instructions Executed"))

    def num(v):
        try:
            return float(v.replace(",", ""))
        except ValueError:
            return 0.0

    per_opcode, forms = collections.Counter(), collections.Counter()
    for r in body:
        if len(r) <= max(source_col, exec_col):
            continue
        text = re.sub(r"^@!?U?P\w+\s+", "", r[source_col].strip())  # drop a predicate guard
        opcode = text.split(" ")[0].rstrip(";")
        if not opcode:
            continue
        n = num(r[exec_col])
        per_opcode[opcode.split(".")[0]] += n
        if FORMS.match(opcode):
            # the form: opcode with modifiers, operands' register numbers dropped
            forms[re.sub(r"\bU?R\d+\b", "R", text.rstrip(";"))] += n
    total = sum(per_opcode.values())
    print(f"{len(body)} SASS lines, {total:.3e} warp instructions executed")
    for op, n in per_opcode.most_common(40):
        print(f"  {100 * n / max(total, 1):5.1f}%  {n:12.0f}  {op}")
    print("forms:")
    for form, n in sorted(forms.items(), key=lambda kv: -kv[1]):
        print(f"  {n:12.0f}  {form[:140]}")


if __name__ == "__main__":
    main()
