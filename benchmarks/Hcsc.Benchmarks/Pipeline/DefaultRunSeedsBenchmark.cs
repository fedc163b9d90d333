using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Hcsc.Samples.ImageNetPretrain.Commands;

namespace Hcsc.Benchmarks.Pipeline;

/// <summary>
/// Runs the sample's default command (built-in synthetic data, preset synthetic-quick) with seeds 0–4 and checks that
/// every run ends above the untrained network on kNN top-1 and on NMI at every level. Prints one row per seed and
/// exits 1 when a seed fails. About 3 minutes per seed on 2 cores.
/// </summary>
public sealed class DefaultRunSeedsBenchmark : IBenchmark
{
    /// <inheritdoc />
    public string Name => "default-run-seeds";

    /// <inheritdoc />
    public string Description => "the no-argument sample run with seeds 0-4 (--seeds 0,1,2,3,4): trained above untrained on kNN and every NMI level?";

    /// <inheritdoc />
    public int Run(string[] args)
    {
        int[] seeds = [0, 1, 2, 3, 4];
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--seeds" && i + 1 < args.Length)
            {
                seeds = args[++i].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
            }
            else
            {
                Console.Error.WriteLine($"Unknown option {args[i]}. Options: --seeds 0,1,2,3,4");
                return 2;
            }
        }

        Console.WriteLine("seed | kNN top-1 untrained -> trained | NMI per level untrained -> trained | seconds | learns");
        int failures = 0;
        foreach (int seed in seeds)
        {
            string directory = Directory.CreateTempSubdirectory($"hcsc-default-seed{seed}-").FullName;
            try
            {
                var clock = Stopwatch.StartNew();
                var previous = Console.Out;
                Console.SetOut(TextWriter.Null);
                int exit;
                try
                {
                    exit = HcscCli.Create().Parse(["--seed", seed.ToString(CultureInfo.InvariantCulture), "--exp-dir", directory]).Invoke();
                }
                finally
                {
                    Console.SetOut(previous);
                }

                if (exit != 0)
                {
                    Console.WriteLine($"{seed} | the run failed with exit code {exit}");
                    failures++;
                    continue;
                }

                var records = File.ReadAllLines(Path.Combine(directory, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement)
                    .Where(r => r.TryGetProperty("evaluation", out _)).ToDictionary(r => r.GetProperty("evaluation").GetString()!);
                var (before, after) = (records["untrained"], records["final"]);
                double knnBefore = before.GetProperty("knn_top1").GetDouble(), knnAfter = after.GetProperty("knn_top1").GetDouble();
                double[] nmiBefore = before.GetProperty("nmi").EnumerateArray().Select(e => e.GetDouble()).ToArray();
                double[] nmiAfter = after.GetProperty("nmi").EnumerateArray().Select(e => e.GetDouble()).ToArray();
                bool learns = knnAfter > knnBefore && nmiAfter.Zip(nmiBefore).All(p => p.First > p.Second);
                failures += learns ? 0 : 1;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{seed} | {knnBefore:F2} % -> {knnAfter:F2} % | {Join(nmiBefore)} -> {Join(nmiAfter)} | {clock.Elapsed.TotalSeconds:F0} | {(learns ? "yes" : "NO")}"));
            }
            finally
            {
                Directory.Delete(directory, recursive: true);
            }
        }

        Console.WriteLine(failures == 0 ? $"all {seeds.Length} seeds learn" : $"{failures} of {seeds.Length} seeds do not learn");
        return failures == 0 ? 0 : 1;
    }

    private static string Join(double[] values) => string.Join(" / ", values.Select(v => v.ToString("F3", CultureInfo.InvariantCulture)));
}
