using System.Diagnostics;
using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>
/// Hierarchical k-means exactly as docs/method.md §2. For level l = 0 … L−1 with points P_0 = X and
/// P_l = C_{l−1}:
/// <list type="number">
/// <item><see cref="KMeans"/> on P_l with k_l centres, <see cref="ClusteringOptions.Iterations"/>
/// iterations, <see cref="ClusteringOptions.Restarts"/> restarts, seed = <see cref="SeedOffset"/> + l,
/// subsample cap and warning from the options;</item>
/// <item>every point of P_l is assigned to its nearest <b>raw</b> centre, with its squared distance D;</item>
/// <item>a_0 is that assignment; above, it is parent_{l−1} and a_l(i) = parent_{l−1}(a_{l−1}(i));</item>
/// <item>φ_l from D and the members at this level (<see cref="ConcentrationEstimator"/>, τ from the constructor);</item>
/// <item>C_l = L2-normalised centres (the points of the next level);</item>
/// <item>S_l = C_l · C_{l+1}ᵀ, computed by <see cref="ClusterHierarchy"/>.</item>
/// </list>
/// Everything runs on the embeddings' device.
/// </summary>
public sealed class HierarchicalKMeans
{
    private readonly ClusteringOptions _options;
    private readonly double _temperature;
    private readonly ILogger _logger;

    /// <summary>Creates the clusterer.</summary>
    /// <param name="options">Level sizes and k-means settings (docs/method.md §2); validated here.</param>
    /// <param name="temperature">τ, the mean of each level's concentrations after rescaling (HcscOptions.Model.Temperature).</param>
    /// <param name="logger">Receives level, restart and iteration logs; optional.</param>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public HierarchicalKMeans(ClusteringOptions options, double temperature, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var counts = options.NumClusters ?? [];
        var problems = new List<string>();
        if (counts.Length == 0 || counts.Any(k => k < 1))
        {
            problems.Add($"NumClusters must list at least one count, each >= 1; got [{string.Join(", ", counts)}].");
        }
        else if (counts.Zip(counts.Skip(1)).Any(p => p.First <= p.Second))
        {
            problems.Add($"NumClusters must be strictly decreasing from the finest level; got [{string.Join(", ", counts)}].");
        }

        if (options.Iterations < 1 || options.Restarts < 1 || options.MaxPointsPerCentroid < 1 || options.MinPointsPerCentroid < 0)
        {
            problems.Add($"Iterations ({options.Iterations}), Restarts ({options.Restarts}) and MaxPointsPerCentroid ({options.MaxPointsPerCentroid}) must be >= 1 and MinPointsPerCentroid ({options.MinPointsPerCentroid}) >= 0.");
        }

        if (!(options.ConcentrationLowPercentile >= 0 && options.ConcentrationLowPercentile <= options.ConcentrationHighPercentile && options.ConcentrationHighPercentile <= 100))
        {
            problems.Add($"Concentration percentiles must satisfy 0 <= low <= high <= 100; got {options.ConcentrationLowPercentile} and {options.ConcentrationHighPercentile}.");
        }

        if (!(temperature > 0) || !double.IsFinite(temperature))
        {
            problems.Add($"The temperature τ must be a finite number > 0; got {temperature}.");
        }

        if (problems.Count > 0)
        {
            throw new ArgumentException("Invalid hierarchical k-means settings: " + string.Join(" ", problems));
        }

        _options = options;
        _temperature = temperature;
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>Initialisation of every k-means run. Default <see cref="KMeansInitialization.RandomPoints"/> (as faiss).</summary>
    public KMeansInitialization Initialization { get; init; } = KMeansInitialization.RandomPoints;

    /// <summary>Byte budget of one distance block; see <see cref="KMeansOptions.ChunkBytes"/>.</summary>
    public long ChunkBytes { get; init; } = NearestCentroidSearch.DefaultChunkBytes;

    /// <summary>Use Hamerly / Yinyang-style bounds to skip distance computations; see <see cref="KMeansOptions.UseBounds"/>. Default true.</summary>
    public bool UseBounds { get; init; } = true;

    /// <summary>Level l is clustered with seed SeedOffset + l (docs/method.md §2, step 1: the level's index). Default 0.</summary>
    public long SeedOffset { get; init; }

    /// <summary>
    /// Clusters <paramref name="embeddings"/> into the hierarchy.
    /// </summary>
    /// <param name="embeddings">X, <c>[N, d]</c>, floating point, finite, N ≥ k_0, any device (normally L2-normalised).</param>
    /// <param name="progress">Receives one report per iteration of every level and restart.</param>
    /// <param name="cancellationToken">Checked between iterations.</param>
    /// <returns>The hierarchy (float32 prototypes and concentrations, int64 indices) on the embeddings' device, and per-level reports.</returns>
    /// <exception cref="ArgumentException">Invalid embeddings (not 2-D, d = 0, N &lt; k_0, NaN/Inf rows); nothing is computed.</exception>
    public HierarchicalKMeansResult Fit(Tensor embeddings, IProgress<ClusteringProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        int[] counts = _options.NumClusters;
        EmbeddingChecks.RequirePoints(embeddings, counts[0], nameof(embeddings));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int levelCount = counts.Length;
        var prototypes = new Tensor[levelCount];
        var assignments = new Tensor[levelCount];
        var concentrations = new Tensor[levelCount];
        var parents = new Tensor[levelCount - 1];
        var raw = new Tensor[levelCount];
        var reports = new List<LevelReport>(levelCount);
        var points = embeddings.detach();
        for (int level = 0; level < levelCount; level++)
        {
            var clock = Stopwatch.StartNew();
            var kmeans = new KMeans(
                new KMeansOptions
                {
                    Iterations = _options.Iterations,
                    Restarts = _options.Restarts,
                    Seed = SeedOffset + level,
                    MaxPointsPerCentroid = _options.MaxPointsPerCentroid,
                    MinPointsPerCentroid = _options.MinPointsPerCentroid,
                    Initialization = Initialization,
                    ChunkBytes = ChunkBytes,
                    UseBounds = UseBounds,
                },
                _logger);
            using var result = kmeans.FitLevel(points, counts[level], null, null, progress, level, levelCount, cancellationToken);
            var nearest = result.Assignments.clone(); // [P_l]
            if (level == 0)
            {
                assignments[0] = nearest;
            }
            else
            {
                parents[level - 1] = nearest;
                assignments[level] = nearest.index_select(0, assignments[level - 1]);
            }

            concentrations[level] = ConcentrationEstimator.Estimate(
                result.SquaredDistances, nearest, counts[level], _temperature, _options.ConcentrationLowPercentile, _options.ConcentrationHighPercentile);
            raw[level] = result.Centroids.to(ScalarType.Float32).clone();
            prototypes[level] = nn.functional.normalize(raw[level], dim: 1);
            points = prototypes[level];
            double objective = result.Objective;
            clock.Stop();
            int empty = counts[level] - (int)nearest.bincount(null, counts[level]).count_nonzero().item<long>();
            var report = new LevelReport(
                level, counts[level], result.Assignments.shape[0], objective, result.EmptyClustersSplit, clock.Elapsed.TotalSeconds,
                result.TrainingPoints, result.BestRestart, result.SearchedFraction, empty);
            reports.Add(report);
            if (empty > 0)
            {
                _logger.LogWarning(
                    "Hierarchical k-means level {Level}: {Empty} of {K} prototypes have no members; the {Points} points have fewer distinct values than prototypes (collapsed embeddings?), so those prototypes are never a positive. Check the training loss; a lower learning rate or fewer prototypes may help.",
                    level, empty, report.K, report.Points);
            }

            _logger.LogInformation(
                "Hierarchical k-means level {Level}: k = {K}, {Points} points, objective {Objective}, {Splits} empty clusters split, {Seconds:F2} s",
                level, report.K, report.Points, objective, report.EmptyClustersSplit, report.Seconds);
        }

        var hierarchy = ClusterHierarchy.FromTensors(prototypes, assignments, concentrations, parents);
        return new HierarchicalKMeansResult(hierarchy, raw.Select(r => r.MoveToOuterDisposeScope()).ToArray(), reports);
    }
}
