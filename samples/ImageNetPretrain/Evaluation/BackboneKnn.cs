using Hcsc.Models;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Loading;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Evaluation;

/// <summary>The kNN evaluation of a model (docs/method.md §9): its backbone features of the training set classify the validation set.</summary>
public static class BackboneKnn
{
    /// <summary>kNN top-1 / top-5 on backbone features of <paramref name="data"/>'s train and validation sets, for every k of <paramref name="ks"/> (the reference's by default).</summary>
    public static IReadOnlyList<KnnAccuracy> Evaluate(HcscModel model, DatasetPair data, int imageSize, int batchSize, int workers, Device device, IReadOnlyList<int>? ks = null)
    {
        model.eval();
        using var scope = NewDisposeScope();
        var train = FeatureExtractor.Extract(data.Train, model.BackboneFeatures, imageSize, batchSize, workers, device, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd, out var trainRows);
        var validation = FeatureExtractor.Extract(data.Validation, model.BackboneFeatures, imageSize, batchSize, workers, device, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd, out var validationRows);
        var trainLabels = tensor(trainRows.Select(i => (long)data.Train.Labels[(int)i]).ToArray()).to(device);
        var validationLabels = tensor(validationRows.Select(i => (long)data.Validation.Labels[(int)i]).ToArray()).to(device);
        return KnnClassifier.Evaluate(train, trainLabels, validation, validationLabels, data.Train.ClassNames.Count, ks ?? KnnClassifier.ReferenceKs);
    }
}
