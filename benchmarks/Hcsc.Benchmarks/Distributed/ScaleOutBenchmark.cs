using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Hcsc.Core.Distributed;
using Hcsc.Core.Options;
using Hcsc.Distributed.Mpi;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Distributed;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Distributed;

/// <summary>
/// Issue 15's scale-out figures on one machine: the sample's pretraining (built-in synthetic data, preset synthetic-quick)
/// in one process and under <c>mpirun -np 2 … --distributed mpi</c> with the same global batch — steps per second of the
/// MoCo warm-up and HCSC epochs and the clustering time, from rank 0's metrics.jsonl — and the communication of one
/// step: <see cref="GradientAllReduce.Average(IEnumerable{TorchSharp.Modules.Parameter})"/> of the trained model's query
/// encoder (and of ResNet-50's), the batch-norm buffer averaging and the all-gathers of key views and keys, timed under
/// <c>mpirun -np 2</c> by this program itself (<c>--child</c>). Every configuration uses all the cores: torch threads and
/// data workers = cores / ranks per rank.
/// </summary>
public sealed class ScaleOutBenchmark : IBenchmark
{
    private const int GlobalBatch = 64; // synthetic-quick's Training:BatchSize

    /// <inheritdoc />
    public string Name => "scale-out";

    /// <inheritdoc />
    public string Description => "sample pretraining, 1 process vs mpirun -np 2 (steps/s, k-means time) + all-reduce time per step";

    /// <inheritdoc />
    public int Run(string[] args)
    {
        int epochs = 3, warmup = 1, repeats = 7, cores = Environment.ProcessorCount;
        bool child = false, skipTraining = false;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--epochs" when i + 1 < args.Length: epochs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--warmup-epoch" when i + 1 < args.Length: warmup = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--repeats" when i + 1 < args.Length: repeats = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--cores" when i + 1 < args.Length: cores = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--skip-training": skipTraining = true; break;
                case "--child": child = true; break;
                default:
                    Console.Error.WriteLine($"Unknown option {args[i]}. Options: --epochs 3 --warmup-epoch 1 --repeats 7 --cores N --skip-training");
                    return 2;
            }
        }

        if (child)
        {
            return RunChild(repeats);
        }

        string? mpirun = FindOnPath("mpirun");
        if (mpirun is null)
        {
            Console.Error.WriteLine("mpirun is not on PATH: install Open MPI (apt-get install openmpi-bin libopenmpi-dev).");
            return 2;
        }

        string folder = AppContext.BaseDirectory;
        string sample = Path.Combine(folder, "hcsc-pretrain.dll");
        string self = Path.Combine(folder, "Hcsc.Benchmarks.dll");
        int perRank = Math.Max(1, cores / 2);
        Console.WriteLine($"scale-out: {cores} cores; 1 process with {cores} torch threads + {cores} data workers, 2 ranks with {perRank} + {perRank} each; " +
            $"global batch {GlobalBatch}; {epochs} epochs ({warmup} MoCo warm-up); {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; load average {LoadAverage()}");

        var runs = new List<RunFigures>();
        if (!skipTraining)
        {
            foreach (int ranks in (int[])[1, 2])
            {
                int threads = Math.Max(1, cores / ranks);
                string directory = Directory.CreateTempSubdirectory($"hcsc-scale-out-{ranks}-").FullName;
                try
                {
                    string[] pretrain =
                    [
                        "pretrain", "--dataset", "synthetic", "--epochs", Invariant(epochs), "--warmup-epoch", Invariant(warmup),
                        "--workers", Invariant(threads), "--exp-dir", directory,
                    ];
                    string[] command = ranks == 1
                        ? ["dotnet", sample, .. pretrain]
                        : [mpirun, "-np", Invariant(ranks), "--oversubscribe", "--allow-run-as-root", "-x", "OMP_NUM_THREADS", "dotnet", sample, .. pretrain, "--distributed", "mpi"];
                    var clock = Stopwatch.StartNew();
                    var (exit, text) = Launch(command, threads);
                    double wall = clock.Elapsed.TotalSeconds;
                    if (exit != 0)
                    {
                        Console.Error.WriteLine($"{ranks} rank(s): exit {exit}\n{text}");
                        return 1;
                    }

                    string device = text.Split('\n').FirstOrDefault(l => l.Contains("Device:", StringComparison.Ordinal))?.Trim() ?? "?";
                    Console.WriteLine($"  {ranks} rank(s): {device}; {wall:F1} s in all");
                    runs.Add(Read(ranks, Path.Combine(directory, "metrics.jsonl"), wall));
                }
                finally
                {
                    Directory.Delete(directory, recursive: true);
                }
            }
        }

        string[] allReduce =
        [
            mpirun, "-np", "2", "--oversubscribe", "--allow-run-as-root", "-x", "OMP_NUM_THREADS",
            "dotnet", self, Name, "--child", "--repeats", Invariant(repeats),
        ];
        var (childExit, childText) = Launch(allReduce, Math.Max(1, cores / 2));
        if (childExit != 0)
        {
            Console.Error.WriteLine($"the all-reduce timing under mpirun failed (exit {childExit}):\n{childText}");
            return 1;
        }

        var comm = childText.Split('\n').Where(l => l.Contains("COMM|", StringComparison.Ordinal))
            .Select(l => l[l.IndexOf("COMM|", StringComparison.Ordinal)..].Trim().Split('|')).ToList(); // after any terminal escape the child's console wrote

        var table = new StringBuilder();
        if (runs.Count == 2)
        {
            var (one, two) = (runs[0], runs[1]);
            table.AppendLine("| figure | 1 process | 2 ranks | 2 ranks / 1 process |");
            table.AppendLine("|---|---|---|---|");
            Row(table, "MoCo epochs: steps/s (median epoch)", one.MocoStepsPerSecond, two.MocoStepsPerSecond, "F2");
            Row(table, "HCSC epochs: steps/s (median epoch)", one.HcscStepsPerSecond, two.HcscStepsPerSecond, "F2");
            Row(table, "HCSC epochs: ms/step", 1000 / one.HcscStepsPerSecond, 1000 / two.HcscStepsPerSecond, "F0");
            Row(table, "clustering (embed + gather + k-means), s/epoch (median)", one.ClusteringSeconds, two.ClusteringSeconds, "F2");
            Row(table, "whole run incl. start-up and evaluations, s", one.WallSeconds, two.WallSeconds, "F1");
            table.AppendLine();
        }

        table.AppendLine($"Communication under mpirun -np 2 ({repeats} repetitions, median; one rank's view):");
        table.AppendLine();
        table.AppendLine("| operation | elements | MB | median ms | min ms | MB/s (MB / median) |");
        table.AppendLine("|---|---|---|---|---|---|");
        foreach (var c in comm)
        {
            double elements = double.Parse(c[2], CultureInfo.InvariantCulture), megabytes = elements * 4 / 1e6;
            double median = double.Parse(c[3], CultureInfo.InvariantCulture), min = double.Parse(c[4], CultureInfo.InvariantCulture);
            table.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {c[1]} | {elements:N0} | {megabytes:F1} | {median:F1} | {min:F1} | {megabytes / (median / 1000):F0} |"));
        }

        if (runs.Count == 2)
        {
            double step = 1000 / runs[1].HcscStepsPerSecond;
            var stepRows = comm.Where(c => c[1].StartsWith("step:", StringComparison.Ordinal)).ToList();
            double perStep = stepRows.Sum(c => double.Parse(c[3], CultureInfo.InvariantCulture));
            double perStepMin = stepRows.Sum(c => double.Parse(c[4], CultureInfo.InvariantCulture));
            table.AppendLine();
            table.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"Communication of one step (the `step:` rows): {perStep:F1} ms median ({perStepMin:F1} ms at best) = {100 * perStep / step:F0} % ({100 * perStepMin / step:F0} %) of the 2-rank HCSC step ({step:F0} ms)."));
        }

        Console.WriteLine();
        Console.Write(table);
        return 0;
    }

    private sealed record RunFigures(int Ranks, double MocoStepsPerSecond, double HcscStepsPerSecond, double ClusteringSeconds, double WallSeconds);

    private static RunFigures Read(int ranks, string metrics, double wall)
    {
        var epochs = File.ReadAllLines(metrics).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement.Clone())
            .Where(r => r.TryGetProperty("images_per_second", out _)).ToList();
        double StepsPerSecond(JsonElement r) => r.GetProperty("images_per_second").GetDouble() / GlobalBatch;
        var moco = epochs.Where(r => !r.TryGetProperty("clustering_seconds", out _)).Select(StepsPerSecond).ToList();
        var hcsc = epochs.Where(r => r.TryGetProperty("clustering_seconds", out _)).ToList();
        return new RunFigures(
            ranks,
            moco.Count > 0 ? Statistics.Median(moco) : double.NaN,
            hcsc.Count > 0 ? Statistics.Median(hcsc.Select(StepsPerSecond)) : double.NaN,
            hcsc.Count > 0 ? Statistics.Median(hcsc.Select(r => r.GetProperty("clustering_seconds").GetDouble())) : double.NaN,
            wall);
    }

    private static void Row(StringBuilder table, string name, double one, double two, string format) =>
        table.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {one.ToString(format, CultureInfo.InvariantCulture)} | {two.ToString(format, CultureInfo.InvariantCulture)} | {two / one:F2} |"));

    /// <summary>The MPI child: times the collectives of one data-parallel step and ResNet-50's gradient all-reduce; rank 0 prints <c>COMM|name|elements|median ms|min ms</c>.</summary>
    private static int RunChild(int repeats)
    {
        using var mpi = MpiCollectives.Initialize();
        try
        {
            // The model synthetic-quick trains: ResNet-18 with the small-image stem, width 64, MLP head to d = 64.
            using var trained = new HcscModel(
                new ModelOptions { Arch = "resnet18", Dim = 64, Mlp = true, QueueLength = 1024, BatchNormSplits = 1, EncoderMomentum = 0.99 },
                () => ResNet.Create(new ResNetOptions { Arch = "resnet18", SmallImageStem = true, BaseWidth = 64 }));
            using var resnet50 = ResNet.Create(new ResNetOptions { Arch = "resnet50" });
            var trainedParameters = trained.TrainableParameters().ToList();
            var resnet50Parameters = resnet50.parameters().ToList();
            FillGradients(trainedParameters);
            FillGradients(resnet50Parameters);
            var averaging = new GradientAllReduce(mpi);
            int rankBatch = GlobalBatch / mpi.Size;
            using var views = randn(rankBatch, 3, 32, 32);
            using var keys = randn(rankBatch, 64);
            long bufferElements = trained.buffers().Where(b => b.is_floating_point()).Sum(b => b.numel());

            Time(mpi, repeats, "step: gradient all-reduce, trained query encoder (ResNet-18 small stem + MLP)", trainedParameters.Sum(p => p.numel()),
                () => averaging.Average(trainedParameters));
            Time(mpi, repeats, "step: BN buffer averaging (both encoders)", bufferElements, () => averaging.AverageBuffers(trained));
            Time(mpi, repeats, $"step: all-gather key views [{rankBatch}, 3, 32, 32] a rank", views.numel() * mpi.Size, () => mpi.AllGather(views).Dispose());
            Time(mpi, repeats, $"step: all-gather keys [{rankBatch}, 64] a rank", keys.numel() * mpi.Size, () => mpi.AllGather(keys).Dispose());
            Time(mpi, repeats, "gradient all-reduce, ResNet-50 (GradientAllReduce, 25 MiB buckets)", resnet50Parameters.Sum(p => p.numel()),
                () => averaging.Average(resnet50Parameters));
            var flat = new float[resnet50Parameters.Sum(p => p.numel())];
            Time(mpi, repeats, "plain AllReduceSum of ResNet-50's count of floats (one call)", flat.Length, () => mpi.AllReduceSum(flat.AsSpan()));
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"rank {mpi.Rank}: {e}");
            Console.Error.Flush();
            mpi.Abort(2);
        }

        return 0;
    }

    private static void FillGradients(List<TorchSharp.Modules.Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        var loss = parameters.Select(p => p.square().sum()).Aggregate((a, b) => a + b);
        loss.backward();
    }

    private static void Time(ICollectives mpi, int repeats, string name, long elements, Action operation)
    {
        operation(); // warm-up: buffers, connections
        var times = new List<double>();
        for (int i = 0; i < repeats; i++)
        {
            mpi.Barrier();
            var clock = Stopwatch.StartNew();
            operation();
            times.Add(clock.Elapsed.TotalMilliseconds);
        }

        double[] mine = [Statistics.Median(times), times.Min()];
        double[] gathered = new double[2 * mpi.Size];
        mpi.AllGather<double>(mine, gathered);
        if (mpi.Rank == 0)
        {
            // The slower rank's median and minimum: a collective finishes when the last rank does.
            double median = Enumerable.Range(0, mpi.Size).Max(r => gathered[2 * r]);
            double min = Enumerable.Range(0, mpi.Size).Max(r => gathered[(2 * r) + 1]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"COMM|{name}|{elements}|{median:F3}|{min:F3}"));
        }
    }

    private static (int Exit, string Text) Launch(string[] command, int threads)
    {
        var start = new ProcessStartInfo(command[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string argument in command[1..])
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["OMP_NUM_THREADS"] = Invariant(threads);
        var console = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (console) { console.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (console) { console.AppendLine(e.Data); } } };
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(TimeSpan.FromMinutes(20)))
        {
            process.Kill(entireProcessTree: true);
        }

        process.WaitForExit();
        lock (console)
        {
            return (process.ExitCode, console.ToString());
        }
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    private static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "?";
        }
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);
}
