#!/usr/bin/env bash
# The README's default run with --kernels tensor: every loss kernel, mask draw and selection table as tensor
# operations, the code path a CUDA run takes, on the CPU. Passes when it runs to the end and learns: the trained
# network's kNN top-1 and its NMI at every level above the untrained network's (the lines the run ends with).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dotnet run --project samples/ImageNetPretrain -c Release --no-build -- pretrain --kernels tensor --exp-dir "$work/run" | tee "$work/out.log"
knn=$(grep -a '^kNN top-1: untrained' "$work/out.log" | tail -n 1)
nmi=$(grep -a '^NMI per level' "$work/out.log" | tail -n 1)
echo "$knn" | awk '{ if ($8 + 0 > $4 + 0) exit 0; else exit 1 }' \
  || { echo "FAIL: --kernels tensor did not learn on kNN: $knn"; exit 1; }
echo "$nmi" | awk -F'->' '{
    n = split($1, before, /[^0-9.]+/); m = split($2, after, /[^0-9.]+/)
    k = 0; for (i = 1; i <= n; i++) if (before[i] != "") b[++k] = before[i]
    j = 0; for (i = 1; i <= m; i++) if (after[i] != "") a[++j] = after[i]
    if (j == 0 || j != k) exit 1
    for (i = 1; i <= j; i++) if (a[i] + 0 <= b[i] + 0) exit 1
  }' || { echo "FAIL: --kernels tensor did not learn at every level: $nmi"; exit 1; }
echo "tensor path learns: $knn; $nmi"
