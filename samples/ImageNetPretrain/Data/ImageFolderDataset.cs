using SkiaSharp;

namespace Hcsc.Samples.ImageNetPretrain.Data;

/// <summary>
/// An ImageFolder tree (the ImageNet layout): one sub-folder per class, sorted by name, holding
/// JPEG, PNG, BMP or WebP files. Images are decoded with SkiaSharp; grey, palette and CMYK
/// images come back as RGB.
/// </summary>
public sealed class ImageFolderDataset : IImageDataset
{
    private static readonly HashSet<string> Extensions = new(StringComparer.OrdinalIgnoreCase) { ".jpg", ".jpeg", ".png", ".bmp", ".webp" };
    private readonly string[] _paths;
    private readonly int[] _labels;

    /// <summary>Scans <paramref name="root"/>; optionally keeps only the classes named in <paramref name="classNames"/> (e.g. those of train/ for val/).</summary>
    public ImageFolderDataset(string root, IReadOnlyList<string>? classNames = null)
    {
        if (!Directory.Exists(root))
        {
            throw new DirectoryNotFoundException($"The image folder '{root}' does not exist.");
        }

        var classes = classNames ?? Directory.GetDirectories(root).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToArray();
        if (classes.Count == 0)
        {
            throw new InvalidDataException($"'{root}' has no class sub-folders; expected the ImageFolder layout root/CLASS/IMAGE.jpg.");
        }

        var paths = new List<string>();
        var labels = new List<int>();
        var emptyClasses = new List<string>();
        for (int label = 0; label < classes.Count; label++)
        {
            string folder = Path.Combine(root, classes[label]);
            int before = paths.Count;
            if (Directory.Exists(folder))
            {
                foreach (string file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Where(f => Extensions.Contains(Path.GetExtension(f))).Order(StringComparer.Ordinal))
                {
                    paths.Add(file);
                    labels.Add(label);
                }
            }

            if (paths.Count == before)
            {
                emptyClasses.Add(classes[label]);
            }
        }

        if (paths.Count == 0)
        {
            throw new InvalidDataException($"'{root}' has class folders but no images with extension {string.Join(", ", Extensions)}.");
        }

        // The training set defines the classes, so a class without images there is a mistake (PyTorch's ImageFolder
        // refuses it too); a held-out set may lack some of the training classes.
        if (classNames is null && emptyClasses.Count > 0)
        {
            throw new InvalidDataException(
                $"'{root}' has {emptyClasses.Count} class folder(s) without images ({string.Join(", ", emptyClasses.Take(10))}{(emptyClasses.Count > 10 ? ", …" : string.Empty)}); " +
                $"add images with extension {string.Join(", ", Extensions)} or remove the folder(s).");
        }

        _paths = paths.ToArray();
        _labels = labels.ToArray();
        ClassNames = classes.ToArray();
        Description = $"ImageFolder {root}: {ClassNames.Count} classes, {_paths.Length} images";
    }

    /// <inheritdoc />
    public string Description { get; }

    /// <inheritdoc />
    public int Count => _paths.Length;

    /// <inheritdoc />
    public IReadOnlyList<string> ClassNames { get; }

    /// <inheritdoc />
    public IReadOnlyList<int> Labels => _labels;

    /// <summary>The file of image <paramref name="index"/>.</summary>
    public string PathOf(int index) => _paths[index];

    /// <inheritdoc />
    public RgbImage Load(int index) => Decode(_paths[index]);

    /// <summary>Decodes an image file to RGB.</summary>
    /// <exception cref="InvalidDataException">The file is missing, unreadable, empty, truncated or not a decodable image.</exception>
    public static RgbImage Decode(string path)
    {
        SKBitmap? bitmap;
        try
        {
            using var codec = SKCodec.Create(path, out var result);
            if (codec is null)
            {
                throw new InvalidDataException(result == SKCodecResult.IncompleteInput
                    ? $"Cannot decode image '{path}': the file is truncated."
                    : $"Cannot decode image '{path}': {result}. The file is corrupt or not a JPEG, PNG, BMP or WebP image.");
            }

            var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
            bitmap = new SKBitmap(info);
            var decode = codec.GetPixels(info, bitmap.GetPixels());
            if (decode != SKCodecResult.Success)
            {
                bitmap.Dispose();
                throw new InvalidDataException(decode == SKCodecResult.IncompleteInput
                    ? $"Cannot decode image '{path}': the file is truncated."
                    : $"Cannot decode image '{path}': {decode}.");
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"Cannot read image '{path}': {e.Message}", e);
        }

        using (bitmap)
        {
            int width = bitmap.Width, height = bitmap.Height;
            var rgba = bitmap.GetPixelSpan();
            var image = RgbImage.Rent(width, height); // the loader hands it back after the augmentation
            var rgb = image.Pixels;
            for (int i = 0, j = 0; j < image.ByteCount; i += 4, j += 3)
            {
                rgb[j] = rgba[i];
                rgb[j + 1] = rgba[i + 1];
                rgb[j + 2] = rgba[i + 2];
            }

            return image;
        }
    }
}
