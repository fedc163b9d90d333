using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Optimization;
using Hcsc.Core.Queue;
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
        var steps = 6;
        var threads = 2;
        var splits = 1;
        var python = "/usr/bin/python3";
        var which = "all";
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--steps": steps = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--threads": threads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--bn-splits": splits = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--python": python = args[++i]; break;
                case "--case": which = args[++i]; break;
                default:
                    Console.Error.WriteLine($"Unknown option {args[i]}. Options: --case {string.Join("|", Cases.Select(c => c.Name))}|all --steps N --threads N --bn-splits S --python PATH|none");
                    return 2;
            }
        }

        torch.set_num_threads(threads);
        Console.WriteLine($"CPU, {threads} threads; {steps} timed steps per side after 1 warm-up, .NET and PyTorch steps alternating one by one; medians reported; key-encoder BN splits (.NET) = {splits}; PyTorch: {python}");
        var oneDnn = Hcsc.Runtime.OneDnnGuard.Apply();
        Console.WriteLine($"oneDNN convolutions (.NET): {(oneDnn.ConvolutionsUseOneDnn ? "on" : "off")} ({oneDnn.Reason}); {Hcsc.Runtime.OneDnnGuard.EnvironmentVariable}=on|off chooses");
        var heap = Hcsc.Runtime.NativeHeap.Apply();
        Console.WriteLine($"native heap: {heap.Reason}; {Hcsc.Runtime.NativeHeap.EnvironmentVariable}=off leaves glibc's defaults");
        foreach (var c in Cases.Where(c => which == "all" || c.Name == which))
        {
            using var bench = new DotnetStep(c, splits);
            using (var built = Process.GetCurrentProcess())
            {
                Console.WriteLine($"{c.Name}: .NET resident set after building model, queue and optimiser: {built.WorkingSet64 / 1048576.0:F0} MiB");
            }

            using var peer = python == "none" ? null : PythonPeer.Start(python, c, threads);
            if (python != "none" && peer is null)
            {
                Console.WriteLine($"{c.Name}: the PyTorch side did not start (apt-get install python3-torch python3-torchvision libopenblas0-pthread)");
            }

            bench.Step();   // warm-up
            var ours = new List<double>();
            var theirs = new List<double>();
            for (var i = 0; i < steps; i++)
            {
                ours.Add(bench.TimedStep());
                if (peer is not null)
                {
                    theirs.Add(peer.Step());
                }

                Console.WriteLine(peer is null
                    ? $"{c.Name} step {i + 1}: .NET {ours[^1]:F0} ms"
                    : $"{c.Name} step {i + 1}: .NET {ours[^1]:F0} ms, PyTorch {theirs[^1]:F0} ms");
            }

            var ms = Statistics.Median(ours);
            using (var process = Process.GetCurrentProcess())
            {
                Console.WriteLine($"{c.Name}: .NET TorchSharp median {ms:F0} ms/step, {c.Batch * 1000 / ms:F1} images/s, peak RSS {process.PeakWorkingSet64 / 1048576.0:F0} MiB (process so far)");
            }

            if (peer is not null)
            {
                var (impl, peak) = peer.Finish();
                var peerMs = Statistics.Median(theirs);
                var pairRatio = Statistics.Median(ours.Zip(theirs, (a, b) => b / a).ToList());
                Console.WriteLine($"{c.Name}: {impl} median {peerMs:F0} ms/step, {c.Batch * 1000 / peerMs:F1} images/s, peak RSS {peak:F0} MiB");
                Console.WriteLine($"{c.Name}: .NET / PyTorch images/s = {peerMs / ms:F2} (ratio of medians), {pairRatio:F2} (median of per-pair ratios)");
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
            optimizer = new ExplicitScalarSgd(model.TrainableParameters(), 0.03, momentum: 0.9, weightDecay: 1e-4);
            x1 = randn(c.Batch, 3, c.Size, c.Size);
            x2 = randn(c.Batch, 3, c.Size, c.Size);
            indices = arange(c.Batch);
            targets = zeros(c.Batch, dtype: ScalarType.Int64);
        }

        public double TimedStep()
        {
            var watch = Stopwatch.StartNew();
            Step();
            return watch.Elapsed.TotalMilliseconds;
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

        public void Step()
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

    /// <summary>The PyTorch side, kept running (`serve` mode) so single steps can alternate with ours.</summary>
    private sealed class PythonPeer : IDisposable
    {
        private readonly Process process;

        private PythonPeer(Process process) => this.process = process;

        public static PythonPeer? Start(string python, Case c, int threads)
        {
            var script = FindScript();
            if (script is null || (python.Contains('/') && !File.Exists(python)))
            {
                return null;
            }

            var start = new ProcessStartInfo(python)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = false,
                UseShellExecute = false,
            };
            foreach (var argument in new[] { script, c.Arch, c.Size.ToString(CultureInfo.InvariantCulture), c.Batch.ToString(CultureInfo.InvariantCulture), "0", threads.ToString(CultureInfo.InvariantCulture), "serve" })
            {
                start.ArgumentList.Add(argument);
            }

            start.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
            var process = Process.Start(start)!;
            var peer = new PythonPeer(process);
            if (process.StandardOutput.ReadLine() != "ready")
            {
                peer.Dispose();
                return null;
            }

            return peer;
        }

        public double Step()
        {
            process.StandardInput.WriteLine("step");
            process.StandardInput.Flush();
            return double.Parse(process.StandardOutput.ReadLine()!, CultureInfo.InvariantCulture);
        }

        public (string Impl, double PeakMiB) Finish()
        {
            process.StandardInput.WriteLine("quit");
            process.StandardInput.Flush();
            using var json = JsonDocument.Parse(process.StandardOutput.ReadLine()!);
            return (json.RootElement.GetProperty("impl").GetString()!, json.RootElement.GetProperty("peak_rss_mib").GetDouble());
        }

        public void Dispose()
        {
            if (!process.HasExited)
            {
                process.StandardInput.Close();
                if (!process.WaitForExit(10_000))
                {
                    process.Kill();
                }
            }

            process.Dispose();
        }
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
