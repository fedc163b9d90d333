using Hcsc.Core.Distributed;
using Hcsc.Core.Options;
using Hcsc.Core.Tensors;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>
/// k-means with squared L2 distance on a <c>[N, d]</c> tensor on any device (docs/method.md §2, step 1).
/// <para>
/// Each restart draws k starting centres (<see cref="KMeansOptions.Initialization"/>) from a training
/// subsample of at most <c>MaxPointsPerCentroid · k</c> points and runs Lloyd iterations: assign each
/// training point to its nearest centre (chunked GEMM <c>‖x‖² − 2x·c + ‖c‖²</c>, optionally skipping
/// points whose assignment Hamerly / Yinyang-style bounds prove unchanged), then move each centre to the mean of its
/// members (<c>index_add_</c>) and split a large cluster into every empty one
/// (<see cref="KMeansResult.EmptyClustersSplit"/>). The restart with the lowest last-iteration
/// objective wins and every one of the N points is then assigned to its centres.
/// </para>
/// Computation is in float32 (float64 for float64 input) on the points' device. One host
/// synchronisation per iteration (the objective and the cluster sizes), none per chunk.
/// </summary>
public sealed class KMeans
{
    /// <summary>Bounds are used only with at least this many training points per centre.</summary>
    internal const int BoundsMinPointsPerCentroid = 8;

    private readonly KMeansOptions _options;
    private readonly ILogger _logger;

    /// <summary>Creates a k-means runner.</summary>
    /// <param name="options">Settings (a <see cref="ClusteringOptions"/> too: only its k-means settings are used); copied and validated here.</param>
    /// <param name="logger">Receives restart and iteration logs; optional.</param>
    /// <exception cref="ArgumentException">An option is invalid (<see cref="HcscOptionsValidator.Problems(KMeansOptions)"/>); the message lists every problem.</exception>
    public KMeans(KMeansOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Clone();
        HcscOptionsValidator.ThrowIfInvalid(HcscOptionsValidator.Problems((KMeansOptions)_options), nameof(options));
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>
    /// Clusters <paramref name="points"/> into <paramref name="k"/> clusters.
    /// </summary>
    /// <param name="points">Points <c>[N, d]</c>, floating point, finite, N ≥ k, d ≥ 1, any device.</param>
    /// <param name="k">Number of clusters, ≥ 1.</param>
    /// <param name="initialCentroids">
    /// Optional starting centres <c>[k, d]</c> on the points' device (only with one restart); when
    /// given, no initialisation is drawn.
    /// </param>
    /// <param name="generator">
    /// Optional CPU generator for every random draw (subsample, initialisation, splits); when null each
    /// restart r uses a fresh generator seeded with <c>Seed + r · 1000003</c>.
    /// </param>
    /// <param name="progress">Receives one report per iteration.</param>
    /// <param name="cancellationToken">Checked between iterations.</param>
    /// <exception cref="ArgumentException">Invalid input (shape, N &lt; k, d = 0, NaN/Inf rows, device or shape mismatch of the initial centres).</exception>
    public KMeansResult Fit(
        Tensor points,
        int k,
        Tensor? initialCentroids = null,
        Generator? generator = null,
        IProgress<ClusteringProgress>? progress = null,
        CancellationToken cancellationToken = default) =>
        FitLevel(points, k, _options.Seed, initialCentroids, generator, progress, 0, 1, null, cancellationToken);

    /// <summary>
    /// Distributed k-means: every rank of <paramref name="collectives"/> calls this with its own contiguous block of the
    /// global points (rank r holds rows [o_r, o_r + n_r) of the global order, o_r = n_0 + … + n_{r−1}; the blocks may
    /// differ in size), and every rank gets the result of <see cref="Fit"/> on all the points with the same options.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Collective: every rank calls it with the same <paramref name="k"/>, options and initial centroids. Every random
    /// draw (subsample, initial centres, splits) is made on every rank from the same generator over the global row
    /// indices, exactly as one process would; the rows a draw picks are fetched from their owners. Each Lloyd iteration
    /// assigns the local training points, then sums the per-centre sums (in float64), the sizes and the objective over
    /// the ranks, so every rank moves the centres, splits empty clusters and picks the restart identically.
    /// <see cref="KMeansInitialization.KMeansPlusPlus"/> gathers the training points (at most
    /// <c>MaxPointsPerCentroid · k</c> rows) to every rank once, so that its sequential D² sampling is the one process's.
    /// </para>
    /// <para>
    /// The result equals <see cref="Fit"/> on the concatenated points up to floating-point summation order (the
    /// centroids in the last bits; an assignment only where a point is equally near two centres).
    /// <see cref="KMeansResult.Centroids"/>, <see cref="KMeansResult.Objectives"/>, <see cref="KMeansResult.Objective"/> and
    /// the restart fields are the same on every rank; <see cref="KMeansResult.Assignments"/> and
    /// <see cref="KMeansResult.SquaredDistances"/> cover this rank's rows (<c>[n_r]</c>), and
    /// <see cref="KMeansResult.SearchedFraction"/> is this rank's. With <see cref="SingleProcessCollectives.Instance"/>
    /// it is <see cref="Fit"/>, bit for bit.
    /// </para>
    /// </remarks>
    /// <param name="localPoints">This rank's points <c>[n_r, d]</c>, floating point, finite, n_r ≥ 1, the same d on every rank, any device; Σ n_r ≥ k.</param>
    /// <param name="k">Number of clusters, ≥ 1, the same on every rank.</param>
    /// <param name="collectives">The group of ranks (e.g. <c>MpiCollectives</c> from Hcsc.Distributed.Mpi).</param>
    /// <param name="initialCentroids">Optional starting centres <c>[k, d]</c>, identical on every rank (only with one restart).</param>
    /// <param name="progress">Receives one report per iteration (global objectives).</param>
    /// <param name="cancellationToken">Checked between iterations; cancel on every rank, or the others wait.</param>
    /// <exception cref="ArgumentException">Invalid input on any rank (thrown on every rank, naming the rank): shape, d differing between ranks, an empty shard, N &lt; k, NaN/Inf rows.</exception>
    public KMeansResult FitDistributed(
        Tensor localPoints,
        int k,
        ICollectives collectives,
        Tensor? initialCentroids = null,
        IProgress<ClusteringProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        var shard = PointShard.Create(collectives, localPoints, k, nameof(localPoints));
        return FitLevel(localPoints, k, _options.Seed, initialCentroids, null, progress, 0, 1, shard, cancellationToken);
    }

    internal KMeansResult FitLevel(
        Tensor points,
        int k,
        long seed,
        Tensor? initialCentroids,
        Generator? generator,
        IProgress<ClusteringProgress>? progress,
        int level,
        int levelCount,
        PointShard? shard,
        CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        if (shard is null)
        {
            EmbeddingChecks.RequirePoints(points, k, nameof(points));
            shard = PointShard.Whole(points.shape[0]);
        }
        if (initialCentroids is not null)
        {
            if (_options.Restarts > 1)
            {
                throw new ArgumentException($"Initial centroids fix the start, so restarts would repeat one run; use Restarts = 1 (got {_options.Restarts}).", nameof(initialCentroids));
            }

            CheckInitialCentroids(points, k, initialCentroids);
        }

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var dtype = points.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var all = points.detach().to(dtype).contiguous(); // [n_r, d]: this rank's rows (all N with one process)
        long n = shard.GlobalRows;
        if (n < (long)_options.MinPointsPerCentroid * k)
        {
            _logger.LogWarning(
                "k-means level {Level}: {N} points for k = {K} is fewer than {Min} per centroid; the centroids may be poor.",
                level, n, k, _options.MinPointsPerCentroid);
        }

        var owned = new List<Generator>();
        Generator GeneratorFor(int restart)
        {
            if (generator is not null)
            {
                return generator;
            }

            var created = new Generator(unchecked((ulong)(seed + (restart * 1_000_003L))));
            owned.Add(created);
            return created;
        }

        try
        {
            return Run(all, k, initialCentroids, GeneratorFor, progress, level, levelCount, shard, cancellationToken);
        }
        finally
        {
            owned.ForEach(g => g.Dispose());
        }
    }

    private KMeansResult Run(
        Tensor all,
        int k,
        Tensor? initialCentroids,
        Func<int, Generator> generatorFor,
        IProgress<ClusteringProgress>? progress,
        int level,
        int levelCount,
        PointShard shard,
        CancellationToken cancellationToken)
    {
        var dtype = all.dtype;
        long n = shard.GlobalRows;

        var firstGenerator = generatorFor(0);
        long cap = (long)_options.MaxPointsPerCentroid * k;
        bool subsampled = n > cap;
        var train = all;          // this rank's training points
        Tensor? trainGlobal = null; // the global rows of the training points in training order ([n_train], CPU); null: all rows in order
        if (subsampled)
        {
            var chosen = randperm(n, generator: firstGenerator).narrow(0, 0, cap);
            if (shard.IsDistributed)
            {
                trainGlobal = chosen;
                train = all.index_select(0, shard.Owned(chosen).Rows.to(all.device));
            }
            else
            {
                train = all.index_select(0, chosen.to(all.device));
            }

            _logger.LogInformation("k-means level {Level}: training on a subsample of {Cap} of {N} points.", level, cap, n);
        }

        long trainCount = subsampled ? cap : n;
        Tensor? gatheredTrain = null; // k-means++ on several ranks: every training point, on every rank

        // ‖x‖² with an explicit exponent (no implicitly converted Scalar), its maximum read as float64 (exact for any float dtype).
        using var two = 2.ToScalar();
        var trainNorms = train.pow(two).sum(1); // [n_train]
        double largestNorm = train.shape[0] == 0 ? 0 : trainNorms.max().to(ScalarType.Float64).item<double>();
        double margin = 1e-4 * Math.Sqrt(shard.Max(largestNorm));
        long rows = NearestCentroidSearch.RowsPerChunk(_options.ChunkBytes, k, all.element_size());

        // Bounds pay only when the points far outnumber the centres: each step costs a k × k
        // centre-distance GEMM, as much as the whole search when n_train is close to k.
        bool useBounds = _options.UseBounds && trainCount >= BoundsMinPointsPerCentroid * (long)k;

        double bestObjective = double.PositiveInfinity;
        Tensor? bestCentroids = null;
        BoundedAssigner? bestAssigner = null;
        List<double> bestObjectives = [];
        var restartObjectives = new List<double>();
        int bestRestart = 0, splits = 0;
        long searched = 0, assigned = 0;
        for (int restart = 0; restart < _options.Restarts; restart++)
        {
            var random = restart == 0 ? firstGenerator : generatorFor(restart);
            Tensor centroids;
            if (initialCentroids is not null)
            {
                centroids = initialCentroids.detach().to(dtype).clone();
            }
            else if (!shard.IsDistributed)
            {
                centroids = CentroidInitializer.Initialize(train, k, _options.Initialization, random);
            }
            else if (_options.Initialization == KMeansInitialization.RandomPoints)
            {
                // The one process's draw over the training order, mapped to global rows and fetched from their owners.
                using var picked = CentroidInitializer.RandomIndices(trainCount, k, random);
                using var global = trainGlobal is null ? picked.clone() : trainGlobal.index_select(0, picked);
                centroids = shard.FetchRows(all, global);
            }
            else
            {
                if (gatheredTrain is null)
                {
                    using var start = 0L.ToScalar();
                    using var stop = n.ToScalar();
                    using var unitStep = 1L.ToScalar();
                    using var global = trainGlobal is null ? arange(start, stop, unitStep, ScalarType.Int64) : trainGlobal.clone();
                    gatheredTrain = shard.FetchRows(all, global);
                }

                centroids = CentroidInitializer.Initialize(gatheredTrain, k, _options.Initialization, random);
            }

            var assigner = new BoundedAssigner(train, trainNorms, rows, _options.ChunkBytes, useBounds, margin);
            var objectives = new List<double>(_options.Iterations);
            for (int iteration = 0; iteration < _options.Iterations; iteration++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var step = NewDisposeScope();
                assigner.Step(centroids);
                double objective = shard.Sum(assigner.Distances.sum(ScalarType.Float64).item<double>());
                objectives.Add(objective);
                progress?.Report(new ClusteringProgress(level, levelCount, restart, _options.Restarts, iteration, _options.Iterations, objective));
                _logger.LogDebug("k-means level {Level} restart {Restart} iteration {Iteration}: objective {Objective}", level, restart, iteration, objective);

                var (updated, counts) = CentroidUpdate(train, assigner.Assignments, k, shard);
                splits += EmptyClusterSplitter.Split(updated, counts, random);
                assigner.Moved((updated - centroids).norm(1));
                centroids.Dispose();
                centroids = updated.MoveToOuterDisposeScope();
            }

            double final = objectives[^1];
            restartObjectives.Add(final);
            _logger.LogInformation("k-means level {Level} restart {Restart}: objective {Objective}", level, restart, final);
            searched += assigner.SearchedPoints;
            assigned += assigner.AssignedPoints;
            if (final < bestObjective || bestCentroids is null)
            {
                bestCentroids?.Dispose();
                bestAssigner?.Dispose();
                bestObjective = final;
                bestCentroids = centroids;
                bestAssigner = assigner;
                bestObjectives = objectives;
                bestRestart = restart;
            }
            else
            {
                centroids.Dispose();
                assigner.Dispose();
            }
        }

        Tensor assignments, distances;
        if (!subsampled)
        {
            // The training set is every point: one more (bounded) assignment step gives the final assignment.
            bestAssigner!.Step(bestCentroids!);
            assignments = bestAssigner.Assignments.clone();
            distances = bestAssigner.Distances.clone();
        }
        else
        {
            (assignments, distances) = NearestCentroidSearch.Assign(all, bestCentroids!, _options.ChunkBytes);
        }

        bestAssigner!.Dispose();
        gatheredTrain?.Dispose();
        double? globalObjective = shard.IsDistributed ? shard.Sum(distances.sum(ScalarType.Float64).item<double>()) : null;
        return new KMeansResult(
            bestCentroids!.MoveToOuterDisposeScope(),
            assignments.MoveToOuterDisposeScope(),
            distances.MoveToOuterDisposeScope(),
            bestObjectives,
            restartObjectives,
            bestRestart,
            splits,
            trainCount,
            assigned == 0 ? 1.0 : (double)searched / assigned,
            globalObjective);
    }

    /// <summary>
    /// Means of the members of each cluster ([k, d]; rows of empty clusters are 0) and the sizes on the host; on several
    /// ranks the members of every rank (the local sums and sizes summed over the ranks, float32 sums in float64).
    /// </summary>
    private static (Tensor Centroids, long[] Counts) CentroidUpdate(Tensor points, Tensor assignments, int k, PointShard shard)
    {
        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var unit = 1.0.ToScalar();
        using var one = 1.ToScalar();
        var counts = bincount(assignments, minlength: k);                                          // [k] int64
        var sums = zeros(k, points.shape[1], points.dtype, points.device).index_add_(0, assignments, points, unit); // [k, d]
        shard.SumInPlace(counts);
        shard.SumInPlace(sums);
        var centroids = sums.div_(counts.clamp_min(one).to(points.dtype).unsqueeze(1));
        return (centroids, counts.cpu().data<long>().ToArray());
    }

    private static void CheckInitialCentroids(Tensor points, int k, Tensor initial)
    {
        if (initial.dim() != 2 || initial.shape[0] != k || initial.shape[1] != points.shape[1] || !is_floating_point(initial))
        {
            throw new ArgumentException(
                $"The initial centroids must be a floating-point tensor [k, d] = [{k}, {points.shape[1]}]; got {initial.Describe()}.", nameof(initial));
        }

        if (!DeviceEquality.SameDevice(initial, points))
        {
            throw new ArgumentException(
                $"The initial centroids are on {initial.device} but the points are on {points.device}; move them to one device. Centroids: {initial.Describe()}, points: {points.Describe()}.",
                nameof(initial));
        }

        using var finite = initial.isfinite().all();
        if (!finite.item<bool>())
        {
            throw new ArgumentException("The initial centroids contain NaN or infinite values.", nameof(initial));
        }
    }
}
