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
/// pass and k-means (the steps' excess over MoCo's is the selection). <c>--modes</c> picks other sets, the first one
/// the baseline: <c>--modes pass,multicrop</c> is what <c>--multi-crop</c> costs an HCSC epoch (issue 30).
/// </summary>
public sealed class EpochOverheadBenchmark : IBenchmark
{
    /// <inheritdoc />
    public string Name => "epoch-overhead";

    /// <inheritdoc />
    public string Description => $"MoCo vs HCSC (--cluster-on Pass and Keys) epochs alternated: medians, ratios, and the split of an HCSC epoch (--rounds 2 --epochs 6 --dataset synthetic --max-images 0 --seed 0 --modes {string.Join(',', DefaultModes)}); modes: {string.Join(", ", Modes.Keys)}";

    private static readonly string[] DefaultModes = ["moco", "pass", "keys"];

    // Each mode's name in the table and the options it adds to the run; "epochs" stands for --epochs (MoCo: all warm-up).
    private static readonly IReadOnlyDictionary<string, (string Name, string[] Arguments)> Modes = new Dictionary<string, (string, string[])>
    {
        ["moco"] = ("MoCo", ["--warmup-epoch", "epochs"]),
        ["pass"] = ("HCSC, pass", ["--warmup-epoch", "1", "--cluster-on", "Pass"]),
        ["keys"] = ("HCSC, keys", ["--warmup-epoch", "1", "--cluster-on", "Keys"]),
        ["multicrop"] = ("HCSC, pass, multi-crop", ["--warmup-epoch", "1", "--cluster-on", "Pass", "--multi-crop"]),
        ["moco-multicrop"] = ("MoCo, multi-crop", ["--warmup-epoch", "epochs", "--multi-crop"]),
        ["pass-channels-first"] = ("HCSC, pass, channels-first", ["--warmup-epoch", "1", "--cluster-on", "Pass", "--layout", "ChannelsFirst"]),
        ["multicrop-channels-first"] = ("HCSC, pass, multi-crop, channels-first", ["--warmup-epoch", "1", "--cluster-on", "Pass", "--multi-crop", "--layout", "ChannelsFirst"]),
    };

    /// <inheritdoc />
    public int Run(string[] args)
    {
        int rounds = 2, epochs = 6, maxImages = 0;
        long seed = 0;
        string dataset = "synthetic";
        string[] chosen = DefaultModes;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--epochs": epochs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--max-images": maxImages = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--seed": seed = long.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--dataset": dataset = args[++i]; break;
                case "--modes": chosen = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries); break;
                default:
                    Console.Error.WriteLine($"Unknown option {args[i]}. Options: --rounds N --epochs E (>= 3) --dataset NAME --max-images N --seed S --modes {string.Join(',', Modes.Keys)}");
                    return 2;
            }
        }

        if (epochs < 3 || rounds < 1)
        {
            Console.Error.WriteLine("--epochs must be >= 3 (one warm-up epoch, one first clustering, then the measured ones) and --rounds >= 1.");
            return 2;
        }

        if (chosen.Length == 0 || chosen.FirstOrDefault(m => !Modes.ContainsKey(m)) is { } unknown)
        {
            Console.Error.WriteLine($"--modes takes a comma-separated list of {string.Join(", ", Modes.Keys)}.");
            return 2;
        }

        var modes = chosen.Select(m => (Modes[m].Name, Arguments: Modes[m].Arguments.Select(a => a == "epochs" ? epochs.ToString(CultureInfo.InvariantCulture) : a).ToArray())).ToArray();
        string baseline = modes[0].Name;
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

        double baselineEpoch = Statistics.Median(epochsOf[baseline].Select(e => e.Seconds));
        double baselineSteps = Statistics.Median(epochsOf[baseline].Select(e => e.Seconds - e.Clustering));
        Console.WriteLine();
        Console.WriteLine($"mode | median epoch (s) | / {baseline} | median of the rounds' ratios | steps (s) | embedding pass (s) | k-means (s) | steps − {baseline}'s (s)");
        foreach (var (name, _) in modes)
        {
            var all = epochsOf[name];
            double median = Statistics.Median(all.Select(e => e.Seconds));
            double ratios = Statistics.Median(roundMedians[name].Zip(roundMedians[baseline], (a, b) => a / b));
            double steps = Statistics.Median(all.Select(e => e.Seconds - e.Clustering));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name} | {median:F2} | {median / baselineEpoch:F3} | {ratios:F3} | {steps:F2} | {Statistics.Median(all.Select(e => e.Embedding)):F2} | {Statistics.Median(all.Select(e => e.KMeans)):F2} | {steps - baselineSteps:F2}"));
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
