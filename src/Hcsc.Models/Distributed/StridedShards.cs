using Hcsc.Core.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Models.Distributed;

/// <summary>
/// The data-parallel split of a global batch of B rows over n ranks used by the sample and by
/// <see cref="HcscModel.ForwardDataParallel"/>: rank r holds the rows
/// r, r + n, r + 2n, … (B / n of them, strided). Strided shards make one rank's batch norm over its rows the same as
/// split j = r of <see cref="Normalization.SplitBatchNorm2d"/> (which groups the rows n mod S = j) in one process,
/// so that n ranks with per-rank batch norm reproduce one process with n batch-norm splits.
/// </summary>
public static class StridedShards
{
    /// <summary>Rank <paramref name="rank"/>'s rows of a global batch: rows rank, rank + size, … of <paramref name="global"/>.</summary>
    /// <param name="global">[B, …] with B a multiple of <paramref name="size"/>.</param>
    /// <param name="rank">The rank, in [0, <paramref name="size"/>).</param>
    /// <param name="size">The number of ranks.</param>
    /// <returns>A new contiguous [B / size, …] tensor.</returns>
    /// <exception cref="ArgumentException">B is not a multiple of <paramref name="size"/>.</exception>
    public static Tensor Take(Tensor global, int rank, int size)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        if ((uint)rank >= (uint)size)
        {
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"The rank must be in [0, {size}).");
        }

        long rows = global.shape[0];
        if (rows % size != 0)
        {
            throw new ArgumentException($"A batch of {rows} rows cannot be split evenly over {size} ranks.", nameof(global));
        }

        long[] shape = global.shape.ToArray();
        long[] grouped = [rows / size, size, .. shape[1..]];
        using var view = global.contiguous().view(grouped);
        using var mine = view.select(1, rank);
        return mine.contiguous();
    }

    /// <summary>
    /// Gathers every rank's strided shard back into the global batch in its original row order (the inverse of
    /// <see cref="Take"/> over all ranks); collective. With one rank, a copy.
    /// </summary>
    /// <param name="collectives">The group.</param>
    /// <param name="local">This rank's [B / n, …] shard; the same shape on every rank.</param>
    /// <returns>A new [B, …] tensor on <paramref name="local"/>'s device, without autograd history.</returns>
    public static Tensor Gather(ICollectives collectives, Tensor local)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        ArgumentNullException.ThrowIfNull(local);
        var gathered = collectives.AllGather(local);         // [n · b, …]: rank r's rows at [r · b, (r + 1) · b)
        if (collectives.Size == 1)
        {
            return gathered;                                  // already a copy: one rank's AllGather clones
        }

        using var owned = gathered;

        long b = local.shape[0];
        long[] rest = local.shape[1..].ToArray();
        using var byRank = gathered.view([collectives.Size, b, .. rest]);
        using var byRow = byRank.transpose(0, 1);             // [b, n, …]: global row t · n + r
        return byRow.reshape([collectives.Size * b, .. rest]);
    }
}
