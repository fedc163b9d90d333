using System.Buffers;
using Hcsc.Samples.ImageNetPretrain.Data;

namespace Hcsc.Samples.ImageNetPretrain.Augmentation;

/// <summary>
/// Crops an RGB image and resizes the crop to <c>[3, size, size]</c> floats in [0, 1] with a
/// separable triangle (bilinear) filter whose support widens when shrinking, as PIL's
/// antialiased bilinear resize does; optionally mirrored horizontally.
/// </summary>
public static class ResizedCrop
{
    /// <summary>Writes the crop of <paramref name="image"/> to <paramref name="destination"/> (<c>3 · size · size</c> floats, planar CHW).</summary>
    public static void Apply(RgbImage image, CropBox box, int size, bool flip, Span<float> destination)
    {
        if (destination.Length != 3 * size * size)
        {
            throw new ArgumentException($"Destination holds {destination.Length} floats; a [3, {size}, {size}] view needs {3 * size * size}.", nameof(destination));
        }

        using var columns = new FilterTaps(box.X, box.Width, size, image.Width);
        using var rows = new FilterTaps(box.Y, box.Height, size, image.Height);

        // Horizontal pass: every source row the vertical filter touches -> [rowsUsed, size, 3].
        int firstRow = rows.Start(0), lastRow = rows.Start(0) + rows.Weights(0).Length;
        for (int y = 1; y < size; y++)
        {
            firstRow = Math.Min(firstRow, rows.Start(y));
            lastRow = Math.Max(lastRow, rows.Start(y) + rows.Weights(y).Length);
        }

        int rowsUsed = lastRow - firstRow;
        float[] horizontal = ArrayPool<float>.Shared.Rent(rowsUsed * size * 3);
        byte[] pixels = image.Pixels;
        for (int r = 0; r < rowsUsed; r++)
        {
            int sourceRow = (firstRow + r) * image.Width * 3;
            for (int x = 0; x < size; x++)
            {
                int column = flip ? size - 1 - x : x;
                var weights = columns.Weights(column);
                float red = 0, green = 0, blue = 0;
                int p = sourceRow + (columns.Start(column) * 3);
                for (int k = 0; k < weights.Length; k++, p += 3)
                {
                    float w = weights[k];
                    red += w * pixels[p];
                    green += w * pixels[p + 1];
                    blue += w * pixels[p + 2];
                }

                int o = ((r * size) + x) * 3;
                horizontal[o] = red;
                horizontal[o + 1] = green;
                horizontal[o + 2] = blue;
            }
        }

        // Vertical pass, a weighted sum of whole interleaved rows (vectorised), then planar CHW scaled to [0, 1].
        int plane = size * size, rowLength = size * 3;
        float[] row = ArrayPool<float>.Shared.Rent(rowLength);
        for (int y = 0; y < size; y++)
        {
            int start = rows.Start(y);
            var weights = rows.Weights(y);
            var sum = row.AsSpan(0, rowLength);
            sum.Clear();
            for (int k = 0; k < weights.Length; k++)
            {
                VectorMath.MultiplyAdd(horizontal.AsSpan((start - firstRow + k) * rowLength, rowLength), weights[k], sum);
            }

            for (int x = 0; x < size; x++)
            {
                int d = (y * size) + x;
                destination[d] = Math.Clamp(sum[3 * x] / 255f, 0f, 1f);
                destination[plane + d] = Math.Clamp(sum[(3 * x) + 1] / 255f, 0f, 1f);
                destination[(2 * plane) + d] = Math.Clamp(sum[(3 * x) + 2] / 255f, 0f, 1f);
            }
        }

        ArrayPool<float>.Shared.Return(row);
        ArrayPool<float>.Shared.Return(horizontal);
    }
}
