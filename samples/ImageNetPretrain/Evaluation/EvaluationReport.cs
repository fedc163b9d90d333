namespace Hcsc.Samples.ImageNetPretrain.Evaluation;

/// <summary>
/// kNN top-1 / top-5 on backbone features (docs/method.md §9) and the quality of each clustering level against the labels, and
/// against the coarse labels where the data has them, and how long the evaluation took (<see cref="Seconds"/>: the kNN
/// features of both sets and the clustering of the training set), so a run's training time can be told apart from its
/// evaluations'.
/// </summary>
public sealed record EvaluationReport(IReadOnlyList<KnnAccuracy> Knn, ClusteringQuality Fine, ClusteringQuality Coarse, double Seconds)
{
    /// <summary>The headline top-1: k = 20 when evaluated (k = 200, the reference's headline, needs far more images per class than small data sets have), else the first k.</summary>
    public double Top1 => Knn.Count == 0 ? double.NaN : (Knn.FirstOrDefault(a => a.K == 20) ?? Knn[0]).Top1;

    /// <summary>NMI per level against the fine labels.</summary>
    public IReadOnlyList<double> Nmi => Fine.Nmi;
}
