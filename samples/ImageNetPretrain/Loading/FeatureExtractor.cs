using Hcsc.Core.Distributed;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Loading;

/// <summary>Runs a network over a whole dataset under one view (the evaluation transform of docs/method.md §2, §9, or a probe's crops), batch by batch, without gradients.</summary>
public static class FeatureExtractor
{
    /// <summary>
    /// Stacks <paramref name="network"/>'s output for every image of <paramref name="dataset"/> in
    /// dataset order: <c>[N, D]</c> on <paramref name="device"/>. The caller owns the result.
    /// <paramref name="sources"/>[i] is the image row i was computed from: i itself, unless image i
    /// could not be decoded and was replaced (reported through <paramref name="skipped"/>), so
    /// callers take labels from it.
    /// Every image is seen through <paramref name="view"/>: <see cref="ViewTransform.Eval(int, double)"/> for evaluations,
    /// or e.g. the linear probe's random crops, drawn from <paramref name="seed"/>.
    /// </summary>
    public static Tensor Extract(
        IImageDataset dataset, Func<Tensor, Tensor> network, ViewTransform view, int batchSize, int workers, Device device,
        out long[] sources, Action<int, Exception>? skipped = null, long seed = 0)
    {
        ArgumentNullException.ThrowIfNull(view);
        using var loader = new BatchLoader(dataset, [view], batchSize, workers, seed) { Skipped = skipped };
        var rows = new List<long>(dataset.Count);
        Tensor? features = null; // [N, D], filled batch by batch: no second copy of all features
        try
        {
            using var noGrad = no_grad();
            long row = 0;
            foreach (var batch in loader.Sequential())
            {
                using var held = batch;
                using var scope = NewDisposeScope();
                var images = batch.View(0, device); // a blocking copy (the loader is not pinned): nothing below reads back to the host
                var output = network(images); // [B, D]
                if (features is null)
                {
                    features = empty([dataset.Count, output.shape[1]], output.dtype, device).DetachFromDisposeScope();
                }

                features.narrow(0, row, batch.Count).copy_(output);
                row += batch.Count;
                rows.AddRange(batch.Indices);
            }

            sources = rows.ToArray();
            return features ?? throw new ArgumentException($"The dataset '{dataset.Description}' has no images.", nameof(dataset));
        }
        catch
        {
            features?.Dispose();
            throw;
        }
    }

    /// <summary>The labels of <paramref name="rows"/> of <paramref name="dataset"/> (the <c>sources</c> of an extraction): <c>[N]</c> int64 on <paramref name="device"/>.</summary>
    public static Tensor Labels(IImageDataset dataset, IEnumerable<long> rows, Device device)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        return tensor(rows.Select(i => (long)dataset.Labels[(int)i]).ToArray()).to(device);
    }

    /// <summary>
    /// Rank r of <paramref name="group"/> embeds its contiguous block of <paramref name="dataset"/>,
    /// [r·N/n, (r+1)·N/n), with <see cref="Extract"/>; the blocks are gathered in rank order, so every rank returns the
    /// same <c>[N, D]</c> on <paramref name="device"/> as <see cref="Extract"/> on the whole dataset (float32), with the
    /// dataset's <paramref name="sources"/>. Collective: every rank calls it. <paramref name="blockStart"/> is this rank's
    /// first row.
    /// </summary>
    public static Tensor ExtractBlock(
        IImageDataset dataset, Func<Tensor, Tensor> network, ViewTransform view, int batchSize, int workers, Device device,
        ICollectives group, out long[] sources, out int blockStart, Action<int, Exception>? skipped = null)
    {
        blockStart = (int)((long)dataset.Count * group.Rank / group.Size);
        int end = (int)((long)dataset.Count * (group.Rank + 1) / group.Size);
        int start = blockStart;
        var block = new DatasetSubset(dataset, Enumerable.Range(start, end - start).ToArray(), $"rank {group.Rank}'s block");
        var features = Extract(block, network, view, batchSize, workers, device, out var blockSources, skipped);
        try
        {
            sources = group.AllGatherVariable<long>(blockSources.Select(i => i + start).ToArray(), out _);
            return features;
        }
        catch
        {
            features.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Every rank's <see cref="ExtractBlock"/> gathered: the features of the whole dataset, <c>[N, D]</c> float32 on
    /// <paramref name="device"/>, on every rank, each rank having embedded 1/n of it. Collective.
    /// </summary>
    public static Tensor ExtractGathered(
        IImageDataset dataset, Func<Tensor, Tensor> network, ViewTransform view, int batchSize, int workers, Device device,
        ICollectives group, out long[] sources, Action<int, Exception>? skipped = null)
    {
        using var local = ExtractBlock(dataset, network, view, batchSize, workers, device, group, out sources, out _, skipped);
        long dim = local.shape[1];
        using var host = local.to(ScalarType.Float32, CPU).contiguous();
        float[] all = group.AllGatherVariable<float>(host.data<float>().ToArray(), out _);
        using var gathered = tensor(all, [sources.Length, dim]);
        return gathered.to(device);
    }
}
