namespace Hcsc.Samples.ImageNetPretrain.Data;

/// <summary>Seeds derived from several integers, identical in every process (unlike <see cref="HashCode"/>, which is randomised per process).</summary>
public static class StableSeed
{
    /// <summary>Mixes <paramref name="parts"/> with SplitMix64 into a non-negative 32-bit seed.</summary>
    public static int Mix(params long[] parts)
    {
        ulong state = 0x9E3779B97F4A7C15UL;
        foreach (long part in parts)
        {
            state ^= unchecked((ulong)part);
            state = unchecked(state + 0x9E3779B97F4A7C15UL);
            ulong z = state;
            z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
            z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
            state = z ^ (z >> 31);
        }

        return (int)(state & 0x7FFFFFFF);
    }

    /// <summary>A <see cref="Random"/> seeded with <see cref="Mix"/> of <paramref name="parts"/>.</summary>
    public static Random Random(params long[] parts) => new(Mix(parts));
}
