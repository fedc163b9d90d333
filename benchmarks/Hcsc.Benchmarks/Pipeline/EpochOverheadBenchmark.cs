using System.Globalization;
using System.Text.Json;
using Hcsc.Samples.ImageNetPretrain.Commands;

namespace Hcsc.Benchmarks.Pipeline;

/// <summary>
/// What an HCSC epoch costs over a MoCo epoch of the same data, model and seed (issue 29). Runs MoCo (every epoch a
/// warm-up epoch), HCSC clustering a second pass (<c>--cluster-on Pass</c>, the reference's) and HCSC clustering the
/// steps' keys (<c>--cluster-on Keys</c>) one after the other, round after round, so that a machine's drift falls on
/// all three alike; reports the median epoch of each (the epochs after the first HCSC clustering), the ratio of the
/// medians to MoCo's and the median of the rounds' ratios, and splits an HCSC epoch into training steps, embedding
/// pass and k-means (the steps' excess over MoCo's is the selection).
/// </summary>
public sealed class EpochOverheadBenchmark : IBenchmark
{
    /// <inheritdoc />
    public string Name => "epoch-overhead";

    /// <inheritdoc />
    public string Description => "MoCo vs HCSC (--cluster-on Pass and Keys) epochs alternated: medians, ratios, and the split of an HCSC epoch (--rounds 2 --epochs 6 --dataset synthetic --max-images 0 --seed 0)";

    /// <inheritdoc />
    public int Run(string[] args)
    {
        int rounds = 2, epochs = 6, maxImages = 0;
        long seed = 0;
        string dataset = "synthetic";
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--epochs": epochs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--max-images": maxImages = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--seed": seed = long.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--dataset": dataset = args[++i]; break;
                default:
                    Console.Error.WriteLine($"Unknown option {args[i]}. Options: --rounds N --epochs E (>= 3) --dataset NAME --max-images N --seed S");
                    return 2;
            }
        }

        if (epochs < 3 || rounds < 1)
        {
            Console.Error.WriteLine("--epochs must be >= 3 (one warm-up epoch, one first clustering, then the measured ones) and --rounds >= 1.");
            return 2;
        }

        var modes = new (string Name, string[] Arguments)[]
        {
            ("MoCo", ["--warmup-epoch", epochs.ToString(CultureInfo.InvariantCulture)]),
            ("HCSC, pass", ["--warmup-epoch", "1", "--cluster-on", "Pass"]),
            ("HCSC, keys", ["--warmup-epoch", "1", "--cluster-on", "Keys"]),
        };
        var epochsOf = modes.ToDictionary(m => m.Name, _ => new List<EpochRecord>());
        var roundMedians = modes.ToDictionary(m => m.Name, _ => new List<double>());
        for (int round = 0; round < rounds; round++)
        {
            foreach (var (name, extra) in modes)
            {
                var measured = RunOnce(dataset, epochs, maxImages, seed, extra);
                if (measured is null)
                {
                    Console.WriteLine($"{name}: the run failed");
                    return 1;
                }

                // Epoch index 1 is HCSC's first clustering epoch (a cold start); the medians take epochs 2 … E − 1.
                var kept = measured.Where(e => e.Epoch >= 2).ToList();
                epochsOf[name].AddRange(kept);
                roundMedians[name].Add(Statistics.Median(kept.Select(e => e.Seconds)));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"round {round + 1}, {name}: epochs {string.Join(", ", kept.Select(e => e.Seconds.ToString("F2", CultureInfo.InvariantCulture)))} s"));
            }
        }

        double moco = Statistics.Median(epochsOf["MoCo"].Select(e => e.Seconds));
        double mocoSteps = Statistics.Median(epochsOf["MoCo"].Select(e => e.Seconds - e.Clustering));
        Console.WriteLine();
        Console.WriteLine("mode | median epoch (s) | / MoCo | median of the rounds' ratios | steps (s) | embedding pass (s) | k-means (s) | selection (steps − MoCo's, s)");
        foreach (var (name, _) in modes)
        {
            var all = epochsOf[name];
            double median = Statistics.Median(all.Select(e => e.Seconds));
            double ratios = Statistics.Median(roundMedians[name].Zip(roundMedians["MoCo"], (a, b) => a / b));
            double steps = Statistics.Median(all.Select(e => e.Seconds - e.Clustering));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name} | {median:F2} | {median / moco:F3} | {ratios:F3} | {steps:F2} | {Statistics.Median(all.Select(e => e.Embedding)):F2} | {Statistics.Median(all.Select(e => e.KMeans)):F2} | {steps - mocoSteps:F2}"));
        }

        return 0;
    }

    private static List<EpochRecord>? RunOnce(string dataset, int epochs, int maxImages, long seed, string[] extra)
    {
        string directory = Directory.CreateTempSubdirectory("hcsc-epoch-overhead-").FullName;
        try
        {
            string[] arguments =
            [
                "pretrain", "--dataset", dataset, "--epochs", epochs.ToString(CultureInfo.InvariantCulture), "--seed", seed.ToString(CultureInfo.InvariantCulture),
                "--max-images", maxImages.ToString(CultureInfo.InvariantCulture), "--knn-every", "0", "--skip-preflight", "--exp-dir", directory, .. extra,
            ];
            var previous = Console.Out;
            Console.SetOut(TextWriter.Null);
            int exit;
            try
            {
                exit = HcscCli.Create().Parse(arguments).Invoke();
            }
            finally
            {
                Console.SetOut(previous);
            }

            if (exit != 0)
            {
                return null;
            }

            return File.ReadAllLines(Path.Combine(directory, "metrics.jsonl"))
                .Select(l => JsonDocument.Parse(l).RootElement)
                .Where(r => !r.TryGetProperty("evaluation", out _))
                .Select(r => new EpochRecord(
                    r.GetProperty("epoch").GetInt32(),
                    r.GetProperty("seconds").GetDouble(),
                    Optional(r, "clustering_seconds"),
                    Optional(r, "embedding_seconds"),
                    Optional(r, "kmeans_seconds")))
                .ToList();
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static double Optional(JsonElement record, string name) => record.TryGetProperty(name, out var value) ? value.GetDouble() : 0;

    private sealed record EpochRecord(int Epoch, double Seconds, double Clustering, double Embedding, double KMeans);
}
