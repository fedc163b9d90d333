using System.Buffers;

namespace Hcsc.Samples.ImageNetPretrain.Augmentation;

/// <summary>
/// The separable triangle filter of <see cref="ResizedCrop"/> along one axis: per output pixel, the first source pixel
/// and the normalised weights, in memory rented from <see cref="ArrayPool{T}.Shared"/> (returned by <see cref="Dispose"/>).
/// </summary>
internal readonly struct FilterTaps : IDisposable
{
    private readonly int[] _starts;
    private readonly int[] _lengths;
    private readonly float[] _weights;
    private readonly int _stride;

    /// <summary>The filter resizing [<paramref name="origin"/>, + <paramref name="extent"/>) of <paramref name="inSize"/> source pixels to <paramref name="outSize"/>.</summary>
    public FilterTaps(double origin, double extent, int outSize, int inSize)
    {
        double scale = extent / outSize; // source pixels per output pixel
        double support = Math.Max(1.0, scale);
        _stride = (int)Math.Ceiling(2 * support) + 2; // ⌈c + s⌉ − ⌊c − s⌋ ≤ 2s + 2 taps
        _starts = ArrayPool<int>.Shared.Rent(outSize);
        _lengths = ArrayPool<int>.Shared.Rent(outSize);
        _weights = ArrayPool<float>.Shared.Rent(outSize * _stride);
        for (int o = 0; o < outSize; o++)
        {
            double center = origin + ((o + 0.5) * scale);
            int start = Math.Max(0, (int)Math.Floor(center - support));
            int end = Math.Min(inSize, (int)Math.Ceiling(center + support));
            var values = _weights.AsSpan(o * _stride, Math.Max(1, end - start));
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
                values = values[..1];
                values[0] = 1f;
            }
            else
            {
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = (float)(values[i] / total);
                }
            }

            _starts[o] = start;
            _lengths[o] = values.Length;
        }
    }

    /// <summary>The first source pixel of output pixel <paramref name="o"/>.</summary>
    public int Start(int o) => _starts[o];

    /// <summary>The weights of output pixel <paramref name="o"/>, from <see cref="Start"/> on.</summary>
    public ReadOnlySpan<float> Weights(int o) => _weights.AsSpan(o * _stride, _lengths[o]);

    /// <summary>Returns the memory to the pool.</summary>
    public void Dispose()
    {
        ArrayPool<float>.Shared.Return(_weights);
        ArrayPool<int>.Shared.Return(_lengths);
        ArrayPool<int>.Shared.Return(_starts);
    }
}
