namespace Hcsc.Samples.ImageNetPretrain.Data;

/// <summary>
/// A dataset restricted to an evenly spread subset of at most <c>count</c> images (every
/// ⌈N / count⌉-th one), so an ImageFolder sorted by class keeps every class.
/// </summary>
public sealed class DatasetSubset : IImageDataset
{
    private readonly IImageDataset _source;
    private readonly int[] _indices;

    /// <summary>Keeps at most <paramref name="count"/> images of <paramref name="source"/>.</summary>
    public DatasetSubset(IImageDataset source, int count)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        _source = source;
        int stride = Math.Max(1, (source.Count + count - 1) / count);
        _indices = Enumerable.Range(0, source.Count).Where(i => i % stride == 0).Take(count).ToArray();
        Labels = _indices.Select(i => source.Labels[i]).ToArray();
        Description = $"{source.Description} (subset of {_indices.Length})";
    }

    /// <inheritdoc />
    public string Description { get; }

    /// <inheritdoc />
    public int Count => _indices.Length;

    /// <inheritdoc />
    public IReadOnlyList<string> ClassNames => _source.ClassNames;

    /// <inheritdoc />
    public IReadOnlyList<int> Labels { get; }

    /// <inheritdoc />
    public RgbImage Load(int index) => _source.Load(_indices[index]);
}
