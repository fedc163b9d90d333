using System.Diagnostics;
using Hcsc.Core.Distributed;
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
/// <item><see cref="KMeans"/> on P_l with k_l centres and the k-means settings of the options
/// (<see cref="KMeansOptions.Iterations"/>, <see cref="KMeansOptions.Restarts"/>, subsample cap and warning,
/// initialisation, chunk size, bounds), seed = <see cref="KMeansOptions.Seed"/> + l;</item>
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
    /// <param name="options">Level sizes and k-means settings (docs/method.md §2; <see cref="HcscOptions.Clustering"/>); copied and validated here.</param>
    /// <param name="temperature">τ, the mean of each level's concentrations after rescaling (<see cref="ObjectiveOptions.Temperature"/>).</param>
    /// <param name="logger">Receives level, restart and iteration logs; optional.</param>
    /// <exception cref="ArgumentException">An option is invalid (<see cref="HcscOptionsValidator.Problems(ClusteringOptions)"/>, <see cref="HcscOptionsValidator.TemperatureProblem"/>); the message lists every problem.</exception>
    public HierarchicalKMeans(ClusteringOptions options, double temperature, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Clone();
        var problems = HcscOptionsValidator.Problems(_options).ToList();
        if (HcscOptionsValidator.TemperatureProblem(temperature) is { } tau)
        {
            problems.Add(tau);
        }

        HcscOptionsValidator.ThrowIfInvalid(problems, nameof(options));
        _temperature = temperature;
        _logger = logger ?? NullLogger.Instance;
    }

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
        ArgumentNullException.ThrowIfNull(embeddings);
        if (embeddings.dim() == 2 && embeddings.shape[0] < _options.NumClusters[0])
        {
            throw new ArgumentException(
                $"The finest level has k = {_options.NumClusters[0]} prototypes but there are only {embeddings.shape[0]} embeddings. Lower ClusteringOptions.NumClusters; " +
                "ClusteringOptions.SmallData() (200 / 50 / 10) is a start for small data sets.", nameof(embeddings));
        }

        EmbeddingChecks.RequirePoints(embeddings, _options.NumClusters[0], nameof(embeddings));
        return FitCore(embeddings, null, progress, cancellationToken);
    }

    /// <summary>
    /// Distributed hierarchical k-means: every rank of <paramref name="collectives"/> calls this with the embeddings of its
    /// own contiguous block of the data set (rank r holds rows [o_r, o_r + n_r) of the global order,
    /// o_r = n_0 + … + n_{r−1}; the blocks may differ in size), and gets the hierarchy <see cref="Fit"/> would build from all
    /// the embeddings with the same options, with the assignments of its own rows.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Collective: every rank calls it with the same options and temperature. The finest level runs
    /// <see cref="KMeans.FitDistributed"/> (the same random draws as one process, over global row indices; per iteration
    /// the per-centre sums, sizes and objective summed over the ranks), and its concentrations sum each rank's per-cluster
    /// sums of distances and sizes. The levels above cluster the prototypes of the level below on every rank. After each
    /// level rank 0's centres, concentrations and parents are broadcast, so the ranks hold the same hierarchy by
    /// construction, also on devices whose reductions are not deterministic (CUDA's atomics); each rank's assignments
    /// compose through the parents.
    /// </para>
    /// <para>
    /// Equal to <see cref="Fit"/> on the concatenated embeddings up to floating-point summation order: prototypes and
    /// concentrations in the last bits, assignments and parents identical unless a point is equally near two centres. The
    /// hierarchy's prototypes, concentrations and parents, <see cref="HierarchicalKMeansResult.RawCentroids"/> and the
    /// reports' objectives, sizes and empty counts are the same on every rank; the hierarchy's assignments are
    /// <c>[n_r]</c>, this rank's rows. With <see cref="SingleProcessCollectives.Instance"/> it is <see cref="Fit"/>, bit
    /// for bit.
    /// </para>
    /// </remarks>
    /// <param name="localEmbeddings">This rank's rows of X, <c>[n_r, d]</c>, floating point, finite, n_r ≥ 1, the same d on every rank; Σ n_r ≥ k_0.</param>
    /// <param name="collectives">The group of ranks (e.g. <c>MpiCollectives</c> from Hcsc.Distributed.Mpi, or your own implementation).</param>
    /// <param name="progress">Receives one report per iteration of every level and restart.</param>
    /// <param name="cancellationToken">Checked between iterations; cancel on every rank, or the others wait.</param>
    /// <returns>The hierarchy on the embeddings' device, its assignments for this rank's rows, and per-level reports.</returns>
    /// <exception cref="ArgumentException">Invalid embeddings on any rank (thrown on every rank): not 2-D, d = 0 or differing between ranks, an empty block, N &lt; k_0, NaN/Inf rows; nothing is computed.</exception>
    public HierarchicalKMeansResult FitDistributed(Tensor localEmbeddings, ICollectives collectives, IProgress<ClusteringProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        var shard = PointShard.Create(collectives, localEmbeddings, _options.NumClusters[0], nameof(localEmbeddings));
        return FitCore(localEmbeddings, shard, progress, cancellationToken);
    }

    private HierarchicalKMeansResult FitCore(Tensor embeddings, PointShard? shard, IProgress<ClusteringProgress>? progress, CancellationToken cancellationToken)
    {
        int[] counts = _options.NumClusters;
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
        var kmeans = new KMeans(_options, _logger);
        for (int level = 0; level < levelCount; level++)
        {
            var clock = Stopwatch.StartNew();
            // Only the finest level's points are spread over the ranks; the levels above cluster prototypes every rank holds.
            var levelShard = level == 0 ? shard : null;
            using var result = kmeans.FitLevel(points, counts[level], _options.Seed + level, null, null, progress, level, levelCount, levelShard, cancellationToken);
            var nearest = result.Assignments.clone(); // [P_l]
            var centres = result.Centroids.to(ScalarType.Float32).clone(); // [k_l, d]
            concentrations[level] = ConcentrationEstimator.Estimate(
                result.SquaredDistances, nearest, counts[level], _temperature, _options.ConcentrationLowPercentile, _options.ConcentrationHighPercentile, levelShard);
            if (shard is { IsDistributed: true })
            {
                ShareRankZeros(shard.Collectives, centres, concentrations[level], level > 0 ? nearest : null);
            }

            if (level == 0)
            {
                assignments[0] = nearest;
            }
            else
            {
                parents[level - 1] = nearest;
                assignments[level] = nearest.index_select(0, assignments[level - 1]);
            }

            raw[level] = centres;
            prototypes[level] = nn.functional.normalize(raw[level], dim: 1);
            points = prototypes[level];
            double objective = result.Objective;
            clock.Stop();
            var sizes = nearest.bincount(null, counts[level]);
            levelShard?.SumInPlace(sizes);
            int empty = counts[level] - (int)sizes.count_nonzero().item<long>();
            long levelPoints = levelShard?.GlobalRows ?? result.Assignments.shape[0];
            var report = new LevelReport(
                level, counts[level], levelPoints, objective, result.EmptyClustersSplit, clock.Elapsed.TotalSeconds,
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

        var hierarchy = ClusterHierarchy.FromTensors(prototypes, assignments, concentrations, parents, _temperature);
        return new HierarchicalKMeansResult(hierarchy, raw.Select(r => r.MoveToOuterDisposeScope()).ToArray(), reports);
    }

    // Every rank must hold the same hierarchy (the objective's selection and the next level's points depend on it), but
    // the same computation on two devices need not give the same bits: on CUDA, index_add_ and scatter reductions use
    // atomics whose order varies. So each level's centres, concentrations and (above the finest) the parents that every
    // rank computed are replaced by rank 0's, and the ranks agree by construction. k_l × (d + 2) numbers a level.
    private static void ShareRankZeros(ICollectives collectives, Tensor centres, Tensor concentrations, Tensor? parents)
    {
        collectives.Broadcast(centres, root: 0);
        collectives.Broadcast(concentrations, root: 0);
        if (parents is not null)
        {
            collectives.Broadcast(parents, root: 0);
        }
    }
}
