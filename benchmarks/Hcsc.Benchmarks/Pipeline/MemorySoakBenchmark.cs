using System.Globalization;
using System.Text.Json;
using Hcsc.Samples.ImageNetPretrain.Commands;
using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Benchmarks.Pipeline;

/// <summary>
/// A long run of the sample's default training (synthetic-quick preset, 18 steps an epoch, HCSC from epoch 2) that
/// reports resident memory, managed heap and live tensors after every epoch (from metrics.jsonl), and the growth of
/// resident memory (median of five epochs at each end) over the steps after the first HCSC epoch. Exits 1 when it
/// grows by 5 % or more, or when the live tensors after an HCSC epoch change.
/// </summary>
public sealed class MemorySoakBenchmark : IBenchmark
{
    /// <inheritdoc />
    public string Name => "memory-soak";

    /// <inheritdoc />
    public string Description => "resident memory, managed heap and live tensors per epoch over a long default run (--epochs 36: ~650 steps); fails on >= 5 % RSS growth";

    /// <inheritdoc />
    public int Run(string[] args)
    {
        int epochs = args.Length >= 2 && args[0] == "--epochs" ? int.Parse(args[1], CultureInfo.InvariantCulture) : 36;
        var options = HcscOptionsLoader.FromPreset("synthetic-quick");
        options.Training.Epochs = epochs;
        options.Training.WarmupEpochs = 1;
        options.Training.CheckpointEvery = epochs;
        options.Training.Device = "cpu";
        string directory = Directory.CreateTempSubdirectory("hcsc-soak-").FullName;
        try
        {
            new PretrainRun(options, new PretrainSettings { Dataset = "synthetic", ExperimentDirectory = directory, Width = 16, SmallStem = true }, TextWriter.Null).Execute();
            var epochsRecords = File.ReadAllLines(Path.Combine(directory, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement)
                .Where(r => !r.TryGetProperty("evaluation", out _)).ToList();
            Console.WriteLine("epoch | steps so far | RSS (MiB) | managed heap (MiB) | live tensors (training thread)");
            int steps = 0;
            var rss = new List<(int Steps, double Rss)>();
            foreach (var r in epochsRecords)
            {
                steps += r.GetProperty("step_losses").GetArrayLength();
                double resident = r.GetProperty("rss_mib").GetDouble();
                rss.Add((steps, resident));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{r.GetProperty("epoch").GetInt32() + 1} | {steps} | {resident:F0} | {r.GetProperty("managed_mib").GetDouble():F1} | {r.GetProperty("live_tensors").GetInt64()}"));
            }

            // Baseline: the first HCSC epochs (from epoch 2, when every buffer of the HCSC step exists); end: the last
            // epochs. A single epoch's RSS swings by up to 10 % (the allocator keeps what clustering and evaluation
            // freed for a while), so each end is the median of five epochs; live tensors must not change at all.
            const int window = 5;
            var first = rss.Skip(1).Take(window).ToList();
            var last = rss.TakeLast(window).ToList();
            double baseRss = Statistics.Median(first.Select(r => r.Rss)), lastRss = Statistics.Median(last.Select(r => r.Rss));
            double growth = (lastRss - baseRss) / baseRss;
            var live = epochsRecords.Skip(1).Select(r => r.GetProperty("live_tensors").GetInt64()).Distinct().ToList();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"RSS median of steps {first[0].Steps}-{first[^1].Steps}: {baseRss:F0} MiB; of steps {last[0].Steps}-{last[^1].Steps}: {lastRss:F0} MiB; growth over {last[^1].Steps - first[0].Steps} steps: {growth:P1} (limit 5 %); live tensors after each HCSC epoch: {string.Join(", ", live)}"));
            if (live.Count > 1)
            {
                Console.WriteLine("live tensors grow from epoch to epoch: a tensor escapes its dispose scope");
                return 1;
            }

            return growth < 0.05 ? 0 : 1;
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
