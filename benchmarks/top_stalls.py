"""The SASS lines where a kernel's warps spend their samples, from an ncu report with SourceCounters:

    ncu -k regex:NAME -c 1 --section SourceCounters -o rep python3 ...
    ncu -i rep.ncu-rep --page source --csv --print-source sass > src.csv
    python3 top_stalls.py src.csv [count]

Prints the top lines by warp-stall samples with their share, instruction and main stall columns.
"""
import csv
import sys


def main():
    path = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header_at = next(i for i, r in enumerate(rows) if "Source" in r)
    header, body = rows[header_at], rows[header_at + 1:]
    samples_col = next(i for i, h in enumerate(header) if h.startswith("Warp Stall Sampling (All"))
    source_col = header.index("Source")
    addr_col = header.index("Address") if "Address" in header else None

    def num(v):
        try:
            return float(v.replace(",", ""))
        except ValueError:
            return 0.0

    total = sum(num(r[samples_col]) for r in body if len(r) > samples_col)
    ranked = sorted((r for r in body if len(r) > samples_col), key=lambda r: -num(r[samples_col]))
    print(f"total samples {total:.0f}")
    for r in ranked[:count]:
        share = 100 * num(r[samples_col]) / max(total, 1)
        addr = r[addr_col] if addr_col is not None else ""
        print(f"{share:5.1f}%  {addr:>8}  {r[source_col][:90]}")


if __name__ == "__main__":
    main()
