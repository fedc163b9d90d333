using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Hcsc.Core.Devices;
using static TorchSharp.torch;

namespace Hcsc.Losses.Kernels;

/// <summary>
/// The R4 cache entries (docs/method.md R4) of a run of keys, on the CPU: for logits s[c, j] = z_j · C[c] / max(φ(c), 1e-3) laid out
/// <c>[k, m]</c> (one column per key), writes
/// <code>
///   logZ[j]        = log Σ_c e^{s[c, j]}                              (max-shifted)
///   table[c, j]    = e^{max(s[c, j] − logZ[j], log 1e-3)} = max(p(c | z_j), 1e-3)
/// </code>
/// straight into the cache's <c>[k, Q]</c> table and <c>[Q]</c> normalisers at a column offset, in three passes over
/// the logits (column max, sum of exponentials, thresholds), eight keys per SIMD lane group.
/// </summary>
internal static unsafe class ThresholdColumns
{
    /// <summary>Whether the kernel can take these tensors (float32 or float64 on the CPU; destinations contiguous).</summary>
    public static bool OnHost(Tensor logits, Tensor table, Tensor logNormalisers) =>
        KernelSelection.HostKernelsAllowed && Vector256.IsHardwareAccelerated && logits.device_type == TorchSharp.DeviceType.CPU && logits.dtype == table.dtype && logits.dtype == logNormalisers.dtype
        && (logits.dtype == ScalarType.Float32 || logits.dtype == ScalarType.Float64)
        && logits.stride(1) == 1 && table.is_contiguous() && logNormalisers.is_contiguous();

    /// <summary>Writes columns [0, m) of <paramref name="logits"/> into columns [slot, slot + m) of the destinations.</summary>
    /// <param name="logits">s <c>[k, m]</c> with unit column stride (a column range of a wider matrix is fine).</param>
    /// <param name="table">Thresholds <c>[k, Q]</c>, contiguous.</param>
    /// <param name="logNormalisers">logZ <c>[Q]</c>, contiguous.</param>
    /// <param name="slot">First destination column; slot + m ≤ Q.</param>
    public static void Write(Tensor logits, Tensor table, Tensor logNormalisers, long slot)
    {
        long k = logits.shape[0], m = logits.shape[1], sourceStride = logits.stride(0), q = table.shape[1];
        bool single = logits.dtype == ScalarType.Float32;
        using var origin = logits.as_strided([1], [1], logits.storage_offset());   // the first element, whatever the strides
        nint source = single ? (nint)HostMemory.Pointer<float>(origin) : (nint)HostMemory.Pointer<double>(origin);
        nint destination = single ? (nint)(HostMemory.Pointer<float>(table) + slot) : (nint)(HostMemory.Pointer<double>(table) + slot);
        nint normalisers = single ? (nint)(HostMemory.Pointer<float>(logNormalisers) + slot) : (nint)(HostMemory.Pointer<double>(logNormalisers) + slot);
        // Every key goes through the same eight-lane arithmetic, whatever its position: a last partial group is done as
        // the last eight columns (overlapping the previous group, which gets the same values again), and fewer than eight
        // columns at all go through a padded copy. (The logits themselves may still differ in the last bit with the shape
        // of the matrix product that made them.)
        if (!single)
        {
            HostMemory.ParallelRows(m, j => Column((double*)source + j, sourceStride, (double*)destination + j, q, (double*)normalisers + j, k));
            return;
        }

        if (m < 8)
        {
            WritePadded(logits, table, logNormalisers, slot);
            return;
        }

        long groups = (m + 7) / 8;
        HostMemory.ParallelRows(groups, group =>
        {
            long first = Math.Min(group * 8, m - 8);
            Group((float*)source + first, sourceStride, (float*)destination + first, q, (float*)normalisers + first, k);
        });
    }

    /// <summary>Fewer than eight keys: through an eight-column copy, so they get the same arithmetic as any other key.</summary>
    private static void WritePadded(Tensor logits, Tensor table, Tensor logNormalisers, long slot)
    {
        long k = logits.shape[0], m = logits.shape[1];
        using var scope = NewDisposeScope();
        var padded = zeros([k, 8], ScalarType.Float32);
        padded.narrow(1, 0, m).copy_(logits);
        var paddedTable = empty([k, 8], ScalarType.Float32);
        var paddedLogZ = empty([8], ScalarType.Float32);
        Group(HostMemory.Pointer<float>(padded), 8, HostMemory.Pointer<float>(paddedTable), 8, HostMemory.Pointer<float>(paddedLogZ), k);
        table.narrow(1, slot, m).copy_(paddedTable.narrow(1, 0, m));
        logNormalisers.narrow(0, slot, m).copy_(paddedLogZ.narrow(0, 0, m));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group(float* source, long sourceStride, float* destination, long destinationStride, float* normalisers, long k)
    {
        var max = Vector256.Create(float.NegativeInfinity);
        for (long c = 0; c < k; c++)
        {
            max = Vector256.Max(max, Vector256.Load(source + (c * sourceStride)));
        }

        // Single-precision partial sums of 64 rows, accumulated in double (k is in the thousands).
        var partial = Vector256<float>.Zero;
        var sumLow = Vector256<double>.Zero;
        var sumHigh = Vector256<double>.Zero;
        for (long c = 0; c < k; c++)
        {
            partial += VectorExp.Exp(Vector256.Load(source + (c * sourceStride)) - max);
            if ((c + 1) % 64 == 0 || c + 1 == k)
            {
                sumLow += Vector256.WidenLower(partial);
                sumHigh += Vector256.WidenUpper(partial);
                partial = Vector256<float>.Zero;
            }
        }

        var logZ = max + Vector256.Narrow(Vector256.Log(sumLow), Vector256.Log(sumHigh));
        logZ.Store(normalisers);
        var floor = Vector256.Create((float)Math.Log(1.0 - InstanceSelector.MaxAcceptance));
        for (long c = 0; c < k; c++)
        {
            VectorExp.Exp(Vector256.Max(Vector256.Load(source + (c * sourceStride)) - logZ, floor)).Store(destination + (c * destinationStride));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Column(double* source, long sourceStride, double* destination, long destinationStride, double* normalisers, long k)
    {
        double max = double.NegativeInfinity;
        for (long c = 0; c < k; c++)
        {
            max = Math.Max(max, source[c * sourceStride]);
        }

        double sum = 0;
        for (long c = 0; c < k; c++)
        {
            sum += Math.Exp(source[c * sourceStride] - max);
        }

        double logZ = max + Math.Log(sum);
        *normalisers = logZ;
        double floor = Math.Log(1.0 - InstanceSelector.MaxAcceptance);
        for (long c = 0; c < k; c++)
        {
            destination[c * destinationStride] = Math.Exp(Math.Max(source[c * sourceStride] - logZ, floor));
        }
    }
}
