namespace Hcsc.Samples.ImageNetPretrain.Data;

/// <summary>A training set and the held-out set used for kNN evaluation.</summary>
public sealed record DatasetPair(IImageDataset Train, IImageDataset Validation);

/// <summary>Opens the dataset named on the command line.</summary>
public static class DatasetFactory
{
    /// <summary>The dataset names <see cref="Open"/> accepts.</summary>
    public static readonly IReadOnlyList<string> Names = ["synthetic", "fashion-mnist", "mnist", "imagefolder"];

    /// <summary>
    /// synthetic: the built-in hierarchy (train seed 0, validation seed 1), no <paramref name="data"/> needed;
    /// fashion-mnist / mnist: idx files in <paramref name="data"/> (train-* and t10k-*);
    /// imagefolder: <paramref name="data"/>/train and <paramref name="data"/>/val class folders.
    /// <paramref name="maxImages"/> &gt; 0 keeps the first images of the training set; the whole test set is always used.
    /// </summary>
    public static DatasetPair Open(string name, string? data, int imageSize, int maxImages = 0)
    {
        switch (name.ToLowerInvariant())
        {
            case "synthetic":
                int perClass = maxImages > 0 ? Math.Max(1, maxImages / 12) : 100;
                return new DatasetPair(
                    new SyntheticHierarchicalDataset(imagesPerClass: perClass, size: imageSize, seed: 0),
                    new SyntheticHierarchicalDataset(imagesPerClass: Math.Max(1, perClass / 3), size: imageSize, seed: 1));
            case "fashion-mnist" or "mnist":
                string directory = data ?? (name == "fashion-mnist" ? "/usr/share/datasets/fashion-mnist" : throw new ArgumentException("--data is required for mnist: the folder of the idx files."));
                return new DatasetPair(
                    MnistIdxDataset.Open(directory, "train", maxImages > 0 ? maxImages : null),
                    MnistIdxDataset.Open(directory, "t10k"));
            case "imagefolder":
                if (data is null)
                {
                    throw new ArgumentException("--data is required for imagefolder: a folder with train/ and val/ class folders (the ImageNet layout).");
                }

                var train = new ImageFolderDataset(Path.Combine(data, "train"));
                var validation = new ImageFolderDataset(Path.Combine(data, "val"), train.ClassNames);
                return new DatasetPair(maxImages > 0 ? new DatasetSubset(train, maxImages) : train, validation);
            default:
                throw new ArgumentException($"Unknown dataset '{name}'. Use one of: {string.Join(", ", Names)}.");
        }
    }
}
