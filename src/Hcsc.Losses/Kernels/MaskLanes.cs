using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hcsc.Losses.Kernels;

/// <summary>Reads bool masks (one byte per entry, 0 or 1) eight entries at a time.</summary>
internal static unsafe class MaskLanes
{
    /// <summary>Eight 0/1 bytes as eight int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Load8(byte* bytes)
    {
        var words = Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)bytes).AsByte());   // 8 × uint16
        return Vector256.WidenLower(words.ToVector256Unsafe()).AsInt32();
    }
}
