using Hcsc.Core.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Models.Distributed;

/// <summary>
/// Data-parallel gradient averaging: after every rank's backward pass on its own part of the batch, replaces each
/// parameter's gradient by the mean of that gradient over the ranks, so that every rank's optimiser takes the same step
/// (the step of one process on the whole batch when the loss is a mean over equal-sized shards). Call it between
/// <c>backward()</c> and the optimiser's <c>step()</c>, on every rank.
/// </summary>
/// <remarks>
/// <para>
/// The gradients are flattened into buckets of at most <see cref="BucketBytes"/> (one parameter larger than that gets a
/// bucket of its own), one buffer per bucket, in the order of the parameters (which must be the same on every rank: the
/// same model built the same way). Each bucket is summed over the ranks in one collective and divided by
/// <see cref="ICollectives.Size"/>. Gradients on a GPU go through a host copy. float16 and bfloat16 gradients are
/// reduced in float32; float32 and float64 in their own precision.
/// </para>
/// <para>
/// Parameters with <c>requires_grad</c> false are left alone. A parameter without a gradient on some rank (unused in
/// that rank's forward pass) counts there as a zero gradient and receives the averaged one, so that the weights stay
/// identical; a parameter without a gradient on every rank keeps none. This takes one small extra collective (one
/// 64-bit flag per parameter) per call.
/// </para>
/// <para>With <see cref="SingleProcessCollectives"/> (Size 1) the gradients are left exactly as they are.</para>
/// </remarks>
public sealed class GradientAllReduce
{
    /// <summary>The default bucket size, 25 MiB (PyTorch DistributedDataParallel's default).</summary>
    public const long DefaultBucketBytes = 25L * 1024 * 1024;

    /// <summary>Averages gradients over the ranks of <paramref name="collectives"/>.</summary>
    /// <param name="collectives">The group of ranks (e.g. MPI's, or <see cref="SingleProcessCollectives.Instance"/>).</param>
    /// <param name="bucketBytes">The most bytes of gradient flattened into one buffer, &gt; 0.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bucketBytes"/> is not positive.</exception>
    public GradientAllReduce(ICollectives collectives, long bucketBytes = DefaultBucketBytes)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bucketBytes);
        Collectives = collectives;
        BucketBytes = bucketBytes;
    }

    /// <summary>The group the gradients are averaged over.</summary>
    public ICollectives Collectives { get; }

    /// <summary>The most bytes of gradient (in the gradients' own dtype) flattened into one bucket.</summary>
    public long BucketBytes { get; }

    /// <summary>Averages the gradients of <paramref name="module"/>'s parameters (<c>module.parameters()</c>, in order) over the ranks.</summary>
    /// <param name="module">The model, built identically on every rank.</param>
    /// <returns>The number of buckets communicated (0 when Size is 1 or no parameter has a gradient on any rank).</returns>
    public int Average(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return Average(module.parameters());
    }

    /// <summary>Averages the gradients of <paramref name="parameters"/> over the ranks, in place.</summary>
    /// <param name="parameters">The parameters, in the same order on every rank.</param>
    /// <returns>The number of buckets communicated (0 when Size is 1 or no parameter has a gradient on any rank).</returns>
    /// <exception cref="NotSupportedException">A gradient whose dtype is not a floating-point type.</exception>
    public int Average(IEnumerable<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (Collectives.Size == 1)
        {
            return 0; // before the parameters are walked: one process allocates nothing per step here
        }

        var trained = parameters.Where(p => p.requires_grad).ToList();
        if (trained.Count == 0)
        {
            return 0;
        }

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var gradients = new Tensor?[trained.Count];
        var present = new long[trained.Count];
        for (int i = 0; i < trained.Count; i++)
        {
            gradients[i] = trained[i].grad;
            present[i] = gradients[i] is null ? 0 : 1;
            if (gradients[i] is { } g && g.dtype is not (ScalarType.Float32 or ScalarType.Float64 or ScalarType.Float16 or ScalarType.BFloat16))
            {
                throw new NotSupportedException($"Gradient averaging takes floating-point gradients; parameter {i} has a {g.dtype} gradient.");
            }
        }

        Collectives.AllReduceSum(present);
        var averaged = new List<Tensor>();
        for (int i = 0; i < trained.Count; i++)
        {
            if (present[i] == 0)
            {
                continue;
            }

            if (gradients[i] is null)
            {
                // Unused on this rank but used elsewhere: a zero gradient, which the average overwrites.
                trained[i].grad = zeros_like(trained[i]);
                gradients[i] = trained[i].grad;
            }

            averaged.Add(gradients[i]!);
        }

        int buckets = 0;
        int start = 0;
        while (start < averaged.Count)
        {
            var first = averaged[start];
            long bytes = first.numel() * first.ElementSize;
            int end = start + 1;
            while (end < averaged.Count
                   && averaged[end].dtype == first.dtype
                   && averaged[end].device_type == first.device_type
                   && averaged[end].device_index == first.device_index
                   && bytes + averaged[end].numel() * averaged[end].ElementSize <= BucketBytes)
            {
                bytes += averaged[end].numel() * averaged[end].ElementSize;
                end++;
            }

            AverageBucket(averaged.GetRange(start, end - start));
            buckets++;
            start = end;
        }

        return buckets;
    }

    /// <summary>
    /// Replaces every floating-point buffer of <paramref name="module"/> (batch-norm running means and variances) by its
    /// mean over the ranks, so that the buffers stay identical too when every rank's batch norm saw its own rows (as a
    /// single process's <see cref="Normalization.SplitBatchNorm2d"/> averages its splits' statistics). Integer buffers
    /// (batch counters, the same on every rank) are left alone. Collective; nothing happens with one rank.
    /// </summary>
    /// <param name="module">The model, built identically on every rank.</param>
    /// <returns>The number of buffers averaged (0 with one rank).</returns>
    public int AverageBuffers(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        if (Collectives.Size == 1)
        {
            return 0;
        }

        int count = 0;
        foreach (var (_, buffer) in module.named_buffers())
        {
            if (buffer.dtype is ScalarType.Float32 or ScalarType.Float64)
            {
                Collectives.AllReduceMean(buffer);
                count++;
            }
        }

        return count;
    }

    private void AverageBucket(List<Tensor> gradients)
    {
        var dtype = gradients[0].dtype;
        var reduced = dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        // A new buffer (cat copies), so the gradients are written back only after the whole bucket is averaged.
        var flat = cat(gradients.Select(g => g.flatten()).ToList(), 0);
        var buffer = flat.device_type == DeviceType.CPU && flat.dtype == reduced ? flat : flat.to(reduced, CPU);
        Collectives.AllReduceMean(buffer);
        long offset = 0;
        foreach (var gradient in gradients)
        {
            long count = gradient.numel();
            gradient.copy_(buffer.narrow(0, offset, count).view(gradient.shape));
            offset += count;
        }
    }
}
