using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hcsc.Losses.Kernels;

/// <summary>
/// Eight interleaved xoshiro128+ generators (Blackman and Vigna), one per SIMD lane: call k of
/// <see cref="Next"/> yields the uniforms of elements 8k … 8k + 7 of a row. Each (seed, stream) pair
/// gets its own 8 × 128-bit state from SplitMix64, so rows can be drawn in any order, on any number of
/// threads, with the same result. Uniforms keep the top 24 bits: u = (x &gt;&gt; 8) · 2⁻²⁴ ∈ [0, 1).
/// </summary>
internal struct UniformLanes
{
    /// <summary>Uniforms produced per call of <see cref="Next"/>.</summary>
    public const int Width = 8;

    private Vector256<uint> _s0, _s1, _s2, _s3;

    /// <summary>The generator of stream <paramref name="stream"/> under <paramref name="seed"/>.</summary>
    public static UniformLanes Create(ulong seed, ulong stream)
    {
        ulong state = SplitMix64(seed ^ SplitMix64(stream ^ 0x632BE59BD9B4E019UL));
        Span<uint> words = stackalloc uint[4 * Width];
        for (int i = 0; i < words.Length; i += 2)
        {
            state += 0x9E3779B97F4A7C15UL;
            ulong z = SplitMix64(state);
            words[i] = (uint)z;
            words[i + 1] = (uint)(z >> 32);
        }

        // An all-zero xoshiro state would stay zero; SplitMix64 makes it a 2⁻¹²⁸ event per lane, ruled out anyway.
        for (int lane = 0; lane < Width; lane++)
        {
            if ((words[lane] | words[Width + lane] | words[(2 * Width) + lane] | words[(3 * Width) + lane]) == 0)
            {
                words[lane] = 1;
            }
        }

        return new UniformLanes
        {
            _s0 = Vector256.Create<uint>(words[..Width]),
            _s1 = Vector256.Create<uint>(words[Width..(2 * Width)]),
            _s2 = Vector256.Create<uint>(words[(2 * Width)..(3 * Width)]),
            _s3 = Vector256.Create<uint>(words[(3 * Width)..]),
        };
    }

    /// <summary>The next eight uniforms in [0, 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<float> Next()
    {
        var result = _s0 + _s3;
        var t = _s1 << 9;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = (_s3 << 11) | (_s3 >>> 21);
        return Vector256.ConvertToSingle((result >>> 8).AsInt32()) * Vector256.Create(1f / (1 << 24));
    }

    private static ulong SplitMix64(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
