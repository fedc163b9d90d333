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
/// <remarks>
/// Memory on the features' device is bounded whatever N is: queries are scored <c>chunk</c> at a time against
/// <c>trainChunk</c> training rows at a time (each normalised as it is read; no normalised copy of the training set),
/// keeping the best k of each query. The same neighbour lists can be computed per shard of the training set and merged
/// (<see cref="MergeNeighbours"/>), which is how data-parallel runs evaluate without gathering the training features.
/// </remarks>
public static class KnnClassifier
{
    /// <summary>The k values the reference reports.</summary>
    public static readonly int[] ReferenceKs = [10, 20, 100, 200];

    /// <summary>Training rows scored at once by default: with a chunk of 256 queries, 256 × 65 536 float32 similarities (64 MiB).</summary>
    public const long DefaultTrainChunk = 65536;

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
    /// <param name="chunk">Queries scored at once (memory: chunk · trainChunk similarities).</param>
    /// <param name="trainChunk">Training rows scored at once.</param>
    public static IReadOnlyList<KnnAccuracy> Evaluate(
        Tensor trainFeatures, Tensor trainLabels, Tensor queryFeatures, Tensor queryLabels, int classes, IReadOnlyList<int> ks, double temperature = 0.07, int chunk = 256, long trainChunk = DefaultTrainChunk)
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

        int[] clipped = ClipNeighbourCounts(ks, trainFeatures.shape[0], queryFeatures.shape[0]);
        using var scope = NewDisposeScope();
        var (similarities, labels) = Neighbours(trainFeatures, trainLabels, queryFeatures, clipped.Max(), chunk, trainChunk);
        return Vote(similarities, labels, queryLabels, classes, clipped, temperature, chunk);
    }

    /// <summary>
    /// The k values to evaluate: each of <paramref name="ks"/> clipped to the <paramref name="trainCount"/> training
    /// samples, repeats dropped. Throws on an empty set or a k below 1.
    /// </summary>
    public static int[] ClipNeighbourCounts(IReadOnlyList<int> ks, long trainCount, long queryCount)
    {
        ArgumentNullException.ThrowIfNull(ks);
        if (trainCount == 0 || queryCount == 0)
        {
            throw new ArgumentException($"kNN needs at least one training and one query feature; got {trainCount} and {queryCount}.");
        }

        if (ks.Count == 0 || ks.Any(k => k < 1))
        {
            throw new ArgumentException($"Every k must be >= 1 and at least one is needed; got [{string.Join(", ", ks)}].", nameof(ks));
        }

        return ks.Select(k => (int)Math.Min(k, trainCount)).Distinct().ToArray();
    }

    /// <summary>
    /// The <paramref name="k"/> training rows most similar (cosine) to each query, best first:
    /// similarities <c>[M, k']</c> float32 and their labels <c>[M, k']</c> int64, k' = min(k, N), on the features'
    /// device. Memory: <paramref name="chunk"/> × <paramref name="trainChunk"/> similarities and one normalised training
    /// chunk at a time.
    /// </summary>
    public static (Tensor Similarities, Tensor Labels) Neighbours(
        Tensor trainFeatures, Tensor trainLabels, Tensor queryFeatures, int k, int chunk = 256, long trainChunk = DefaultTrainChunk)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunk, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(trainChunk, 1L);
        long n = trainFeatures.shape[0], m = queryFeatures.shape[0];
        int kept = (int)Math.Min(k, n);
        using var noGrad = no_grad();
        var device = trainFeatures.device;
        var similarities = empty([m, kept], ScalarType.Float32, device);
        var neighbourLabels = empty([m, kept], ScalarType.Int64, device);
        if (kept == 0)
        {
            return (similarities, neighbourLabels); // an empty shard of a data-parallel run's training set
        }

        using (NewDisposeScope())
        {
            var labels = trainLabels.to(ScalarType.Int64).to(device);
            for (long start = 0; start < m; start += chunk)
            {
                using var scope = NewDisposeScope();
                long size = Math.Min(chunk, m - start);
                var query = nn.functional.normalize(queryFeatures.narrow(0, start, size).to(ScalarType.Float32).to(device), dim: 1); // [c, D]
                Tensor? bestValues = null, bestLabels = null;                                                                     // [c, k']
                for (long first = 0; first < n; first += trainChunk)
                {
                    long rows = Math.Min(trainChunk, n - first);
                    var train = nn.functional.normalize(trainFeatures.narrow(0, first, rows).to(ScalarType.Float32), dim: 1); // [t, D]
                    var (values, indices) = query.mm(train.t()).topk((int)Math.Min(kept, rows), dim: 1);                       // [c, ≤k']
                    var chunkLabels = labels.narrow(0, first, rows).index_select(0, indices.reshape(-1)).reshape(indices.shape);
                    (bestValues, bestLabels) = bestValues is null
                        ? (values, chunkLabels)
                        : Best(cat([bestValues, values], 1), cat([bestLabels!, chunkLabels], 1), kept);
                }

                similarities.narrow(0, start, size).copy_(bestValues!);
                neighbourLabels.narrow(0, start, size).copy_(bestLabels!);
            }
        }

        return (similarities, neighbourLabels);
    }

    /// <summary>
    /// Merges neighbour lists of the same queries computed against disjoint parts of the training set (each
    /// <c>[M, k_i]</c>, best first) into the best <paramref name="k"/> over all of them: <c>[M, min(k, Σ k_i)]</c>.
    /// </summary>
    public static (Tensor Similarities, Tensor Labels) MergeNeighbours(IReadOnlyList<(Tensor Similarities, Tensor Labels)> parts, int k)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 0)
        {
            throw new ArgumentException("At least one neighbour list is needed.", nameof(parts));
        }

        using var noGrad = no_grad();
        var values = cat(parts.Select(p => p.Similarities).ToArray(), 1);
        var labels = cat(parts.Select(p => p.Labels).ToArray(), 1);
        return Best(values, labels, k);
    }

    /// <summary>
    /// The weighted vote of docs/method.md §9 over each query's neighbours (<paramref name="similarities"/> and
    /// <paramref name="labels"/>, <c>[M, k]</c> best first), for every k of <paramref name="ks"/> (each ≤ the lists' k).
    /// </summary>
    public static IReadOnlyList<KnnAccuracy> Vote(
        Tensor similarities, Tensor labels, Tensor queryLabels, int classes, IReadOnlyList<int> ks, double temperature = 0.07, int chunk = 256)
    {
        ArgumentNullException.ThrowIfNull(ks);
        long m = similarities.shape[0];
        if (ks.Any(k => k < 1 || k > similarities.shape[1]))
        {
            throw new ArgumentException($"Every k must be in [1, {similarities.shape[1]}] (the neighbours kept); got [{string.Join(", ", ks)}].", nameof(ks));
        }

        var top1 = new long[ks.Count];
        var top5 = new long[ks.Count];
        using (NewDisposeScope())
        using (no_grad())
        {
            var device = similarities.device;
            var correct1 = zeros(ks.Count, ScalarType.Int64, device: device);
            var correct5 = zeros(ks.Count, ScalarType.Int64, device: device);
            // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
            using var tau = temperature.ToScalar();
            using var one = 1.ToScalar();
            for (long start = 0; start < m; start += chunk)
            {
                using var scope = NewDisposeScope();
                long size = Math.Min(chunk, m - start);
                var neighbourLabels = labels.narrow(0, start, size);                  // [c, k]
                var weights = similarities.narrow(0, start, size).div(tau).exp();     // [c, k]
                var truth = queryLabels.narrow(0, start, size).to(ScalarType.Int64).to(device).unsqueeze(1);
                for (int i = 0; i < ks.Count; i++)
                {
                    int k = ks[i];
                    var votes = zeros([size, classes], device: device).scatter_add_(1, neighbourLabels.narrow(1, 0, k), weights.narrow(1, 0, k)); // [c, C]
                    var ranked = votes.topk(Math.Min(5, classes), dim: 1).indexes; // [c, 5]
                    var hits = ranked.eq(truth);
                    correct1[i].add_(hits.narrow(1, 0, 1).sum(), one);
                    correct5[i].add_(hits.any(1).sum(), one);
                }
            }

            correct1.cpu().data<long>().ToArray().CopyTo(top1, 0);
            correct5.cpu().data<long>().ToArray().CopyTo(top5, 0);
        }

        return ks.Select((k, i) => new KnnAccuracy(k, 100.0 * top1[i] / m, 100.0 * top5[i] / m)).ToArray();
    }

    // The best min(k, K) columns of each row of `values` ([c, K], any order) with the labels beside them, best first.
    private static (Tensor Values, Tensor Labels) Best(Tensor values, Tensor labels, int k)
    {
        var (best, at) = values.topk((int)Math.Min(k, values.shape[1]), dim: 1);
        return (best, labels.gather(1, at));
    }
}
