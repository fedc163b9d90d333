using System.Buffers.Binary;
using System.IO.Compression;

namespace Hcsc.Samples.ImageNetPretrain.Data;

/// <summary>
/// MNIST-format idx files (MNIST, Fashion-MNIST), plain or gzip-compressed: an image file
/// (magic 0x00000803, [N, rows, cols] bytes) and a label file (magic 0x00000801, [N] bytes).
/// Grey images are returned as RGB. Debian's <c>dataset-fashion-mnist</c> installs them in
/// /usr/share/datasets/fashion-mnist/.
/// </summary>
public sealed class MnistIdxDataset : IImageDataset
{
    private static readonly string[] FashionClasses = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
    private readonly byte[] _images;
    private readonly int[] _labels;
    private readonly int _rows;
    private readonly int _cols;

    private MnistIdxDataset(byte[] images, int[] labels, int rows, int cols, string description, IReadOnlyList<string> classNames)
    {
        _images = images;
        _labels = labels;
        _rows = rows;
        _cols = cols;
        Description = description;
        ClassNames = classNames;
    }

    /// <inheritdoc />
    public string Description { get; }

    /// <inheritdoc />
    public int Count => _labels.Length;

    /// <inheritdoc />
    public IReadOnlyList<string> ClassNames { get; }

    /// <inheritdoc />
    public IReadOnlyList<int> Labels => _labels;

    /// <summary>
    /// Opens the <paramref name="split"/> ("train" or "t10k") of the idx files in <paramref name="directory"/>:
    /// <c>{split}-images-idx3-ubyte[.gz]</c> and <c>{split}-labels-idx1-ubyte[.gz]</c>.
    /// </summary>
    public static MnistIdxDataset Open(string directory, string split, int? limit = null)
    {
        string images = Find(directory, $"{split}-images-idx3-ubyte");
        string labels = Find(directory, $"{split}-labels-idx1-ubyte");
        return Read(images, labels, limit);
    }

    /// <summary>Reads an image file and a label file, each plain or gzip-compressed; <paramref name="limit"/> keeps the first images.</summary>
    public static MnistIdxDataset Read(string imagesPath, string labelsPath, int? limit = null)
    {
        byte[] imageBytes = ReadAll(imagesPath);
        byte[] labelBytes = ReadAll(labelsPath);
        if (imageBytes.Length < 16 || BinaryPrimitives.ReadInt32BigEndian(imageBytes) != 0x803)
        {
            throw new InvalidDataException($"'{imagesPath}' is not an idx3 image file (expected magic 0x00000803 in the first 4 bytes).");
        }

        if (labelBytes.Length < 8 || BinaryPrimitives.ReadInt32BigEndian(labelBytes) != 0x801)
        {
            throw new InvalidDataException($"'{labelsPath}' is not an idx1 label file (expected magic 0x00000801 in the first 4 bytes).");
        }

        int count = BinaryPrimitives.ReadInt32BigEndian(imageBytes.AsSpan(4));
        int rows = BinaryPrimitives.ReadInt32BigEndian(imageBytes.AsSpan(8));
        int cols = BinaryPrimitives.ReadInt32BigEndian(imageBytes.AsSpan(12));
        int labelCount = BinaryPrimitives.ReadInt32BigEndian(labelBytes.AsSpan(4));
        if (count != labelCount)
        {
            throw new InvalidDataException($"'{imagesPath}' holds {count} images but '{labelsPath}' holds {labelCount} labels.");
        }

        if (rows <= 0 || cols <= 0 || imageBytes.Length != 16 + ((long)count * rows * cols) || labelBytes.Length != 8 + count)
        {
            throw new InvalidDataException(
                $"'{imagesPath}' / '{labelsPath}' are truncated or malformed: header says {count} images of {rows}×{cols}, " +
                $"files have {imageBytes.Length} and {labelBytes.Length} bytes.");
        }

        int kept = Math.Min(count, limit ?? count);
        int[] labels = new int[kept];
        for (int i = 0; i < kept; i++)
        {
            labels[i] = labelBytes[8 + i];
        }

        int classes = labels.Length == 0 ? 0 : labels.Max() + 1;
        IReadOnlyList<string> names = classes <= 10 && imagesPath.Contains("fashion", StringComparison.OrdinalIgnoreCase)
            ? FashionClasses
            : Enumerable.Range(0, Math.Max(classes, 10)).Select(c => c.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        byte[] pixels = imageBytes.AsSpan(16, kept * rows * cols).ToArray();
        return new MnistIdxDataset(pixels, labels, rows, cols, $"idx {Path.GetFileName(imagesPath)}: {kept} images of {rows}×{cols}", names);
    }

    /// <inheritdoc />
    public RgbImage Load(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        int size = _rows * _cols;
        var rgb = new byte[size * 3];
        var grey = _images.AsSpan(index * size, size);
        for (int i = 0; i < size; i++)
        {
            rgb[3 * i] = rgb[(3 * i) + 1] = rgb[(3 * i) + 2] = grey[i];
        }

        return new RgbImage(_cols, _rows, rgb);
    }

    private static string Find(string directory, string stem)
    {
        foreach (string candidate in new[] { stem, stem + ".gz", stem.Replace("-idx", ".idx", StringComparison.Ordinal), stem.Replace("-idx", ".idx", StringComparison.Ordinal) + ".gz" })
        {
            string path = Path.Combine(directory, candidate);
            if (File.Exists(path))
            {
                return path;
            }
        }

        throw new FileNotFoundException(
            $"No '{stem}' or '{stem}.gz' in '{directory}'. For Fashion-MNIST on Debian: apt-get install dataset-fashion-mnist, then --data /usr/share/datasets/fashion-mnist.");
    }

    private static byte[] ReadAll(string path)
    {
        using var file = File.OpenRead(path);
        Span<byte> magic = stackalloc byte[2];
        int read = file.Read(magic);
        file.Position = 0;
        using Stream stream = read == 2 && magic[0] == 0x1f && magic[1] == 0x8b ? new GZipStream(file, CompressionMode.Decompress) : file;
        using var memory = new MemoryStream();
        try
        {
            stream.CopyTo(memory);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"'{path}' looks gzip-compressed but cannot be decompressed: {e.Message}", e);
        }

        return memory.ToArray();
    }
}
