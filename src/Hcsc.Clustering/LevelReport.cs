namespace Hcsc.Clustering;

/// <summary>What happened at one level of <see cref="HierarchicalKMeans.Fit"/>.</summary>
/// <param name="Level">Zero-based level (0 = finest).</param>
/// <param name="K">Clusters at this level.</param>
/// <param name="Points">Points clustered: N at level 0, k_{l−1} prototypes above.</param>
/// <param name="Objective">Σ of squared distances of all points of the level to their nearest raw centre.</param>
/// <param name="EmptyClustersSplit">Empty clusters split over all restarts and iterations.</param>
/// <param name="Seconds">Wall time of the level.</param>
/// <param name="TrainingPoints">Size of the training subsample.</param>
/// <param name="BestRestart">Winning restart.</param>
/// <param name="SearchedFraction">Fraction of point-assignments that needed a full distance search (the rest were skipped by bounds).</param>
/// <param name="EmptyClusters">
/// Prototypes that no point of the level is assigned to in the end: 0 normally; more when the points have fewer
/// distinct values than k (collapsed embeddings), which empty-cluster splitting cannot mend.
/// </param>
public sealed record LevelReport(int Level, int K, long Points, double Objective, int EmptyClustersSplit, double Seconds, long TrainingPoints, int BestRestart, double SearchedFraction, int EmptyClusters = 0);
