using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Hcsc.Clustering;
using Hcsc.Core.IO;
using Hcsc.Core.Options;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Clustering;

/// <summary>
/// Hierarchical k-means (Hcsc, with and without distance bounds) against faiss 1.7.3 on the same
/// .npy file and against the GEMM bound of the assignment steps, in one run. Also times the parts of
/// one plain Lloyd iteration (distance GEMM, arg-min, centroid update) and reports peak memory.
/// </summary>
public sealed class KMeansVersusFaissBenchmark : IBenchmark
{
    public string Name => "kmeans-faiss";

    public string Description => "hierarchical k-means 3000,2000,1000 on 100k x 128 vs faiss 1.7.3 and the matmul bound";

    public int Run(string[] args)
    {
        var settings = Settings.Parse(args);
        torch.set_num_threads(settings.Threads);
        if (!File.Exists(settings.Features))
        {
            Console.WriteLine($"Writing {settings.Features} ({settings.Points} x 128) with {settings.MakeFeatures} ...");
            RunPython(settings.MakeFeatures, [settings.Features, settings.Points.ToString(CultureInfo.InvariantCulture), "0"], settings.Threads);
        }

        long rssBefore = PeakResidentBytes();
        using var features = NpyFile.ReadFloat32(settings.Features);
        long n = features.shape[0], d = features.shape[1];
        Console.WriteLine($"Data: {n} x {d} from {settings.Features}; levels {string.Join(",", settings.Levels)}, {settings.Iterations} iterations, {settings.Restarts} restart(s), {settings.Threads} threads, TorchSharp {typeof(torch).Assembly.GetName().Version}");

        var (gemmRate, gemmCpuRate) = MeasureGemmRate(d, settings.Levels[0]);
        double boundFlops = 0;
        long levelPoints = n;
        foreach (int k in settings.Levels)
        {
            long train = Math.Min(levelPoints, 1000L * k);
            boundFlops += ((settings.Iterations * settings.Restarts * (double)train) + levelPoints) * k * d * 2;
            levelPoints = k;
        }

        double boundSeconds = boundFlops / gemmRate, boundCpuSeconds = boundFlops / gemmCpuRate;
        Console.WriteLine($"GEMM rate: {gemmRate / 1e9:F1} GFLOP/s wall, {gemmCpuRate / 1e9:F1} GFLOP per CPU-second; matmul bound of the assignment steps: {boundFlops / 1e9:F0} GFLOP -> {boundSeconds:F2} s wall, {boundCpuSeconds:F2} s CPU");

        var runs = new List<(string Name, IReadOnlyList<LevelReport> Levels, double CpuSeconds)>();
        long rssData = PeakResidentBytes();
        runs.Add(Timed("hcsc (bounds)", () => RunHcsc(features, settings, useBounds: true)));
        long rssHcsc = PeakResidentBytes();
        if (settings.Plain)
        {
            runs.Add(Timed("hcsc (plain Lloyd)", () => RunHcsc(features, settings, useBounds: false)));
        }

        var faiss = settings.SkipFaiss ? null : RunFaiss(settings);
        Console.WriteLine();
        Console.WriteLine($"{"run",-20} {"level",5} {"k",6} {"objective",14} {"splits",6} {"searched",8} {"seconds",8}");
        foreach (var (name, levels, _) in runs)
        {
            foreach (var level in levels)
            {
                Console.WriteLine($"{name,-20} {level.Level,5} {level.K,6} {level.Objective,14:F3} {level.EmptyClustersSplit,6} {level.SearchedFraction,8:P1} {level.Seconds,8:F2}");
            }
        }

        if (faiss is not null)
        {
            foreach (var (level, k, objective, seconds) in faiss.Value.Levels)
            {
                Console.WriteLine($"{"faiss 1.7.3",-20} {level,5} {k,6} {objective,14:F3} {"",6} {"",8} {seconds,8:F2}");
            }
        }

        Console.WriteLine();
        double ours = runs[0].Levels.Sum(l => l.Seconds), oursCpu = runs[0].CpuSeconds;
        Console.WriteLine($"total: hcsc (bounds) {ours:F2} s wall, {oursCpu:F2} s CPU; matmul bound {boundSeconds:F2} s wall, {boundCpuSeconds:F2} s CPU (ratios {ours / boundSeconds:F2} wall, {oursCpu / boundCpuSeconds:F2} CPU)");
        if (runs.Count > 1)
        {
            double plain = runs[1].Levels.Sum(l => l.Seconds), plainCpu = runs[1].CpuSeconds;
            Console.WriteLine($"total: hcsc (plain Lloyd) {plain:F2} s wall, {plainCpu:F2} s CPU (bounds / plain = {ours / plain:F2} wall, {oursCpu / plainCpu:F2} CPU)");
        }

        if (faiss is not null)
        {
            double faissTotal = faiss.Value.Levels.Sum(l => l.Seconds);
            double faissFirst = faiss.Value.Levels[0].Objective;
            Console.WriteLine($"total: faiss {faissTotal:F2} s wall, {faiss.Value.CpuSeconds:F2} s CPU (whole script, incl. loading); hcsc / faiss = {ours / faissTotal:F3} wall, {oursCpu / faiss.Value.CpuSeconds:F3} CPU (target <= 0.5)");
            Console.WriteLine($"level 0 objective: hcsc / faiss = {runs[0].Levels[0].Objective / faissFirst:F5} (target <= 1.005)");
        }

        Console.WriteLine("(CPU seconds are less sensitive than wall seconds to other processes sharing the cores.)");

        Profile(features, settings.Levels[0], settings.ChunkBytes);
        Console.WriteLine($"peak resident memory: {rssBefore / 1e6:F0} MB before loading, {rssData / 1e6:F0} MB with data, {rssHcsc / 1e6:F0} MB after hcsc (bounds): +{(rssHcsc - rssData) / 1e6:F0} MB beyond the data");
        return 0;
    }

    private static IReadOnlyList<LevelReport> RunHcsc(Tensor features, Settings settings, bool useBounds)
    {
        var options = new ClusteringOptions
        {
            NumClusters = settings.Levels,
            Iterations = settings.Iterations,
            Restarts = settings.Restarts,
            UseBounds = useBounds,
            ChunkBytes = settings.ChunkBytes,
        };
        var clusterer = new HierarchicalKMeans(options, 0.2);
        using var result = clusterer.Fit(features);
        return result.Levels;
    }

    private static (string Name, IReadOnlyList<LevelReport> Levels, double CpuSeconds) Timed(string name, Func<IReadOnlyList<LevelReport>> run)
    {
        double before = CpuSeconds();
        var levels = run();
        return (name, levels, CpuSeconds() - before);
    }

    private static double CpuSeconds()
    {
        using var process = Process.GetCurrentProcess();
        return process.TotalProcessorTime.TotalSeconds;
    }

    private static (double Wall, double Cpu) MeasureGemmRate(long d, long k)
    {
        using var scope = NewDisposeScope();
        var a = randn(8192, d);
        var b = randn(d, k);
        a.mm(b).Dispose();
        double cpu = CpuSeconds();
        var clock = Stopwatch.StartNew();
        int repeats = 0;
        while (clock.Elapsed.TotalSeconds < 3)
        {
            a.mm(b).Dispose();
            repeats++;
        }

        double flops = repeats * 2.0 * 8192 * d * k;
        return (flops / clock.Elapsed.TotalSeconds, flops / (CpuSeconds() - cpu));
    }

    /// <summary>Times the parts of one plain Lloyd iteration over all points at level 0.</summary>
    private static void Profile(Tensor points, int k, long chunkBytes)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long n = points.shape[0];
        var centroids = points.index_select(0, randperm(n).narrow(0, 0, k));
        var centroidNorms = centroids.square().sum(1).unsqueeze(0);
        long rows = Math.Max(1, chunkBytes / (4L * k));
        double gemm = 0, argmin = 0;
        var assignments = empty(n, ScalarType.Int64);
        for (int repeat = 0; repeat < 2; repeat++)
        {
            gemm = argmin = 0;
            for (long start = 0; start < n; start += rows)
            {
                using var chunk = NewDisposeScope();
                long size = Math.Min(rows, n - start);
                var clock = Stopwatch.StartNew();
                var block = addmm(centroidNorms, points.narrow(0, start, size), centroids.t(), beta: 1, alpha: -2);
                gemm += clock.Elapsed.TotalSeconds;
                clock.Restart();
                var (_, index) = block.min(1);
                assignments.narrow(0, start, size).copy_(index);
                argmin += clock.Elapsed.TotalSeconds;
            }
        }

        var update = Stopwatch.StartNew();
        var counts = bincount(assignments, minlength: k);
        var sums = zeros(k, points.shape[1]).index_add_(0, assignments, points, 1.0);
        sums.div_(counts.clamp_min(1).unsqueeze(1));
        double updateSeconds = update.Elapsed.TotalSeconds;
        Console.WriteLine($"one plain Lloyd iteration at level 0 ({n} x {k}, {rows} rows per chunk): distance GEMM {gemm:F3} s, arg-min {argmin:F3} s, update {updateSeconds:F3} s");
    }

    private static (List<(int Level, int K, double Objective, double Seconds)> Levels, double Total, double CpuSeconds)? RunFaiss(Settings settings)
    {
        Console.WriteLine($"Running faiss: {settings.FaissScript} ...");
        var (output, cpuSeconds) = RunPython(settings.FaissScript, [settings.Features, string.Join(",", settings.Levels), settings.Restarts.ToString(CultureInfo.InvariantCulture), settings.Iterations.ToString(CultureInfo.InvariantCulture)], settings.Threads);
        var levels = new List<(int, int, double, double)>();
        double total = 0;
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!line.StartsWith('{'))
            {
                continue;
            }

            using var json = JsonDocument.Parse(line);
            var root = json.RootElement;
            if (root.TryGetProperty("level", out var level))
            {
                levels.Add((level.GetInt32(), root.GetProperty("k").GetInt32(), root.GetProperty("objective").GetDouble(), root.GetProperty("seconds").GetDouble()));
            }
            else if (root.TryGetProperty("total_seconds", out var seconds))
            {
                total = seconds.GetDouble();
            }
        }

        return levels.Count == 0 ? null : (levels, total, cpuSeconds);
    }

    private static (string Output, double CpuSeconds) RunPython(string script, string[] arguments, int threads)
    {
        // Run the script under a wrapper that prints the CPU seconds of the whole script (all threads) last.
        const string Wrapper =
            "import sys, json, runpy, resource; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); " +
            "r = resource.getrusage(resource.RUSAGE_SELF); print(json.dumps({'cpu_seconds': r.ru_utime + r.ru_stime}))";
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(Wrapper);
        start.ArgumentList.Add(script);
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
        start.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start /usr/bin/python3 {script}.");
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"/usr/bin/python3 {script} exited with {process.ExitCode}; install python3-faiss and libopenblas0-pthread (see benchmarks/README.md).");
        }

        double cpuSeconds = double.NaN;
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (line.StartsWith("{\"cpu_seconds\"", StringComparison.Ordinal))
            {
                using var json = JsonDocument.Parse(line);
                cpuSeconds = json.RootElement.GetProperty("cpu_seconds").GetDouble();
            }
        }

        return (output, cpuSeconds);
    }

    private static long PeakResidentBytes()
    {
        foreach (string line in File.Exists("/proc/self/status") ? File.ReadLines("/proc/self/status") : [])
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        }

        return 0;
    }

    private sealed record Settings(string Features, long Points, int[] Levels, int Iterations, int Restarts, int Threads, long ChunkBytes, bool Plain, bool SkipFaiss, string FaissScript, string MakeFeatures)
    {
        public static Settings Parse(string[] args)
        {
            string bench = Path.Combine(FindRepositoryRoot(), "..", "shared", "bench");
            var values = new Dictionary<string, string>();
            var flags = new HashSet<string>();
            for (int i = 0; i < args.Length; i++)
            {
                if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    values[args[i]] = args[++i];
                }
                else
                {
                    flags.Add(args[i]);
                }
            }

            string Get(string key, string fallback) => values.GetValueOrDefault(key, fallback);
            return new Settings(
                Get("--features", Path.Combine(Path.GetTempPath(), "hcsc-bench-features-100k.npy")),
                long.Parse(Get("--points", "100000"), CultureInfo.InvariantCulture),
                Get("--levels", "3000,2000,1000").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(),
                int.Parse(Get("--niter", "20"), CultureInfo.InvariantCulture),
                int.Parse(Get("--nredo", "1"), CultureInfo.InvariantCulture),
                int.Parse(Get("--threads", "2"), CultureInfo.InvariantCulture),
                long.Parse(Get("--chunk-mib", "32"), CultureInfo.InvariantCulture) << 20,
                flags.Contains("--plain"),
                flags.Contains("--no-faiss"),
                Get("--faiss-script", Path.Combine(bench, "faiss_kmeans.py")),
                Get("--make-features", Path.Combine(bench, "make_features.py")));
        }

        private static string FindRepositoryRoot()
        {
            for (var directory = new DirectoryInfo(Directory.GetCurrentDirectory()); directory is not null; directory = directory.Parent)
            {
                if (File.Exists(Path.Combine(directory.FullName, "Hcsc.sln")))
                {
                    return directory.FullName;
                }
            }

            return Directory.GetCurrentDirectory();
        }
    }
}
