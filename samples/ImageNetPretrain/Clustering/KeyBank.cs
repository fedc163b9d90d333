using System.Diagnostics;
using Hcsc.Clustering;
using Hcsc.Core.Distributed;
using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Clustering;

/// <summary>
/// Clustering without a second pass over the training set (<c>--cluster-on keys</c>): the key encoder already computes
/// one key a training image every epoch; the bank keeps the newest key of every image by dataset index
/// (<c>[N, d]</c> on the training device: 655 MB for ImageNet at d = 128), and the next epoch's hierarchy clusters the
/// bank instead of embedding the set again under the evaluation view.
/// </summary>
/// <remarks>
/// The keys differ from the reference's embeddings in two ways: they come from augmented views (the training
/// transform) and from the key encoder of the step that saw the image, not of the epoch's end. Images no step has seen
/// yet (the bank of a resumed run starts empty; the last incomplete batch is dropped) are embedded as in the reference
/// before clustering. Data-parallel runs record the gathered keys of the global batch, so every rank holds the whole
/// bank and clusters its own block of it.
/// </remarks>
public sealed class KeyBank : IDisposable
{
    private readonly Tensor _keys;    // [N, d]
    private readonly Tensor _written; // [N] bool
    private readonly Scalar _true = true.ToScalar(); // explicit and alive: no Scalar temporary in the step

    /// <summary>A bank for <paramref name="count"/> images of embeddings of size <paramref name="dim"/> on <paramref name="device"/>.</summary>
    public KeyBank(long count, long dim, Device device)
    {
        _keys = zeros([count, dim], ScalarType.Float32, device);
        _written = zeros([count], ScalarType.Bool, device);
    }

    /// <summary>Keeps <paramref name="keys"/> <c>[B, d]</c> as the newest keys of the images <paramref name="indices"/> <c>[B]</c>.</summary>
    public void Record(Tensor keys, Tensor indices)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        _keys.index_copy_(0, indices, keys.detach().to(ScalarType.Float32));
        _written.index_fill_(0, indices, _true);
    }

    /// <summary>
    /// The epoch's hierarchy from the bank: images without a key are embedded first (the reference's way), then the bank
    /// is clustered (data-parallel: each rank its contiguous block, as <see cref="EmbeddingClustering.Run"/>).
    /// </summary>
    /// <returns>The hierarchy over dataset indices 0 … N − 1, the images embedded for it (those without a key) and the seconds that took.</returns>
    public (ClusteredEmbeddings Clustering, int EmbeddedImages, double EmbeddingSeconds) Cluster(
        HcscModel model, IImageDataset train, HcscOptions options, int batchSize, int workers, Action<int, Exception>? skipped, ICollectives? group)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(options);
        var clock = Stopwatch.StartNew();
        int embeddedImages;
        using (var missingRows = _written.logical_not().nonzero().squeeze(1).cpu())
        {
            // One read a epoch: which images no step has seen yet.
            long[] missing = missingRows.data<long>().ToArray();
            embeddedImages = missing.Length;
            if (missing.Length > 0)
            {
                model.eval();
                var subset = new DatasetSubset(train, missing.Select(i => (int)i).ToArray(), "images without a key yet");
                using var embedded = FeatureExtractor.Extract(subset, model.Embed, ViewTransform.Eval(options.Augmentation), batchSize, workers, _keys.device, out _, skipped);
                using var positions = tensor(missing).to(_keys.device);
                Record(embedded, positions);
            }
        }

        double embeddingSeconds = clock.Elapsed.TotalSeconds;
        long n = _keys.shape[0];
        long[] sources = Enumerable.Range(0, checked((int)n)).Select(i => (long)i).ToArray();
        var kmeans = new HierarchicalKMeans(options.Clustering, options.Objective.Temperature);
        if (group is null || group.Size == 1)
        {
            var result = kmeans.Fit(_keys);
            return (new ClusteredEmbeddings(result.Hierarchy, sources, result) { KMeansSeconds = result.Levels.Sum(l => l.Seconds) }, embeddedImages, embeddingSeconds);
        }

        long start = n * group.Rank / group.Size, end = n * (group.Rank + 1) / group.Size;
        using var block = _keys.narrow(0, start, end - start);
        var sharded = kmeans.FitDistributed(block, group);
        return (EmbeddingClustering.WholeHierarchy(sharded, sources, group), embeddedImages, embeddingSeconds);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _keys.Dispose();
        _written.Dispose();
        _true.Dispose();
    }
}
