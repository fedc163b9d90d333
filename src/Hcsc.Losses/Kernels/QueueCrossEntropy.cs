using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace Hcsc.Losses.Kernels;

/// <summary>
/// InfoNCE and the ICSC cross-entropies of every level for one query view, in one pass over its queue logits, on
/// the CPU. For row n, with x_p = q_n·k_n/τ, X_j = q_n·z_j/τ, masks m_l and kept counts c_l = Σ_j m_l[j]:
/// <code>
///   M        = max(x_p, max_j X_j, 0)                                   (a detached shift; every exponent ≤ 0)
///   InfoNCE  = log( e^{x_p−M} + Σ_j e^{X_j−M} ) + M − x_p
///   ICSC_l   = log( e^{x_p−M} + Σ_j m_l[j]·e^{X_j−M} + [R1] (Q − c_l)·e^{−M} ) + M − x_p
///   ∂/∂X_j   = e^{X_j−M} · ( g_0 / D_0 + Σ_l m_l[j]·g_l / D_l ),   ∂/∂x_p = e^{x_p−M}·Σ_i g_i / D_i − Σ_i g_i
/// </code>
/// with D_0, D_l the denominators and g the upstream gradient. Output <c>[B, 1 + L]</c>: column 0 is InfoNCE, column
/// 1 + l is ICSC_l. Equal to <see cref="QueueContrast"/> (the tensor path).
/// </summary>
internal sealed unsafe class QueueCrossEntropy : autograd.SingleTensorFunction<QueueCrossEntropy>
{
    /// <inheritdoc />
    public override string Name => nameof(QueueCrossEntropy);

    /// <summary>Whether the host kernels can take these tensors.</summary>
    public static bool OnHost(Tensor logits, Tensor? masks) =>
        (HostMemory.IsDense(logits, ScalarType.Float32) || HostMemory.IsDense(logits, ScalarType.Float64))
        && (masks is null || HostMemory.IsDense(masks, ScalarType.Bool));

    /// <summary>Computes InfoNCE and the per-level ICSC terms per sample.</summary>
    /// <param name="logits">Negative logits X = q·zᵀ/τ <c>[B, Q]</c>, contiguous, on the CPU.</param>
    /// <param name="positive">Positive logits x_p = q·k/τ <c>[B]</c>.</param>
    /// <param name="masks">ICSC masks <c>[L, B, Q]</c> bool, or null for InfoNCE alone.</param>
    /// <param name="zeroLogit">R1: unselected negatives enter with logit 0; false excludes them.</param>
    /// <returns>Losses <c>[B, 1 + L]</c> and top-1 (x_p ≥ max_j X_j) <c>[B]</c> bool.</returns>
    public static (Tensor Loss, Tensor Top1) Compute(Tensor logits, Tensor positive, Tensor? masks, bool zeroLogit)
    {
        var top1 = empty([logits.shape[0]], ScalarType.Bool);
        return (apply(logits, positive.contiguous(), masks, new Settings(zeroLogit, top1)), top1);
    }

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var logits = (Tensor)vars[0];
        var positive = ((Tensor)vars[1]).to(logits.dtype);
        var masks = vars[2] as Tensor;
        var settings = (Settings)vars[3];
        long rows = logits.shape[0], columns = logits.shape[1];
        int levels = masks is null ? 0 : (int)masks.shape[0];
        var loss = empty([rows, 1 + levels], logits.dtype);
        var shift = empty([rows], logits.dtype);
        var denominators = empty([rows, 1 + levels], logits.dtype);
        bool single = logits.dtype == ScalarType.Float32;
        var row = new RowLayout(Address(logits), Address(positive), masks is null ? 0 : (nint)HostMemory.Pointer<byte>(masks), rows, columns, levels);
        nint lossP = Address(loss), shiftP = Address(shift), denP = Address(denominators), topP = (nint)HostMemory.Pointer<byte>(settings.Top1);
        bool zeroLogit = settings.ZeroLogit;
        HostMemory.ParallelRows(rows, n =>
        {
            double* den = stackalloc double[1 + levels];
            double x = single ? ((float*)row.Positive)[n] : ((double*)row.Positive)[n];
            var (m, top1) = single ? ForwardRow((float*)row.Logits + (n * columns), row, n, x, den, zeroLogit) : ForwardRow((double*)row.Logits + (n * columns), row, n, x, den, zeroLogit);
            for (int i = 0; i <= levels; i++)
            {
                double value = Math.Log(den[i]) + m - x;
                if (single)
                {
                    ((float*)lossP)[(n * (1 + levels)) + i] = (float)value;
                    ((float*)denP)[(n * (1 + levels)) + i] = (float)den[i];
                }
                else
                {
                    ((double*)lossP)[(n * (1 + levels)) + i] = value;
                    ((double*)denP)[(n * (1 + levels)) + i] = den[i];
                }
            }

            if (single)
            {
                ((float*)shiftP)[n] = (float)m;
            }
            else
            {
                ((double*)shiftP)[n] = m;
            }

            ((byte*)topP)[n] = top1 ? (byte)1 : (byte)0;
        });

        ctx.save_for_backward(masks is null ? [logits, positive, shift, denominators] : [logits, positive, shift, denominators, masks]);
        return loss;
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var saved = ctx.get_saved_variables();
        var (logits, positive, shift, denominators) = (saved[0], saved[1], saved[2], saved[3]);
        var masks = saved.Count > 4 ? saved[4] : null;
        long rows = logits.shape[0], columns = logits.shape[1];
        int levels = masks is null ? 0 : (int)masks.shape[0];
        var upstream = grad_output.to(logits.dtype).contiguous();                         // [B, 1 + L]
        var gradLogits = empty([rows, columns], logits.dtype);
        var gradPositive = empty([rows], logits.dtype);
        bool single = logits.dtype == ScalarType.Float32;
        var row = new RowLayout(Address(logits), Address(positive), masks is null ? 0 : (nint)HostMemory.Pointer<byte>(masks), rows, columns, levels);
        nint g = Address(upstream), shiftP = Address(shift), denP = Address(denominators), outP = Address(gradLogits), posP = Address(gradPositive);
        HostMemory.ParallelRows(rows, n =>
        {
            // Weights w_i = g_i / D_i of InfoNCE (i = 0) and of each level.
            double* w = stackalloc double[1 + levels];
            double upstreamSum = 0, weightSum = 0;
            for (int i = 0; i <= levels; i++)
            {
                long at = (n * (1 + levels)) + i;
                double gi = single ? ((float*)g)[at] : ((double*)g)[at];
                double di = single ? ((float*)denP)[at] : ((double*)denP)[at];
                w[i] = gi / di;
                upstreamSum += gi;
                weightSum += w[i];
            }

            double m = single ? ((float*)shiftP)[n] : ((double*)shiftP)[n];
            double x = single ? ((float*)row.Positive)[n] : ((double*)row.Positive)[n];
            double dPositive = (Math.Exp(x - m) * weightSum) - upstreamSum;
            if (single)
            {
                BackwardRow((float*)row.Logits + (n * columns), (float*)outP + (n * columns), row, n, (float)m, w);
                ((float*)posP)[n] = (float)dPositive;
            }
            else
            {
                BackwardRow((double*)row.Logits + (n * columns), (double*)outP + (n * columns), row, n, m, w);
                ((double*)posP)[n] = dPositive;
            }
        });

        ctx.save_data("gradients", new KeepAlive([gradLogits, gradPositive]));
        foreach (var tensor in saved)
        {
            tensor.Dispose();
        }

        return [gradLogits, gradPositive, null!, null!];
    }

    private static nint Address(Tensor tensor) =>
        tensor.dtype == ScalarType.Float32 ? (nint)HostMemory.Pointer<float>(tensor) : (nint)HostMemory.Pointer<double>(tensor);

    /// <summary>Fills den[0 … L] and returns the shift M and top-1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (double Shift, bool Top1) ForwardRow(float* logits, RowLayout row, long n, double positive, double* den, bool zeroLogit)
    {
        long q = row.Columns;
        int levels = row.Levels;
        var maxima = Vector256.Create(float.NegativeInfinity);
        long j = 0;
        for (; j + 8 <= q; j += 8)
        {
            maxima = Vector256.Max(maxima, Vector256.Load(logits + j));
        }

        float maxNegative = float.NegativeInfinity;
        for (int i = 0; i < 8; i++)
        {
            maxNegative = MathF.Max(maxNegative, maxima.GetElement(i));
        }

        for (; j < q; j++)
        {
            maxNegative = MathF.Max(maxNegative, logits[j]);
        }

        float m = MathF.Max(MathF.Max(maxNegative, (float)positive), 0f);
        var shift = Vector256.Create(m);
        var all = Vector256<float>.Zero;
        var kept = stackalloc Vector256<float>[levels];
        var counts = stackalloc Vector256<int>[levels];
        for (int l = 0; l < levels; l++)
        {
            kept[l] = Vector256<float>.Zero;
            counts[l] = Vector256<int>.Zero;
        }

        j = 0;
        for (; j + 8 <= q; j += 8)
        {
            var e = VectorExp.Exp(Vector256.Load(logits + j) - shift);
            all += e;
            for (int l = 0; l < levels; l++)
            {
                var selected = MaskLanes.Load8(row.Mask(l, n) + j);
                kept[l] += Vector256.ConvertToSingle(selected) * e;
                counts[l] += selected;
            }
        }

        double sumAll = Vector256.Sum(all);
        double* keptSum = stackalloc double[levels];
        long* keptCount = stackalloc long[levels];
        for (int l = 0; l < levels; l++)
        {
            keptSum[l] = Vector256.Sum(kept[l]);
            keptCount[l] = Vector256.Sum(counts[l]);
        }

        for (; j < q; j++)
        {
            double e = Math.Exp(logits[j] - m);
            sumAll += e;
            for (int l = 0; l < levels; l++)
            {
                if (row.Mask(l, n)[j] != 0)
                {
                    keptSum[l] += e;
                    keptCount[l]++;
                }
            }
        }

        Denominators(den, positive, m, sumAll, keptSum, keptCount, q, levels, zeroLogit);
        return (m, positive >= maxNegative);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (double Shift, bool Top1) ForwardRow(double* logits, RowLayout row, long n, double positive, double* den, bool zeroLogit)
    {
        long q = row.Columns;
        int levels = row.Levels;
        double maxNegative = double.NegativeInfinity;
        for (long j = 0; j < q; j++)
        {
            maxNegative = Math.Max(maxNegative, logits[j]);
        }

        double m = Math.Max(Math.Max(maxNegative, positive), 0.0);
        double sumAll = 0;
        double* keptSum = stackalloc double[levels];
        long* keptCount = stackalloc long[levels];
        for (int l = 0; l < levels; l++)
        {
            keptSum[l] = 0;
            keptCount[l] = 0;
        }

        for (long j = 0; j < q; j++)
        {
            double e = Math.Exp(logits[j] - m);
            sumAll += e;
            for (int l = 0; l < levels; l++)
            {
                if (row.Mask(l, n)[j] != 0)
                {
                    keptSum[l] += e;
                    keptCount[l]++;
                }
            }
        }

        Denominators(den, positive, m, sumAll, keptSum, keptCount, q, levels, zeroLogit);
        return (m, positive >= maxNegative);
    }

    private static void Denominators(double* den, double positive, double m, double sumAll, double* keptSum, long* keptCount, long q, int levels, bool zeroLogit)
    {
        double ePositive = Math.Exp(positive - m);
        den[0] = ePositive + sumAll;
        for (int l = 0; l < levels; l++)
        {
            // M ≥ 0, so e^{−M} ≤ 1.
            den[1 + l] = ePositive + keptSum[l] + (zeroLogit ? (q - keptCount[l]) * Math.Exp(-m) : 0.0);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardRow(float* logits, float* gradient, RowLayout row, long n, float m, double* weights)
    {
        long q = row.Columns;
        int levels = row.Levels;
        var shift = Vector256.Create(m);
        var w0 = Vector256.Create((float)weights[0]);
        var w = stackalloc Vector256<float>[levels];
        for (int l = 0; l < levels; l++)
        {
            w[l] = Vector256.Create((float)weights[1 + l]);
        }

        long j = 0;
        for (; j + 8 <= q; j += 8)
        {
            var factor = w0;
            for (int l = 0; l < levels; l++)
            {
                factor += Vector256.ConvertToSingle(MaskLanes.Load8(row.Mask(l, n) + j)) * w[l];
            }

            (VectorExp.Exp(Vector256.Load(logits + j) - shift) * factor).Store(gradient + j);
        }

        for (; j < q; j++)
        {
            double factor = weights[0];
            for (int l = 0; l < levels; l++)
            {
                factor += row.Mask(l, n)[j] != 0 ? weights[1 + l] : 0.0;
            }

            gradient[j] = (float)(Math.Exp(logits[j] - m) * factor);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardRow(double* logits, double* gradient, RowLayout row, long n, double m, double* weights)
    {
        for (long j = 0; j < row.Columns; j++)
        {
            double factor = weights[0];
            for (int l = 0; l < row.Levels; l++)
            {
                factor += row.Mask(l, n)[j] != 0 ? weights[1 + l] : 0.0;
            }

            gradient[j] = Math.Exp(logits[j] - m) * factor;
        }
    }

    /// <summary>Addresses of a call's tensors.</summary>
    private readonly struct RowLayout(nint logits, nint positive, nint masks, long rows, long columns, int levels)
    {
        private readonly nint _masks = masks;
        private readonly long _rows = rows;

        public nint Logits { get; } = logits;

        public nint Positive { get; } = positive;

        public long Columns { get; } = columns;

        public int Levels { get; } = levels;

        /// <summary>Row n of level l's mask.</summary>
        public byte* Mask(int l, long n) => (byte*)_masks + (((l * _rows) + n) * Columns);
    }

    private sealed class Settings(bool zeroLogit, Tensor top1)
    {
        public bool ZeroLogit { get; } = zeroLogit;

        public Tensor Top1 { get; } = top1;
    }

    private sealed class KeepAlive(Tensor[] tensors)
    {
        public Tensor[] Tensors { get; } = tensors;
    }
}
