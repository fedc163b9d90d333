using System.Diagnostics;
using System.Globalization;
using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Losses;

/// <summary>
/// Selection + loss of one HCSC step (no backbone), forward and backward: the cached objective (docs/method.md R4,
/// <see cref="QueueSelectionCache"/> kept up to date with <see cref="QueueSelectionCache.Update"/> every step)
/// against a reference-style implementation that recomputes the Q × k softmax per step, in one process.
/// </summary>
public sealed class SelectionLossBenchmark : IBenchmark
{
    public string Name => "losses";

    public string Description => "HCSC selection + loss per step: R4-cached objective vs reference-style Q x k softmax per step";

    public int Run(string[] args)
    {
        var o = Parse(args);
        set_num_threads(o.Threads);
        Console.WriteLine($"B = {o.Batch}, Q = {o.Queue}, d = {o.Dim}, prototypes {string.Join("/", o.Clusters)}, N = {o.Samples}, float32, CPU, {o.Threads} threads, {o.Steps} timed steps per path after {o.Warmup} warm-up, in rounds of {o.BlockSteps} steps per path (the first untimed)");
        string mallocTuning = string.Join(", ", new[] { "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_" }.Select(v => Environment.GetEnvironmentVariable(v) is { } value ? $"{v}={value}" : null).Where(v => v is not null));
        Console.WriteLine($"glibc allocator: {(mallocTuning.Length == 0 ? "default (large blocks are mmap-ed and returned on free)" : mallocTuning)}");
        Console.WriteLine($"VmHWM before setup: {PeakRssMiB():F0} MiB");

        using var data = NewDisposeScope();
        var g = new Generator(1);
        Tensor Unit(long rows) => nn.functional.normalize(randn(new[] { rows, o.Dim }, generator: g), dim: 1);
        var prototypes = o.Clusters.Select(k => Unit(k)).ToArray();
        var parents = o.Clusters.Zip(o.Clusters.Skip(1), (k, kUp) => randint(kUp, new[] { (long)k }, generator: g)).ToArray();
        var assignments = new Tensor[o.Clusters.Length];
        assignments[0] = randint(o.Clusters[0], new[] { o.Samples }, generator: g);
        for (int l = 1; l < o.Clusters.Length; l++)
        {
            assignments[l] = parents[l - 1].index_select(0, assignments[l - 1]);
        }

        var concentrations = o.Clusters.Select(k => rand(new long[] { k }, generator: g).mul(0.2).add(0.1)).ToArray();
        using var hierarchy = ClusterHierarchy.FromTensors(prototypes, assignments, concentrations, parents);
        var queue = Unit(o.Queue);
        var key = Unit(o.Batch);
        var queryLeaf = Unit(o.Batch).requires_grad_(true);
        var indices = randint(o.Samples, new[] { o.Batch }, generator: g);
        const double tau = 0.2;

        if (o.Parts)
        {
            using var partsCache = new QueueSelectionCache();
            partsCache.Refresh(hierarchy, queue);
            SelectionLossParts.Print(hierarchy, queryLeaf, key, queue, indices, partsCache, tau, 2 * o.Steps + 1);
            return 0;
        }

        // Cached objective; Update is part of each step, as in training (the enqueue pointer advances by B).
        using var cache = new QueueSelectionCache(QueueSelectionCacheMode.Thresholds);
        var refresh = Stopwatch.StartNew();
        cache.Refresh(hierarchy, queue);
        Console.WriteLine($"cache refresh (once per epoch), thresholds mode: {refresh.Elapsed.TotalMilliseconds:F0} ms");
        using var normaliserCache = new QueueSelectionCache(QueueSelectionCacheMode.Normalisers);
        refresh.Restart();
        normaliserCache.Refresh(hierarchy, queue);
        Console.WriteLine($"cache refresh (once per epoch), normalisers mode: {refresh.Elapsed.TotalMilliseconds:F0} ms");
        var objectiveOptions = ObjectiveOptions.Reference();
        objectiveOptions.InstanceSelection = !o.NoInstance;
        objectiveOptions.PrototypeSelection = !o.NoPrototype;
        using var objective = new HcscObjective(objectiveOptions);
        long pointer = 0;
        var paths = new List<(string Name, Func<Tensor> Step)>
        {
            ("HcscObjective + cache, thresholds mode (R4)", () =>
            {
                var r = objective.Compute(queryLeaf, key, queue, indices, hierarchy, g, cache: cache);
                r.Total.backward();
                cache.Update(pointer, key);
                pointer = (pointer + o.Batch) % o.Queue;
                return r.Total;
            }),
        };
        long normaliserPointer = 0;
        paths.Add(("HcscObjective + cache, normalisers mode (R4)", () =>
        {
            var r = objective.Compute(queryLeaf, key, queue, indices, hierarchy, g, cache: normaliserCache);
            r.Total.backward();
            normaliserCache.Update(normaliserPointer, key);
            normaliserPointer = (normaliserPointer + o.Batch) % o.Queue;
            return r.Total;
        }));
        if (!o.SkipLibraryDirect)
        {
            paths.Add(("HcscObjective, no cache (softmax per step)", () =>
            {
                var r = objective.Compute(queryLeaf, key, queue, indices, hierarchy, g);
                r.Total.backward();
                return r.Total;
            }));
        }

        if (!o.SkipDirect)
        {
            paths.Add(("reference-style direct (Q x k softmax per step)", () =>
            {
                var total = ReferenceStyleSelectionLoss.Step(queryLeaf, key, queue, indices, hierarchy, tau, g);
                total.backward();
                return total;
            }));
        }

        // The cached path runs alone first so that its peak memory can be read before the others allocate.
        // (The thresholds cache of the other mode is already allocated, so this peak includes both caches.)
        var (cachedWall, cachedCpu) = Measure(o, [paths[0]]);
        double cachedPeak = PeakRssMiB();

        // Then all paths in rounds, so that load on a shared machine hits them alike.
        var measured = Measure(o, paths);
        double peak = PeakRssMiB();
        Console.WriteLine();
        Console.WriteLine($"cached path alone: {cachedWall[0]:F1} ms wall, {cachedCpu[0]:F1} ms CPU per step; peak RSS (VmHWM) {cachedPeak:F0} MiB");
        Console.WriteLine($"all paths in rounds, median per step (peak RSS of the whole run: {peak:F0} MiB):");
        Console.WriteLine($"  {"path",-52} {"wall ms",9} {"CPU ms",9}");
        for (int i = 0; i < paths.Count; i++)
        {
            Console.WriteLine($"  {paths[i].Name,-52} {measured.Wall[i],9:F1} {measured.Cpu[i],9:F1}");
        }

        if (!o.SkipDirect)
        {
            int d = paths.Count - 1;
            Console.WriteLine($"ratio cached (thresholds) / reference-style direct: wall {measured.Wall[0] / measured.Wall[d]:F3}, CPU {measured.Cpu[0] / measured.Cpu[d]:F3} (target <= 0.1, aim 0.05)");
            Console.WriteLine($"ratio cached (normalisers) / reference-style direct: wall {measured.Wall[1] / measured.Wall[d]:F3}, CPU {measured.Cpu[1] / measured.Cpu[d]:F3}");
        }

        return 0;
    }

    /// <summary>
    /// Runs the paths in rounds: each round runs every path for a block of <c>BlockSteps</c> consecutive steps and times
    /// all but the first of them. Consecutive steps show each path's steady state (its buffers reused, as in training),
    /// while the rounds spread a shared machine's load over all paths alike. The untimed first step of a block absorbs
    /// the switch from the previous path: after the reference-style path frees its Q × k buffers, the allocator hands
    /// memory back to the kernel and the next path's first step page-faults it in again.
    /// </summary>
    private static (double[] Wall, double[] Cpu) Measure(Options o, IReadOnlyList<(string Name, Func<Tensor> Step)> paths)
    {
        var wall = paths.Select(_ => new List<double>()).ToArray();
        var cpu = paths.Select(_ => new List<double>()).ToArray();
        using var process = Process.GetCurrentProcess();
        for (int i = 0; i < o.Warmup; i++)
        {
            foreach (var path in paths)
            {
                using var scope = NewDisposeScope();
                _ = path.Step().item<float>();
            }
        }

        int timedPerBlock = Math.Max(1, o.BlockSteps - 1);
        while (wall[0].Count < o.Steps)
        {
            for (int p = 0; p < paths.Count; p++)
            {
                for (int step = 0; step < timedPerBlock + 1; step++)
                {
                    using var scope = NewDisposeScope();
                    process.Refresh();
                    var cpu0 = process.TotalProcessorTime;
                    var sw = Stopwatch.StartNew();
                    var total = paths[p].Step();
                    _ = total.item<float>(); // the only sync, at the end of the step
                    sw.Stop();
                    process.Refresh();
                    if (step > 0 || o.BlockSteps == 1)
                    {
                        wall[p].Add(sw.Elapsed.TotalMilliseconds);
                        cpu[p].Add((process.TotalProcessorTime - cpu0).TotalMilliseconds);
                    }
                }
            }
        }

        return (wall.Select(Statistics.Median).ToArray(), cpu.Select(Statistics.Median).ToArray());
    }

    private static double PeakRssMiB()
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path))
        {
            return double.NaN;
        }

        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line is null ? double.NaN : double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }

    private sealed record Options(long Batch, long Queue, long Dim, int[] Clusters, long Samples, int Steps, int Warmup, int BlockSteps, int Threads, bool SkipLibraryDirect, bool SkipDirect, bool NoInstance, bool NoPrototype, bool Parts);

    private static Options Parse(string[] args)
    {
        var o = new Options(256, 16384, 128, [3000, 2000, 1000], 100_000, 12, 1, 3, 2, false, false, false, false, false);
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            o = args[i] switch
            {
                "--batch" => o with { Batch = long.Parse(Next(), CultureInfo.InvariantCulture) },
                "--queue" => o with { Queue = long.Parse(Next(), CultureInfo.InvariantCulture) },
                "--dim" => o with { Dim = long.Parse(Next(), CultureInfo.InvariantCulture) },
                "--clusters" => o with { Clusters = Next().Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray() },
                "--samples" => o with { Samples = long.Parse(Next(), CultureInfo.InvariantCulture) },
                "--steps" => o with { Steps = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--warmup" => o with { Warmup = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--block" => o with { BlockSteps = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--threads" => o with { Threads = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--skip-library-direct" => o with { SkipLibraryDirect = true },
                "--skip-direct" => o with { SkipDirect = true },
                "--no-instance-selection" => o with { NoInstance = true },
                "--no-prototype-selection" => o with { NoPrototype = true },
                "--parts" => o with { Parts = true },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }

        return o;
    }
}
