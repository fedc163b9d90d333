using Hcsc.Core.Hierarchy;

namespace Hcsc.Clustering;

/// <summary>The outcome of <see cref="HierarchicalKMeans.Fit"/>: the validated hierarchy and one report per level.</summary>
public sealed class HierarchicalKMeansResult : IDisposable
{
    internal HierarchicalKMeansResult(ClusterHierarchy hierarchy, IReadOnlyList<LevelReport> levels)
    {
        Hierarchy = hierarchy;
        Levels = levels;
    }

    /// <summary>Prototypes, assignments, concentrations, parents and inter-level similarities, finest level first.</summary>
    public ClusterHierarchy Hierarchy { get; }

    /// <summary>One report per level, finest first.</summary>
    public IReadOnlyList<LevelReport> Levels { get; }

    /// <summary>Disposes <see cref="Hierarchy"/>.</summary>
    public void Dispose() => Hierarchy.Dispose();
}
