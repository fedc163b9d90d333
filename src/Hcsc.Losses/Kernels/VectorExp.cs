using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hcsc.Losses.Kernels;

/// <summary>
/// e^x for eight floats at once in single precision (Cephes' expf: x = n·ln 2 + r with |r| ≤ ln 2 / 2, a degree-6
/// polynomial for e^r, 2^n through the exponent bits), about 2 ulp; inputs below −87.3 give 0. The kernels only
/// take it of x − max ≤ 0. <see cref="Vector256.Exp(Vector256{float})"/> computes in double precision and is
/// several times slower.
/// </summary>
internal static class VectorExp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var underflow = Vector256.LessThan(x, Vector256.Create(-87.33654f));
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-87.33654f)), Vector256.Create(88.72283f));
        var n = Vector256.Floor((x * Vector256.Create(1.44269504088896341f)) + Vector256.Create(0.5f));
        var r = x - (n * Vector256.Create(0.693359375f)) - (n * Vector256.Create(-2.12194440e-4f));
        var p = Vector256.Create(1.9875691500E-4f);
        p = (p * r) + Vector256.Create(1.3981999507E-3f);
        p = (p * r) + Vector256.Create(8.3334519073E-3f);
        p = (p * r) + Vector256.Create(4.1665795894E-2f);
        p = (p * r) + Vector256.Create(1.6666665459E-1f);
        p = (p * r) + Vector256.Create(5.0000001201E-1f);
        p = (p * r * r) + r + Vector256<float>.One;
        var scale = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return Vector256.AndNot(p * scale, underflow.AsSingle());
    }
}
