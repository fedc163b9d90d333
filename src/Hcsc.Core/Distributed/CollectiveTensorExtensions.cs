using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Core.Distributed;

/// <summary>
/// <see cref="ICollectives"/> on TorchSharp tensors. A contiguous CPU tensor is communicated through its own storage
/// (no copy); any other tensor (a CUDA tensor, a non-contiguous view) through a contiguous host copy that is written back
/// afterwards. The operations are collective: every rank calls them in the same order with tensors of the same dtype and
/// shape. With <see cref="ICollectives.Size"/> 1 nothing is copied or changed.
/// </summary>
public static class CollectiveTensorExtensions
{
    /// <summary>The most elements handed to one call of the span operations (1 GiB of float32).</summary>
    private const long ChunkElements = 1L << 28;

    /// <summary>
    /// Element-wise sum over all ranks, in place: afterwards every element of <paramref name="tensor"/> is the sum of
    /// that element over the ranks, on every rank. Runs without autograd (a leaf that requires grad may be passed).
    /// </summary>
    /// <param name="collectives">The group.</param>
    /// <param name="tensor">float32, float64 or int64, any shape and device; the same shape and dtype on every rank.</param>
    /// <exception cref="ArgumentException">Another dtype.</exception>
    public static void AllReduceSum(this ICollectives collectives, Tensor tensor) =>
        Reduce(collectives, tensor, mean: false);

    /// <summary>
    /// Element-wise mean over all ranks, in place: the sum of <see cref="AllReduceSum(ICollectives, Tensor)"/> divided by
    /// <see cref="ICollectives.Size"/> (in the tensor's precision, on the host).
    /// </summary>
    /// <param name="collectives">The group.</param>
    /// <param name="tensor">float32 or float64, any shape and device; the same shape and dtype on every rank.</param>
    /// <exception cref="ArgumentException">Another dtype.</exception>
    public static void AllReduceMean(this ICollectives collectives, Tensor tensor) =>
        Reduce(collectives, tensor, mean: true);

    /// <summary>Copies <paramref name="tensor"/> of rank <paramref name="root"/> into <paramref name="tensor"/> of every rank, in place.</summary>
    /// <param name="collectives">The group.</param>
    /// <param name="tensor">Any dtype, shape and device; the same shape and dtype on every rank.</param>
    /// <param name="root">The sending rank, the same on every rank.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="root"/> is not a rank of the group.</exception>
    public static unsafe void Broadcast(this ICollectives collectives, Tensor tensor, int root)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        ArgumentNullException.ThrowIfNull(tensor);
        if ((uint)root >= (uint)collectives.Size)
        {
            throw new ArgumentOutOfRangeException(nameof(root), root, $"The root must be a rank of the group, in [0, {collectives.Size}).");
        }

        if (collectives.Size == 1 || tensor.numel() == 0)
        {
            return;
        }

        using var noGrad = torch.no_grad();
        WithHostStorage(tensor, writeBack: collectives.Rank != root, host =>
        {
            byte* start = (byte*)Address(host);
            long bytes = host.numel() * host.ElementSize;
            for (long done = 0; done < bytes; done += ChunkElements)
            {
                collectives.Broadcast(new Span<byte>(start + done, (int)Math.Min(ChunkElements, bytes - done)), root);
            }
        });
    }

    /// <summary>
    /// Gathers a tensor from every rank, concatenated along dimension 0 in rank order: from [n, …] on every rank to
    /// [<see cref="ICollectives.Size"/> · n, …], rows [r · n, (r + 1) · n) being rank r's.
    /// </summary>
    /// <param name="collectives">The group.</param>
    /// <param name="local">At least one dimension; any dtype and device; the same shape and dtype on every rank.</param>
    /// <returns>A new tensor on <paramref name="local"/>'s device (the caller disposes it); a copy of <paramref name="local"/> when Size is 1.</returns>
    /// <exception cref="ArgumentException"><paramref name="local"/> is a scalar, or the gathered tensor exceeds 2 GiB.</exception>
    public static unsafe Tensor AllGather(this ICollectives collectives, Tensor local)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        ArgumentNullException.ThrowIfNull(local);
        if (local.dim() == 0)
        {
            throw new ArgumentException($"AllGather concatenates along dimension 0; got a scalar {TensorDescription.Describe(local)}.", nameof(local));
        }

        using var noGrad = torch.no_grad();
        if (collectives.Size == 1)
        {
            return local.clone();
        }

        long localBytes = local.numel() * local.ElementSize;
        if (localBytes * collectives.Size > int.MaxValue)
        {
            throw new ArgumentException(
                $"AllGather of {TensorDescription.Describe(local)} from {collectives.Size} ranks would gather {localBytes * collectives.Size} bytes; at most {int.MaxValue} per call: gather it in parts.",
                nameof(local));
        }

        long[] shape = local.shape.ToArray();
        shape[0] *= collectives.Size;
        var gathered = empty(shape, local.dtype, CPU);
        try
        {
            if (localBytes > 0)
            {
                WithHostStorage(local, writeBack: false, host =>
                    collectives.AllGather(
                        new ReadOnlySpan<byte>(Address(host), (int)localBytes),
                        new Span<byte>(Address(gathered), (int)(localBytes * collectives.Size))));
            }

            if (local.device_type == DeviceType.CPU)
            {
                return gathered;
            }

            using (gathered)
            {
                return gathered.to(local.device);
            }
        }
        catch
        {
            gathered.Dispose();
            throw;
        }
    }

    private static unsafe void Reduce(ICollectives collectives, Tensor tensor, bool mean)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        ArgumentNullException.ThrowIfNull(tensor);
        var dtype = tensor.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.Float64) && !(dtype == ScalarType.Int64 && !mean))
        {
            throw new ArgumentException(
                $"{(mean ? "AllReduceMean takes float32 or float64" : "AllReduceSum takes float32, float64 or int64")} tensors; got {TensorDescription.Describe(tensor)}.",
                nameof(tensor));
        }

        if (collectives.Size == 1 || tensor.numel() == 0)
        {
            return;
        }

        using var noGrad = torch.no_grad();
        WithHostStorage(tensor, writeBack: true, host =>
        {
            void* start = Address(host);
            long count = host.numel();
            for (long done = 0; done < count; done += ChunkElements)
            {
                int n = (int)Math.Min(ChunkElements, count - done);
                switch (dtype)
                {
                    case ScalarType.Float32:
                        var floats = new Span<float>((float*)start + done, n);
                        collectives.AllReduceSum(floats);
                        if (mean)
                        {
                            Divide(floats, collectives.Size);
                        }

                        break;
                    case ScalarType.Float64:
                        var doubles = new Span<double>((double*)start + done, n);
                        collectives.AllReduceSum(doubles);
                        if (mean)
                        {
                            Divide(doubles, collectives.Size);
                        }

                        break;
                    default:
                        collectives.AllReduceSum(new Span<long>((long*)start + done, n));
                        break;
                }
            }
        });
    }

    private static void Divide(Span<float> values, int size)
    {
        float divisor = size;
        for (int i = 0; i < values.Length; i++)
        {
            values[i] /= divisor;
        }
    }

    private static void Divide(Span<double> values, int size)
    {
        double divisor = size;
        for (int i = 0; i < values.Length; i++)
        {
            values[i] /= divisor;
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> on a contiguous CPU tensor holding <paramref name="tensor"/>'s values: the tensor
    /// itself when it is one, else a copy, written back into <paramref name="tensor"/> afterwards when asked.
    /// </summary>
    private static void WithHostStorage(Tensor tensor, bool writeBack, Action<Tensor> body)
    {
        if (tensor.device_type == DeviceType.CPU && tensor.is_contiguous())
        {
            body(tensor);
            return;
        }

        using var onHost = tensor.to(CPU);
        using var host = onHost.contiguous();
        body(host);
        if (writeBack)
        {
            tensor.copy_(host);
        }
    }

    /// <summary>The address of the first element of a non-empty contiguous CPU tensor (its storage offset included).</summary>
    private static unsafe void* Address(Tensor contiguousCpu)
    {
        // A one-element view keeps the span short whatever the tensor's size (Span lengths are 32-bit).
        using var flat = contiguousCpu.view(-1);
        using var first = flat.narrow(0, 0, 1);
        return Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
    }
}
