using System.Buffers;

namespace Hcsc.Samples.ImageNetPretrain.Augmentation;

/// <summary>
/// In-place photometric operations on one planar RGB view (<c>[3, H, W]</c> floats in [0, 1]),
/// with torchvision's definitions: grey = 0.299 R + 0.587 G + 0.114 B; brightness, contrast and
/// saturation blend with black, the mean grey and the grey image; hue rotates H in HSV.
/// </summary>
public static class ColorOps
{
    /// <summary>x ← clamp(x · factor).</summary>
    public static void Brightness(Span<float> view, float factor)
    {
        for (int i = 0; i < view.Length; i++)
        {
            view[i] = Math.Clamp(view[i] * factor, 0f, 1f);
        }
    }

    /// <summary>x ← clamp(mean(grey) + factor · (x − mean(grey))).</summary>
    public static void Contrast(Span<float> view, float factor)
    {
        int plane = view.Length / 3;
        double sum = 0;
        for (int i = 0; i < plane; i++)
        {
            sum += Grey(view, plane, i);
        }

        float mean = (float)(sum / plane);
        for (int i = 0; i < view.Length; i++)
        {
            view[i] = Math.Clamp(mean + (factor * (view[i] - mean)), 0f, 1f);
        }
    }

    /// <summary>x ← clamp(grey + factor · (x − grey)), per pixel.</summary>
    public static void Saturation(Span<float> view, float factor)
    {
        int plane = view.Length / 3;
        for (int i = 0; i < plane; i++)
        {
            float grey = Grey(view, plane, i);
            for (int c = 0; c < 3; c++)
            {
                int o = (c * plane) + i;
                view[o] = Math.Clamp(grey + (factor * (view[o] - grey)), 0f, 1f);
            }
        }
    }

    /// <summary>Rotates the hue by <paramref name="shift"/> turns (−0.5 … 0.5) in HSV space.</summary>
    public static void Hue(Span<float> view, float shift)
    {
        int plane = view.Length / 3;
        for (int i = 0; i < plane; i++)
        {
            float r = view[i], g = view[plane + i], b = view[(2 * plane) + i];
            float max = Math.Max(r, Math.Max(g, b)), min = Math.Min(r, Math.Min(g, b));
            float delta = max - min;
            if (delta <= 0)
            {
                continue; // grey pixels have no hue
            }

            float h = max == r ? (g - b) / delta : max == g ? 2f + ((b - r) / delta) : 4f + ((r - g) / delta);
            h = (h / 6f) + shift;
            h -= MathF.Floor(h);
            (r, g, b) = HsvToRgb(h, delta / max, max);
            view[i] = r;
            view[plane + i] = g;
            view[(2 * plane) + i] = b;
        }
    }

    /// <summary>Replaces every channel with the grey level.</summary>
    public static void Grayscale(Span<float> view)
    {
        int plane = view.Length / 3;
        for (int i = 0; i < plane; i++)
        {
            float grey = Grey(view, plane, i);
            view[i] = view[plane + i] = view[(2 * plane) + i] = grey;
        }
    }

    /// <summary>Separable Gaussian blur with standard deviation <paramref name="sigma"/> pixels (kernel radius ⌈3σ⌉, edges clamped).</summary>
    public static void GaussianBlur(Span<float> view, int width, int height, float sigma)
    {
        int radius = Math.Max(1, (int)MathF.Ceiling(3 * sigma));
        int taps = (2 * radius) + 1, plane = width * height;
        float[] kernelArray = ArrayPool<float>.Shared.Rent(taps), paddedArray = ArrayPool<float>.Shared.Rent(width + (2 * radius)), sourceArray = ArrayPool<float>.Shared.Rent(plane);
        var kernel = kernelArray.AsSpan(0, taps);
        var padded = paddedArray.AsSpan(0, width + (2 * radius));
        var source = sourceArray.AsSpan(0, plane);
        float total = 0;
        for (int i = -radius; i <= radius; i++)
        {
            kernel[i + radius] = MathF.Exp(-(i * i) / (2 * sigma * sigma));
            total += kernel[i + radius];
        }

        for (int i = 0; i < kernel.Length; i++)
        {
            kernel[i] /= total;
        }

        for (int c = 0; c < 3; c++)
        {
            var channel = view.Slice(c * plane, plane);

            // Horizontal: each row, padded with its edge values, as a sum of shifted rows (vectorised).
            for (int y = 0; y < height; y++)
            {
                var row = channel.Slice(y * width, width);
                row.CopyTo(padded[radius..]);
                padded[..radius].Fill(row[0]);
                padded.Slice(radius + width, radius).Fill(row[width - 1]);
                var output = source.Slice(y * width, width);
                output.Clear();
                for (int k = 0; k < kernel.Length; k++)
                {
                    VectorMath.MultiplyAdd(padded.Slice(k, width), kernel[k], output);
                }
            }

            // Vertical: whole rows at once (contiguous, vectorised), edge rows clamped.
            for (int y = 0; y < height; y++)
            {
                var output = channel.Slice(y * width, width);
                output.Clear();
                for (int k = -radius; k <= radius; k++)
                {
                    int sourceRow = Math.Clamp(y + k, 0, height - 1);
                    VectorMath.MultiplyAdd(source.Slice(sourceRow * width, width), kernel[k + radius], output);
                }
            }
        }

        ArrayPool<float>.Shared.Return(sourceArray);
        ArrayPool<float>.Shared.Return(paddedArray);
        ArrayPool<float>.Shared.Return(kernelArray);
    }

    /// <summary>x ← (x − mean_c) / std_c per channel.</summary>
    public static void Normalize(Span<float> view, ReadOnlySpan<float> mean, ReadOnlySpan<float> std)
    {
        int plane = view.Length / 3;
        for (int c = 0; c < 3; c++)
        {
            float m = mean[c], inverse = 1f / std[c];
            var channel = view.Slice(c * plane, plane);
            for (int i = 0; i < plane; i++)
            {
                channel[i] = (channel[i] - m) * inverse;
            }
        }
    }

    /// <summary>HSV to RGB; <paramref name="h"/> in turns [0, 1), <paramref name="s"/> and <paramref name="v"/> in [0, 1].</summary>
    public static (float R, float G, float B) HsvToRgb(float h, float s, float v)
    {
        float sector = (h - MathF.Floor(h)) * 6f;
        int k = (int)sector % 6;
        float f = sector - MathF.Floor(sector);
        float p = v * (1 - s), q = v * (1 - (s * f)), t = v * (1 - (s * (1 - f)));
        return k switch
        {
            0 => (v, t, p),
            1 => (q, v, p),
            2 => (p, v, t),
            3 => (p, q, v),
            4 => (t, p, v),
            _ => (v, p, q),
        };
    }

    private static float Grey(Span<float> view, int plane, int i) => (0.299f * view[i]) + (0.587f * view[plane + i]) + (0.114f * view[(2 * plane) + i]);
}
