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

        var columns = Weights(box.X, box.Width, size, image.Width);
        var rows = Weights(box.Y, box.Height, size, image.Height);

        // Horizontal pass: every source row the vertical filter touches -> [rowsUsed, size, 3].
        int firstRow = rows.Min(r => r.Start), lastRow = rows.Max(r => r.Start + r.Values.Length);
        int rowsUsed = lastRow - firstRow;
        float[] horizontal = System.Buffers.ArrayPool<float>.Shared.Rent(rowsUsed * size * 3);
        byte[] pixels = image.Pixels;
        for (int r = 0; r < rowsUsed; r++)
        {
            int sourceRow = (firstRow + r) * image.Width * 3;
            for (int x = 0; x < size; x++)
            {
                var (start, weights) = columns[flip ? size - 1 - x : x];
                float red = 0, green = 0, blue = 0;
                int p = sourceRow + (start * 3);
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
        float[] row = System.Buffers.ArrayPool<float>.Shared.Rent(rowLength);
        for (int y = 0; y < size; y++)
        {
            var (start, weights) = rows[y];
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

        System.Buffers.ArrayPool<float>.Shared.Return(row);
        System.Buffers.ArrayPool<float>.Shared.Return(horizontal);
    }

    /// <summary>Per output pixel, the first source pixel and the normalised filter weights.</summary>
    private static (int Start, float[] Values)[] Weights(double origin, double extent, int outSize, int inSize)
    {
        double scale = extent / outSize; // source pixels per output pixel
        double support = Math.Max(1.0, scale);
        var result = new (int, float[])[outSize];
        for (int o = 0; o < outSize; o++)
        {
            double center = origin + ((o + 0.5) * scale);
            int start = Math.Max(0, (int)Math.Floor(center - support));
            int end = Math.Min(inSize, (int)Math.Ceiling(center + support));
            var values = new float[Math.Max(1, end - start)];
            double total = 0;
            for (int i = 0; i < values.Length; i++)
            {
                double distance = Math.Abs((start + i + 0.5 - center) / support);
                double w = Math.Max(0, 1 - distance);
                values[i] = (float)w;
                total += w;
            }

            if (total <= 0)
            {
                start = Math.Clamp((int)Math.Floor(center), 0, inSize - 1);
                values = [1f];
            }
            else
            {
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = (float)(values[i] / total);
                }
            }

            result[o] = (start, values);
        }

        return result;
    }
}
