using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace Hcsc.Losses.Kernels;

/// <summary>
/// Row sums of a matrix under several 0/1 masks, differentiable in the matrix:
/// <code>
///   out[n, s]        = Σ_j masks[s, n, j] · values[n, j]          values [B, K], masks [S, B, K] bool → [B, S]
///   ∂out/∂values[n, j] = Σ_s grad[n, s] · masks[s, n, j]
/// </code>
/// On the CPU (float32 / float64) both directions are C# kernels that read the bool masks in place; elsewhere
/// it is one batched matrix product with the masks converted to the values' dtype.
/// </summary>
internal sealed unsafe class MaskedRowSum : autograd.SingleTensorFunction<MaskedRowSum>
{
    /// <inheritdoc />
    public override string Name => nameof(MaskedRowSum);

    /// <summary>out[n, s] = Σ_j masks[s, n, j] · values[n, j].</summary>
    /// <param name="values">Values <c>[B, K]</c>, with or without gradient.</param>
    /// <param name="masks">Bool masks <c>[S, B, K]</c> (no gradient).</param>
    /// <returns><c>[B, S]</c> in the dtype of <paramref name="values"/>.</returns>
    public static Tensor Compute(Tensor values, Tensor masks)
    {
        return OnHost(values, masks) ? apply(values, masks) : WithTensorOps(values, masks);
    }

    /// <summary>The same sums as one batched matrix product (any device).</summary>
    public static Tensor WithTensorOps(Tensor values, Tensor masks) =>
        masks.to(values.dtype).permute(1, 0, 2).bmm(values.unsqueeze(2)).squeeze(2);

    /// <summary>Whether <see cref="Compute"/> runs the host kernels for these tensors.</summary>
    public static bool OnHost(Tensor values, Tensor masks) =>
        (HostMemory.IsDense(values, ScalarType.Float32) || HostMemory.IsDense(values, ScalarType.Float64)) && HostMemory.IsDense(masks, ScalarType.Bool);

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var values = (Tensor)vars[0];
        var masks = (Tensor)vars[1];
        ctx.save_for_backward([masks]);
        long sets = masks.shape[0], rows = masks.shape[1], columns = masks.shape[2];
        var result = empty([rows, sets], values.dtype);
        nint v = Address(values), m = (nint)HostMemory.Pointer<byte>(masks), r = Address(result);
        bool single = values.dtype == ScalarType.Float32;
        HostMemory.ParallelRows(rows, n =>
        {
            for (long s = 0; s < sets; s++)
            {
                byte* mask = (byte*)m + (((s * rows) + n) * columns);
                if (single)
                {
                    ((float*)r)[(n * sets) + s] = Sum((float*)v + (n * columns), mask, columns);
                }
                else
                {
                    ((double*)r)[(n * sets) + s] = Sum((double*)v + (n * columns), mask, columns);
                }
            }
        });
        return result;
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var masks = ctx.get_saved_variables()[0];
        long sets = masks.shape[0], rows = masks.shape[1], columns = masks.shape[2];
        var weights = grad_output.to(masks.device).contiguous();                  // [B, S]
        var dtype = weights.dtype;
        var gradient = empty([rows, columns], dtype);
        nint w = Address(weights), m = (nint)HostMemory.Pointer<byte>(masks), g = Address(gradient);
        HostMemory.ParallelRows(rows, n =>
        {
            if (dtype == ScalarType.Float32)
            {
                Spread((float*)w + (n * sets), (byte*)m, rows, n, sets, columns, (float*)g + (n * columns));
            }
            else
            {
                Spread((double*)w + (n * sets), (byte*)m, rows, n, sets, columns, (double*)g + (n * columns));
            }
        });

        // The gradient's handle goes back to libtorch after this method returns: keep the managed
        // wrapper reachable from the node's context until then, so no finaliser can release it early.
        ctx.save_data("gradient", new KeepAlive(gradient));
        masks.Dispose();
        return [gradient, null!];
    }

    private static nint Address(Tensor tensor) =>
        tensor.dtype == ScalarType.Float32 ? (nint)HostMemory.Pointer<float>(tensor) : (nint)HostMemory.Pointer<double>(tensor);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Sum(float* values, byte* mask, long columns)
    {
        var sum = Vector256<float>.Zero;
        long j = 0;
        for (; j + 8 <= columns; j += 8)
        {
            sum += Vector256.ConvertToSingle(Spread8(mask + j)) * Vector256.Load(values + j);
        }

        float total = Vector256.Sum(sum);
        for (; j < columns; j++)
        {
            total += mask[j] != 0 ? values[j] : 0f;
        }

        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Sum(double* values, byte* mask, long columns)
    {
        double total = 0;
        for (long j = 0; j < columns; j++)
        {
            total += mask[j] != 0 ? values[j] : 0.0;
        }

        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Spread(float* weights, byte* masks, long rows, long n, long sets, long columns, float* gradient)
    {
        long j = 0;
        for (; j + 8 <= columns; j += 8)
        {
            var acc = Vector256<float>.Zero;
            for (long s = 0; s < sets; s++)
            {
                acc += Vector256.ConvertToSingle(Spread8(masks + (((s * rows) + n) * columns) + j)) * Vector256.Create(weights[s]);
            }

            acc.Store(gradient + j);
        }

        for (; j < columns; j++)
        {
            float acc = 0f;
            for (long s = 0; s < sets; s++)
            {
                acc += masks[(((s * rows) + n) * columns) + j] != 0 ? weights[s] : 0f;
            }

            gradient[j] = acc;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Spread(double* weights, byte* masks, long rows, long n, long sets, long columns, double* gradient)
    {
        for (long j = 0; j < columns; j++)
        {
            double acc = 0.0;
            for (long s = 0; s < sets; s++)
            {
                acc += masks[(((s * rows) + n) * columns) + j] != 0 ? weights[s] : 0.0;
            }

            gradient[j] = acc;
        }
    }

    /// <summary>Eight 0/1 bytes as eight int32 lanes.</summary>
    internal static Vector256<int> Spread8(byte* bytes)
    {
        var words = Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)bytes).AsByte());   // 8 × uint16
        return Vector256.WidenLower(words.ToVector256Unsafe()).AsInt32();
    }

    private sealed class KeepAlive(Tensor tensor)
    {
        public Tensor Tensor { get; } = tensor;
    }
}
