using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Loading;

/// <summary>
/// The host memory of one batch of <see cref="Count"/> images: per view a contiguous float32 CPU tensor
/// <c>[Count, 3, S, S]</c> (pinned when asked), written image by image by the loader's workers through
/// <see cref="Image"/>. Owned by a <see cref="BatchSlotPool"/> and reused from batch to batch.
/// </summary>
internal sealed unsafe class BatchSlot : IDisposable
{
    private readonly Tensor[] _views;
    private readonly nint[] _data;
    private readonly int[] _imageLengths;

    /// <summary>Allocates the tensors of <paramref name="count"/> images of views of sides <paramref name="sizes"/>; pinned needs CUDA.</summary>
    public BatchSlot(int count, IReadOnlyList<int> sizes, bool pinned)
    {
        Count = count;
        Pinned = pinned;
        _views = new Tensor[sizes.Count];
        _data = new nint[sizes.Count];
        _imageLengths = new int[sizes.Count];
        try
        {
            for (int v = 0; v < sizes.Count; v++)
            {
                // The pool alone owns the tensors, whatever dispose scope the first batch was built under.
                var host = empty([count, 3, sizes[v], sizes[v]], ScalarType.Float32).DetachFromDisposeScope();
                if (pinned)
                {
                    using var pageable = host;
                    host = pageable.pin_memory().DetachFromDisposeScope();
                }

                _views[v] = host;
                _imageLengths[v] = 3 * sizes[v] * sizes[v];
                using var flat = _views[v].view(-1);
                using var first = flat.narrow(0, 0, 1); // a short span whatever the tensor's size
                _data[v] = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Images in the batch.</summary>
    public int Count { get; }

    /// <summary>Whether the tensors are in pinned (page-locked) host memory.</summary>
    public bool Pinned { get; }

    /// <summary>Per view, the <c>[Count, 3, S, S]</c> float32 CPU tensor.</summary>
    public IReadOnlyList<Tensor> Views => _views;

    /// <summary>The <c>3 · S · S</c> floats of image <paramref name="row"/> of view <paramref name="view"/>.</summary>
    public Span<float> Image(int view, int row)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)Count, nameof(row));
        int length = _imageLengths[view];
        return new Span<float>((float*)_data[view] + ((long)row * length), length);
    }

    /// <summary>Frees the tensors.</summary>
    public void Dispose()
    {
        foreach (var view in _views)
        {
            view?.Dispose();
        }
    }
}
