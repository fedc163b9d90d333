namespace Hcsc.Clustering;

/// <summary>
/// One progress report of <see cref="KMeans"/> or <see cref="HierarchicalKMeans"/>, sent after every
/// Lloyd iteration. Indices are zero-based.
/// </summary>
/// <param name="Level">Level being clustered (0 = finest); 0 for a plain <see cref="KMeans"/> run.</param>
/// <param name="LevelCount">Number of levels (1 for a plain <see cref="KMeans"/> run).</param>
/// <param name="Restart">Current restart.</param>
/// <param name="Restarts">Number of restarts.</param>
/// <param name="Iteration">Iteration just finished.</param>
/// <param name="Iterations">Iterations per restart.</param>
/// <param name="Objective">Sum of squared distances of the training points to their centroids at this iteration's assignment step.</param>
public sealed record ClusteringProgress(int Level, int LevelCount, int Restart, int Restarts, int Iteration, int Iterations, double Objective)
{
    /// <summary>Fraction of the whole run done, in [0, 1].</summary>
    public double Fraction =>
        (Level + ((Restart + ((Iteration + 1.0) / Iterations)) / Restarts)) / LevelCount;
}
