using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>Runs a network over a whole dataset under the evaluation transform (spec §1, §5), batch by batch, without gradients.</summary>
public static class FeatureExtractor
{
    /// <summary>
    /// Stacks <paramref name="network"/>'s output for every image of <paramref name="dataset"/> in
    /// dataset order: <c>[N, D]</c> on <paramref name="device"/>. The caller owns the result.
    /// <paramref name="sources"/>[i] is the image row i was computed from: i itself, unless image i
    /// could not be decoded and was replaced (reported through <paramref name="skipped"/>), so
    /// callers take labels from it.
    /// </summary>
    public static Tensor Extract(
        IImageDataset dataset, Func<Tensor, Tensor> network, int imageSize, int batchSize, int workers, Device device, float[] mean, float[] std,
        out long[] sources, Action<int, Exception>? skipped = null)
    {
        var loader = new BatchLoader(dataset, [ViewTransform.Eval(imageSize) with { Mean = mean, Std = std }], batchSize, workers, seed: 0) { Skipped = skipped };
        var parts = new List<Tensor>();
        var rows = new List<long>(dataset.Count);
        try
        {
            using var noGrad = no_grad();
            foreach (var batch in loader.Sequential())
            {
                using var scope = NewDisposeScope();
                var images = tensor(batch.Views[0], [batch.Count, 3, imageSize, imageSize]).to(device);
                parts.Add(network(images).detach().MoveToOuterDisposeScope());
                rows.AddRange(batch.Indices);
            }

            sources = rows.ToArray();
            return cat(parts, 0);
        }
        finally
        {
            foreach (var part in parts)
            {
                part.Dispose();
            }
        }
    }
}
