namespace Hcsc.Core.Distributed;

/// <summary>
/// The collective operations that data-parallel training and distributed k-means need, over a fixed group of
/// <see cref="Size"/> processes ("ranks") numbered 0 … <see cref="Size"/> − 1. The libraries take this interface and
/// stay single-process by default (<see cref="SingleProcessCollectives"/>); an application started by an MPI launcher
/// passes an MPI implementation (the <c>Hcsc.Distributed.Mpi</c> package), one that brings its own launcher can
/// implement the interface over its own transport.
/// </summary>
/// <remarks>
/// <para>
/// Every operation is <b>collective</b>: every rank must call the same operations in the same order, with the same
/// element type, the same root and (where stated) the same lengths; otherwise the program deadlocks or fails inside the
/// transport. The operations are blocking: when a call returns, its result is in place on this rank.
/// </para>
/// <para>
/// Reductions are summed in an order the transport chooses: for floating-point values the sum is the same on every rank
/// but may differ in the last bits from a sequential sum. The generic operations move the elements' bytes, so
/// the element type of <see cref="AllGather{T}"/>, <see cref="AllGatherVariable{T}"/> and
/// <see cref="Broadcast{T}"/> must have the same layout on every rank (the same program on machines of one byte order).
/// </para>
/// <para>An implementation is used from one thread at a time (calls may come from different threads, not at once).</para>
/// </remarks>
public interface ICollectives
{
    /// <summary>This process's index in the group, in [0, <see cref="Size"/>).</summary>
    int Rank { get; }

    /// <summary>The number of processes in the group (1 for <see cref="SingleProcessCollectives"/>).</summary>
    int Size { get; }

    /// <summary>
    /// Element-wise sum over all ranks, in place: afterwards <c>values[i]</c> is Σ over ranks r of rank r's
    /// <c>values[i]</c>, on every rank. The length must be the same on every rank.
    /// </summary>
    /// <param name="values">This rank's values; overwritten with the sums.</param>
    void AllReduceSum(Span<float> values);

    /// <summary>
    /// Element-wise sum over all ranks, in place: afterwards <c>values[i]</c> is Σ over ranks r of rank r's
    /// <c>values[i]</c>, on every rank. The length must be the same on every rank.
    /// </summary>
    /// <param name="values">This rank's values; overwritten with the sums.</param>
    void AllReduceSum(Span<double> values);

    /// <summary>
    /// Element-wise sum over all ranks, in place (64-bit integers, exact; overflow wraps as in two's complement):
    /// afterwards <c>values[i]</c> is Σ over ranks r of rank r's <c>values[i]</c>, on every rank. The length must be the
    /// same on every rank.
    /// </summary>
    /// <param name="values">This rank's values; overwritten with the sums.</param>
    void AllReduceSum(Span<long> values);

    /// <summary>
    /// Gathers equal-length blocks: every rank gives <paramref name="local"/> of the same length n, and every rank receives
    /// in <paramref name="gathered"/> (length <see cref="Size"/> · n) the blocks of ranks 0, 1, …, in rank order: rank r's
    /// block at [r · n, (r + 1) · n).
    /// </summary>
    /// <typeparam name="T">An unmanaged element type with the same layout on every rank.</typeparam>
    /// <param name="local">This rank's block (length n, the same on every rank).</param>
    /// <param name="gathered">Receives the blocks; its length must be <see cref="Size"/> · n. Must not overlap <paramref name="local"/>.</param>
    /// <exception cref="ArgumentException"><paramref name="gathered"/> is not <see cref="Size"/> times as long as <paramref name="local"/>.</exception>
    void AllGather<T>(ReadOnlySpan<T> local, Span<T> gathered)
        where T : unmanaged;

    /// <summary>
    /// Gathers blocks whose lengths may differ between ranks (uneven shards): every rank receives the concatenation of the
    /// blocks of ranks 0, 1, … in rank order, and in <paramref name="counts"/> each rank's block length.
    /// </summary>
    /// <typeparam name="T">An unmanaged element type with the same layout on every rank.</typeparam>
    /// <param name="local">This rank's block, of any length (also 0).</param>
    /// <param name="counts">Receives <see cref="Size"/> lengths: rank r's block starts at Σ<sub>s &lt; r</sub> counts[s].</param>
    /// <returns>A new array of Σ counts elements (the same on every rank).</returns>
    /// <exception cref="ArgumentException">The total length exceeds <see cref="int.MaxValue"/> elements.</exception>
    T[] AllGatherVariable<T>(ReadOnlySpan<T> local, out int[] counts)
        where T : unmanaged;

    /// <summary>
    /// Copies <paramref name="buffer"/> of rank <paramref name="root"/> into <paramref name="buffer"/> of every rank.
    /// The length must be the same on every rank.
    /// </summary>
    /// <typeparam name="T">An unmanaged element type with the same layout on every rank.</typeparam>
    /// <param name="buffer">On the root: the values sent (unchanged); elsewhere: overwritten with them.</param>
    /// <param name="root">The sending rank, in [0, <see cref="Size"/>), the same on every rank.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="root"/> is not a rank of the group.</exception>
    void Broadcast<T>(Span<T> buffer, int root)
        where T : unmanaged;

    /// <summary>Returns on each rank only once every rank of the group has called it.</summary>
    void Barrier();
}
