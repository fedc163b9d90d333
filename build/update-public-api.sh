#!/usr/bin/env bash
# Regenerates src/<Package>/PublicAPI.Unshipped.txt from the current public API of the packages, with the
# PublicApiAnalyzers code fix (RS0016 "add to the public API") applied by `dotnet format analyzers`.
# Run after an intended change of a public API (the build fails with RS0016/RS0017 until the lists match):
#   bash build/update-public-api.sh                 # all six packages
#   bash build/update-public-api.sh Hcsc.Losses     # only some
# Then review `git diff src/*/PublicAPI.*.txt`. Only the PublicAPI files are written (the fix edits no source).
# PublicAPI.Shipped.txt is left alone: after a release, move the Unshipped lines there by hand; a member removed
# from Shipped must be marked there (`*REMOVED*` prefix in Unshipped) as the analyzer's docs describe.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
projects=("$@")
[ ${#projects[@]} -gt 0 ] || projects=(Hcsc.Core Hcsc.Runtime Hcsc.Clustering Hcsc.Losses Hcsc.Models Hcsc.Distributed.Mpi)
for p in "${projects[@]}"; do
  dir="src/$p"
  [ -f "$dir/$p.csproj" ] || { echo "no project $dir/$p.csproj"; exit 1; }
  [ -f "$dir/PublicAPI.Shipped.txt" ] || printf '#nullable enable\n' > "$dir/PublicAPI.Shipped.txt"
  # Start from an empty list so that removed or changed members disappear too.
  printf '#nullable enable\n' > "$dir/PublicAPI.Unshipped.txt"
  echo "== $p"
  dotnet format analyzers "$dir/$p.csproj" --diagnostics RS0016 --severity warn -v q
  echo "   $(($(grep -c . "$dir/PublicAPI.Unshipped.txt") - 1)) entries in $dir/PublicAPI.Unshipped.txt"
done
