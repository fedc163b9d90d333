namespace Hcsc.Samples.ImageNetPretrain.Data;

/// <summary>A labelled image dataset, read by index from any thread.</summary>
public interface IImageDataset
{
    /// <summary>A short description for logs, e.g. "ImageFolder /data/train: 1000 classes, 1281167 images".</summary>
    string Description { get; }

    /// <summary>Number of images.</summary>
    int Count { get; }

    /// <summary>Class names, indexed by label.</summary>
    IReadOnlyList<string> ClassNames { get; }

    /// <summary>The label of every image, in [0, ClassNames.Count).</summary>
    IReadOnlyList<int> Labels { get; }

    /// <summary>Loads image <paramref name="index"/> as RGB. Must be safe to call concurrently.</summary>
    /// <exception cref="InvalidDataException">The image cannot be decoded; the message names the file.</exception>
    RgbImage Load(int index);
}

/// <summary>A dataset that also knows a coarser label per image (a two-level class hierarchy).</summary>
public interface IHierarchicalDataset : IImageDataset
{
    /// <summary>The coarse label of every image.</summary>
    IReadOnlyList<int> CoarseLabels { get; }
}
