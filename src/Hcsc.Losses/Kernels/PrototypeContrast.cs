using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Hcsc.Core.Devices;
using Hcsc.Core.Options;
using static TorchSharp.torch;

namespace Hcsc.Losses.Kernels;

/// <summary>
/// The PCSC cross-entropies of every level in one pass over the prototype logits of all levels, on the CPU.
/// For row n and level l, with x = logits[n, o_l : o_l + k_l], the positive x_y (y = labels[l, n]), the selected
/// candidates s (selection[n, o_l + c]) and U = (number of candidates) − |s| unselected candidates
/// (R1 is docs/method.md R1, unselected candidates with logit 0):
/// <code>
///   R1 (zero logit): CE = log( e^{x_y} + Σ_{c∈s} e^{x_c} + U·e^0 ) − x_y
///   exclusion:       CE = log( e^{x_y} + Σ_{c∈s} e^{x_c} ) − x_y
///   ∂CE/∂x_c = softmax weight of c (c ∈ s),  ∂CE/∂x_y = softmax weight of y − 1,  0 elsewhere
/// </code>
/// computed with the exact shift M = max(x_y, max_{c∈s} x_c, [R1, U &gt; 0] 0), so nothing overflows or underflows
/// entirely. This equals <see cref="SelectiveCrossEntropy"/> over the level's candidates (the positives of a batch are
/// never candidates). Top-1 is x_y ≥ every other term's logit.
/// </summary>
internal sealed unsafe class PrototypeContrast : autograd.SingleTensorFunction<PrototypeContrast>
{
    /// <inheritdoc />
    public override string Name => nameof(PrototypeContrast);

    /// <summary>Whether the host kernels can take these logits.</summary>
    public static bool OnHost(Tensor logits) =>
        KernelSelection.HostKernelsAllowed && Vector256.IsHardwareAccelerated && (HostMemory.IsDense(logits, ScalarType.Float32) || HostMemory.IsDense(logits, ScalarType.Float64));

    /// <summary>Computes the per-sample, per-level cross-entropies.</summary>
    /// <param name="logits">Prototype logits of all levels side by side <c>[B, Σ k_l]</c> (level l at columns o_l … o_l + k_l − 1), contiguous, on the CPU.</param>
    /// <param name="labels">Positive prototype of each sample per level <c>[L, B]</c> int64 (column within the level).</param>
    /// <param name="selection">Bool <c>[B, Σ k_l]</c>: true for selected candidates.</param>
    /// <param name="clusterCounts">k_l per level.</param>
    /// <param name="candidateCounts">Number of candidates per level (the same for every row).</param>
    /// <param name="handling">How unselected candidates enter the softmax (docs/method.md R1).</param>
    /// <returns>Losses <c>[B, L]</c> (differentiable in <paramref name="logits"/>) and top-1 <c>[B, L]</c> bool.</returns>
    public static (Tensor Loss, Tensor Top1) Compute(Tensor logits, Tensor labels, Tensor selection, long[] clusterCounts, long[] candidateCounts, UnselectedNegativeHandling handling)
    {
        var top1 = empty([logits.shape[0], clusterCounts.Length], ScalarType.Bool);
        var layout = new Layout(clusterCounts, candidateCounts, handling == UnselectedNegativeHandling.ZeroLogit, top1);
        labels = labels.contiguous();
        for (int l = 0; l < clusterCounts.Length; l++)
        {
            HostMemory.CheckIndices(labels[l], clusterCounts[l], $"level {l} labels");
        }

        return (apply(logits, labels, selection.contiguous(), layout), top1);
    }

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var logits = (Tensor)vars[0];
        var labels = (Tensor)vars[1];
        var selection = (Tensor)vars[2];
        var layout = (Layout)vars[3];
        long rows = logits.shape[0], width = logits.shape[1];
        int levels = layout.ClusterCounts.Length;
        var loss = empty([rows, levels], logits.dtype);
        var shift = empty([rows, levels], logits.dtype);
        var denominator = empty([rows, levels], logits.dtype);
        bool single = logits.dtype == ScalarType.Float32;
        nint x = Address(logits), y = (nint)HostMemory.Pointer<long>(labels), s = (nint)HostMemory.Pointer<byte>(selection);
        nint lossP = Address(loss), shiftP = Address(shift), denP = Address(denominator), topP = (nint)HostMemory.Pointer<byte>(layout.Top1);
        HostMemory.ParallelRows(rows, n =>
        {
            for (int l = 0; l < levels; l++)
            {
                long offset = (n * width) + layout.Offsets[l];
                long label = ((long*)y)[(l * rows) + n];
                double m, den, lossValue;
                bool top;
                if (single)
                {
                    (m, den, lossValue, top) = ForwardRow((float*)x + offset, (byte*)s + offset, label, layout, l);
                    ((float*)lossP)[(n * levels) + l] = (float)lossValue;
                    ((float*)shiftP)[(n * levels) + l] = (float)m;
                    ((float*)denP)[(n * levels) + l] = (float)den;
                }
                else
                {
                    (m, den, lossValue, top) = ForwardRow((double*)x + offset, (byte*)s + offset, label, layout, l);
                    ((double*)lossP)[(n * levels) + l] = lossValue;
                    ((double*)shiftP)[(n * levels) + l] = m;
                    ((double*)denP)[(n * levels) + l] = den;
                }

                ((byte*)topP)[(n * levels) + l] = top ? (byte)1 : (byte)0;
            }
        });

        ctx.save_for_backward([logits, labels, selection, shift, denominator]);
        ctx.save_data("layout", layout);
        return loss;
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output) =>
        BackwardFailures.Run(Name, () => Gradients(ctx, grad_output), () =>
        {
            using var nan = TorchSharp.ScalarExtensionMethods.ToScalar(double.NaN);
            return [full_like(ctx.get_saved_variables()[0], nan), null!, null!, null!];
        });

    private static List<Tensor> Gradients(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var saved = ctx.get_saved_variables();
        var (logits, labels, selection, shift, denominator) = (saved[0], saved[1], saved[2], saved[3], saved[4]);
        var layout = (Layout)ctx.get_data("layout");
        long rows = logits.shape[0], width = logits.shape[1];
        int levels = layout.ClusterCounts.Length;
        var upstream = grad_output.to(logits.dtype).contiguous();
        var gradient = empty([rows, width], logits.dtype);
        bool single = logits.dtype == ScalarType.Float32;
        nint x = Address(logits), y = (nint)HostMemory.Pointer<long>(labels), s = (nint)HostMemory.Pointer<byte>(selection);
        nint g = Address(upstream), shiftP = Address(shift), denP = Address(denominator), outP = Address(gradient);
        HostMemory.ParallelRows(rows, n =>
        {
            for (int l = 0; l < levels; l++)
            {
                long offset = (n * width) + layout.Offsets[l];
                long label = ((long*)y)[(l * rows) + n];
                long at = (n * levels) + l;
                if (single)
                {
                    BackwardRow((float*)x + offset, (byte*)s + offset, (float*)outP + offset, label, layout.ClusterCounts[l], ((float*)shiftP)[at], ((float*)denP)[at], ((float*)g)[at]);
                }
                else
                {
                    BackwardRow((double*)x + offset, (byte*)s + offset, (double*)outP + offset, label, layout.ClusterCounts[l], ((double*)shiftP)[at], ((double*)denP)[at], ((double*)g)[at]);
                }
            }
        });

        GC.KeepAlive(upstream);
        ctx.save_data("gradient", new GradientKeepAlive(gradient));
        foreach (var tensor in saved)
        {
            tensor.Dispose();
        }

        return [gradient, null!, null!, null!];
    }

    private static nint Address(Tensor tensor) =>
        tensor.dtype == ScalarType.Float32 ? (nint)HostMemory.Pointer<float>(tensor) : (nint)HostMemory.Pointer<double>(tensor);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (double Shift, double Denominator, double Loss, bool Top1) ForwardRow(float* x, byte* selected, long label, Layout layout, int level)
    {
        long k = layout.ClusterCounts[level];
        var negativeInfinity = Vector256.Create(float.NegativeInfinity);
        var maxima = negativeInfinity;
        var counts = Vector256<int>.Zero;
        long j = 0;
        for (; j + 8 <= k; j += 8)
        {
            var keep = Vector256.Equals(MaskLanes.Load8(selected + j), Vector256<int>.Zero);        // true where NOT selected
            maxima = Vector256.Max(maxima, Vector256.ConditionalSelect(keep.AsSingle(), negativeInfinity, Vector256.Load(x + j)));
            counts += Vector256<int>.One + keep;                                                         // 1 − [not selected]
        }

        var (maxSelected, count) = ScanSelected(x, selected, j, k, LaneMaximum.Of(maxima), Vector256.Sum(counts));
        var terms = Terms.Of(maxSelected, count, x[label], layout, level);
        var m = Vector256.Create((float)terms.Shift);
        var sums = Vector256<float>.Zero;
        double sum = 0;
        j = 0;
        for (int step = 1; j + 8 <= k; j += 8, step++)
        {
            var keep = Vector256.Equals(MaskLanes.Load8(selected + j), Vector256<int>.Zero);
            sums += Vector256.ConditionalSelect(keep.AsSingle(), Vector256<float>.Zero, VectorExp.Exp(Vector256.Load(x + j) - m));
            if (step % 64 == 0)
            {
                sum += Vector256.Sum(sums);
                sums = Vector256<float>.Zero;
            }
        }

        return terms.Finish(sum + Vector256.Sum(sums) + SumSelected(x, selected, j, k, terms.Shift));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (double Shift, double Denominator, double Loss, bool Top1) ForwardRow(double* x, byte* selected, long label, Layout layout, int level)
    {
        long k = layout.ClusterCounts[level];
        var (maxSelected, count) = ScanSelected(x, selected, 0, k, double.NegativeInfinity, 0);
        var terms = Terms.Of(maxSelected, count, x[label], layout, level);
        return terms.Finish(SumSelected(x, selected, 0, k, terms.Shift));
    }

    /// <summary>Continues a row's max over the selected logits and their count from column <paramref name="from"/>.</summary>
    private static (double Max, long Count) ScanSelected<T>(T* x, byte* selected, long from, long k, double max, long count)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (long j = from; j < k; j++)
        {
            if (selected[j] != 0)
            {
                max = Math.Max(max, double.CreateTruncating(x[j]));
                count++;
            }
        }

        return (max, count);
    }

    /// <summary>Σ e^{x_j − shift} over the selected columns from <paramref name="from"/> on.</summary>
    private static double SumSelected<T>(T* x, byte* selected, long from, long k, double shift)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        double sum = 0;
        for (long j = from; j < k; j++)
        {
            sum += selected[j] != 0 ? Math.Exp(double.CreateTruncating(x[j]) - shift) : 0.0;
        }

        return sum;
    }

    /// <summary>A row's positive, the largest other logit, the unselected candidates and the shift of one level.</summary>
    private readonly record struct Terms(double Positive, double MaxOther, long Unselected, double Shift)
    {
        public static Terms Of(double maxSelected, long count, double positive, Layout layout, int level)
        {
            long unselected = layout.ZeroLogit ? layout.CandidateCounts[level] - count : 0;
            double maxOther = unselected > 0 ? Math.Max(maxSelected, 0.0) : maxSelected;
            return new Terms(positive, maxOther, unselected, Math.Max(positive, maxOther));
        }

        /// <summary>The denominator and loss from the selected candidates' Σ e^{x_c − shift}.</summary>
        public (double Shift, double Denominator, double Loss, bool Top1) Finish(double selectedSum)
        {
            // With unselected candidates, 0 is among the logits, so shift ≥ 0 and e^{−shift} ≤ 1; without, skip the term (e^{−shift} may overflow).
            double denominator = selectedSum + Math.Exp(Positive - Shift) + (Unselected > 0 ? Unselected * Math.Exp(-Shift) : 0.0);
            return (Shift, denominator, Math.Log(denominator) + Shift - Positive, Positive >= MaxOther);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardRow(float* x, byte* selected, float* gradient, long label, long k, float shift, float denominator, float upstream)
    {
        var m = Vector256.Create(shift);
        var scale = Vector256.Create(upstream / denominator);
        long j = 0;
        for (; j + 8 <= k; j += 8)
        {
            var keep = Vector256.Equals(MaskLanes.Load8(selected + j), Vector256<int>.Zero);
            Vector256.ConditionalSelect(keep.AsSingle(), Vector256<float>.Zero, VectorExp.Exp(Vector256.Load(x + j) - m) * scale).Store(gradient + j);
        }

        for (; j < k; j++)
        {
            gradient[j] = selected[j] != 0 ? MathF.Exp(x[j] - shift) * (upstream / denominator) : 0f;
        }

        gradient[label] = upstream * ((MathF.Exp(x[label] - shift) / denominator) - 1f);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardRow(double* x, byte* selected, double* gradient, long label, long k, double shift, double denominator, double upstream)
    {
        for (long j = 0; j < k; j++)
        {
            gradient[j] = selected[j] != 0 ? Math.Exp(x[j] - shift) * (upstream / denominator) : 0.0;
        }

        gradient[label] = upstream * ((Math.Exp(x[label] - shift) / denominator) - 1.0);
    }


    /// <summary>What the kernels need besides tensors; kept on the autograd context.</summary>
    private sealed class Layout
    {
        public Layout(long[] clusterCounts, long[] candidateCounts, bool zeroLogit, Tensor top1)
        {
            ClusterCounts = clusterCounts;
            CandidateCounts = candidateCounts;
            ZeroLogit = zeroLogit;
            Top1 = top1;
            Offsets = new long[clusterCounts.Length];
            for (int l = 1; l < clusterCounts.Length; l++)
            {
                Offsets[l] = Offsets[l - 1] + clusterCounts[l - 1];
            }
        }

        public long[] ClusterCounts { get; }

        public long[] CandidateCounts { get; }

        public long[] Offsets { get; }

        public bool ZeroLogit { get; }

        public Tensor Top1 { get; }
    }
}
