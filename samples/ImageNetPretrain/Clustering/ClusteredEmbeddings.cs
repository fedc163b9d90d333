using Hcsc.Core.Hierarchy;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Clustering;

/// <summary>The hierarchical k-means of a training set's embeddings; row i was computed from image <c>Sources[i]</c>.</summary>
public sealed record ClusteredEmbeddings(ClusterHierarchy Hierarchy, long[] Sources, IDisposable Owner) : IDisposable
{
    /// <summary>Seconds the hierarchical k-means took (every level), apart from embedding the images.</summary>
    public double KMeansSeconds { get; init; }

    /// <summary>Per level, the prototypes no sample is assigned to (0 normally; more when the embeddings have collapsed).</summary>
    public int[] EmptyPrototypes()
    {
        using var scope = NewDisposeScope();
        return Hierarchy.Levels
            .Select(level => (int)level.ClusterCount - (int)level.Assignments.bincount(null, level.ClusterCount).count_nonzero().item<long>())
            .ToArray();
    }

    /// <inheritdoc />
    public void Dispose() => Owner.Dispose();
}
