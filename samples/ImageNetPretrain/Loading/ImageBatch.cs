namespace Hcsc.Samples.ImageNetPretrain.Loading;

/// <summary>
/// One batch of B images: per view v, <c>Views[v]</c> holds <c>[B, 3, S_v, S_v]</c> floats
/// (normalised), with the dataset index and label of each image.
/// </summary>
public sealed record ImageBatch(float[][] Views, int[] ViewSizes, long[] Indices, int[] Labels)
{
    /// <summary>Images in the batch.</summary>
    public int Count => Indices.Length;
}
