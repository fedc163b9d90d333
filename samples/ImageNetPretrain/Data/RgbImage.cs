using System.Buffers;

namespace Hcsc.Samples.ImageNetPretrain.Data;

/// <summary>
/// An 8-bit RGB image, rows of interleaved R, G, B bytes (HWC), the currency of the data pipeline. A decoded image's
/// bytes are rented from <see cref="ArrayPool{T}.Shared"/> (<see cref="Rent"/>) and handed back by <see cref="Dispose"/>,
/// which the loader calls once the image is augmented: at ImageNet scale that is about 0.5 MB an image that is not
/// allocated again every step.
/// </summary>
public sealed class RgbImage : IDisposable
{
    private byte[]? _rented;

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

    private RgbImage(int width, int height, byte[] rented, bool pooled)
    {
        Width = width;
        Height = height;
        Pixels = rented;
        _rented = pooled ? rented : null;
    }

    /// <summary>
    /// An image of <paramref name="width"/> × <paramref name="height"/> whose <see cref="Pixels"/> come from the shared
    /// array pool (the array may be longer than <see cref="ByteCount"/>; its contents are whatever it held); fill the
    /// first <see cref="ByteCount"/> bytes, and <see cref="Dispose"/> it when done.
    /// </summary>
    public static RgbImage Rent(int width, int height)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        return new RgbImage(width, height, ArrayPool<byte>.Shared.Rent(checked(width * height * 3)), pooled: true);
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>
    /// The pixels, <c>[H, W, 3]</c> row-major, in the first <see cref="ByteCount"/> bytes (all of the array for an image
    /// built with the constructor; a rented one's may be longer). Not to be read after <see cref="Dispose"/>.
    /// </summary>
    public byte[] Pixels { get; }

    /// <summary>The image's bytes, <c>H · W · 3</c>.</summary>
    public int ByteCount => Width * Height * 3;

    /// <summary>Returns a rented image's bytes to the pool (once); nothing for an image built with the constructor.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _rented, null) is { } rented)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }
}
