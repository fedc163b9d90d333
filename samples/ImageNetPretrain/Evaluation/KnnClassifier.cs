using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Evaluation;

/// <summary>Top-1 and top-5 accuracy (in %) of the weighted kNN classifier for one k.</summary>
public sealed record KnnAccuracy(int K, double Top1, double Top5);

/// <summary>
/// The weighted kNN classifier of the reference evaluation (docs/method.md §9): each query takes its k
/// nearest training samples by cosine similarity s and each votes for its label with weight
/// exp(s / T), T = 0.07. Features are L2-normalised here.
/// </summary>
public static class KnnClassifier
{
    /// <summary>The k values the reference reports.</summary>
    public static readonly int[] ReferenceKs = [10, 20, 100, 200];

    /// <summary>
    /// Accuracy of every k in <paramref name="ks"/> (each clipped to the number of training samples; repeats dropped).
    /// </summary>
    /// <param name="trainFeatures"><c>[N, D]</c> features of the training images.</param>
    /// <param name="trainLabels"><c>[N]</c> int64 labels.</param>
    /// <param name="queryFeatures"><c>[M, D]</c> features of the evaluated images.</param>
    /// <param name="queryLabels"><c>[M]</c> int64 labels.</param>
    /// <param name="classes">Number of classes C.</param>
    /// <param name="ks">Neighbour counts.</param>
    /// <param name="temperature">T of the vote weight exp(s / T).</param>
    /// <param name="chunk">Queries scored at once (memory: chunk · N similarities).</param>
    public static IReadOnlyList<KnnAccuracy> Evaluate(
        Tensor trainFeatures, Tensor trainLabels, Tensor queryFeatures, Tensor queryLabels, int classes, IReadOnlyList<int> ks, double temperature = 0.07, int chunk = 256)
    {
        ArgumentNullException.ThrowIfNull(ks);
        if (trainFeatures.dim() != 2 || queryFeatures.dim() != 2 || trainFeatures.shape[1] != queryFeatures.shape[1])
        {
            throw new ArgumentException($"Features must be [N, D] and [M, D] with one D; got {trainFeatures.Describe()} and {queryFeatures.Describe()}.");
        }

        if (trainLabels.shape[0] != trainFeatures.shape[0] || queryLabels.shape[0] != queryFeatures.shape[0])
        {
            throw new ArgumentException("There must be one label per feature row.");
        }

        long n = trainFeatures.shape[0], m = queryFeatures.shape[0];
        if (n == 0 || m == 0)
        {
            throw new ArgumentException($"kNN needs at least one training and one query feature; got {n} and {m}.");
        }

        if (ks.Count == 0 || ks.Any(k => k < 1))
        {
            throw new ArgumentException($"Every k must be >= 1 and at least one is needed; got [{string.Join(", ", ks)}].", nameof(ks));
        }

        int[] clipped = ks.Select(k => (int)Math.Min(k, n)).Distinct().ToArray();
        int kMax = clipped.Max();
        var top1 = new long[clipped.Length];
        var top5 = new long[clipped.Length];
        using (NewDisposeScope())
        using (no_grad())
        {
            var train = nn.functional.normalize(trainFeatures.to(ScalarType.Float32), dim: 1);
            var query = nn.functional.normalize(queryFeatures.to(ScalarType.Float32), dim: 1);
            var labels = trainLabels.to(ScalarType.Int64);
            var correct1 = zeros(clipped.Length, ScalarType.Int64, device: train.device);
            var correct5 = zeros(clipped.Length, ScalarType.Int64, device: train.device);
            // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
            using var tau = temperature.ToScalar();
            using var one = 1.ToScalar();
            for (long start = 0; start < m; start += chunk)
            {
                using var scope = NewDisposeScope();
                long size = Math.Min(chunk, m - start);
                var similarity = query.narrow(0, start, size).mm(train.t()); // [c, N]
                var (values, indices) = similarity.topk(kMax, dim: 1); // [c, kMax], sorted descending
                var neighbourLabels = labels.index_select(0, indices.reshape(-1)).reshape(size, kMax);
                var weights = values.div(tau).exp();
                var truth = queryLabels.narrow(0, start, size).to(ScalarType.Int64).to(train.device).unsqueeze(1);
                for (int i = 0; i < clipped.Length; i++)
                {
                    int k = clipped[i];
                    var votes = zeros([size, classes], device: train.device).scatter_add_(1, neighbourLabels.narrow(1, 0, k), weights.narrow(1, 0, k)); // [c, C]
                    var ranked = votes.topk(Math.Min(5, classes), dim: 1).indexes; // [c, 5]
                    var hits = ranked.eq(truth);
                    correct1[i].add_(hits.narrow(1, 0, 1).sum(), one);
                    correct5[i].add_(hits.any(1).sum(), one);
                }
            }

            var host1 = correct1.cpu().data<long>().ToArray();
            var host5 = correct5.cpu().data<long>().ToArray();
            host1.CopyTo(top1, 0);
            host5.CopyTo(top5, 0);
        }

        return clipped.Select((k, i) => new KnnAccuracy(k, 100.0 * top1[i] / m, 100.0 * top5[i] / m)).ToArray();
    }
}
