using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Hcsc.Core.Devices;
using Hcsc.Core.Randomness;
using static TorchSharp.torch;

namespace Hcsc.Losses.Kernels;

/// <summary>
/// One table of rejection thresholds to draw a Bernoulli mask from: row n of the mask uses
/// row <c>Rows[n]</c> of <see cref="Thresholds"/> (or row n itself when <see cref="Rows"/> is null).
/// </summary>
/// <param name="Thresholds">Thresholds <c>[R, K]</c>, floating point; an entry is kept when its uniform exceeds it.</param>
/// <param name="Rows">Row of <paramref name="Thresholds"/> for each mask row <c>[B]</c> int64, or null when R = B.</param>
internal sealed record ThresholdTable(Tensor Thresholds, Tensor? Rows);

/// <summary>
/// Draws Bernoulli masks against rejection thresholds: for tables s = 0 … S − 1, rows n and columns j,
/// <code>
///   mask[s, n, j] = u[s, n, j] &gt; threshold_s[row_s(n), j]        (kept with probability 1 − threshold)
/// </code>
/// On the CPU (float32 / float64 contiguous tables) the uniforms come from <see cref="UniformLanes"/>
/// stream s·B + n under one 63-bit seed drawn from the caller's generator, in a C# kernel that reads the
/// threshold rows in place (no gathered copy) and counts the kept entries on the way; the masks do not
/// depend on the thread count. Elsewhere the generator draws the uniforms directly (torch.rand).
/// </summary>
internal static unsafe class BernoulliRows
{
    private static readonly ulong[] ByteSpread = BuildByteSpread();

    /// <summary>Draws the masks.</summary>
    /// <param name="tables">S threshold tables, all with K columns, the same dtype and device.</param>
    /// <param name="rows">B, the number of mask rows.</param>
    /// <param name="generator">The random source.</param>
    /// <returns>Masks <c>[S, B, K]</c> bool, and the kept count per row <c>[S, B]</c> in the tables' dtype.</returns>
    public static (Tensor Masks, Tensor Counts) Sample(IReadOnlyList<ThresholdTable> tables, long rows, Generator generator)
    {
        return CanRunOnHost(tables) ? SampleOnHost(tables, rows, DeviceRandom.DrawSeed(generator)) : SampleWithTorch(tables, rows, generator);
    }

    /// <summary>Whether <see cref="Sample"/> uses the host kernel for these tables.</summary>
    public static bool CanRunOnHost(IReadOnlyList<ThresholdTable> tables) =>
        KernelSelection.HostKernelsAllowed && Vector256.IsHardwareAccelerated && tables.All(t =>
            (HostMemory.IsDense(t.Thresholds, ScalarType.Float32) || HostMemory.IsDense(t.Thresholds, ScalarType.Float64))
            && t.Thresholds.dtype == tables[0].Thresholds.dtype
            && (t.Rows is null || HostMemory.IsDense(t.Rows, ScalarType.Int64)));

    internal static (Tensor Masks, Tensor Counts) SampleOnHost(IReadOnlyList<ThresholdTable> tables, long rows, ulong seed)
    {
        var dtype = tables[0].Thresholds.dtype;
        long columns = tables[0].Thresholds.shape[1];
        var masks = empty([tables.Count, rows, columns], ScalarType.Bool);
        var counts = empty([tables.Count, rows], dtype);
        var thresholdPointers = new nint[tables.Count];
        var rowPointers = new nint[tables.Count];
        for (int s = 0; s < tables.Count; s++)
        {
            if (tables[s].Rows is { } rowIndices)
            {
                HostMemory.CheckIndices(rowIndices, tables[s].Thresholds.shape[0], $"rows of threshold table {s}");
            }

            thresholdPointers[s] = dtype == ScalarType.Float32 ? (nint)HostMemory.Pointer<float>(tables[s].Thresholds) : (nint)HostMemory.Pointer<double>(tables[s].Thresholds);
            rowPointers[s] = tables[s].Rows is { } r ? (nint)HostMemory.Pointer<long>(r) : 0;
        }

        nint maskBase = (nint)HostMemory.Pointer<byte>(masks);
        nint countBase = dtype == ScalarType.Float32 ? (nint)HostMemory.Pointer<float>(counts) : (nint)HostMemory.Pointer<double>(counts);
        long tasks = tables.Count * rows;
        HostMemory.ParallelRows(tasks, task =>
        {
            int s = (int)(task / rows);
            long n = task % rows;
            long tableRow = rowPointers[s] == 0 ? n : ((long*)rowPointers[s])[n];
            var lanes = UniformLanes.Create(seed, (ulong)task);
            byte* mask = (byte*)maskBase + (task * columns);
            long kept = dtype == ScalarType.Float32
                ? Row((float*)thresholdPointers[s] + (tableRow * columns), mask, columns, lanes)
                : Row((double*)thresholdPointers[s] + (tableRow * columns), mask, columns, lanes);
            if (dtype == ScalarType.Float32)
            {
                ((float*)countBase)[task] = kept;
            }
            else
            {
                ((double*)countBase)[task] = kept;
            }
        });
        return (masks, counts);
    }

    private static (Tensor Masks, Tensor Counts) SampleWithTorch(IReadOnlyList<ThresholdTable> tables, long rows, Generator generator)
    {
        var first = tables[0].Thresholds;
        var masks = empty([tables.Count, rows, first.shape[1]], ScalarType.Bool, device: first.device);
        for (int s = 0; s < tables.Count; s++)
        {
            using var scope = NewDisposeScope();
            var threshold = tables[s].Rows is { } r ? tables[s].Thresholds.index_select(0, r) : tables[s].Thresholds;
            var u = DeviceRandom.Uniform(threshold.shape, threshold.dtype, threshold.device, generator);
            masks[s].copy_(u.gt(threshold));
        }

        return (masks, masks.sum(2, type: first.dtype));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static long Row(float* threshold, byte* mask, long columns, UniformLanes lanes)
    {
        var count = Vector256<int>.Zero;
        long j = 0;
        fixed (ulong* spread = ByteSpread)
        {
            for (; j + UniformLanes.Width <= columns; j += UniformLanes.Width)
            {
                var keep = Vector256.GreaterThan(lanes.Next(), Vector256.Load(threshold + j)).AsInt32();
                count -= keep;
                *(ulong*)(mask + j) = spread[keep.ExtractMostSignificantBits()];
            }
        }

        return Vector256.Sum(count) + (j < columns ? Tail(threshold, mask, j, columns, lanes.Next()) : 0);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static long Row(double* threshold, byte* mask, long columns, UniformLanes lanes)
    {
        var count = Vector256<long>.Zero;
        long j = 0;
        fixed (ulong* spread = ByteSpread)
        {
            for (; j + UniformLanes.Width <= columns; j += UniformLanes.Width)
            {
                var u = lanes.Next();
                var low = Vector256.GreaterThan(Vector256.WidenLower(u), Vector256.Load(threshold + j)).AsInt64();
                var high = Vector256.GreaterThan(Vector256.WidenUpper(u), Vector256.Load(threshold + j + 4)).AsInt64();
                count -= low + high;
                *(ulong*)(mask + j) = spread[low.ExtractMostSignificantBits() | (high.ExtractMostSignificantBits() << 4)];
            }
        }

        return Vector256.Sum(count) + (j < columns ? Tail(threshold, mask, j, columns, lanes.Next()) : 0);
    }

    /// <summary>Columns [j, columns) (fewer than eight) against the uniforms of one more call, lane by lane; returns the kept count.</summary>
    private static long Tail<T>(T* threshold, byte* mask, long j, long columns, Vector256<float> u)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        long kept = 0;
        for (int lane = 0; j < columns; j++, lane++)
        {
            bool keep = u.GetElement(lane) > double.CreateTruncating(threshold[j]);
            mask[j] = keep ? (byte)1 : (byte)0;
            kept += keep ? 1 : 0;
        }

        return kept;
    }

    /// <summary>For each 8-bit pattern, the eight bytes 0/1 it spells (bit i → byte i).</summary>
    private static ulong[] BuildByteSpread()
    {
        var table = new ulong[256];
        for (int bits = 0; bits < table.Length; bits++)
        {
            for (int i = 0; i < 8; i++)
            {
                if (((bits >> i) & 1) != 0)
                {
                    table[bits] |= 1UL << (8 * i);
                }
            }
        }

        return table;
    }
}
