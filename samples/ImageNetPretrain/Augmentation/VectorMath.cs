using System.Numerics;

namespace Hcsc.Samples.ImageNetPretrain.Augmentation;

/// <summary>Vectorised span arithmetic used by the image operations.</summary>
internal static class VectorMath
{
    /// <summary>destination[i] += weight · source[i].</summary>
    public static void MultiplyAdd(ReadOnlySpan<float> source, float weight, Span<float> destination)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var w = new Vector<float>(weight);
            int step = Vector<float>.Count;
            for (; i <= source.Length - step; i += step)
            {
                (new Vector<float>(destination[i..]) + (w * new Vector<float>(source[i..]))).CopyTo(destination[i..]);
            }
        }

        for (; i < source.Length; i++)
        {
            destination[i] += weight * source[i];
        }
    }
}
