using Hcsc.Core.Hierarchy;
using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// The R4 cache of instance selection (docs/method.md §3 and R4): for every slot j of a ring queue of keys and every
/// level l, the log-normaliser of p_l(· | z_j),
/// <code>
///   logZ_l[j] = logsumexp_c( z_j · C_l[c] / max(φ_l(c), 1e-3) )        [L][Q]
/// </code>
/// and, in <see cref="QueueSelectionCacheMode.Thresholds"/> mode (the default), the rejection threshold of
/// every prototype, t_l[c, j] = max(p_l(c | z_j), 1e-3) <c>[k_l, Q]</c>. With normalisers only, a training step
/// needs the Q × B numerators per level (O(Q·B·d)); with thresholds it reads B rows per level (O(Q·B)).
/// Either way the Q × k_l softmax is computed once per key instead of once per step.
/// </summary>
/// <remarks>
/// Internal: <see cref="SelectiveKeyQueue"/> owns one and keeps it in step with its keys (<see cref="Refresh"/> when the
/// hierarchy changes or the queue is restored, <see cref="Update"/> on every enqueue), so no caller can forget to.
/// Tests and benchmarks use it directly. It keeps a reference to the hierarchy, which must stay undisposed while the
/// cache is used. Not thread-safe.
/// </remarks>
internal sealed class QueueSelectionCache : IDisposable
{
    private Tensor[] _logNormalisers = [];
    private Tensor[] _thresholds = [];
    private bool _disposed;

    /// <summary>Creates an empty cache; call <see cref="Refresh"/> before use.</summary>
    /// <param name="mode">What to keep per slot; <see cref="QueueSelectionCacheMode.Thresholds"/> by default.</param>
    public QueueSelectionCache(QueueSelectionCacheMode mode = QueueSelectionCacheMode.Thresholds)
    {
        Mode = mode;
    }

    /// <summary>What the cache keeps per slot.</summary>
    public QueueSelectionCacheMode Mode { get; }

    /// <summary>The hierarchy of the last <see cref="Refresh"/>; null before the first.</summary>
    public ClusterHierarchy? Hierarchy { get; private set; }

    /// <summary>Q: number of queue slots covered; 0 before the first <see cref="Refresh"/>.</summary>
    public long QueueLength { get; private set; }

    /// <summary>Per level, logZ_l for every queue slot, <c>[Q]</c> (read-only).</summary>
    public IReadOnlyList<Tensor> LogNormalisers
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _logNormalisers;
        }
    }

    /// <summary>
    /// Per level, the rejection thresholds max(p_l(c | z_j), 1e-3) of every prototype c and slot j, <c>[k_l, Q]</c>
    /// (read-only); empty in <see cref="QueueSelectionCacheMode.Normalisers"/> mode.
    /// </summary>
    public IReadOnlyList<Tensor> Thresholds
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _thresholds;
        }
    }

    /// <summary>Recomputes the whole cache for <paramref name="hierarchy"/> and the current queue (Q × k_l per level).</summary>
    /// <param name="hierarchy">The cluster hierarchy the next steps use.</param>
    /// <param name="queue">All queue keys <c>[Q, d]</c>, slot order.</param>
    public void Refresh(ClusterHierarchy hierarchy, Tensor queue)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(hierarchy);
        Guard.Matrix(queue, nameof(queue), "[Q, d]");
        Guard.SameDevice(queue, nameof(queue), hierarchy.Levels[0].Prototypes, "hierarchy prototypes");
        Guard.EmbeddingSize(queue, nameof(queue), hierarchy.EmbeddingSize, "the hierarchy's prototypes");

        bool thresholds = Mode == QueueSelectionCacheMode.Thresholds;
        var fresh = new Tensor[hierarchy.LevelCount];
        var freshThresholds = thresholds ? new Tensor[hierarchy.LevelCount] : [];
        for (int l = 0; l < fresh.Length; l++)
        {
            if (thresholds)
            {
                var level = hierarchy.Levels[l];
                fresh[l] = empty(queue.shape[0], dtype: queue.dtype, device: queue.device).DetachFromDisposeScope();
                freshThresholds[l] = empty(new[] { level.ClusterCount, queue.shape[0] }, dtype: queue.dtype, device: queue.device).DetachFromDisposeScope();
                InstanceSelector.WriteCacheColumns(queue, level, freshThresholds[l], fresh[l], 0);
            }
            else
            {
                fresh[l] = InstanceSelector.LogNormalisers(queue, hierarchy.Levels[l]).DetachFromDisposeScope();
            }
        }

        ReleaseTensors();
        _logNormalisers = fresh;
        _thresholds = freshThresholds;
        Hierarchy = hierarchy;
        QueueLength = queue.shape[0];
    }

    /// <summary>
    /// Recomputes the slots <c>[startSlot, startSlot + M)</c> (wrapping around the end of the ring) after
    /// <paramref name="keys"/> were written there: O(M · Σ k_l · d).
    /// </summary>
    /// <param name="startSlot">The queue's write pointer before the keys were enqueued, in [0, Q).</param>
    /// <param name="keys">The enqueued keys <c>[M, d]</c>, M ≤ Q.</param>
    public void Update(long startSlot, Tensor keys)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Hierarchy is null)
        {
            throw new InvalidOperationException("Call Refresh(hierarchy, queue) before Update.");
        }

        Guard.Matrix(keys, nameof(keys), "[M, d]");
        Guard.EmbeddingSize(keys, nameof(keys), Hierarchy.EmbeddingSize, "the hierarchy's prototypes");
        Guard.SameDevice(keys, nameof(keys), _logNormalisers[0], "the cache");
        if (startSlot < 0 || startSlot >= QueueLength)
        {
            throw new ArgumentOutOfRangeException(nameof(startSlot), startSlot, $"must lie in [0, {QueueLength}).");
        }

        if (keys.shape[0] > QueueLength)
        {
            throw new ArgumentException($"{nameof(keys)} has more rows than the queue has slots ({QueueLength}); got {keys.Describe()}.", nameof(keys));
        }

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        for (int l = 0; l < _logNormalisers.Length; l++)
        {
            if (_thresholds.Length > 0)
            {
                InstanceSelector.WriteCacheColumns(keys, Hierarchy.Levels[l], _thresholds[l], _logNormalisers[l], startSlot);
                continue;
            }

            // The slots [startSlot, startSlot + M) of the ring: one contiguous run, or two when it wraps.
            var logZ = InstanceSelector.LogNormalisers(keys, Hierarchy.Levels[l]).to(_logNormalisers[l].dtype);
            for (long written = 0; written < keys.shape[0];)
            {
                long slot = (startSlot + written) % QueueLength;
                long run = Math.Min(keys.shape[0] - written, QueueLength - slot);
                _logNormalisers[l].narrow(0, slot, run).copy_(logZ.narrow(0, written, run));
                written += run;
            }
        }
    }

    /// <summary>Drops the tensors and the hierarchy (e.g. for the warm-up); <see cref="Refresh"/> fills the cache again.</summary>
    public void Clear()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ReleaseTensors();
        Hierarchy = null;
        QueueLength = 0;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        ReleaseTensors();
        Hierarchy = null;
    }

    private void ReleaseTensors()
    {
        foreach (var tensor in _logNormalisers.Concat(_thresholds))
        {
            tensor.Dispose();
        }

        _logNormalisers = [];
        _thresholds = [];
    }
}
