using Hcsc.Clustering;
using Hcsc.Core.Distributed;
using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Loading;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Clustering;

/// <summary>
/// The clustering step of an HCSC epoch (docs/method.md §2): the training set embedded by the key encoder under the
/// evaluation transform, then clustered bottom-up by hierarchical k-means. The <c>clusters</c> command runs it too.
/// </summary>
public static class EmbeddingClustering
{
    /// <summary>Embeds <paramref name="train"/> with <paramref name="model"/>'s key encoder (eval mode) and clusters the embeddings hierarchically.</summary>
    /// <param name="model">The model; left in eval mode.</param>
    /// <param name="train">The training set.</param>
    /// <param name="options">The image size, the clustering options and τ (the concentrations' mean).</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="workers">Data-loading threads.</param>
    /// <param name="device">Where the model and the k-means run.</param>
    /// <param name="skipped">Told of every image that could not be decoded (it is replaced by the next one).</param>
    /// <param name="group">
    /// Data-parallel (docs/distributed.md): each rank embeds its contiguous block of the training set, the embeddings are
    /// gathered in global order (<see cref="ICollectives.AllGatherVariable{T}"/>) and every rank runs the same
    /// hierarchical k-means (deterministic by seed), checked identical over the ranks. Null or one rank: one process.
    /// </param>
    public static ClusteredEmbeddings Run(HcscModel model, IImageDataset train, HcscOptions options, int batchSize, int workers, Device device, Action<int, Exception>? skipped = null, ICollectives? group = null)
    {
        model.eval();
        if (group is null || group.Size == 1)
        {
            using var embeddings = FeatureExtractor.Extract(train, model.Embed, options.Augmentation.ImageSize, batchSize, workers, device, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd, out var sources, skipped);
            var result = new HierarchicalKMeans(options.Clustering, options.Objective.Temperature).Fit(embeddings);
            return new ClusteredEmbeddings(result.Hierarchy, sources, result);
        }

        using var gathered = EmbedShards(model, train, options, batchSize, workers, device, skipped, group, out var allSources);
        var shared = new HierarchicalKMeans(options.Clustering, options.Objective.Temperature).Fit(gathered);
        try
        {
            VerifyIdentical(shared.Hierarchy, group);
            return new ClusteredEmbeddings(shared.Hierarchy, allSources, shared);
        }
        catch
        {
            shared.Dispose();
            throw;
        }
    }

    // Rank r embeds images [r·N/n, (r+1)·N/n); the blocks gathered in rank order are the training set in order.
    private static Tensor EmbedShards(HcscModel model, IImageDataset train, HcscOptions options, int batchSize, int workers, Device device, Action<int, Exception>? skipped, ICollectives group, out long[] sources)
    {
        int start = (int)((long)train.Count * group.Rank / group.Size), end = (int)((long)train.Count * (group.Rank + 1) / group.Size);
        var block = new DatasetSubset(train, Enumerable.Range(start, end - start).ToArray(), $"rank {group.Rank}'s block");
        float[] local;
        long[] localSources;
        long dim;
        using (var embeddings = FeatureExtractor.Extract(block, model.Embed, options.Augmentation.ImageSize, batchSize, workers, device, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd, out var blockSources, skipped))
        using (var host = embeddings.to(ScalarType.Float32, CPU).contiguous())
        {
            dim = embeddings.shape[1];
            local = host.data<float>().ToArray();
            localSources = blockSources.Select(i => i + start).ToArray();
        }

        float[] all = group.AllGatherVariable<float>(local, out _);
        sources = group.AllGatherVariable<long>(localSources, out _);
        using var onHost = tensor(all, [sources.Length, dim]);
        return onHost.to(device);
    }

    // Every rank must hold the same hierarchy: the queue's selection and the prototypes depend on it.
    private static void VerifyIdentical(ClusterHierarchy hierarchy, ICollectives group)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var level in hierarchy.Levels)
        {
            foreach (var part in new[] { level.Assignments, level.Prototypes })
            {
                using var host = part.to(CPU).contiguous();
                hash.AppendData(host.bytes);
            }
        }

        byte[] mine = hash.GetHashAndReset();
        var every = new byte[mine.Length * group.Size];
        group.AllGather<byte>(mine, every);
        for (int r = 1; r < group.Size; r++)
        {
            if (!every.AsSpan(r * mine.Length, mine.Length).SequenceEqual(every.AsSpan(0, mine.Length)))
            {
                throw new InvalidOperationException(
                    $"The ranks' hierarchical k-means results differ (rank {r} from rank 0) although they clustered the same embeddings with the same seed; " +
                    "the clustering is not deterministic on this device. Train the HCSC epochs in one process.");
            }
        }
    }
}
