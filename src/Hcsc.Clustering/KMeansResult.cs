using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>The outcome of <see cref="KMeans.Fit"/>. Owns its tensors; dispose it (or move them out first).</summary>
public sealed class KMeansResult : IDisposable
{
    private readonly double? _objective;

    internal KMeansResult(
        Tensor centroids,
        Tensor assignments,
        Tensor squaredDistances,
        IReadOnlyList<double> objectives,
        IReadOnlyList<double> restartObjectives,
        int bestRestart,
        int emptyClustersSplit,
        long trainingPoints,
        double searchedFraction,
        double? objective = null)
    {
        _objective = objective;
        Centroids = centroids;
        Assignments = assignments;
        SquaredDistances = squaredDistances;
        Objectives = objectives;
        RestartObjectives = restartObjectives;
        BestRestart = bestRestart;
        EmptyClustersSplit = emptyClustersSplit;
        TrainingPoints = trainingPoints;
        SearchedFraction = searchedFraction;
    }

    /// <summary>Raw (not normalised) centroids of the best restart, <c>[k, d]</c>, on the points' device (float32, or float64 for float64 input).</summary>
    public Tensor Centroids { get; }

    /// <summary>Nearest centroid of every input point (all N, not only the training subsample), <c>[N]</c> int64; after <see cref="KMeans.FitDistributed"/>, of this rank's points.</summary>
    public Tensor Assignments { get; }

    /// <summary>Squared L2 distance of every input point to its assigned centroid, <c>[N]</c>.</summary>
    public Tensor SquaredDistances { get; }

    /// <summary>
    /// Objective of the best restart at each iteration: Σ_i ‖x_i − c_{a(i)}‖² over the training points
    /// at that iteration's assignment step (before the update). Non-increasing under Lloyd's algorithm.
    /// </summary>
    public IReadOnlyList<double> Objectives { get; }

    /// <summary>Final (last-iteration) training objective of each restart; the lowest one wins.</summary>
    public IReadOnlyList<double> RestartObjectives { get; }

    /// <summary>Index of the winning restart.</summary>
    public int BestRestart { get; }

    /// <summary>Empty clusters split over all restarts and iterations.</summary>
    public int EmptyClustersSplit { get; }

    /// <summary>Size of the training subsample (min(N, MaxPointsPerCentroid · k)).</summary>
    public long TrainingPoints { get; }

    /// <summary>Fraction of point-assignments that needed a full distance search (1 without bounds).</summary>
    public double SearchedFraction { get; }

    /// <summary>
    /// Σ over all N points of <see cref="SquaredDistances"/>; after <see cref="KMeans.FitDistributed"/>, over the points of
    /// every rank (the same value on every rank).
    /// </summary>
    public double Objective
    {
        get
        {
            if (_objective is { } objective)
            {
                return objective;
            }

            using var sum = SquaredDistances.sum(ScalarType.Float64);
            return sum.item<double>();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Centroids.Dispose();
        Assignments.Dispose();
        SquaredDistances.Dispose();
    }
}
