#!/usr/bin/env bash
# Prints the environment (NAME=VALUE words) that puts this CPU's float arithmetic on another code path than the
# default, for a second run of the tests (issue 25): a tolerance that only one path happens to meet fails there.
# - MKL (libtorch's BLAS): AVX2 where the CPU has AVX-512 (MKL's default there on Intel); AVX512 where the caller had
#   forced it lower; otherwise its conditional-numerical-reproducibility "compatible" path.
# - ATen's own vectorised kernels (softmax, exp, reductions): the portable ones (ATEN_CPU_CAPABILITY=default).
set -euo pipefail
vendor=$(grep -m1 '^vendor_id' /proc/cpuinfo 2>/dev/null | awk '{print $3}')
avx512=$(grep -m1 -o -w 'avx512f' /proc/cpuinfo 2>/dev/null || true)
forced=${MKL_ENABLE_INSTRUCTIONS:-}
if [ -n "$avx512" ] && [ -n "$forced" ] && [ "$forced" != "AVX512" ]; then
  mkl="MKL_ENABLE_INSTRUCTIONS=AVX512"
elif [ -n "$avx512" ] && [ "$vendor" = "GenuineIntel" ]; then
  mkl="MKL_ENABLE_INSTRUCTIONS=AVX2"
else
  mkl="MKL_CBWR=COMPATIBLE"
fi
echo "$mkl ATEN_CPU_CAPABILITY=default"
