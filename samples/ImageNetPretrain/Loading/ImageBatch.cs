using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Loading;

/// <summary>
/// One batch of B images: per view v, <see cref="Views"/>[v] holds <c>[B, 3, S_v, S_v]</c> float32 (normalised) in host
/// memory, with the dataset index and label of each image.
/// </summary>
/// <remarks>
/// The host tensors belong to the loader, which reuses them: <see cref="Dispose"/> hands them back for a later batch, so
/// neither they nor a tensor sharing their memory may be used after it. A batch never disposed is not reused (its
/// tensors are freed by their finalizers). When <see cref="Pinned"/>, <see cref="View"/> copies to a CUDA device
/// asynchronously: dispose the batch only after a host read that follows the copy on the same stream (a loss read back
/// with <c>item()</c>), or the next batch may overwrite the memory while it is being copied.
/// </remarks>
public sealed class ImageBatch : IDisposable
{
    private readonly BatchSlot _slot;
    private readonly BatchSlotPool _pool;
    private bool _disposed;

    internal ImageBatch(BatchSlot slot, BatchSlotPool pool, long[] indices, int[] labels)
    {
        _slot = slot;
        _pool = pool;
        Indices = indices;
        Labels = labels;
    }

    /// <summary>Per view, the <c>[B, 3, S, S]</c> float32 CPU tensor; valid until <see cref="Dispose"/>. Do not dispose it.</summary>
    public IReadOnlyList<Tensor> Views
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _slot.Views;
        }
    }

    /// <summary>The dataset index of each image (an undecodable image's replacement's).</summary>
    public long[] Indices { get; }

    /// <summary>The label of each image.</summary>
    public int[] Labels { get; }

    /// <summary>Images in the batch.</summary>
    public int Count => Indices.Length;

    /// <summary>Whether <see cref="Views"/> are in pinned host memory (<see cref="BatchLoader.PinMemory"/>).</summary>
    public bool Pinned => _slot.Pinned;

    /// <summary>
    /// View <paramref name="view"/> on <paramref name="device"/>, the caller's to dispose. On the CPU it shares the batch's
    /// memory (no copy), so it is valid until <see cref="Dispose"/>; on another device it is a copy, made with
    /// <c>non_blocking</c> when <see cref="Pinned"/> (see the remarks on when the batch may then be disposed).
    /// </summary>
    public Tensor View(int view, Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var host = Views[view];
        return device.type == DeviceType.CPU ? host.alias() : host.to(device, non_blocking: Pinned);
    }

    /// <summary>Hands the host memory back to the loader for a later batch.</summary>
    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _pool.Return(_slot);
        }
    }
}
