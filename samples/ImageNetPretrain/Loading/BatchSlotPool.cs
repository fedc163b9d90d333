namespace Hcsc.Samples.ImageNetPretrain.Loading;

/// <summary>
/// The <see cref="BatchSlot"/>s of one loader, kept per image count (a smaller last batch gets its own): a slot returned by a
/// disposed batch is handed to the next batch of its size. Thread-safe: the producer rents, the consumer returns.
/// </summary>
internal sealed class BatchSlotPool(IReadOnlyList<int> sizes, bool pinned) : IDisposable
{
    private readonly Dictionary<int, Stack<BatchSlot>> _free = [];
    private readonly Dictionary<int, int> _made = [];
    private readonly Lock _gate = new();
    private bool _disposed;

    /// <summary>Slots allocated so far.</summary>
    public int Created
    {
        get
        {
            lock (_gate)
            {
                return _made.Values.Sum();
            }
        }
    }

    /// <summary>A free slot of <paramref name="count"/> images, or a new one.</summary>
    public BatchSlot Rent(int count)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.TryGetValue(count, out var free) && free.TryPop(out var slot))
            {
                return slot;
            }

            _made[count] = _made.GetValueOrDefault(count) + 1;
        }

        return new BatchSlot(count, sizes, pinned);
    }

    /// <summary>
    /// Allocates slots of <paramref name="count"/> images on the calling thread until the pool has made
    /// <paramref name="slots"/> of that size, so a producer thread that rents them later frees nothing it did not make
    /// (TorchSharp counts live tensors per thread: the run's leak check reads the consumer's count).
    /// </summary>
    public void Reserve(int count, int slots)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _made.TryGetValue(count, out int made);
            for (; made < slots; made++)
            {
                FreeOf(count).Push(new BatchSlot(count, sizes, pinned));
            }

            _made[count] = made;
        }
    }

    /// <summary>Takes <paramref name="slot"/> back for reuse (frees it when the pool is disposed).</summary>
    public void Return(BatchSlot slot)
    {
        lock (_gate)
        {
            if (!_disposed)
            {
                FreeOf(slot.Count).Push(slot);
                return;
            }
        }

        slot.Dispose();
    }

    /// <summary>Frees the free slots; slots still in batches are freed when those are disposed.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            foreach (var slot in _free.Values.SelectMany(s => s))
            {
                slot.Dispose();
            }

            _free.Clear();
        }
    }

    // The free slots of batches of count images (called under the lock).
    private Stack<BatchSlot> FreeOf(int count)
    {
        if (!_free.TryGetValue(count, out var free))
        {
            free = new Stack<BatchSlot>();
            _free[count] = free;
        }

        return free;
    }
}
