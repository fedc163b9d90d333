using Hcsc.Clustering;
using Hcsc.Samples.ImageNetPretrain.Clustering;
using Hcsc.Samples.ImageNetPretrain.Data;

namespace Hcsc.Samples.ImageNetPretrain.Evaluation;

/// <summary>NMI, AMI and ARI of each clustering level (finest first) against one set of labels.</summary>
public sealed record ClusteringQuality(IReadOnlyList<double> Nmi, IReadOnlyList<double> Ami, IReadOnlyList<double> Ari)
{
    /// <summary>No labels to compare with.</summary>
    public static readonly ClusteringQuality None = new([], [], []);

    /// <summary>NMI, AMI and ARI of every level's assignment in <paramref name="clustering"/> against the labels of the images the rows were computed from.</summary>
    public static ClusteringQuality Measure(ClusteredEmbeddings clustering, IReadOnlyList<int> labels)
    {
        long[] truth = clustering.Sources.Select(i => (long)labels[(int)i]).ToArray();
        var levels = clustering.Hierarchy.Levels.Select(level =>
        {
            using var assignments = level.Assignments.cpu();
            return assignments.data<long>().ToArray();
        }).ToArray();
        return new ClusteringQuality(
            levels.Select(a => ClusteringMetrics.NormalizedMutualInformation(a, truth)).ToArray(),
            levels.Select(a => ClusteringMetrics.AdjustedMutualInformation(a, truth)).ToArray(),
            levels.Select(a => ClusteringMetrics.AdjustedRandIndex(a, truth)).ToArray());
    }

    /// <summary>Quality against the fine labels, and against the coarse ones when <paramref name="dataset"/> has a hierarchy.</summary>
    public static (ClusteringQuality Fine, ClusteringQuality Coarse) Measure(ClusteredEmbeddings clustering, IImageDataset dataset) =>
        (Measure(clustering, dataset.Labels), dataset is IHierarchicalDataset hierarchical ? Measure(clustering, hierarchical.CoarseLabels) : None);

    /// <summary>Adds <c>nmi</c>, <c>ami</c> and <c>ari</c> (each a list per level, names ending in <paramref name="suffix"/>) to a metrics record.</summary>
    public void WriteTo(IDictionary<string, object?> record, string suffix = "")
    {
        if (Nmi.Count == 0)
        {
            return;
        }

        record["nmi" + suffix] = Nmi;
        record["ami" + suffix] = Ami;
        record["ari" + suffix] = Ari;
    }
}
