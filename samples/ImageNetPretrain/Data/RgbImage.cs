namespace Hcsc.Samples.ImageNetPretrain.Data;

/// <summary>An 8-bit RGB image, rows of interleaved R, G, B bytes (HWC), the currency of the data pipeline.</summary>
public sealed class RgbImage
{
    /// <summary>Wraps <paramref name="pixels"/> (<c>height · width · 3</c> bytes, row-major, RGB).</summary>
    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentNullException.ThrowIfNull(pixels);
        if (pixels.Length != width * height * 3)
        {
            throw new ArgumentException($"Expected {width}·{height}·3 = {width * height * 3} bytes for a {width}×{height} RGB image, got {pixels.Length}.", nameof(pixels));
        }

        Width = width;
        Height = height;
        Pixels = pixels;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The pixels, <c>[H, W, 3]</c> row-major.</summary>
    public byte[] Pixels { get; }
}
