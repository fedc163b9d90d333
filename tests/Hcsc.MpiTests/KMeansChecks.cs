using System.Diagnostics;
using System.Globalization;
using Hcsc.Clustering;
using Hcsc.Core.Distributed;
using Hcsc.Core.Options;
using Hcsc.Tests;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.MpiTests;

/// <summary>
/// Distributed k-means (issue 15, phase 2a) against one process on the same points: every rank makes the same 4 000
/// points (32 dimensions, around 40 well-separated directions, from a fixed seed), clusters all of them alone, and then,
/// together with the other ranks, clusters only its uneven block of rows ([0, 1 900) and [1 900, 4 000) with two
/// ranks). Prototypes, concentrations and raw centres must agree within float32's bound for sums of 4 000 points (summation order), parents
/// and this rank's assignments exactly.
/// </summary>
internal sealed class KMeansChecks(ICollectives group, Action<bool, string, string> check)
{
    private const int Points = 4000;
    private const int Dimensions = 32;
    private const int Directions = 40;
    // Centres are means of up to all 4 000 points, summed over the ranks in another order than in one process.
    private static readonly double Tolerance = FloatBounds.Sum(Points, 1, FloatBounds.Float32);

    private readonly int _rank = group.Rank;
    private readonly int _size = group.Size;

    public void Run()
    {
        using var all = MakePoints();
        var (start, rows) = Block(_rank);
        using var local = all.narrow(0, start, rows).clone();
        Hierarchical(all, local, start, rows);
        PlusPlusWithoutSubsample(all, local, start, rows);
        RefusesDifferingWidths(local);
    }

    /// <summary>Rank r's rows [start, start + rows): an even split moved by 100 rows, so the blocks differ in size.</summary>
    private (long Start, long Rows) Block(int rank)
    {
        long StartOf(int r) => r == 0 ? 0 : r == _size ? Points : ((long)r * Points / _size) - 100;
        return (StartOf(rank), StartOf(rank + 1) - StartOf(rank));
    }

    private static Tensor MakePoints()
    {
        using var generator = new Generator(15);
        using var scope = NewDisposeScope();
        var directions = nn.functional.normalize(randn(Directions, Dimensions, generator: generator), dim: 1);
        var labels = randint(Directions, [Points], generator: generator);
        var noise = randn(Points, Dimensions, generator: generator).mul_(0.03);
        return nn.functional.normalize(directions.index_select(0, labels).add_(noise), dim: 1).MoveToOuterDisposeScope();
    }

    private void Hierarchical(Tensor all, Tensor local, long start, long rows)
    {
        // The subsample (30 · 40 = 1 200 of 4 000 points) is active at the finest level.
        var options = new ClusteringOptions
        {
            NumClusters = [40, 12, 4], Restarts = 2, Iterations = 10, MaxPointsPerCentroid = 30, MinPointsPerCentroid = 1, Seed = 3,
        };
        var clusterer = new HierarchicalKMeans(options, temperature: 0.2);

        // One untimed run first, so that neither timing includes the JIT compilation of the shared code.
        clusterer.Fit(all).Dispose();
        group.Barrier();
        var clock = Stopwatch.StartNew();
        using var single = clusterer.Fit(all);
        double singleMs = clock.Elapsed.TotalMilliseconds;
        group.Barrier();
        clock.Restart();
        using var distributed = clusterer.FitDistributed(local, group);
        double distributedMs = clock.Elapsed.TotalMilliseconds;

        var expected = single.Hierarchy;
        var actual = distributed.Hierarchy;
        check(distributed.Levels[0].TrainingPoints == 1200 && distributed.Levels[0].Points == Points,
            "distributed hierarchical k-means: the subsample is active, the report counts every rank's points",
            $"training points {distributed.Levels[0].TrainingPoints}, points {distributed.Levels[0].Points}");
        for (int level = 0; level < options.NumClusters.Length; level++)
        {
            var e = expected.Levels[level];
            var a = actual.Levels[level];
            double prototypes = RelativeError(a.Prototypes, e.Prototypes);
            double raw = RelativeError(distributed.RawCentroids[level], single.RawCentroids[level]);
            double concentrations = RelativeError(a.Concentrations, e.Concentrations);
            using var expectedLocal = e.Assignments.narrow(0, start, rows);
            bool assignments = a.Assignments.shape[0] == rows && Same(a.Assignments, expectedLocal);
            bool parents = e.Parents is null ? a.Parents is null : a.Parents is not null && Same(a.Parents, e.Parents);
            double objective = Math.Abs(distributed.Levels[level].Objective - single.Levels[level].Objective) / Math.Abs(single.Levels[level].Objective);
            check(prototypes <= Tolerance && raw <= Tolerance && concentrations <= Tolerance && objective <= Tolerance && assignments && parents,
                $"distributed hierarchical k-means = one process, level {level} (k = {options.NumClusters[level]})",
                string.Create(CultureInfo.InvariantCulture,
                    $"relative error of prototypes {prototypes:E2}, raw centres {raw:E2}, concentrations {concentrations:E2}, objective {objective:E2} (at most {Tolerance:E1}); local assignments equal: {assignments}; parents equal: {parents}"));
            if (_rank == 0)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"    level {level}: relative error of prototypes {prototypes:E2}, concentrations {concentrations:E2}, objective {objective:E2}"));
            }
        }

        Span<double> times = [singleMs, distributedMs];
        group.AllReduceSum(times);
        if (_rank == 0)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"hierarchical k-means of {Points:N0} x {Dimensions} (40 -> 12 -> 4, 2 restarts, 10 iterations): one process on all points {times[0] / _size:F0} ms, " +
                $"distributed over {_size} ranks {times[1] / _size:F0} ms (means over the ranks)"));
        }
    }

    /// <summary>
    /// k-means++ (the training points gathered to every rank) without a subsample (the Lloyd steps over every rank's rows).
    /// A seed whose run splits no empty cluster: a split puts two centres 1/1024 apart inside one cluster, and points on
    /// the plane between them may then go either way with the summation order (seed 11 does that here).
    /// </summary>
    private void PlusPlusWithoutSubsample(Tensor all, Tensor local, long start, long rows)
    {
        var options = new KMeansOptions { Restarts = 1, Iterations = 8, Initialization = KMeansInitialization.KMeansPlusPlus, Seed = 1 };
        var kmeans = new KMeans(options);
        using var single = kmeans.Fit(all, Directions);
        using var distributed = kmeans.FitDistributed(local, Directions, group);
        double centroids = RelativeError(distributed.Centroids, single.Centroids);
        using var expectedLocal = single.Assignments.narrow(0, start, rows);
        bool assignments = Same(distributed.Assignments, expectedLocal);
        double objective = Math.Abs(distributed.Objective - single.Objective) / single.Objective;
        check(centroids <= Tolerance && objective <= Tolerance && assignments && distributed.TrainingPoints == Points,
            "distributed k-means++ without a subsample = one process",
            string.Create(CultureInfo.InvariantCulture,
                $"relative error of centroids {centroids:E2}, objective {objective:E2}; local assignments equal: {assignments}; training points {distributed.TrainingPoints}"));
    }

    /// <summary>Points of different widths on different ranks: every rank throws (none is left waiting).</summary>
    private void RefusesDifferingWidths(Tensor local)
    {
        using var narrowed = _rank == _size - 1 ? local.narrow(1, 0, Dimensions - 1) : local.alias();
        string? message = null;
        try
        {
            using var _ = new KMeans(new KMeansOptions { Restarts = 1, Iterations = 1 }).FitDistributed(narrowed, 4, group);
        }
        catch (ArgumentException e)
        {
            message = e.Message;
        }

        check(message is not null && message.Contains("same number of features", StringComparison.Ordinal),
            "distributed k-means refuses points of different widths on every rank", message ?? "no exception");
    }

    /// <summary>The same shape and the same values.</summary>
    private static bool Same(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape))
        {
            return false;
        }

        using var equal = a.eq(b);
        using var all = equal.all();
        return all.item<bool>();
    }

    /// <summary>‖a − b‖ / ‖b‖ in float64.</summary>
    private static double RelativeError(Tensor actual, Tensor expected)
    {
        using var a = actual.to(ScalarType.Float64);
        using var b = expected.to(ScalarType.Float64);
        using var difference = a - b;
        return difference.norm().item<double>() / Math.Max(b.norm().item<double>(), 1e-300);
    }
}
