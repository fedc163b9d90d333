using System.Runtime.Intrinsics;

namespace Hcsc.Losses.Kernels;

/// <summary>The largest of a vector's lanes (a horizontal maximum).</summary>
internal static class LaneMaximum
{
    public static float Of(Vector256<float> values)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < Vector256<float>.Count; i++)
        {
            max = MathF.Max(max, values.GetElement(i));
        }

        return max;
    }
}
