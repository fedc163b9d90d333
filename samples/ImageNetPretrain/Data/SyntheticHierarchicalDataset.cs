namespace Hcsc.Samples.ImageNetPretrain.Data;

/// <summary>
/// A built-in dataset with a known two-level class hierarchy, generated deterministically from a
/// seed, so the sample runs with no download. Each coarse class is a texture family (horizontal
/// stripes, vertical stripes, rings, checkerboard, diagonal stripes, ...); each fine class within
/// it fixes the duty cycle of the pattern (thin bright lines, balanced, thick bright bands), which
/// survives crops, rescaling and colour changes. Colours, spatial frequency, phase and centre are
/// drawn per image, independent of the class, so a network must learn shape rather than colour
/// or scale — what the MoCo v2 augmentations teach — and pixel noise is added.
/// Fine label = coarse · finePerCoarse + fine.
/// </summary>
public sealed class SyntheticHierarchicalDataset : IHierarchicalDataset
{
    private const int TextureFamilies = 6;
    private readonly int _size;
    private readonly int _finePerCoarse;
    private readonly int _seed;
    private readonly int[] _labels;
    private readonly int[] _coarse;

    /// <summary>Creates <paramref name="imagesPerClass"/> images of <paramref name="size"/>² pixels for each of coarse × fine classes.</summary>
    public SyntheticHierarchicalDataset(int coarseClasses = 4, int finePerCoarse = 3, int imagesPerClass = 100, int size = 32, int seed = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(coarseClasses, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(coarseClasses, TextureFamilies);
        ArgumentOutOfRangeException.ThrowIfLessThan(finePerCoarse, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(imagesPerClass, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 8);
        _size = size;
        _finePerCoarse = finePerCoarse;
        _seed = seed;
        int classes = coarseClasses * finePerCoarse;
        _labels = new int[classes * imagesPerClass];
        _coarse = new int[_labels.Length];
        for (int i = 0; i < _labels.Length; i++)
        {
            _labels[i] = i % classes; // interleaved, so any prefix is balanced
            _coarse[i] = _labels[i] / finePerCoarse;
        }

        ClassNames = Enumerable.Range(0, classes).Select(c => $"coarse{c / finePerCoarse}-fine{c % finePerCoarse}").ToArray();
        Description = $"synthetic hierarchy: {coarseClasses} coarse × {finePerCoarse} fine classes, {_labels.Length} images of {size}×{size}, seed {seed}";
    }

    /// <inheritdoc />
    public string Description { get; }

    /// <inheritdoc />
    public int Count => _labels.Length;

    /// <inheritdoc />
    public IReadOnlyList<string> ClassNames { get; }

    /// <inheritdoc />
    public IReadOnlyList<int> Labels => _labels;

    /// <inheritdoc />
    public IReadOnlyList<int> CoarseLabels => _coarse;

    /// <inheritdoc />
    public RgbImage Load(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        var random = StableSeed.Random(_seed, index);
        int coarse = _coarse[index];
        int fine = _labels[index] % _finePerCoarse;

        double hue = random.NextDouble();
        var (r1, g1, b1) = HsvToRgb(hue, 0.25 * random.NextDouble(), 0.7 + (0.3 * random.NextDouble()));
        var (r0, g0, b0) = HsvToRgb(random.NextDouble(), 0.25 * random.NextDouble(), 0.05 + (0.35 * random.NextDouble()));
        double frequency = (2.0 + (2.0 * random.NextDouble())) * 2 * Math.PI / _size;
        double duty = (fine + 0.5) / _finePerCoarse; // fraction of each period that is bright
        double threshold = Math.Cos(Math.PI * duty);
        double phase = random.NextDouble() * 2 * Math.PI;
        double cx = _size * (0.3 + (0.4 * random.NextDouble())), cy = _size * (0.3 + (0.4 * random.NextDouble()));

        var pixels = new byte[_size * _size * 3];
        for (int y = 0; y < _size; y++)
        {
            for (int x = 0; x < _size; x++)
            {
                double t = coarse switch
                {
                    0 => Math.Sin((frequency * y) + phase),
                    1 => Math.Sin((frequency * x) + phase),
                    2 => Math.Sin((frequency * Math.Sqrt(((x - cx) * (x - cx)) + ((y - cy) * (y - cy)))) + phase),
                    3 => Math.Sin((frequency * x) + phase) * Math.Sin((frequency * y) + phase),
                    4 => Math.Sin((frequency * (x + y) / Math.Sqrt(2)) + phase),
                    _ => Math.Sin((frequency * (x - y) / Math.Sqrt(2)) + phase),
                };
                double mix = 1 / (1 + Math.Exp(-8 * (t - threshold)));
                double noise = (random.NextDouble() - 0.5) * 0.3;
                int offset = ((y * _size) + x) * 3;
                pixels[offset] = ToByte((r0 + ((r1 - r0) * mix)) + noise);
                pixels[offset + 1] = ToByte((g0 + ((g1 - g0) * mix)) + noise);
                pixels[offset + 2] = ToByte((b0 + ((b1 - b0) * mix)) + noise);
            }
        }

        return new RgbImage(_size, _size, pixels);
    }

    private static byte ToByte(double value) => (byte)Math.Clamp(Math.Round(value * 255), 0, 255);

    private static (double R, double G, double B) HsvToRgb(double h, double s, double v) => Augmentation.ColorOps.HsvToRgb((float)h, (float)s, (float)v);
}
