using Hcsc.Core.Hierarchy;
using Hcsc.Core.Queue;
using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// The MoCo key queue (<see cref="KeyQueue"/>: keys [Q, d], their dataset indices [Q], the write pointer) together with
/// the per-slot selection cache of instance selection (docs/method.md §3 and R4), kept in step by the queue itself:
/// <see cref="UseHierarchy"/> computes the cache for the whole queue, every <see cref="KeyQueue.Enqueue"/> recomputes the
/// slots it wrote, and <see cref="KeyQueue.Restore"/> (a checkpoint) recomputes it all. Pass the queue and the epoch's
/// hierarchy to <see cref="HcscObjective.Compute(Tensor, Tensor, SelectiveKeyQueue, Tensor, Hcsc.Core.Hierarchy.ClusterHierarchy, Generator, IReadOnlyList{Tensor})"/>:
/// a hierarchy the queue does not hold yet is handed to it there, so the objective, the cache and the keys always agree.
/// </summary>
/// <remarks>
/// <para>With no hierarchy (the warm-up, or after <see cref="UseHierarchy"/>(null)) the queue keeps no cache and the
/// objective is InfoNCE. The cache costs Q · Σ_l k_l values in <see cref="QueueSelectionCacheMode.Thresholds"/> mode and
/// Q · L in <see cref="QueueSelectionCacheMode.Normalisers"/> mode; an enqueue of B keys costs O(B · Σ_l k_l · d).</para>
/// <para>The queue keeps a reference to the hierarchy: dispose the hierarchy only after <see cref="UseHierarchy"/> with
/// another one or null. It is a checkpointable <see cref="KeyQueue"/> (Hcsc.Models' <c>TrainingCheckpoint</c>). Not
/// thread-safe.</para>
/// </remarks>
/// <example>
/// <code>
/// using var queue = new SelectiveKeyQueue(length: 4096, dim: 128);
/// var r = objective.Compute(q, k, queue, idx, hierarchy, generator); // every step; hierarchy null during the warm-up
/// r.Backward();
/// queue.Enqueue(k, idx);                                       // keys, indices and cache together
/// </code>
/// </example>
public sealed class SelectiveKeyQueue : KeyQueue
{
    private readonly QueueSelectionCache _cache;

    /// <summary>Creates a queue of random unit keys with indices −1 and no hierarchy.</summary>
    /// <param name="length">Q, the number of keys.</param>
    /// <param name="dim">d, the embedding size.</param>
    /// <param name="device">Where the queue and its cache live (CPU when <c>null</c>); the hierarchy's device.</param>
    /// <param name="generator">Random source for the initial keys (CPU generator), or <c>null</c> for the global one.</param>
    /// <param name="cacheMode">What the cache keeps per slot; <see cref="QueueSelectionCacheMode.Thresholds"/> by default.</param>
    public SelectiveKeyQueue(int length, int dim, Device? device = null, Generator? generator = null, QueueSelectionCacheMode cacheMode = QueueSelectionCacheMode.Thresholds)
        : base(length, dim, device, generator)
    {
        _cache = new QueueSelectionCache(cacheMode);
    }

    /// <summary>What the selection cache keeps per slot.</summary>
    public QueueSelectionCacheMode CacheMode => _cache.Mode;

    /// <summary>The hierarchy the queue selects under (the last <see cref="UseHierarchy"/>); null: none, plain InfoNCE.</summary>
    public ClusterHierarchy? Hierarchy => _cache.Hierarchy;

    /// <summary>The cache, in step with the keys for <see cref="Hierarchy"/>; null without a hierarchy.</summary>
    internal QueueSelectionCache? Cache => Hierarchy is null ? null : _cache;

    /// <summary>
    /// Selects under <paramref name="hierarchy"/> from now on: computes the cache for every slot (Q × Σ_l k_l, once per
    /// clustering). Null drops the cache and the hierarchy (the objective is then InfoNCE).
    /// </summary>
    /// <param name="hierarchy">The new clustering, on the queue's device with embedding size d; or null.</param>
    /// <exception cref="ArgumentException">The hierarchy's device or embedding size does not fit the queue.</exception>
    public void UseHierarchy(ClusterHierarchy? hierarchy)
    {
        if (hierarchy is null)
        {
            _cache.Clear();
            return;
        }

        Guard.SameDevice(hierarchy.Levels[0].Prototypes, nameof(hierarchy) + " prototypes", Keys, "the queue");
        Guard.EmbeddingSize(Keys, "the queue", hierarchy.EmbeddingSize, "the hierarchy's prototypes");
        _cache.Refresh(hierarchy, Keys);
    }

    /// <inheritdoc />
    protected override void OnKeysWritten(long startSlot, Tensor keys)
    {
        if (Hierarchy is { IsDisposed: true })
        {
            throw new ObjectDisposedException("hierarchy",
                "The queue's cluster hierarchy was disposed while the queue still uses it. After a new clustering call " +
                "UseHierarchy(next) before disposing the old result, or UseHierarchy(null) to drop it.");
        }

        if (Hierarchy is not null)
        {
            _cache.Update(startSlot, keys);
        }
    }

    /// <inheritdoc />
    protected override void OnRestored()
    {
        if (Hierarchy is not null)
        {
            _cache.Refresh(Hierarchy, Keys);
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _cache.Dispose();
        }

        base.Dispose(disposing);
    }
}
