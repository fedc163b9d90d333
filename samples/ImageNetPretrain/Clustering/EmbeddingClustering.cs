using Hcsc.Clustering;
using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Loading;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Clustering;

/// <summary>
/// The clustering step of an HCSC epoch (docs/method.md §2): the training set embedded by the key encoder under the
/// evaluation transform, then clustered bottom-up by hierarchical k-means. The <c>clusters</c> command runs it too.
/// </summary>
public static class EmbeddingClustering
{
    /// <summary>Embeds <paramref name="train"/> with <paramref name="model"/>'s key encoder (eval mode) and clusters the embeddings hierarchically.</summary>
    /// <param name="model">The model; left in eval mode.</param>
    /// <param name="train">The training set.</param>
    /// <param name="options">The image size, the clustering options and τ (the concentrations' mean).</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="workers">Data-loading threads.</param>
    /// <param name="device">Where the model and the k-means run.</param>
    /// <param name="skipped">Told of every image that could not be decoded (it is replaced by the next one).</param>
    public static ClusteredEmbeddings Run(HcscModel model, IImageDataset train, HcscOptions options, int batchSize, int workers, Device device, Action<int, Exception>? skipped = null)
    {
        model.eval();
        using var embeddings = FeatureExtractor.Extract(train, model.Embed, options.Augmentation.ImageSize, batchSize, workers, device, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd, out var sources, skipped);
        var result = new HierarchicalKMeans(options.Clustering, options.Objective.Temperature).Fit(embeddings);
        return new ClusteredEmbeddings(result.Hierarchy, sources, result);
    }
}
