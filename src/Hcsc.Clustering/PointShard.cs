using Hcsc.Core.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>
/// One rank's contiguous block of the global rows in distributed k-means: rank r holds rows
/// [<see cref="Offset"/>, <see cref="Offset"/> + <see cref="LocalRows"/>) of the global order (the ranks' blocks
/// concatenated in rank order). Also the few collective helpers the clustering needs; with a group of one every helper
/// is the identity and communicates nothing, so the single-process path computes exactly what it always did.
/// </summary>
internal sealed class PointShard
{
    internal PointShard(ICollectives collectives, long[] counts)
    {
        Collectives = collectives;
        Counts = counts;
        Offsets = OffsetsOf(counts);
        Offset = Offsets[collectives.Rank];
        LocalRows = counts[collectives.Rank];
        GlobalRows = counts.Sum();
    }

    /// <summary>The group.</summary>
    public ICollectives Collectives { get; }

    /// <summary>Rows of each rank.</summary>
    public long[] Counts { get; }

    /// <summary>First global row of each rank.</summary>
    public long[] Offsets { get; }

    /// <summary>First global row of this rank.</summary>
    public long Offset { get; }

    /// <summary>Rows of this rank.</summary>
    public long LocalRows { get; }

    /// <summary>Rows of all ranks.</summary>
    public long GlobalRows { get; }

    /// <summary>Whether the group has more than one rank (otherwise nothing is communicated).</summary>
    public bool IsDistributed => Collectives.Size > 1;

    /// <summary>The shard of a single process: all <paramref name="rows"/> rows, offset 0.</summary>
    public static PointShard Whole(long rows) => new(SingleProcessCollectives.Instance, [rows]);

    /// <summary>The first global row of each rank: the exclusive prefix sums of <paramref name="counts"/>.</summary>
    public static long[] OffsetsOf(IReadOnlyList<long> counts)
    {
        var offsets = new long[counts.Count];
        long running = 0;
        for (int r = 0; r < counts.Count; r++)
        {
            offsets[r] = running;
            running += counts[r];
        }

        return offsets;
    }

    /// <summary>
    /// Collective: checks every rank's points (as <see cref="EmbeddingChecks.RequirePoints"/>, each rank non-empty, one d,
    /// at least <paramref name="k"/> rows in all) and returns the shard. Every rank throws the same way when any rank's
    /// points are invalid, so that no rank is left waiting in a later collective.
    /// </summary>
    public static PointShard Create(ICollectives collectives, Tensor localPoints, long k, string parameterName)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        ArgumentNullException.ThrowIfNull(localPoints, parameterName);
        string? problem = null;
        try
        {
            EmbeddingChecks.RequirePoints(localPoints, 0, parameterName);
            if (localPoints.shape[0] == 0)
            {
                problem = "The points of this rank are empty; every rank needs at least one row.";
            }
        }
        catch (ArgumentException e)
        {
            problem = e.Message;
        }

        long rows = localPoints.dim() >= 1 ? localPoints.shape[0] : 0;
        long width = localPoints.dim() == 2 ? localPoints.shape[1] : -1;
        int size = collectives.Size;
        Span<long> local = [rows, width, problem is null ? 0 : 1];
        var all = new long[3 * size];
        collectives.AllGather<long>(local, all);
        var counts = new long[size];
        var bad = new List<int>();
        for (int r = 0; r < size; r++)
        {
            counts[r] = all[3 * r];
            if (all[(3 * r) + 2] != 0)
            {
                bad.Add(r);
            }
        }

        if (bad.Count > 0)
        {
            throw new ArgumentException(
                problem is not null
                    ? $"Rank {collectives.Rank}: {problem}"
                    : $"The points of rank(s) {string.Join(", ", bad)} are invalid (their error names the problem); nothing was computed.",
                parameterName);
        }

        for (int r = 1; r < size; r++)
        {
            if (all[(3 * r) + 1] != all[1])
            {
                throw new ArgumentException(
                    $"Every rank's points must have the same number of features; rank 0 has d = {all[1]}, rank {r} d = {all[(3 * r) + 1]}.", parameterName);
            }
        }

        long total = counts.Sum();
        if (total < k)
        {
            throw new ArgumentException(
                $"k-means with k = {k} needs at least {k} points; the {size} ranks hold N = {total} ({string.Join(" + ", counts)}).", parameterName);
        }

        return new PointShard(collectives, counts);
    }

    /// <summary>
    /// The local row of each global index of <paramref name="globalIndices"/> ([m] int64, CPU) that this rank holds, in the
    /// order given: <c>Positions</c> (into <paramref name="globalIndices"/>) and <c>Rows</c> (into the local points), both [m'] int64 on the CPU.
    /// </summary>
    public (Tensor Positions, Tensor Rows) Owned(Tensor globalIndices)
    {
        var (positions, rows) = OwnedOf(globalIndices.cpu().contiguous().data<long>().ToArray());
        return (tensor(positions), tensor(rows));
    }

    /// <summary>The host form of <see cref="Owned(Tensor)"/>: the positions in <paramref name="globalIndices"/> of the rows this rank holds, and their local rows.</summary>
    public (long[] Positions, long[] Rows) OwnedOf(IReadOnlyList<long> globalIndices)
    {
        var positions = new List<long>();
        var rows = new List<long>();
        for (int i = 0; i < globalIndices.Count; i++)
        {
            long row = globalIndices[i] - Offset;
            if (row >= 0 && row < LocalRows)
            {
                positions.Add(i);
                rows.Add(row);
            }
        }

        return (positions.ToArray(), rows.ToArray());
    }

    /// <summary>
    /// Collective: the rows <paramref name="globalIndices"/> ([m] int64, CPU) of the global points, [m, d] on every rank:
    /// the owners write theirs into a zero buffer, which is then summed over the ranks (exact: one non-zero term a value).
    /// </summary>
    public Tensor FetchRows(Tensor localPoints, Tensor globalIndices)
    {
        using var scope = NewDisposeScope();
        if (!IsDistributed)
        {
            return localPoints.index_select(0, globalIndices.to(localPoints.device)).MoveToOuterDisposeScope();
        }

        var (positions, rows) = Owned(globalIndices);
        var device = localPoints.device;
        var buffer = zeros(globalIndices.shape[0], localPoints.shape[1], localPoints.dtype, device);
        buffer.index_copy_(0, positions.to(device), localPoints.index_select(0, rows.to(device)));
        Collectives.AllReduceSum(buffer);
        return buffer.MoveToOuterDisposeScope();
    }

    /// <summary>Collective: Σ over the ranks of <paramref name="value"/> (the value itself with one rank).</summary>
    public double Sum(double value)
    {
        if (!IsDistributed)
        {
            return value;
        }

        Span<double> values = [value];
        Collectives.AllReduceSum(values);
        return values[0];
    }

    /// <summary>Collective: the largest <paramref name="value"/> of the ranks.</summary>
    public double Max(double value)
    {
        if (!IsDistributed)
        {
            return value;
        }

        Span<double> local = [value];
        var all = new double[Collectives.Size];
        Collectives.AllGather<double>(local, all);
        return all.Max();
    }

    /// <summary>Collective: <paramref name="tensor"/> (float32, float64 or int64) summed over the ranks in place; float32 is summed in float64.</summary>
    public void SumInPlace(Tensor tensor)
    {
        if (!IsDistributed)
        {
            return;
        }

        if (tensor.dtype == ScalarType.Float32)
        {
            using var wide = tensor.to(ScalarType.Float64);
            Collectives.AllReduceSum(wide);
            tensor.copy_(wide);
        }
        else
        {
            Collectives.AllReduceSum(tensor);
        }
    }
}
