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
    /// (docs/distributed.md) each rank embeds 1/n of both sets; the validation features are gathered, and each rank
    /// scores them against its own block of the training features only, so the training set's features are never gathered
    /// (device memory O(N / n · D), and no collective larger than the validation set): the ranks' neighbour lists are
    /// gathered and merged, and every rank computes the same accuracies. Collective. Null or one rank: one process. Both
    /// sets are seen through <paramref name="view"/>, the evaluation view (<see cref="ViewTransform.Eval(int, double)"/>).
    /// </summary>
    public static IReadOnlyList<KnnAccuracy> Evaluate(HcscModel model, DatasetPair data, ViewTransform view, int batchSize, int workers, Device device, IReadOnlyList<int>? ks = null, ICollectives? group = null)
    {
        model.eval();
        using var scope = NewDisposeScope();
        int classes = data.Train.ClassNames.Count;
        ks ??= KnnClassifier.ReferenceKs;
        if (group is null || group.Size == 1)
        {
            var train = FeatureExtractor.Extract(data.Train, model.BackboneFeatures, view, batchSize, workers, device, out var trainRows);
            var validation = FeatureExtractor.Extract(data.Validation, model.BackboneFeatures, view, batchSize, workers, device, out var validationRows);
            return KnnClassifier.Evaluate(
                train, FeatureExtractor.Labels(data.Train, trainRows, device), validation, FeatureExtractor.Labels(data.Validation, validationRows, device), classes, ks);
        }

        var block = FeatureExtractor.ExtractBlock(data.Train, model.BackboneFeatures, view, batchSize, workers, device, group, out var rows, out int blockStart);
        var blockLabels = FeatureExtractor.Labels(data.Train, rows.Skip(blockStart).Take((int)block.shape[0]), device);
        var queries = FeatureExtractor.ExtractGathered(data.Validation, model.BackboneFeatures, view, batchSize, workers, device, group, out var queryRows);
        int[] clipped = KnnClassifier.ClipNeighbourCounts(ks, rows.Length, queries.shape[0]);
        var local = KnnClassifier.Neighbours(block, blockLabels, queries, clipped.Max());
        var (similarities, labels) = KnnClassifier.MergeNeighbours(GatherNeighbours(local, group), clipped.Max());
        return KnnClassifier.Vote(similarities, labels, FeatureExtractor.Labels(data.Validation, queryRows, device), classes, clipped);
    }

    // Every rank's [M, k_r] neighbour lists, in rank order (k_r = min(k, the rank's block): ranks may differ).
    private static List<(Tensor Similarities, Tensor Labels)> GatherNeighbours((Tensor Similarities, Tensor Labels) local, ICollectives group)
    {
        long m = local.Similarities.shape[0];
        using var values = local.Similarities.to(ScalarType.Float32, CPU).contiguous();
        using var labels = local.Labels.to(ScalarType.Int64, CPU).contiguous();
        float[] allValues = group.AllGatherVariable<float>(values.data<float>().ToArray(), out int[] counts);
        long[] allLabels = group.AllGatherVariable<long>(labels.data<long>().ToArray(), out _);
        var device = local.Similarities.device;
        var parts = new List<(Tensor, Tensor)>(group.Size);
        int offset = 0;
        foreach (int count in counts)
        {
            long k = count / m;
            parts.Add((
                tensor(allValues.AsSpan(offset, count).ToArray(), [m, k]).to(device),
                tensor(allLabels.AsSpan(offset, count).ToArray(), [m, k]).to(device)));
            offset += count;
        }

        return parts;
    }
}
