namespace Hcsc.Core.Distributed;

/// <summary>
/// The group of one process: <see cref="Rank"/> 0, <see cref="Size"/> 1. Every operation is the identity (sums of one
/// term, a gather of one block, a broadcast from oneself), so code written against <see cref="ICollectives"/> runs
/// unchanged, and at no cost, in a single process.
/// </summary>
public sealed class SingleProcessCollectives : ICollectives
{
    private SingleProcessCollectives()
    {
    }

    /// <summary>The one instance (it holds no state).</summary>
    public static SingleProcessCollectives Instance { get; } = new();

    /// <summary>Always 0.</summary>
    public int Rank => 0;

    /// <summary>Always 1.</summary>
    public int Size => 1;

    /// <summary>Leaves <paramref name="values"/> unchanged (the sum over one rank).</summary>
    /// <param name="values">The values.</param>
    public void AllReduceSum(Span<float> values)
    {
    }

    /// <summary>Leaves <paramref name="values"/> unchanged (the sum over one rank).</summary>
    /// <param name="values">The values.</param>
    public void AllReduceSum(Span<double> values)
    {
    }

    /// <summary>Leaves <paramref name="values"/> unchanged (the sum over one rank).</summary>
    /// <param name="values">The values.</param>
    public void AllReduceSum(Span<long> values)
    {
    }

    /// <summary>Copies <paramref name="local"/> into <paramref name="gathered"/>, which must have the same length.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="local">This rank's block.</param>
    /// <param name="gathered">Receives the block; its length must equal <paramref name="local"/>'s.</param>
    /// <exception cref="ArgumentException">The lengths differ.</exception>
    public void AllGather<T>(ReadOnlySpan<T> local, Span<T> gathered)
        where T : unmanaged
    {
        if (gathered.Length != local.Length)
        {
            throw new ArgumentException(
                $"AllGather needs Size · n = {local.Length} elements to receive into (Size 1, n = {local.Length}); got {gathered.Length}.",
                nameof(gathered));
        }

        local.CopyTo(gathered);
    }

    /// <summary>Returns a copy of <paramref name="local"/>, with <paramref name="counts"/> = [local.Length].</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="local">This rank's block.</param>
    /// <param name="counts">Receives one length, <paramref name="local"/>'s.</param>
    /// <returns>A copy of <paramref name="local"/>.</returns>
    public T[] AllGatherVariable<T>(ReadOnlySpan<T> local, out int[] counts)
        where T : unmanaged
    {
        counts = [local.Length];
        return local.ToArray();
    }

    /// <summary>Leaves <paramref name="buffer"/> unchanged; <paramref name="root"/> must be 0.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="buffer">The values.</param>
    /// <param name="root">Must be 0, the only rank.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="root"/> is not 0.</exception>
    public void Broadcast<T>(Span<T> buffer, int root)
        where T : unmanaged
    {
        if (root != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(root), root, "The root must be a rank of the group: 0 (Size 1).");
        }
    }

    /// <summary>Returns at once.</summary>
    public void Barrier()
    {
    }
}
