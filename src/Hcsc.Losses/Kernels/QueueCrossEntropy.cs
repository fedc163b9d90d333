using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Hcsc.Core.Devices;
using static TorchSharp.torch;

namespace Hcsc.Losses.Kernels;

/// <summary>
/// InfoNCE and the ICSC cross-entropies of every level for one query view, in two passes over its queue logits (their
/// maximum, then the exponentials and every sum at once), on the CPU. For row n, with x_p = q_n·k_n/τ, X_j = q_n·z_j/τ,
/// masks m_l and kept counts c_l = Σ_j m_l[j] ([R1]: the term of docs/method.md R1, unselected negatives with logit 0):
/// <code>
///   InfoNCE  = log( e^{x_p} + Σ_j e^{X_j} ) − x_p
///   ICSC_l   = log( e^{x_p} + Σ_j m_l[j]·e^{X_j} + [R1] (Q − c_l)·e^0 ) − x_p
///   ∂/∂X_j   = Σ_i g_i · (softmax weight of X_j in term i),   ∂/∂x_p = Σ_i g_i · (weight of x_p in term i − 1)
/// </code>
/// Every term is evaluated with a shift: the row's M = max(x_p, max_j X_j) for all of them at once (one exponential
/// per logit, in single precision; denominators and weights in double). A level whose own largest term lies so far
/// below M that its denominator drops under 1e-20 (an exponential would underflow: tiny temperatures, unnormalised
/// embeddings, exclusion of the largest logits) is recomputed exactly with its own shift, forward and backward.
/// Output <c>[B, 1 + L]</c>: column 0 is InfoNCE, column 1 + l is ICSC_l. The forward pass keeps its own bit-packed
/// copy of the masks for the backward pass (1/8 of their size), so the caller may change or free its masks at once.
/// First-order gradients only.
/// </summary>
internal sealed unsafe class QueueCrossEntropy : autograd.SingleTensorFunction<QueueCrossEntropy>
{
    /// <summary>Below this, a level's denominator under the row's common shift is recomputed with its own shift.</summary>
    private const double DegenerateDenominator = 1e-20;

    /// <summary>Single-precision partial sums are moved to double every this many SIMD steps.</summary>
    private const int FlushEvery = 256;

    /// <inheritdoc />
    public override string Name => nameof(QueueCrossEntropy);

    /// <summary>Whether the host kernels can take logits of this dtype and device.</summary>
    public static bool OnHost(Tensor query) =>
        KernelSelection.HostKernelsAllowed && Vector256.IsHardwareAccelerated && query.device_type == TorchSharp.DeviceType.CPU
        && (query.dtype == ScalarType.Float32 || query.dtype == ScalarType.Float64);

    /// <summary>Computes InfoNCE and the per-level ICSC terms per sample.</summary>
    /// <param name="logits">Negative logits X = q·zᵀ/τ <c>[B, Q]</c>, contiguous, on the CPU.</param>
    /// <param name="positive">Positive logits x_p = q·k/τ <c>[B]</c>.</param>
    /// <param name="masks">ICSC masks <c>[L, B, Q]</c> bool, contiguous, or null for InfoNCE alone.</param>
    /// <param name="zeroLogit">docs/method.md R1: unselected negatives enter with logit 0; false excludes them.</param>
    /// <returns>Losses <c>[B, 1 + L]</c> and top-1 (x_p ≥ max_j X_j) <c>[B]</c> bool.</returns>
    public static (Tensor Loss, Tensor Top1) Compute(Tensor logits, Tensor positive, Tensor? masks, bool zeroLogit)
    {
        if (masks is not null && (masks.dim() != 3 || masks.shape[1] != logits.shape[0] || masks.shape[2] != logits.shape[1] || !HostMemory.IsDense(masks, ScalarType.Bool)))
        {
            throw new ArgumentException($"masks must be contiguous bool [L, {logits.shape[0]}, {logits.shape[1]}]; got {Core.Tensors.TensorDescription.Describe(masks)}.", nameof(masks));
        }

        var top1 = empty([logits.shape[0]], ScalarType.Bool);
        return (apply(logits.contiguous(), positive.to(logits.dtype).contiguous(), new Settings(zeroLogit, top1, masks)), top1);
    }

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var logits = (Tensor)vars[0];
        var positive = (Tensor)vars[1];
        var settings = (Settings)vars[2];
        long rows = logits.shape[0], columns = logits.shape[1];
        int levels = settings.Masks is null ? 0 : (int)settings.Masks.shape[0];
        var loss = empty([rows, 1 + levels], logits.dtype);
        var shifts = empty([rows, 1 + levels], ScalarType.Float64);
        var denominators = empty([rows, 1 + levels], ScalarType.Float64);
        var packed = empty([levels, rows, PackedLength(columns)], ScalarType.Byte);
        var row = Layout.Of(logits, positive, settings.Masks, packed);
        nint lossP = Address(loss), shiftP = (nint)HostMemory.Pointer<double>(shifts), denP = (nint)HostMemory.Pointer<double>(denominators);
        nint topP = (nint)HostMemory.Pointer<byte>(settings.Top1);
        bool single = logits.dtype == ScalarType.Float32;
        bool zeroLogit = settings.ZeroLogit;
        HostMemory.ParallelRows(rows, n =>
        {
            double* shift = (double*)shiftP + (n * (1 + levels));
            double* den = (double*)denP + (n * (1 + levels));
            double x = row.PositiveAt(n);
            bool top1 = single
                ? ForwardRow((float*)row.Logits + (n * columns), row, n, x, zeroLogit, shift, den)
                : ForwardRow((double*)row.Logits + (n * columns), row, n, x, zeroLogit, shift, den);
            for (int i = 0; i <= levels; i++)
            {
                double value = Math.Log(den[i]) + shift[i] - x;
                if (single)
                {
                    ((float*)lossP)[(n * (1 + levels)) + i] = (float)value;
                }
                else
                {
                    ((double*)lossP)[(n * (1 + levels)) + i] = value;
                }
            }

            ((byte*)topP)[n] = top1 ? (byte)1 : (byte)0;
        });

        GC.KeepAlive(settings);
        ctx.save_for_backward([logits, positive, shifts, denominators, packed]);
        return loss;
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output) =>
        BackwardFailures.Run(Name, () => Gradients(ctx, grad_output), () =>
        {
            var saved = ctx.get_saved_variables();
            using var nan = TorchSharp.ScalarExtensionMethods.ToScalar(double.NaN);
            return [full_like(saved[0], nan), full_like(saved[1], nan), null!];
        });

    private static List<Tensor> Gradients(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var saved = ctx.get_saved_variables();
        var (logits, positive, shifts, denominators, packed) = (saved[0], saved[1], saved[2], saved[3], saved[4]);
        long rows = logits.shape[0], columns = logits.shape[1];
        int levels = (int)packed.shape[0];
        var upstream = grad_output.to(ScalarType.Float64).contiguous();                    // [B, 1 + L]
        var gradLogits = empty([rows, columns], logits.dtype);
        var gradPositive = empty([rows], logits.dtype);
        bool single = logits.dtype == ScalarType.Float32;
        var row = Layout.Of(logits, positive, null, packed);
        nint g = (nint)HostMemory.Pointer<double>(upstream), shiftP = (nint)HostMemory.Pointer<double>(shifts), denP = (nint)HostMemory.Pointer<double>(denominators);
        nint outP = Address(gradLogits), posP = Address(gradPositive);
        HostMemory.ParallelRows(rows, n =>
        {
            // Weights w_i = g_i / D_i of InfoNCE (i = 0) and of each level.
            double* w = stackalloc double[1 + levels];
            double* shift = (double*)shiftP + (n * (1 + levels));
            double dPositive = 0, x = row.PositiveAt(n);
            for (int i = 0; i <= levels; i++)
            {
                long at = (n * (1 + levels)) + i;
                double gi = ((double*)g)[at];
                w[i] = gi / ((double*)denP)[at];
                dPositive += (w[i] * Math.Exp(x - shift[i])) - gi;
            }

            if (single)
            {
                BackwardRow((float*)row.Logits + (n * columns), (float*)outP + (n * columns), row, n, shift, w);
                ((float*)posP)[n] = (float)dPositive;
            }
            else
            {
                BackwardRow((double*)row.Logits + (n * columns), (double*)outP + (n * columns), row, n, shift, w);
                ((double*)posP)[n] = dPositive;
            }
        });

        GC.KeepAlive(upstream);
        ctx.save_data("gradients", new GradientKeepAlive(gradLogits, gradPositive));
        foreach (var tensor in saved)
        {
            tensor.Dispose();
        }

        return [gradLogits, gradPositive, null!];
    }

    private static nint Address(Tensor tensor) =>
        tensor.dtype == ScalarType.Float32 ? (nint)HostMemory.Pointer<float>(tensor) : (nint)HostMemory.Pointer<double>(tensor);

    /// <summary>Fills shift[0 … L] and den[0 … L] for one row; returns top-1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool ForwardRow(float* logits, Layout row, long n, double positive, bool zeroLogit, double* shift, double* den)
    {
        long q = row.Columns;
        int levels = row.Levels;
        var maxima = Vector256.Create(float.NegativeInfinity);
        long j = 0;
        for (; j + 8 <= q; j += 8)
        {
            maxima = Vector256.Max(maxima, Vector256.Load(logits + j));
        }

        double maxNegative = LaneMaximum.Of(maxima);
        for (; j < q; j++)
        {
            maxNegative = Math.Max(maxNegative, logits[j]);
        }

        float m = (float)Math.Max(maxNegative, positive);
        var shiftVector = Vector256.Create(m);
        var all = Vector256<float>.Zero;
        var kept = stackalloc Vector256<float>[levels];
        var counts = stackalloc Vector256<int>[levels];
        double sumAll = 0;
        double* keptSum = stackalloc double[levels];
        long* keptCount = stackalloc long[levels];
        for (int l = 0; l < levels; l++)
        {
            kept[l] = Vector256<float>.Zero;
            counts[l] = Vector256<int>.Zero;
            keptSum[l] = 0;
            keptCount[l] = 0;
        }

        byte** maskRows = stackalloc byte*[levels];
        byte** bitRows = stackalloc byte*[levels];
        for (int l = 0; l < levels; l++)
        {
            maskRows[l] = row.Mask(l, n);
            bitRows[l] = row.Bits(l, n);
        }

        j = 0;
        for (int step = 1; j + 8 <= q; j += 8, step++)
        {
            var e = VectorExp.Exp(Vector256.Load(logits + j) - shiftVector);
            all += e;
            for (int l = 0; l < levels; l++)
            {
                var selected = MaskLanes.Load8(maskRows[l] + j);
                kept[l] += Vector256.ConvertToSingle(selected) * e;
                counts[l] += selected;
                bitRows[l][j >> 3] = (byte)Vector256.ExtractMostSignificantBits(-selected);
            }

            if (step == FlushEvery || j + 16 > q)
            {
                step = 0;
                sumAll += Vector256.Sum(all);
                all = Vector256<float>.Zero;
                for (int l = 0; l < levels; l++)
                {
                    keptSum[l] += Vector256.Sum(kept[l]);
                    kept[l] = Vector256<float>.Zero;
                }
            }
        }

        for (int l = 0; l < levels; l++)
        {
            keptCount[l] = Vector256.Sum(counts[l]);
        }

        PackTail(row, n, j);
        sumAll += AccumulateExp(logits, row, n, j, m, keptSum, keptCount);
        Finish(logits, row, n, positive, m, sumAll, keptSum, keptCount, zeroLogit, shift, den);
        return positive >= maxNegative;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool ForwardRow(double* logits, Layout row, long n, double positive, bool zeroLogit, double* shift, double* den)
    {
        long q = row.Columns;
        int levels = row.Levels;
        double maxNegative = double.NegativeInfinity;
        for (long j = 0; j < q; j++)
        {
            maxNegative = Math.Max(maxNegative, logits[j]);
        }

        double m = Math.Max(maxNegative, positive);
        PackTail(row, n, 0);
        double* keptSum = stackalloc double[levels];
        long* keptCount = stackalloc long[levels];
        for (int l = 0; l < levels; l++)
        {
            keptSum[l] = 0;
            keptCount[l] = 0;
        }

        double sumAll = AccumulateExp(logits, row, n, 0, m, keptSum, keptCount);
        Finish(logits, row, n, positive, m, sumAll, keptSum, keptCount, zeroLogit, shift, den);
        return positive >= maxNegative;
    }

    /// <summary>
    /// From column <paramref name="from"/> on: returns Σ e^{X_j − m} and adds each level's kept part and count to
    /// <paramref name="keptSum"/> and <paramref name="keptCount"/>.
    /// </summary>
    private static double AccumulateExp<T>(T* logits, Layout row, long n, long from, double m, double* keptSum, long* keptCount)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        double sum = 0;
        for (long j = from; j < row.Columns; j++)
        {
            double e = Math.Exp(double.CreateTruncating(logits[j]) - m);
            sum += e;
            for (int l = 0; l < row.Levels; l++)
            {
                if (row.Mask(l, n)[j] != 0)
                {
                    keptSum[l] += e;
                    keptCount[l]++;
                }
            }
        }

        return sum;
    }

    /// <summary>Denominators under the common shift m; a level whose denominator underflows is redone with its own shift.</summary>
    private static void Finish<T>(T* logits, Layout row, long n, double positive, double m, double sumAll, double* keptSum, long* keptCount, bool zeroLogit, double* shift, double* den)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        double ePositive = Math.Exp(positive - m);
        shift[0] = m;
        den[0] = ePositive + sumAll;
        for (int l = 0; l < row.Levels; l++)
        {
            long unselected = zeroLogit ? row.Columns - keptCount[l] : 0;
            shift[1 + l] = m;
            den[1 + l] = ePositive + keptSum[l] + (unselected > 0 ? unselected * Math.Exp(-m) : 0.0);
            if (den[1 + l] < DegenerateDenominator)
            {
                ExactLevel(logits, row.Mask(l, n), row.Columns, positive, unselected, out shift[1 + l], out den[1 + l]);
            }
        }
    }

    /// <summary>One level's denominator with its own shift max(x_p, max_kept X, [unselected zero logits] 0).</summary>
    private static void ExactLevel<T>(T* logits, byte* mask, long q, double positive, long unselected, out double shift, out double den)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        double m = unselected > 0 ? Math.Max(positive, 0.0) : positive;
        for (long j = 0; j < q; j++)
        {
            if (mask[j] != 0)
            {
                m = Math.Max(m, double.CreateTruncating(logits[j]));
            }
        }

        double sum = Math.Exp(positive - m) + (unselected > 0 ? unselected * Math.Exp(-m) : 0.0);
        for (long j = 0; j < q; j++)
        {
            if (mask[j] != 0)
            {
                sum += Math.Exp(double.CreateTruncating(logits[j]) - m);
            }
        }

        shift = m;
        den = sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardRow(float* logits, float* gradient, Layout row, long n, double* shift, double* weights)
    {
        long q = row.Columns;
        int levels = row.Levels;
        var m = Vector256.Create((float)shift[0]);
        var w0 = Vector256.Create((float)weights[0]);
        var w = stackalloc Vector256<float>[levels];
        for (int l = 0; l < levels; l++)
        {
            // A level with its own shift contributes below, exactly; here it adds nothing.
            w[l] = Vector256.Create(shift[1 + l] == shift[0] ? (float)weights[1 + l] : 0f);
        }

        byte** bitRows = stackalloc byte*[levels];
        for (int l = 0; l < levels; l++)
        {
            bitRows[l] = row.Bits(l, n);
        }

        long j = 0;
        for (; j + 8 <= q; j += 8)
        {
            var factor = w0;
            for (int l = 0; l < levels; l++)
            {
                factor += Vector256.ConvertToSingle(MaskLanes.FromBits(bitRows[l][j >> 3])) * w[l];
            }

            (VectorExp.Exp(Vector256.Load(logits + j) - m) * factor).Store(gradient + j);
        }

        for (; j < q; j++)
        {
            double factor = weights[0];
            for (int l = 0; l < levels; l++)
            {
                factor += row.IsKept(l, n, j) && shift[1 + l] == shift[0] ? weights[1 + l] : 0.0;
            }

            gradient[j] = (float)(Math.Exp(logits[j] - shift[0]) * factor);
        }

        AddOwnShiftLevels(logits, gradient, row, n, shift, weights);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardRow(double* logits, double* gradient, Layout row, long n, double* shift, double* weights)
    {
        for (long j = 0; j < row.Columns; j++)
        {
            double factor = weights[0];
            for (int l = 0; l < row.Levels; l++)
            {
                factor += row.IsKept(l, n, j) && shift[1 + l] == shift[0] ? weights[1 + l] : 0.0;
            }

            gradient[j] = Math.Exp(logits[j] - shift[0]) * factor;
        }

        AddOwnShiftLevels(logits, gradient, row, n, shift, weights);
    }

    /// <summary>The gradient of the levels recomputed with their own shift (rare): w_l · e^{X_j − M_l} on kept j.</summary>
    private static void AddOwnShiftLevels<T>(T* logits, T* gradient, Layout row, long n, double* shift, double* weights)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int l = 0; l < row.Levels; l++)
        {
            if (shift[1 + l] == shift[0])
            {
                continue;
            }

            for (long j = 0; j < row.Columns; j++)
            {
                if (row.IsKept(l, n, j))
                {
                    gradient[j] += T.CreateTruncating(weights[1 + l] * Math.Exp(double.CreateTruncating(logits[j]) - shift[1 + l]));
                }
            }
        }
    }

    /// <summary>Packs columns [from, Q) of row n's masks into their bits (bit j % 8 of byte j / 8).</summary>
    private static void PackTail(Layout row, long n, long from)
    {
        for (int l = 0; l < row.Levels; l++)
        {
            byte* mask = row.Mask(l, n);
            byte* bits = row.Bits(l, n);
            for (long j = from; j < row.Columns; j++)
            {
                if (j % 8 == 0)
                {
                    bits[j / 8] = 0;
                }

                bits[j / 8] |= (byte)(mask[j] != 0 ? 1 << (int)(j % 8) : 0);
            }
        }
    }

    private static long PackedLength(long columns) => (columns + 7) / 8;


    /// <summary>Addresses of a call's tensors.</summary>
    private readonly struct Layout
    {
        private readonly nint _masks;
        private readonly nint _packed;
        private readonly nint _positive;
        private readonly long _rows;
        private readonly bool _single;

        private Layout(nint logits, nint positive, nint masks, nint packed, long rows, long columns, int levels, bool single)
        {
            Logits = logits;
            _positive = positive;
            _masks = masks;
            _packed = packed;
            _rows = rows;
            Columns = columns;
            Levels = levels;
            _single = single;
        }

        public nint Logits { get; }

        public long Columns { get; }

        public int Levels { get; }

        /// <param name="logits">X <c>[B, Q]</c>.</param>
        /// <param name="positive">x_p <c>[B]</c>.</param>
        /// <param name="masks">Bool masks <c>[L, B, Q]</c> (forward only), or null.</param>
        /// <param name="packed">Their bits <c>[L, B, ⌈Q/8⌉]</c> (written by the forward pass, read by the backward pass).</param>
        public static Layout Of(Tensor logits, Tensor positive, Tensor? masks, Tensor packed) =>
            new(Address(logits), Address(positive), masks is null ? 0 : (nint)HostMemory.Pointer<byte>(masks), packed.numel() == 0 ? 0 : (nint)HostMemory.Pointer<byte>(packed),
                logits.shape[0], logits.shape[1], (int)packed.shape[0], logits.dtype == ScalarType.Float32);

        public double PositiveAt(long n) => _single ? ((float*)_positive)[n] : ((double*)_positive)[n];

        /// <summary>Row n of level l's bool mask (forward pass only).</summary>
        public byte* Mask(int l, long n) => (byte*)_masks + (((l * _rows) + n) * Columns);

        /// <summary>Row n of level l's packed mask.</summary>
        public byte* Bits(int l, long n) => (byte*)_packed + (((l * _rows) + n) * PackedLength(Columns));

        /// <summary>Whether column j of row n is kept at level l, from the packed mask.</summary>
        public bool IsKept(int l, long n, long j) => (Bits(l, n)[j / 8] & (1 << (int)(j % 8))) != 0;
    }

    /// <summary>What the forward pass needs besides the differentiable inputs.</summary>
    private sealed class Settings(bool zeroLogit, Tensor top1, Tensor? masks)
    {
        public bool ZeroLogit { get; } = zeroLogit;

        public Tensor Top1 { get; } = top1;

        /// <summary>The bool masks <c>[L, B, Q]</c>, or null for InfoNCE alone.</summary>
        public Tensor? Masks { get; } = masks;
    }
}
