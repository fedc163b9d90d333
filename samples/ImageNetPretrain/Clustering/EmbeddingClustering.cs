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
    /// Data-parallel (docs/distributed.md): each rank embeds its contiguous block of the training set and the ranks run
    /// one sharded hierarchical k-means (<see cref="HierarchicalKMeans.FitDistributed"/>: per-centre sums all-reduced);
    /// only the assignments ([N] int64 per level) are gathered, so every rank holds the whole hierarchy, checked
    /// identical over the ranks. Null or one rank: one process.
    /// </param>
    public static ClusteredEmbeddings Run(HcscModel model, IImageDataset train, HcscOptions options, int batchSize, int workers, Device device, Action<int, Exception>? skipped = null, ICollectives? group = null)
    {
        model.eval();
        if (group is null || group.Size == 1)
        {
            using var embeddings = FeatureExtractor.Extract(train, model.Embed, ViewTransform.Eval(options.Augmentation), batchSize, workers, device, out var sources, skipped);
            var result = new HierarchicalKMeans(options.Clustering, options.Objective.Temperature).Fit(embeddings);
            return new ClusteredEmbeddings(result.Hierarchy, sources, result) { KMeansSeconds = result.Levels.Sum(l => l.Seconds) };
        }

        using var local = EmbedBlock(model, train, options, batchSize, workers, device, skipped, group, out var allSources);
        var sharded = new HierarchicalKMeans(options.Clustering, options.Objective.Temperature).FitDistributed(local, group);
        return WholeHierarchy(sharded, allSources, group);
    }

    /// <summary>
    /// A sharded result (<see cref="HierarchicalKMeans.FitDistributed"/>, each rank its block's assignments) as the whole
    /// hierarchy on every rank: the assignments gathered, checked identical over the ranks. Takes ownership of
    /// <paramref name="sharded"/>. Collective.
    /// </summary>
    public static ClusteredEmbeddings WholeHierarchy(HierarchicalKMeansResult sharded, long[] allSources, ICollectives group)
    {
        ArgumentNullException.ThrowIfNull(sharded);
        ArgumentNullException.ThrowIfNull(group);
        ClusterHierarchy? whole = null;
        try
        {
            whole = WithGatheredAssignments(sharded.Hierarchy, group);
            VerifyIdentical(whole, group);
            return new ClusteredEmbeddings(whole, allSources, new Owners(whole, sharded)) { KMeansSeconds = sharded.Levels.Sum(l => l.Seconds) };
        }
        catch
        {
            whole?.Dispose();
            sharded.Dispose();
            throw;
        }
    }

    // Rank r embeds images [r·N/n, (r+1)·N/n): the contiguous blocks FitDistributed expects, in rank order. The dataset
    // indices behind the rows (a skipped image is replaced by another) are gathered for the whole training set.
    private static Tensor EmbedBlock(HcscModel model, IImageDataset train, HcscOptions options, int batchSize, int workers, Device device, Action<int, Exception>? skipped, ICollectives group, out long[] sources) =>
        FeatureExtractor.ExtractBlock(train, model.Embed, ViewTransform.Eval(options.Augmentation), batchSize, workers, device, group, out sources, out _, skipped);

    // The sharded result holds each rank's own rows' assignments; the objective looks up any dataset index, so every
    // rank gets the assignments of all rows (N int64 per level, instead of the N × d embeddings).
    private static ClusterHierarchy WithGatheredAssignments(ClusterHierarchy shard, ICollectives group)
    {
        var levels = shard.Levels;
        var assignments = new List<Tensor>(levels.Count);
        try
        {
            foreach (var level in levels)
            {
                using var host = level.Assignments.to(ScalarType.Int64, CPU).contiguous();
                long[] all = group.AllGatherVariable<long>(host.data<long>().ToArray(), out _);
                assignments.Add(tensor(all).to(shard.Device));
            }

            return ClusterHierarchy.FromTensors(
                levels.Select(l => l.Prototypes).ToList(),
                assignments,
                levels.Select(l => l.Concentrations).ToList(),
                levels.Where(l => l.Parents is not null).Select(l => l.Parents!).ToList());
        }
        finally
        {
            foreach (var gathered in assignments)
            {
                gathered.Dispose();
            }
        }
    }

    private sealed record Owners(IDisposable First, IDisposable Second) : IDisposable
    {
        public void Dispose()
        {
            First.Dispose();
            Second.Dispose();
        }
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
