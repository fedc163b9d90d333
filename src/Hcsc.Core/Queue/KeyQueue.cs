using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Core.Queue;

/// <summary>
/// The MoCo key queue: Q L2-normalised keys [Q, d] and the dataset index of each [Q], kept as a ring.
/// <see cref="Enqueue"/> overwrites the oldest B slots starting at <see cref="Pointer"/> (wrapping around
/// the end, so B need not divide Q) and advances the pointer by B modulo Q.
/// Slots never written hold random unit keys (as MoCo initialises them) and index −1.
/// </summary>
/// <remarks>
/// <see cref="Enqueue"/> and <see cref="Restore"/> are the only writers; a derived type that keeps something per slot
/// (Hcsc.Losses' <c>SelectiveKeyQueue</c> keeps the selection cache) follows them through <see cref="OnKeysWritten"/>
/// and <see cref="OnRestored"/>, so that it cannot fall out of step with the keys. Lives in Hcsc.Core so that both the
/// losses (the selection cache) and the models (checkpoints) can use it. Not thread-safe.
/// </remarks>
public class KeyQueue : IDisposable
{
    private Tensor keys;
    private Tensor indices;

    /// <summary>Creates a queue of random unit keys with indices −1.</summary>
    /// <param name="length">Q, the number of keys.</param>
    /// <param name="dim">d, the embedding size.</param>
    /// <param name="device">Where the queue lives (CPU when <c>null</c>).</param>
    /// <param name="generator">Random source for the initial keys (CPU generator), or <c>null</c> for the global one.</param>
    public KeyQueue(int length, int dim, Device? device = null, Generator? generator = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(length, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(dim, 1);
        Length = length;
        Dim = dim;
        using (var scope = NewDisposeScope())
        {
            var initial = randn(new long[] { length, dim }, generator: generator);
            keys = nn.functional.normalize(initial, dim: 1).to(device ?? CPU).detach().DetachFromDisposeScope();
        }

        using var unfilled = (-1L).ToScalar(); // explicit and alive: no implicitly converted Scalar temporary
        indices = full(new long[] { length }, unfilled, dtype: ScalarType.Int64, device: device ?? CPU).DetachFromDisposeScope();
    }

    /// <summary>Q, the number of slots.</summary>
    public int Length { get; }

    /// <summary>d, the embedding size.</summary>
    public int Dim { get; }

    /// <summary>The keys [Q, d] (owned by the queue: do not dispose; read-only by contract).</summary>
    public Tensor Keys => keys;

    /// <summary>The dataset index of each key [Q] (int64; −1 for slots never written).</summary>
    public Tensor Indices => indices;

    /// <summary>The slot the next <see cref="Enqueue"/> starts writing at, in [0, Q).</summary>
    public long Pointer { get; private set; }

    /// <summary>The device the queue lives on.</summary>
    public Device Device => keys.device;

    /// <summary>
    /// Writes <paramref name="newKeys"/> [B, d] and their dataset indices [B] over the oldest B slots and returns the
    /// first slot written (the old <see cref="Pointer"/>). Keys are copied detached; B may be any size from 1 to Q.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes, dtype or device do not fit the queue, or B &gt; Q.</exception>
    public long Enqueue(Tensor newKeys, Tensor newIndices)
    {
        ArgumentNullException.ThrowIfNull(newKeys);
        ArgumentNullException.ThrowIfNull(newIndices);
        if (newKeys.dim() != 2 || newKeys.shape[1] != Dim || newKeys.shape[0] < 1)
        {
            throw new ArgumentException($"Expected keys [B, {Dim}] with B ≥ 1; got {newKeys.Describe()}.", nameof(newKeys));
        }

        var batch = newKeys.shape[0];
        if (batch > Length)
        {
            throw new ArgumentException($"A batch of {batch} keys does not fit a queue of length {Length}.", nameof(newKeys));
        }

        if (newIndices.dim() != 1 || newIndices.shape[0] != batch || newIndices.is_floating_point() || newIndices.dtype == ScalarType.Bool)
        {
            throw new ArgumentException($"Expected integer indices [{batch}]; got {newIndices.Describe()}.", nameof(newIndices));
        }

        var start = Pointer;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var k = newKeys.detach().to(keys.dtype, keys.device);
        var idx = newIndices.to(ScalarType.Int64, indices.device);
        var first = Math.Min(batch, Length - start);
        keys.narrow(0, start, first).copy_(k.narrow(0, 0, first));
        indices.narrow(0, start, first).copy_(idx.narrow(0, 0, first));
        if (first < batch)
        {
            keys.narrow(0, 0, batch - first).copy_(k.narrow(0, first, batch - first));
            indices.narrow(0, 0, batch - first).copy_(idx.narrow(0, first, batch - first));
        }

        Pointer = (start + batch) % Length;
        OnKeysWritten(start, k);
        return start;
    }

    /// <summary>
    /// Called by <see cref="Enqueue"/> right after <paramref name="keys"/> [B, d] were written over the slots
    /// <c>[startSlot, startSlot + B)</c> (modulo Q); the base does nothing.
    /// </summary>
    /// <param name="startSlot">The first slot written (the pointer before the write).</param>
    /// <param name="keys">The keys as stored (detached, the queue's dtype and device); valid during the call only.</param>
    protected virtual void OnKeysWritten(long startSlot, Tensor keys)
    {
    }

    /// <summary>Called by <see cref="Restore"/> after the whole queue was replaced; the base does nothing.</summary>
    protected virtual void OnRestored()
    {
    }

    /// <summary>Replaces the queue's state (e.g. from a checkpoint): keys [Q, d], indices [Q], pointer in [0, Q).</summary>
    /// <exception cref="ArgumentException">A shape or the pointer does not fit this queue.</exception>
    public void Restore(Tensor savedKeys, Tensor savedIndices, long pointer)
    {
        ArgumentNullException.ThrowIfNull(savedKeys);
        ArgumentNullException.ThrowIfNull(savedIndices);
        var problems = new List<string>();
        if (savedKeys.dim() != 2 || savedKeys.shape[0] != Length || savedKeys.shape[1] != Dim)
        {
            problems.Add($"keys must be [{Length}, {Dim}], got {savedKeys.Describe()}");
        }

        if (savedIndices.dim() != 1 || savedIndices.shape[0] != Length)
        {
            problems.Add($"indices must be [{Length}], got {savedIndices.Describe()}");
        }

        if (pointer < 0 || pointer >= Length)
        {
            problems.Add($"pointer must lie in [0, {Length}), got {pointer}");
        }

        if (problems.Count > 0)
        {
            throw new ArgumentException("Cannot restore the key queue: " + string.Join("; ", problems) + ".");
        }

        using var noGrad = no_grad();
        keys.copy_(savedKeys);
        indices.copy_(savedIndices);
        Pointer = pointer;
        OnRestored();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the keys and indices; a derived type releases what it keeps, then calls the base.</summary>
    /// <param name="disposing">True from <see cref="Dispose()"/>.</param>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            keys.Dispose();
            indices.Dispose();
        }
    }
}
