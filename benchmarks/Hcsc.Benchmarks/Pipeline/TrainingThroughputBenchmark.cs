using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Hcsc.Core.Options;
using Hcsc.Losses;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Optimization;
using Hcsc.Samples.ImageNetPretrain.Commands;
using Hcsc.Samples.ImageNetPretrain.Training;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Pipeline;

/// <summary>
/// The whole training step of the sample (data loading and augmentation on worker threads, model,
/// HCSC objective, SGD, queue) in images/s, against the same step fed with ready-made random
/// tensors in the same process: the ratio shows how much the trainer waits on data. Also prints the managed bytes
/// allocated per training step (all threads, data workers included).
/// Usage: pretrain-step [--epochs 3] [--workers 2]
/// </summary>
public sealed class TrainingThroughputBenchmark : IBenchmark
{
    public string Name => "pretrain-step";

    public string Description => "sample training step images/s (data + model + loss), vs the same step on ready tensors";

    public int Run(string[] args)
    {
        int epochs = int.Parse(Argument(args, "--epochs") ?? "3", CultureInfo.InvariantCulture);
        int workers = int.Parse(Argument(args, "--workers") ?? "2", CultureInfo.InvariantCulture);
        var options = HcscOptionsLoader.FromPreset("synthetic-quick");
        options.Training.Epochs = epochs;
        options.Training.WarmupEpochs = 1;
        options.Training.Workers = workers;
        options.Training.Device = "cpu";
        string directory = Directory.CreateTempSubdirectory("hcsc-bench-run-").FullName;
        try
        {
            var settings = new PretrainSettings { Dataset = "synthetic", ExperimentDirectory = directory, Width = 16, SmallStem = true };
            new PretrainRun(options, settings, TextWriter.Null).Execute();
            var rates = File.ReadAllLines(Path.Combine(directory, "metrics.jsonl"))
                .Select(line => JsonDocument.Parse(line).RootElement)
                .Where(e => e.TryGetProperty("images_per_second", out _))
                .Select(e => (
                    Epoch: e.GetProperty("epoch").GetInt32(),
                    Rate: e.GetProperty("images_per_second").GetDouble(),
                    Managed: e.GetProperty("managed_bytes_per_step").GetDouble(),
                    Hcsc: e.TryGetProperty("loss_icsc_0", out _)))
                .ToList();
            double ready = ReadyTensorRate(options, steps: 20);
            foreach (var (epoch, rate, managed, hcsc) in rates)
            {
                Console.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"epoch {epoch} ({(hcsc ? "HCSC" : "warm-up InfoNCE")}): {rate:F1} images/s with data loading on {workers} workers; {managed / 1024:F0} KiB managed allocation per step"));
            }

            double steady = rates.Where(r => r.Hcsc).Select(r => r.Rate).DefaultIfEmpty(rates[^1].Rate).Average();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"same HCSC step on ready tensors (no data loading): {ready:F1} images/s"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ratio with data / without: {steady / ready:F2} (1.0 = the trainer never waits on data)"));
            return 0;
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    // The HCSC step of PretrainRun without the loader: random views, a fixed random hierarchy of the preset's shape.
    private static double ReadyTensorRate(HcscOptions options, int steps)
    {
        int batch = options.Training.BatchSize, size = options.Augmentation.ImageSize, dim = options.Model.Dim, n = 1200;
        using var model = new HcscModel(options.Model, () => ResNet.Create(new ResNetOptions { Arch = options.Model.Arch, SmallImageStem = true, BaseWidth = 16 }));
        using var optimizer = new ExplicitScalarSgd(model.TrainableParameters(), 0.01, 0.9, weightDecay: 1e-4);
        using var queue = new SelectiveKeyQueue(options.Model.QueueLength, dim);
        using var objective = new HcscObjective(options.Objective);
        using var generator = new Generator(1);
        using var hierarchy = RandomHierarchy(options.Clustering.NumClusters, n, dim);
        queue.UseHierarchy(hierarchy);
        model.train();
        var clock = new Stopwatch();
        for (int step = 0; step < steps + 2; step++)
        {
            if (step == 2)
            {
                clock.Start();
            }

            using var scope = NewDisposeScope();
            var v1 = randn(batch, 3, size, size);
            var v2 = randn(batch, 3, size, size);
            var indices = randint(0, n, batch);
            var (q, k) = model.Forward(v1, v2, generator);
            var loss = objective.Compute(q, k, queue, indices, hierarchy, generator);
            optimizer.zero_grad();
            loss.Total.backward();
            optimizer.step();
            queue.Enqueue(k.detach(), indices);
        }

        return steps * batch / clock.Elapsed.TotalSeconds;
    }

    private static Hcsc.Core.Hierarchy.ClusterHierarchy RandomHierarchy(int[] counts, int n, int dim)
    {
        using var scope = NewDisposeScope();
        var assignments = new List<Tensor> { randint(0, counts[0], n) };
        var parents = new List<Tensor>();
        for (int l = 1; l < counts.Length; l++)
        {
            var parent = randint(0, counts[l], counts[l - 1]);
            parents.Add(parent);
            assignments.Add(parent.index_select(0, assignments[^1]));
        }

        var prototypes = counts.Select(k => nn.functional.normalize(randn(k, dim), dim: 1)).ToArray();
        var concentrations = counts.Select(k => rand(k) * 0.2 + 0.1).ToArray();
        return Hcsc.Core.Hierarchy.ClusterHierarchy.FromTensors(prototypes, assignments, concentrations, parents);
    }

    private static string? Argument(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
