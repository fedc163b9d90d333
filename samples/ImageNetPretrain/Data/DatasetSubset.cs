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
        : this(source, EvenlySpaced(source, count), what: null)
    {
    }

    /// <summary>The images of <paramref name="source"/> at <paramref name="indices"/>, in that order; <paramref name="what"/> describes the choice (default: "subset of N").</summary>
    /// <exception cref="ArgumentOutOfRangeException">An index lies outside the source.</exception>
    public DatasetSubset(IImageDataset source, IReadOnlyList<int> indices, string? what)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(indices);
        if (indices.Any(i => i < 0 || i >= source.Count))
        {
            throw new ArgumentOutOfRangeException(nameof(indices), $"Index {indices.First(i => i < 0 || i >= source.Count)} lies outside {source.Description} ({source.Count} images).");
        }

        _source = source;
        _indices = indices.ToArray();
        Labels = _indices.Select(i => source.Labels[i]).ToArray();
        Description = $"{source.Description} ({what ?? $"subset of {_indices.Length}"})";
    }

    private static int[] EvenlySpaced(IImageDataset source, int count)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        int stride = Math.Max(1, (source.Count + count - 1) / count);
        return Enumerable.Range(0, source.Count).Where(i => i % stride == 0).Take(count).ToArray();
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
