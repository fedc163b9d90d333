#!/usr/bin/env bash
# Packs the six libraries and builds, runs and publishes a fresh consumer project that uses
# them from a local feed with TorchSharp-cpu, as `dotnet add package Hcsc.Losses` users do.
# This proves the buildTransitive native fix reaches consumers. A unique version per run keeps
# the NuGet cache from serving an older package of the same version.
set -euo pipefail
cd "$(dirname "$0")/.."
version="0.1.0-ci.$(date +%Y%m%d%H%M%S)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

dotnet pack Hcsc.sln -c Release -o "$work/feed" -p:Version="$version" -v q -nologo
for id in Hcsc.Core Hcsc.Runtime Hcsc.Clustering Hcsc.Losses Hcsc.Models Hcsc.Distributed.Mpi; do
  pkg="$work/feed/$id.$version.nupkg"
  [ -f "$pkg" ] || { echo "missing package $pkg"; exit 1; }
  listing=$(unzip -l "$pkg")
  for part in "buildTransitive/$id.targets" buildTransitive/Hcsc.TorchSharpNativeFix.targets buildTransitive/HcscTorchSharpNativeFix.cs README.md docs/method.md; do
    grep -q "$part" <<<"$listing" || { echo "$pkg lacks $part"; exit 1; }
  done
  nuspec=$(unzip -p "$pkg" "$id.nuspec")
  for field in '<license type="expression">MIT</license>' '<readme>README.md</readme>' '<repository type="git"'; do
    grep -q "$field" <<<"$nuspec" || { echo "$pkg nuspec lacks $field"; exit 1; }
  done
done
echo "packages: $(ls "$work/feed"/*.nupkg | xargs -n1 basename | tr '\n' ' ')"

mkdir -p "$work/consumer"
cat > "$work/consumer/nuget.config" <<XML
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$work/feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
XML
# write_project DIR NAME "ID VERSION" ...: a console project in DIR referencing the packages given (and the feed).
write_project() {
  local dir=$1 name=$2 refs="" ref
  shift 2
  for ref in "$@"; do
    refs+="    <PackageReference Include=\"${ref% *}\" Version=\"${ref#* }\" />"$'\n'
  done
  mkdir -p "$dir"
  [ -f "$dir/nuget.config" ] || cp "$work/consumer/nuget.config" "$dir/"
  cat > "$dir/$name.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <ImplicitUsings>enable</ImplicitUsings>
  </PropertyGroup>
  <ItemGroup>
$refs  </ItemGroup>
</Project>
XML
}

write_project "$work/consumer" Consumer "Hcsc.Losses $version" "TorchSharp-cpu 0.107.0"
cat > "$work/consumer/Program.cs" <<'CS'
using Hcsc.Core.Hierarchy;
using static TorchSharp.torch;

using var prototypes = nn.functional.normalize(tensor(new float[] { 1, 0, 0, 1 }).reshape(2, 2), dim: 1);
using var assignments = tensor(new long[] { 0, 1, 1 });
using var concentrations = tensor(new float[] { 0.2f, 0.3f });
using var hierarchy = ClusterHierarchy.FromTensors([prototypes], [assignments], [concentrations], []);
Console.WriteLine($"consumer ok: {hierarchy.LevelCount} level, k = {hierarchy.ClusterCounts[0]}, N = {hierarchy.SampleCount}");
CS
(cd "$work/consumer" && dotnet run -c Release)
(cd "$work/consumer" && dotnet publish -c Release -r linux-x64 --self-contained false -o "$work/publish" >/dev/null && dotnet "$work/publish/Consumer.dll")

# An application that uses dependency injection: only Hcsc.Core, registered with AddHcsc; invalid options are
# reported at start-up, every problem at once.
write_project "$work/di-consumer" DiConsumer "Hcsc.Core $version" "TorchSharp-cpu 0.107.0" \
  "Microsoft.Extensions.DependencyInjection 10.0.15" "Microsoft.Extensions.Configuration 10.0.15"
cat > "$work/di-consumer/Program.cs" <<'CS'
using Hcsc.Core.Options;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

IServiceProvider Build(Dictionary<string, string?> settings) =>
    new ServiceCollection().AddHcsc(new ConfigurationBuilder().AddInMemoryCollection(settings).Build()).BuildServiceProvider();

var good = Build(new() { ["Hcsc:Model:QueueLength"] = "4096", ["Hcsc:Objective:Temperature"] = "0.1" });
good.GetRequiredService<IStartupValidator>().Validate();
var bound = good.GetRequiredService<IOptions<HcscOptions>>().Value;
Console.WriteLine($"di consumer ok: queue {bound.Model.QueueLength}, tau {bound.Objective.Temperature}");
try
{
    Build(new() { ["Hcsc:Model:QueueLength"] = "0", ["Hcsc:Training:BatchSize"] = "0" }).GetRequiredService<IStartupValidator>().Validate();
    Console.WriteLine("invalid options were accepted");
    return 1;
}
catch (OptionsValidationException e)
{
    Console.WriteLine($"di consumer refused invalid options: {e.Failures.Count()} problem(s)");
    return 0;
}
CS
(cd "$work/di-consumer" && dotnet run -c Release)
