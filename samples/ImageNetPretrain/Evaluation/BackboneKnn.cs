using Hcsc.Core.Distributed;
using Hcsc.Models;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Loading;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Evaluation;

/// <summary>The kNN evaluation of a model (docs/method.md §9): its backbone features of the training set classify the validation set.</summary>
public static class BackboneKnn
{
    /// <summary>
    /// kNN top-1 / top-5 on backbone features of <paramref name="data"/>'s train and validation sets, for every k of
    /// <paramref name="ks"/> (the reference's by default). With a <paramref name="group"/> of several ranks
    /// (docs/distributed.md) each rank embeds 1/n of both sets and the features are gathered, so every rank computes the
    /// same accuracies; collective. Null or one rank: one process. Both sets are seen through <paramref name="view"/>, the
    /// evaluation view (<see cref="ViewTransform.Eval(int, double)"/>).
    /// </summary>
    public static IReadOnlyList<KnnAccuracy> Evaluate(HcscModel model, DatasetPair data, ViewTransform view, int batchSize, int workers, Device device, IReadOnlyList<int>? ks = null, ICollectives? group = null)
    {
        model.eval();
        using var scope = NewDisposeScope();
        var (train, trainRows) = Features(data.Train);
        var (validation, validationRows) = Features(data.Validation);
        var trainLabels = FeatureExtractor.Labels(data.Train, trainRows, device);
        var validationLabels = FeatureExtractor.Labels(data.Validation, validationRows, device);
        return KnnClassifier.Evaluate(train, trainLabels, validation, validationLabels, data.Train.ClassNames.Count, ks ?? KnnClassifier.ReferenceKs);

        (Tensor Features, long[] Rows) Features(IImageDataset dataset)
        {
            long[] rows;
            var features = group is null || group.Size == 1
                ? FeatureExtractor.Extract(dataset, model.BackboneFeatures, view, batchSize, workers, device, out rows)
                : FeatureExtractor.ExtractGathered(dataset, model.BackboneFeatures, view, batchSize, workers, device, group, out rows);
            return (features, rows);
        }
    }
}
