using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Hcsc.Samples.ImageNetPretrain.Commands;
using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Benchmarks.Experiments;

/// <summary>
/// The real-data comparison of docs/results.md: on Fashion-MNIST (Debian's dataset-fashion-mnist), for each seed, the
/// sample's fashion-mnist preset trained as each of <see cref="Methods"/> (by default HCSC and MoCo, which is warm-up
/// for every epoch: no clustering, plain InfoNCE) with the same budget; then kNN top-1 (k = 20) on the whole 10 000-image
/// test set, a linear probe on cached features and per-level NMI for the untrained network and every method, and the
/// same kNN and linear probe on the raw pixels
/// (<see cref="RawPixelBaselines"/>). Prints a markdown
/// table (mean ± sample standard deviation over seeds; per run the training time, i.e. the epochs with their clustering,
/// and the wall time with the evaluations before and after) and keeps every run's folder.
/// </summary>
public sealed class FashionMnistComparison : IBenchmark
{
    /// <inheritdoc />
    public string Name => "fashion-mnist";

    /// <inheritdoc />
    public string Description => $"untrained vs MoCo vs HCSC on Fashion-MNIST, same budget, several seeds (--seeds 0,1,2 --max-images N --epochs E --warmup-epoch W [--batch-size B] [--methods moco,hcsc] --out DIR [--reuse]); methods: {string.Join(", ", Methods.Keys)}";

    /// <summary>
    /// The trainings a run can compare, by name: whether the run is all warm-up (MoCo) and the options it adds to the
    /// preset. A method's runs live in <c>OUT/METHOD-seedS</c>, so adding a method to an earlier <c>--out</c> with
    /// <c>--reuse</c> trains only the new one.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, (bool IsMoco, string[] Options)> Methods = new Dictionary<string, (bool, string[])>
    {
        ["moco"] = (true, []),
        ["hcsc"] = (false, []),
        ["hcsc-keys"] = (false, ["--cluster-on", "Keys"]),
        ["moco-multicrop"] = (true, ["--multi-crop"]),
        ["hcsc-multicrop"] = (false, ["--multi-crop"]),
    };

    /// <inheritdoc />
    public int Run(string[] args)
    {
        int[] seeds = [0, 1, 2];
        int maxImages = 12000, epochs = 8, warmup = 3, knnEvery = 2, batchSize = 0;
        string data = "/usr/share/datasets/fashion-mnist", output = "runs/fashion-mnist";
        double linearLr = 0.1;
        string[] methods = ["moco", "hcsc"];
        bool reuse = args.Contains("--reuse");
        args = args.Where(a => a != "--reuse").ToArray();
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            string value = args[i + 1];
            switch (args[i])
            {
                case "--seeds": seeds = value.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(); break;
                case "--max-images": maxImages = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--epochs": epochs = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--warmup-epoch": warmup = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--batch-size": batchSize = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--knn-every": knnEvery = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--linear-lr": linearLr = double.Parse(value, CultureInfo.InvariantCulture); break;
                case "--methods": methods = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries); break;
                case "--data": data = value; break;
                case "--out": output = value; break;
                default: Console.Error.WriteLine($"Unknown option {args[i]}. {Description}"); return 2;
            }
        }

        if (!File.Exists(Path.Combine(data, "t10k-labels-idx1-ubyte.gz")) && !File.Exists(Path.Combine(data, "t10k-labels-idx1-ubyte")))
        {
            Console.Error.WriteLine($"No Fashion-MNIST in {data}: apt-get install dataset-fashion-mnist, or --data DIR.");
            return 2;
        }

        if (methods.FirstOrDefault(m => !Methods.ContainsKey(m)) is { } unknown)
        {
            Console.Error.WriteLine($"Unknown method '{unknown}' in --methods; known: {string.Join(", ", Methods.Keys)}.");
            return 2;
        }

        var rows = new List<Row>();
        foreach (int seed in seeds)
        {
            foreach (string method in methods)
            {
                var (isMoco, options) = Methods[method];
                int warmupEpochs = isMoco ? epochs : warmup;
                string directory = Path.Combine(output, $"{method}-seed{seed}");
                string wallFile = Path.Combine(directory, "wall_seconds.txt");
                if (!(reuse && File.Exists(wallFile)))
                {
                    if (Directory.Exists(directory))
                    {
                        Directory.Delete(directory, recursive: true);
                    }

                    var clock = Stopwatch.StartNew();
                    string[] batch = batchSize > 0 ? ["--batch-size", Text(batchSize)] : []; // 0: the preset's
                    Invoke(["pretrain", "--dataset", "fashion-mnist", "--data", data, "--max-images", Text(maxImages), "--epochs", Text(epochs),
                            "--warmup-epoch", Text(warmupEpochs), "--knn-every", Text(knnEvery), "--seed", Text(seed), "--exp-dir", directory, .. batch, .. options]);
                    File.WriteAllText(wallFile, Text(clock.Elapsed.TotalSeconds));
                    Invoke(["linear", "--checkpoint", Path.Combine(directory, PretrainRun.LatestCheckpoint), "--lr", Text(linearLr), "--seed", Text(seed)]);
                }

                double seconds = double.Parse(File.ReadAllText(wallFile), CultureInfo.InvariantCulture);
                string metricsPath = Path.Combine(directory, "metrics.jsonl");
                List<JsonElement> Records() => File.ReadAllLines(metricsPath).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
                bool IsEvaluation(JsonElement r, string name) => r.TryGetProperty("evaluation", out var e) && e.GetString() == name;
                if (method == methods[0] && !Records().Any(r => IsEvaluation(r, "linear_untrained")))
                {
                    // The same architecture with fresh weights of the same seed: the untrained network's linear probe.
                    Invoke(["linear", "--checkpoint", Path.Combine(directory, PretrainRun.LatestCheckpoint), "--untrained", "--lr", Text(linearLr), "--seed", Text(seed)]);
                }

                var records = Records();
                JsonElement Evaluation(string name) => records.Last(r => IsEvaluation(r, name));
                JsonElement? UntrainedLinear() => records.Any(r => IsEvaluation(r, "linear_untrained")) ? Evaluation("linear_untrained") : null;
                double training = records.Where(r => !r.TryGetProperty("evaluation", out _)).Sum(r => r.GetProperty("seconds").GetDouble());
                rows.Add(Row.From("untrained", seed, Evaluation("untrained"), UntrainedLinear(), double.NaN, double.NaN));
                rows.Add(Row.From(method, seed, Evaluation("final"), Evaluation("linear"), training, seconds));
                Console.WriteLine($"{method} seed {seed}: {rows[^1]}");
            }
        }

        var pixels = RawPixelBaselines.Measure("fashion-mnist", data, maxImages, linearLr, seeds[0]);
        string plot = PlotKnnPerEpoch(output, seeds, methods, pixels[0].KnnTop1);
        Console.WriteLine();
        Console.WriteLine($"Fashion-MNIST, {maxImages} training images, {epochs} epochs (HCSC: {warmup} warm-up), batch {(batchSize > 0 ? Text(batchSize) : "of the preset")}, seeds {string.Join(", ", seeds)}; kNN k = 20 on the 10 000 test images; linear probe: cached features, 100 epochs, lr {linearLr}");
        Console.WriteLine();
        Console.WriteLine("| method | kNN top-1 (%) | linear top-1 (%) | NMI per level (train) | training time per run (s) | wall time with evaluations (s) |");
        Console.WriteLine("|---|---|---|---|---|---|");
        RawPixelBaselines.PrintRows(pixels);
        foreach (string method in methods.Prepend("untrained"))
        {
            var group = rows.Where(r => r.Method == method).GroupBy(r => r.Seed).Select(g => g.First()).ToList();
            int levels = group[0].Nmi.Count;
            string nmi = string.Join(" / ", Enumerable.Range(0, levels).Select(l => MeanSd(group.Select(r => r.Nmi[l]), "F3")));
            Console.WriteLine($"| {method} | {MeanSd(group.Select(r => r.Knn), "F2")} | {MeanSd(group.Select(r => r.Linear), "F2")} | {nmi} | {MeanSd(group.Select(r => r.TrainingSeconds), "F0")} | {MeanSd(group.Select(r => r.Seconds), "F0")} |");
        }

        Console.WriteLine();
        Console.WriteLine($"kNN top-1 per epoch, mean over seeds: {plot}");
        return 0;
    }

    // kNN top-1 at every evaluated epoch (0 = untrained), mean over seeds, for every method; raw pixels as a line.
    private static string PlotKnnPerEpoch(string output, int[] seeds, string[] methods, double pixels)
    {
        var plot = new ScottPlot.Plot();
        foreach (string method in methods)
        {
            var points = seeds.SelectMany(seed => File.ReadAllLines(Path.Combine(output, $"{method}-seed{seed}", "metrics.jsonl"))
                    .Select(l => JsonDocument.Parse(l).RootElement)
                    .Where(r => r.TryGetProperty("knn_top1", out _))
                    .Select(r => (Epoch: r.TryGetProperty("evaluation", out var e) && e.GetString() == "untrained" ? 0 : r.GetProperty("epoch").GetInt32() + (r.TryGetProperty("evaluation", out _) ? 0 : 1),
                                  Top1: r.GetProperty("knn_top1").GetDouble())))
                .GroupBy(p => p.Epoch).OrderBy(g => g.Key).ToList();
            var scatter = plot.Add.Scatter(points.Select(g => (double)g.Key).ToArray(), points.Select(g => g.Average(p => p.Top1)).ToArray());
            scatter.LegendText = method;
        }

        var line = plot.Add.HorizontalLine(pixels);
        line.LegendText = "raw pixels (784 grey values, standardised)";
        plot.Title($"Fashion-MNIST: kNN top-1 (k = 20) per epoch, mean of {seeds.Length} seeds");
        plot.XLabel("epoch (0 = untrained)");
        plot.YLabel("top-1 (%)");
        plot.ShowLegend(ScottPlot.Alignment.LowerRight);
        string path = Path.Combine(output, "knn_per_epoch.png");
        plot.SavePng(path, 900, 540);
        return path;
    }

    private static void Invoke(string[] arguments)
    {
        int exit = HcscCli.Create().Parse(arguments).Invoke();
        if (exit != 0)
        {
            throw new InvalidOperationException($"'{string.Join(' ', arguments)}' failed with exit code {exit}.");
        }
    }

    private static string Text(double value) => value.ToString(CultureInfo.InvariantCulture);

    private static string MeanSd(IEnumerable<double> values, string format)
    {
        var v = values.Where(double.IsFinite).ToArray();
        if (v.Length == 0)
        {
            return "–";
        }

        double mean = v.Average();
        double sd = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0;
        return $"{mean.ToString(format, CultureInfo.InvariantCulture)} ± {sd.ToString(format, CultureInfo.InvariantCulture)}";
    }

    private sealed record Row(string Method, int Seed, double Knn, double Linear, IReadOnlyList<double> Nmi, double TrainingSeconds, double Seconds)
    {
        public static Row From(string method, int seed, JsonElement evaluation, JsonElement? linear, double trainingSeconds, double seconds) => new(
            method, seed, evaluation.GetProperty("knn_top1").GetDouble(),
            linear?.GetProperty("linear_top1").GetDouble() ?? double.NaN,
            evaluation.GetProperty("nmi").EnumerateArray().Select(e => e.GetDouble()).ToArray(), trainingSeconds, seconds);

        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"kNN {Knn:F2} %, linear {Linear:F2} %, NMI {string.Join(" / ", Nmi.Select(n => n.ToString("F3", CultureInfo.InvariantCulture)))}, training {TrainingSeconds:F0} s, {Seconds:F0} s with evaluations");
    }
}
