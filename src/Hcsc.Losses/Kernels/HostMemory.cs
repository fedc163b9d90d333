using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses.Kernels;

/// <summary>
/// Raw access to the storage of contiguous CPU tensors, for the kernels written in C#. The kernels' row functions are
/// marked <see cref="MethodImplOptions.AggressiveOptimization"/>: tiered compilation would otherwise run their SIMD loops
/// unoptimised for the first few dozen calls (several times slower: the first training steps, short benchmarks).
/// </summary>
internal static unsafe class HostMemory
{
    /// <summary>Whether <paramref name="tensor"/> lives in host memory, is contiguous and has <paramref name="dtype"/>.</summary>
    public static bool IsDense(Tensor tensor, ScalarType dtype) =>
        tensor.device_type == DeviceType.CPU && tensor.dtype == dtype && tensor.is_contiguous();

    /// <summary>The address of the first element of a contiguous CPU tensor (its storage offset included).</summary>
    public static T* Pointer<T>(Tensor tensor)
        where T : unmanaged
    {
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
        {
            throw new InvalidOperationException($"A host kernel needs a contiguous CPU tensor; got {Core.Tensors.TensorDescription.Describe(tensor)}.");
        }

        if (tensor.numel() == 0)
        {
            return null;
        }

        // A one-element view keeps the span short whatever the tensor's size (Span lengths are 32-bit).
        var first = tensor.view(-1).narrow(0, 0, 1);
        try
        {
            return (T*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
        }
        finally
        {
            first.Dispose();
        }
    }

    /// <summary>
    /// Throws unless every entry of the int64 vector <paramref name="indices"/> lies in [0, <paramref name="count"/>): a
    /// kernel would otherwise read or write outside its tensors.
    /// </summary>
    public static void CheckIndices(Tensor indices, long count, string name)
    {
        long* values = Pointer<long>(indices);
        for (long i = 0; i < indices.numel(); i++)
        {
            if ((ulong)values[i] >= (ulong)count)
            {
                throw new ArgumentException($"{name} must lie in [0, {count}); entry {i} is {values[i]}.", name);
            }
        }
    }

    /// <summary>Runs <paramref name="body"/> for every index in [0, count) on at most libtorch's intra-op thread count.</summary>
    public static void ParallelRows(long count, Action<long> body)
    {
        int threads = Math.Max(1, get_num_threads());
        if (threads == 1 || count == 1)
        {
            for (long i = 0; i < count; i++)
            {
                body(i);
            }

            return;
        }

        Parallel.For(0L, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
    }
}
