using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Queue;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Models;

/// <summary>
/// Training-step throughput of <see cref="HcscModel"/> (EMA, key forward, query forward + backward, InfoNCE against a
/// 4096-key queue, SGD) against the same step in PyTorch (benchmarks/python/models_train_step.py), on CPU.
/// </summary>
public sealed class TrainingStepBenchmark : IBenchmark
{
    private sealed record Case(string Name, string Arch, int Size, int Batch);

    private static readonly Case[] Cases =
    [
        new("resnet18-small32", "resnet18", 32, 64),
        new("resnet50-224", "resnet50", 224, 16),
    ];

    public string Name => "models-train-step";

    public string Description => "HcscModel training step (ResNet-18 small stem 32px B=64, ResNet-50 224px B=16) vs PyTorch";

    public int Run(string[] args)
    {
        var steps = 4;
        var rounds = 2;
        var threads = 2;
        var splits = 1;
        var python = "/usr/bin/python3";
        var which = "all";
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--steps": steps = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--threads": threads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--bn-splits": splits = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--python": python = args[++i]; break;
                case "--case": which = args[++i]; break;
                default:
                    Console.Error.WriteLine($"Unknown option {args[i]}. Options: --case {string.Join("|", Cases.Select(c => c.Name))}|all --steps N --rounds R --threads N --bn-splits S --python PATH|none");
                    return 2;
            }
        }

        torch.set_num_threads(threads);
        Console.WriteLine($"CPU, {threads} threads, {steps} timed steps after 1 warm-up, {rounds} alternating rounds (.NET, PyTorch), best round reported; key-encoder BN splits (.NET) = {splits}; PyTorch side: {python}");
        foreach (var c in Cases.Where(c => which == "all" || c.Name == which))
        {
            using var bench = new DotnetStep(c, splits);
            using (var built = Process.GetCurrentProcess())
            {
                Console.WriteLine($"{c.Name}: .NET resident set after building model, queue and optimiser: {built.WorkingSet64 / 1048576.0:F0} MiB");
            }

            var best = double.MaxValue;
            (double Ms, double ImagesPerSecond, double PeakMiB, string Impl)? peerBest = null;
            for (var round = 0; round < rounds; round++)
            {
                var ms = bench.Time(steps);
                best = Math.Min(best, ms);
                using (var now = Process.GetCurrentProcess())
                {
                    Console.WriteLine($"{c.Name} round {round + 1}: .NET {ms:F0} ms/step (resident set now {now.WorkingSet64 / 1048576.0:F0} MiB)");
                }
                if (python == "none")
                {
                    continue;
                }

                var peer = RunPython(python, c, steps, threads);
                if (peer is null)
                {
                    Console.WriteLine($"{c.Name}: PyTorch run failed (apt-get install python3-torch python3-torchvision libopenblas0-pthread)");
                    continue;
                }

                Console.WriteLine($"{c.Name} round {round + 1}: PyTorch {peer.Value.Ms:F0} ms/step");
                if (peerBest is null || peer.Value.Ms < peerBest.Value.Ms)
                {
                    peerBest = peer;
                }
            }

            using var process = Process.GetCurrentProcess();
            Console.WriteLine($"{c.Name}: .NET TorchSharp {best:F0} ms/step, {c.Batch * 1000 / best:F1} images/s, peak RSS {process.PeakWorkingSet64 / 1048576.0:F0} MiB");
            if (peerBest is { } p)
            {
                Console.WriteLine($"{c.Name}: {p.Impl} {p.Ms:F0} ms/step, {p.ImagesPerSecond:F1} images/s, peak RSS {p.PeakMiB:F0} MiB");
                Console.WriteLine($"{c.Name}: ratio .NET / PyTorch images/s = {c.Batch * 1000 / best / p.ImagesPerSecond:F2}");
            }
        }

        return 0;
    }

    /// <summary>The .NET side: model, queue and optimiser built once, timed per round.</summary>
    private sealed class DotnetStep : IDisposable
    {
        private readonly Case c;
        private readonly HcscModel model;
        private readonly KeyQueue queue;
        private readonly TorchSharp.Modules.SGD optimizer;
        private readonly Tensor x1;
        private readonly Tensor x2;
        private readonly Tensor indices;
        private readonly Tensor targets;
        private readonly Generator generator = new(1);

        public DotnetStep(Case c, int splits)
        {
            this.c = c;
            manual_seed(0);
            model = new HcscModel(
                new ModelOptions { Arch = c.Arch, Dim = 128, Mlp = true, EncoderMomentum = 0.999, BatchNormSplits = splits },
                () => ResNet.Create(new ResNetOptions { Arch = c.Arch, SmallImageStem = c.Size <= 64, NumClasses = 0 }));
            model.train();
            queue = new KeyQueue(4096, 128);
            optimizer = optim.SGD(model.TrainableParameters(), 0.03, momentum: 0.9, weight_decay: 1e-4);
            x1 = randn(c.Batch, 3, c.Size, c.Size);
            x2 = randn(c.Batch, 3, c.Size, c.Size);
            indices = arange(c.Batch);
            targets = zeros(c.Batch, dtype: ScalarType.Int64);
        }

        public double Time(int steps)
        {
            Step();
            var watch = Stopwatch.StartNew();
            for (var i = 0; i < steps; i++)
            {
                Step();
            }

            return watch.Elapsed.TotalMilliseconds / steps;
        }

        public void Dispose()
        {
            model.Dispose();
            queue.Dispose();
            optimizer.Dispose();
            x1.Dispose();
            x2.Dispose();
            indices.Dispose();
            targets.Dispose();
            generator.Dispose();
        }

        private void Step()
        {
            using var scope = NewDisposeScope();
            var (q, k) = model.Forward(x1, x2, generator);                            // [B, d] each
            var positive = (q * k).sum(1, keepdim: true);                             // [B, 1]
            var negative = q.matmul(queue.Keys.t());                                  // [B, Q]
            var logits = cat([positive, negative], 1) / 0.2;
            var loss = nn.functional.cross_entropy(logits, targets);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            queue.Enqueue(k, indices);
        }
    }

    private static (double Ms, double ImagesPerSecond, double PeakMiB, string Impl)? RunPython(string python, Case c, int steps, int threads)
    {
        var script = FindScript();
        if (script is null || (!File.Exists(python) && python.Contains('/')))
        {
            return null;
        }

        var start = new ProcessStartInfo(python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { script, c.Arch, c.Size.ToString(CultureInfo.InvariantCulture), c.Batch.ToString(CultureInfo.InvariantCulture), steps.ToString(CultureInfo.InvariantCulture), threads.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEnd();
        process.StandardError.ReadToEnd();
        process.WaitForExit();
        var last = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
        if (process.ExitCode != 0 || last is null)
        {
            return null;
        }

        using var json = JsonDocument.Parse(last);
        var root = json.RootElement;
        return (root.GetProperty("ms_per_step").GetDouble(), root.GetProperty("images_per_s").GetDouble(),
                root.GetProperty("peak_rss_mib").GetDouble(), root.GetProperty("impl").GetString()!);
    }

    private static string? FindScript()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "benchmarks", "python", "models_train_step.py");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
