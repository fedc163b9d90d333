using Hcsc.Core.Hierarchy;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>The outcome of <see cref="HierarchicalKMeans.Fit"/>: the validated hierarchy and one report per level.</summary>
public sealed class HierarchicalKMeansResult : IDisposable
{
    internal HierarchicalKMeansResult(ClusterHierarchy hierarchy, IReadOnlyList<Tensor> rawCentroids, IReadOnlyList<LevelReport> levels)
    {
        Hierarchy = hierarchy;
        RawCentroids = rawCentroids;
        Levels = levels;
    }

    /// <summary>Prototypes, assignments, concentrations, parents and inter-level similarities, finest level first.</summary>
    public ClusterHierarchy Hierarchy { get; }

    /// <summary>
    /// Per level, the raw k-means centres <c>[k_l, d]</c> float32 (before L2 normalisation), finest first:
    /// the centres every point of the level was assigned to (docs/method.md §2, step 2).
    /// </summary>
    public IReadOnlyList<Tensor> RawCentroids { get; }

    /// <summary>One report per level, finest first.</summary>
    public IReadOnlyList<LevelReport> Levels { get; }

    /// <summary>Disposes <see cref="Hierarchy"/> and <see cref="RawCentroids"/>.</summary>
    public void Dispose()
    {
        Hierarchy.Dispose();
        foreach (var centroids in RawCentroids)
        {
            centroids.Dispose();
        }
    }
}
