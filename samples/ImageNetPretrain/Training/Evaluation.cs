using Hcsc.Clustering;
using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Evaluation;
using Hcsc.Models;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>NMI, AMI and ARI of each clustering level (finest first) against one set of labels.</summary>
public sealed record ClusteringQuality(IReadOnlyList<double> Nmi, IReadOnlyList<double> Ami, IReadOnlyList<double> Ari)
{
    /// <summary>No labels to compare with.</summary>
    public static readonly ClusteringQuality None = new([], [], []);

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

/// <summary>
/// kNN top-1 / top-5 on backbone features (docs/method.md §9) and the quality of each clustering level against the labels, and
/// against the coarse labels where the data has them.
/// </summary>
public sealed record EvaluationReport(IReadOnlyList<KnnAccuracy> Knn, ClusteringQuality Fine, ClusteringQuality Coarse)
{
    /// <summary>The headline top-1: k = 20 when evaluated (k = 200, the reference's headline, needs far more images per class than small data sets have), else the first k.</summary>
    public double Top1 => Knn.Count == 0 ? double.NaN : (Knn.FirstOrDefault(a => a.K == 20) ?? Knn[0]).Top1;

    /// <summary>NMI per level against the fine labels.</summary>
    public IReadOnlyList<double> Nmi => Fine.Nmi;
}

/// <summary>The hierarchical k-means of a training set's embeddings; row i was computed from image <c>Sources[i]</c>.</summary>
public sealed record ClusteredEmbeddings(ClusterHierarchy Hierarchy, long[] Sources, IDisposable Owner) : IDisposable
{
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

/// <summary>Evaluates a model the way the reference's evaluation script does.</summary>
public static class ModelEvaluation
{
    /// <summary>kNN on backbone features of <paramref name="data"/>'s train and validation sets.</summary>
    public static IReadOnlyList<KnnAccuracy> Knn(HcscModel model, DatasetPair data, int imageSize, int batchSize, int workers, Device device, IReadOnlyList<int>? ks = null)
    {
        model.eval();
        using var scope = NewDisposeScope();
        var train = FeatureExtractor.Extract(data.Train, model.BackboneFeatures, imageSize, batchSize, workers, device, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd, out var trainRows);
        var validation = FeatureExtractor.Extract(data.Validation, model.BackboneFeatures, imageSize, batchSize, workers, device, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd, out var validationRows);
        var trainLabels = tensor(trainRows.Select(i => (long)data.Train.Labels[(int)i]).ToArray()).to(device);
        var validationLabels = tensor(validationRows.Select(i => (long)data.Validation.Labels[(int)i]).ToArray()).to(device);
        return KnnClassifier.Evaluate(train, trainLabels, validation, validationLabels, data.Train.ClassNames.Count, ks ?? KnnClassifier.ReferenceKs);
    }

    /// <summary>NMI, AMI and ARI of every level's assignment in <paramref name="clustering"/> against the labels of the images the rows were computed from.</summary>
    public static ClusteringQuality Quality(ClusteredEmbeddings clustering, IReadOnlyList<int> labels)
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
    public static (ClusteringQuality Fine, ClusteringQuality Coarse) Quality(ClusteredEmbeddings clustering, IImageDataset dataset) =>
        (Quality(clustering, dataset.Labels), dataset is IHierarchicalDataset hierarchical ? Quality(clustering, hierarchical.CoarseLabels) : ClusteringQuality.None);

    /// <summary>Embeds the training set with the key encoder and clusters it hierarchically (docs/method.md §2).</summary>
    public static ClusteredEmbeddings Cluster(HcscModel model, IImageDataset train, HcscOptions options, int batchSize, int workers, Device device, Action<int, Exception>? skipped = null)
    {
        model.eval();
        using var embeddings = FeatureExtractor.Extract(train, model.Embed, options.Augmentation.ImageSize, batchSize, workers, device, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd, out var sources, skipped);
        var result = new HierarchicalKMeans(options.Clustering, options.Objective.Temperature).Fit(embeddings);
        return new ClusteredEmbeddings(result.Hierarchy, sources, result);
    }
}
