using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hcsc.Losses.Kernels;

/// <summary>Reads masks eight entries at a time: bool masks (one byte per entry, 0 or 1) or packed bits.</summary>
internal static unsafe class MaskLanes
{
    /// <summary>Eight 0/1 bytes as eight int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Load8(byte* bytes)
    {
        var words = Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)bytes).AsByte());   // 8 × uint16
        return Vector256.WidenLower(words.ToVector256Unsafe()).AsInt32();
    }

    /// <summary>Eight packed bits (bit i = entry i) as eight int32 lanes 0/1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> FromBits(byte bits) =>
        Vector256.Min(Vector256.Create((int)bits) & Vector256.Create(1, 2, 4, 8, 16, 32, 64, 128), Vector256<int>.One);
}
