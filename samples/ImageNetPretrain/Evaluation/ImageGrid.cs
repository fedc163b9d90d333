using Hcsc.Samples.ImageNetPretrain.Data;
using SkiaSharp;

namespace Hcsc.Samples.ImageNetPretrain.Evaluation;

/// <summary>
/// A PNG of image thumbnails in rows; each row is a list of groups (separated by a wider gap), each group a list of
/// images, with an optional caption above every group.
/// </summary>
public sealed class ImageGrid
{
    private const int Gap = 2;
    private const int GroupGap = 16;
    private const int CaptionHeight = 16;
    private readonly int _thumbnail;
    private readonly List<IReadOnlyList<(string Caption, IReadOnlyList<RgbImage> Images)>> _rows = [];

    /// <summary>Creates an empty grid of square thumbnails of <paramref name="thumbnail"/> pixels.</summary>
    public ImageGrid(int thumbnail = 48)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(thumbnail, 4);
        _thumbnail = thumbnail;
    }

    /// <summary>Appends a row of captioned groups.</summary>
    public void AddRow(IReadOnlyList<(string Caption, IReadOnlyList<RgbImage> Images)> groups) => _rows.Add(groups);

    /// <summary>Draws the grid and writes it as a PNG.</summary>
    /// <exception cref="InvalidOperationException">The grid has no rows.</exception>
    public void SavePng(string path)
    {
        if (_rows.Count == 0)
        {
            throw new InvalidOperationException("The grid has no rows to draw.");
        }

        using var font = new SKFont(SKTypeface.Default, 11);
        using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        int GroupWidth((string Caption, IReadOnlyList<RgbImage> Images) group) =>
            Math.Max((group.Images.Count * (_thumbnail + Gap)) - Gap, (int)Math.Ceiling(font.MeasureText(group.Caption, ink)) + 4);
        int RowWidth(IReadOnlyList<(string Caption, IReadOnlyList<RgbImage> Images)> row) => row.Sum(GroupWidth) + ((row.Count - 1) * GroupGap);
        int width = _rows.Max(RowWidth) + (2 * GroupGap);
        int rowHeight = CaptionHeight + _thumbnail + GroupGap;
        int height = (_rows.Count * rowHeight) + GroupGap;

        using var surface = SKSurface.Create(new SKImageInfo(width, height));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        int y = GroupGap;
        foreach (var row in _rows)
        {
            int x = GroupGap;
            foreach (var group in row)
            {
                canvas.DrawText(group.Caption, x, y + CaptionHeight - 4, SKTextAlign.Left, font, ink);
                int left = x;
                foreach (var image in group.Images)
                {
                    using var bitmap = ToBitmap(image);
                    canvas.DrawBitmap(bitmap, new SKRect(left, y + CaptionHeight, left + _thumbnail, y + CaptionHeight + _thumbnail));
                    left += _thumbnail + Gap;
                }

                x += GroupWidth(group) + GroupGap;
            }

            y += rowHeight;
        }

        using var snapshot = surface.Snapshot();
        using var data = snapshot.Encode(SKEncodedImageFormat.Png, 100);
        string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null)
        {
            Directory.CreateDirectory(directory);
        }

        using var file = File.Create(path);
        data.SaveTo(file);
    }

    private static SKBitmap ToBitmap(RgbImage image)
    {
        var bitmap = new SKBitmap(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var pixels = new byte[image.Width * image.Height * 4];
        for (int i = 0, j = 0; i < image.ByteCount; i += 3, j += 4)
        {
            pixels[j] = image.Pixels[i];
            pixels[j + 1] = image.Pixels[i + 1];
            pixels[j + 2] = image.Pixels[i + 2];
            pixels[j + 3] = 255;
        }

        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        return bitmap;
    }
}
